"""A collapsed run continues from before the collapse with the suggested change (issue 21, item 4):
the Trainer keeps its newest checkpoint a health check found healthy, the remedy turns the
method's advice into settings, and services.branch makes a new run from that checkpoint with
them, which resumes and trains with the changed settings. Clocks and monitors are stubs."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import COLLAPSE_AT, collapsed_run, health, ticking_clock
from conftest import collapsing_config as config

from studio.engine.data import SampleSource, decode_images
from studio.engine.errors import ConfigError
from studio.engine.train import TrainConfig, Trainer, TrainingCallbacks, load_checkpoint



@pytest.fixture(scope="module")
def sample8():
    return decode_images(SampleSource(), 8)


class Files(TrainingCallbacks):
    def __init__(self):
        self.rows: dict[str, int] = {}  # checkpoint name -> step, as the run's database would hold them

    def on_checkpoint(self, path, step, epoch):
        self.rows[Path(path).name] = step

    def on_checkpoint_removed(self, path):
        self.rows.pop(Path(path).name, None)


@pytest.mark.parametrize("collapse_at, kept", [(COLLAPSE_AT, 8), (None, None)])
def test_a_run_keeps_its_newest_healthy_checkpoint_only_when_it_ends_collapsed(sample8, tmp_path, collapse_at, kept):
    files = Files()
    trainer = Trainer(config(), sample8, tmp_path, callbacks=files, monitors=[health(collapse_at)],
                      clock=ticking_clock())
    assert trainer.run().status == "finished"
    on_disk = sorted(p.name for p in tmp_path.iterdir())
    if kept is None:
        assert on_disk == ["last.ckpt"] and files.rows == {"last.ckpt": 20}
    else:
        # Step 8's checkpoint was checked healthy at step 8; step 9's was first checked at 12, collapsed.
        assert on_disk == ["healthy.ckpt", "last.ckpt"]
        assert files.rows == {"healthy.ckpt": kept, "last.ckpt": 20}
        assert load_checkpoint(tmp_path / "healthy.ckpt")["step"] == kept


def test_the_remedy_is_the_methods_own_setting_else_half_the_learning_rate():
    from studio.engine.train.optim import resolve_optimizer
    from studio.engine.methods import method_class
    from studio.engine.train.remedy import collapse_remedy

    dino = collapse_remedy(TrainConfig(method="dino", backbone="resnet18", batch_size=64))
    assert dino.changes == {"method_config": {"teacher_temp": 0.04}} and dino.text == "teacher_temp 0.07 → 0.04"
    # Already at 0.04: the next remedy DINO's advice names.
    sharper = collapse_remedy(TrainConfig(method="dino", backbone="resnet18", method_config={"teacher_temp": 0.04}))
    assert sharper.changes == {"method_config": {"teacher_temp": 0.04, "center_momentum": 0.5}}
    simclr = TrainConfig(method="simclr", backbone="resnet18", batch_size=64)
    _, lr, _ = resolve_optimizer(simclr, method_class("simclr"), "cnn", 64)
    assert collapse_remedy(simclr).changes == {"lr": pytest.approx(lr / 2)}
    assert collapse_remedy(TrainConfig(method="mae", backbone="vit_tiny")) is None  # reconstructs pixels


def test_a_collapsed_run_continues_from_before_the_collapse_with_the_suggested_change(project):
    from studio.services.branch import branch_point, branch_run, suggested_branch
    from studio.services.training import execute_run, prepare_run

    run = collapsed_run(project)
    point = branch_point(project, run)
    assert point.checkpoint.step == 8 and Path(point.checkpoint.path).name == "healthy.ckpt"
    changes, words = suggested_branch(project, run.id)
    assert words.startswith("learning rate ") and set(changes) == {"lr"}  # SimCLR: half the lr

    new = branch_run(project, run.id, changes)
    assert (new.parent_run_id, new.parent_step, new.status, new.steps) == (run.id, 8, "stopped", 8)
    assert "continues run" in new.reason and words in new.reason
    old_lr = project.metric_series(run.id, ["lr"])
    copied = project.metric_series(new.id, ["lr", "loss"])
    assert copied.steps["loss"] == [s for s in project.metric_series(run.id, ["loss"]).steps["loss"] if s <= 8]
    ck = load_checkpoint(project.abs(project.latest_checkpoint(new.id).path))
    assert ck["config"]["lr"] == changes["lr"] and ck["branched_from"] == {"run": run.id, "step": 8}
    assert project.checkpoints(run.id) == project.checkpoints(run.id)  # the first run is untouched
    assert sorted(p.name for p in project.run_dir(run.id).iterdir()) == ["healthy.ckpt", "last.ckpt"]

    prepared = prepare_run(project, resume=new.id)
    result = execute_run(project, new.id, resume=True, checkpoint_step=prepared.checkpoint_step)
    assert result.status == "finished" and result.steps == 20
    lr = project.metric_series(new.id, ["lr"])
    before = dict(zip(old_lr.steps["lr"], old_lr.values["lr"]))
    after = dict(zip(lr.steps["lr"], lr.values["lr"]))
    assert after[8] == before[8]  # copied
    ratios = [after[step] / before[step] for step in (9, 15, 19)]  # the same schedule at half the height
    assert ratios == pytest.approx([ratios[0]] * 3, rel=1e-6) and ratios[0] == pytest.approx(0.5, rel=0.01)


def test_a_branch_refuses_changes_its_checkpoint_cannot_take_and_changes_nothing(project):
    from studio.services.branch import branch_run

    run = collapsed_run(project)
    runs_before = len(project.runs())
    with pytest.raises(ConfigError, match="batch size cannot change"):
        branch_run(project, run.id, {"batch_size": 8})
    with pytest.raises(ConfigError, match="changes the model's shape"):
        branch_run(project, run.id, {"method_config": {"output_dim": 64}})
    with pytest.raises(ConfigError, match="nothing changes"):
        branch_run(project, run.id, {})
    project.set_run_status(run.id, "running")
    with pytest.raises(ConfigError, match="running"):
        branch_run(project, run.id, {"lr": 0.01})
    assert len(project.runs()) == runs_before
