"""Duplicate run keeps every setting: a run stored with each TrainConfig field away from its
default is duplicated in the GUI and started; the new run's stored config is the old one's."""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("pytestqt")

pytestmark = pytest.mark.usefixtures("private_settings")

# Every TrainConfig field, none at its default (the CLI can store all of these).
EVERY_FIELD = dict(
    method="simclr", backbone="resnet18", method_config={"temperature": 0.123456789, "output_dim": 96},
    backbone_options={"small_stem": False}, pretrained=True, epochs=None, steps=77, batch_size=48, lr=0.0123,
    image_size=24, device="cpu", seed=3_000_000_000, optimizer="lars", weight_decay=1.5e-5, warmup_epochs=2.5,
    max_grad_norm=1.5, amp=False, channels_last=True, compile=True, checkpoint_every=5, checkpoint_minutes=2.5,
    log_every=3, monitor_every=-1, knn_k=7, knn_temperature=0.07, init_from="runs/earlier/last.ckpt",
)


def test_every_field_differs_from_its_default():
    from studio.engine.train import TrainConfig

    defaults = TrainConfig()
    same = [f.name for f in TrainConfig.fields() if f.name != "epochs" and getattr(defaults, f.name) ==
            EVERY_FIELD[f.name]]
    assert same == ["method", "backbone"]  # the structure the rest hangs on; epochs yields to steps
    assert set(EVERY_FIELD) == {f.name for f in TrainConfig.fields()}


def test_duplicate_then_start_stores_the_same_config(make_window, qtbot, project, monkeypatch):
    from studio.engine.train import TrainConfig
    from studio.gui.workers import TrainingJob
    from studio.services.training import create_run

    # The run is stored, not trained: its ImageNet weights would be downloaded by a real start.
    monkeypatch.setattr(TrainingJob, "start", lambda self: None)
    earlier = project.root / EVERY_FIELD["init_from"]  # the checkpoint LiT starts from: never read here
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"a checkpoint")
    old = create_run(project, "sample", TrainConfig(**EVERY_FIELD))
    project.set_run_status(old.id, "stopped", "stopped by the user")
    w = make_window(project.root)
    w.panel.select_run(old.id)
    w.duplicate_action.trigger()
    assert w.current_page_title() == "New run"
    assert w.new_run_page.can_start(), w.new_run_page.error_text()
    w.start_action.trigger()  # Run ▸ Start on the New run page
    new = max(project.runs(), key=lambda r: r.id)
    assert new.id != old.id and new.parent_run_id == old.id
    assert new.config == project.run(old.id).config
    assert TrainConfig.from_dict(new.config) == TrainConfig(**EVERY_FIELD)


def test_a_field_the_form_does_not_show_survives(qtbot):
    """config() is the stored config with what the form shows: a field it has no row for (one a
    newer studio added, say) keeps its stored value, and changing a shown field changes that one."""
    from studio.engine.settings import option
    from studio.engine.train import TrainConfig
    from studio.gui.new_run_page import NewRunPage

    @dataclasses.dataclass
    class Newer(TrainConfig):
        future_setting: int = option(5, "a setting this form was built without", group="advanced")

    page = NewRunPage()
    qtbot.addWidget(page)
    page.set_datasets(["sample"])
    stored = Newer(**EVERY_FIELD, future_setting=9)
    page.set_config(stored, dataset="sample")
    assert page.config() == stored and page.config().future_setting == 9
    page.setting_editors["knn_k"].set_value(11)  # as typing 11 in the kNN k box does
    assert page.config() == dataclasses.replace(stored, knn_k=11)


def test_try_the_sample_after_a_duplicate_is_no_ones_duplicate(make_window, qtbot, project, monkeypatch):
    """Seen: a run started by "Try the sample" after an earlier Duplicate said "duplicated from run 2"."""
    from studio.engine.train import TrainConfig
    from studio.gui import main_window as mw
    from studio.gui.workers import TrainingJob
    from studio.services.training import create_run

    monkeypatch.setattr(TrainingJob, "start", lambda self: None)
    monkeypatch.setattr(mw, "sample_project_path", lambda: project.root)
    old = create_run(project, "sample", TrainConfig(steps=5, batch_size=8, image_size=16, device="cpu"))
    project.set_run_status(old.id, "stopped", "stopped by the user")
    w = make_window(project.root)
    w.panel.select_run(old.id)
    w.duplicate_action.trigger()
    assert w.try_sample()
    page = w.new_run_page
    qtbot.waitUntil(lambda: not page.sizing, timeout=120_000)  # the 5-minute budget measures a few steps
    w.start_action.trigger()
    new = max(project.runs(), key=lambda r: r.id)
    assert new.id != old.id and new.parent_run_id is None
