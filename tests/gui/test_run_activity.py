"""The Run page says what a live run does between steps and shows the engine's ETA (issue 16,
item 5), and the ETA is not drawn as a monitor."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

pytestmark = pytest.mark.usefixtures("private_settings")


def test_the_run_page_shows_the_monitor_check_and_the_engines_eta(make_window, qtbot, project):
    from studio.engine.train import TrainConfig
    from studio.engine.train.trainer import MONITOR_ACTIVITY
    from studio.services.training import create_run

    run = create_run(project, "sample", TrainConfig(method="simclr", backbone="resnet18", steps=100, batch_size=32))
    project.set_run_status(run.id, "running", steps=40, total_steps=100)
    project.add_metrics([(run.id, 40, 1.0, "loss", 4.0, 0.0), (run.id, 40, 1.0, "images_per_s", 32.0, 0.0),
                         (run.id, 40, 1.0, "eta_s", 600.0, 0.0)])
    w = make_window(project.root)
    w.panel.select_run(run.id)
    page = w.run_page
    qtbot.waitUntil(lambda: "ETA" in page.progress_label.text())
    # 60 steps at 1 step/s would be 1 min; the engine's 600 s counts its monitor checks too.
    assert "ETA 10 min" in page.progress_label.text() or "ETA 10:00" in page.progress_label.text(), \
        page.progress_label.text()
    w.runs.activity.emit(run.id, MONITOR_ACTIVITY)
    assert f"{MONITOR_ACTIVITY}…" in page.progress_label.text()
    w.runs.activity.emit(run.id, "")
    assert MONITOR_ACTIVITY not in page.progress_label.text()
    assert page.other_combo.findData("eta_s") < 0
