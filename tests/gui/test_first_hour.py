"""The first hour in the app (issue 16): quitting while a run trains asks, the guide opens inside the app, Pause says it is pausing, a new run starts on empty axes, Run details follow a run live."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QMessageBox  # noqa: E402

pytestmark = pytest.mark.usefixtures("private_settings")


def test_quit_while_training_asks_and_no_keeps_the_window(make_window, project, monkeypatch):
    w = make_window(project.root)
    asked = []

    def answer(parent, title, text, *a, **k):
        asked.append(text)
        return QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "question", answer)
    monkeypatch.setitem(w.runs.jobs, 3, object())  # as if run 3 were training in this window
    w.actions_by_name["quit"].trigger()
    assert asked == ["Stop run 3 with a checkpoint and quit?"] and w.isVisible()
    w.runs.jobs.clear()
    w.actions_by_name["quit"].trigger()  # nothing trains: no question
    assert len(asked) == 1 and not w.isVisible()


def test_the_users_guide_opens_inside_the_app(make_window, project):
    w = make_window(project.root)
    w.actions_by_name["guide"].trigger()
    dialog = w.guide_dialog
    assert dialog.isVisible()
    from PySide6.QtWidgets import QTextBrowser

    text = dialog.findChild(QTextBrowser, "Guide").toPlainText()
    assert text.startswith("SSL Studio: the user's guide") and "Budget" in text and "Explorer" in text


def test_pause_says_it_is_pausing_until_the_step_under_way_ends(make_window, project, qtbot):
    from conftest import tiny_train_config

    w = make_window(project.root)
    run_id = w.runs.start_new("sample", tiny_train_config(steps=500, batch_size=8, image_size=16, monitor_every=-1))
    qtbot.waitUntil(lambda: w.project.run(run_id).status == "running" and w.project.run(run_id).steps > 0,
                    timeout=60_000)
    messages = []
    w.runs.message.connect(lambda text, ms: messages.append(text))
    assert w.runs.pause(run_id)
    verdict = w.runs.verdicts(w.project.run(run_id))["pause"]
    assert not verdict and verdict.reason == f"Pausing run {run_id} after the step under way…"
    assert messages[-1] == verdict.reason
    qtbot.waitUntil(lambda: w.project.run(run_id).status == "paused", timeout=60_000)
    qtbot.waitUntil(lambda: messages[-1].startswith(f"Run {run_id} paused"), timeout=10_000)
    assert w.runs.verdicts(w.project.run(run_id))["resume"]
    w.runs.stop(run_id)
    qtbot.waitUntil(lambda: run_id not in w.runs.jobs, timeout=60_000)


def test_a_new_run_starts_on_empty_axes_that_say_they_wait(make_window, project, qtbot):
    import time

    from conftest import tiny_train_config

    from studio.services.training import create_run

    old = create_run(project, "sample", tiny_train_config(steps=400))
    t = time.time()
    project.add_metrics([(old.id, s, s / 10, "loss", 50.0 - 0.1 * s, t) for s in range(1, 301)])
    project.set_run_status(old.id, "finished")
    new = create_run(project, "sample", tiny_train_config(steps=40))
    project.set_run_status(new.id, "running")
    w = make_window(project.root)
    plot = w.run_page.loss_plot
    w.panel.select_run(old.id)
    qtbot.waitUntil(lambda: len(w.run_page.curve_data("loss")[0]) == 300, timeout=10_000)
    assert not plot.waiting.isVisible() and plot.viewRange()[0][1] > 300
    w.panel.select_run(new.id)
    qtbot.waitUntil(lambda: w.run_page.run_id == new.id, timeout=10_000)
    (x0, x1), (y0, y1) = plot.viewRange()
    assert plot.waiting.isVisible() and (x0, x1, y0, y1) == (0, 1, 0, 1)  # not run 1's 0..400 and 20..50
    project.add_metrics([(new.id, s, s / 10, "loss", 4.0 - 0.1 * s, t) for s in range(1, 6)])
    qtbot.waitUntil(lambda: len(w.run_page.curve_data("loss")[0]) == 5, timeout=10_000)
    assert not plot.waiting.isVisible() and plot.viewRange()[1][1] < 10


def test_run_details_follow_a_training_run_live(make_window, project, qtbot):
    from conftest import tiny_train_config

    from studio.services.training import create_run

    run = create_run(project, "sample", tiny_train_config(steps=40))
    project.update_run(run.id, total_steps=40, steps=12)
    project.set_run_status(run.id, "running")
    w = make_window(project.root)
    w.panel.select_run(run.id)
    w.show_page("Run details")
    qtbot.waitUntil(lambda: "12 / 40 steps" in w.run_details.subtitle_label.text(), timeout=10_000)
    project.update_run(run.id, steps=16)  # as the trainer (or another process) records progress
    qtbot.waitUntil(lambda: "16 / 40 steps" in w.run_details.subtitle_label.text(), timeout=10_000)


def test_resuming_a_run_another_process_trains_is_refused_and_leaves_it_as_it_was(make_window, project, qtbot):
    from conftest import tiny_train_config

    from studio.services.training import create_run, execute_run
    from studio.engine.train import TrainingControl, TrainingCallbacks

    class StopAt(TrainingCallbacks):
        def __init__(self, control):
            self.control = control

        def on_metrics(self, step, epoch, metrics):
            if step >= 3:
                self.control.stop()

    run = create_run(project, "sample", tiny_train_config(steps=40, batch_size=8, image_size=16, monitor_every=-1))
    control = TrainingControl()
    assert execute_run(project, run.id, control=control, callbacks=[StopAt(control)]).status == "stopped"
    before = project.run(run.id)
    w = make_window(project.root)
    lease = project.lease_run(run.id)  # another trainer holds the run
    try:
        w.runs.resume(run.id)
        qtbot.waitUntil(lambda: run.id not in w.runs.jobs, timeout=60_000)
        qtbot.waitUntil(lambda: "was not started" in w.statusBar().currentMessage(), timeout=10_000)
        assert "another process" in w.statusBar().currentMessage()
        after = project.run(run.id)
        assert (after.status, after.steps, after.reason) == (before.status, before.steps, before.reason)
    finally:
        lease.release()


def test_the_window_works_at_1024_by_640(make_window, project, qtbot):
    """Item 18: no page forces the window past 1024 x 640 (a larger page scrolls), and the New
    run page's Start button is on screen there."""
    w = make_window(project.root)
    w.resize(1024, 640)
    qtbot.waitUntil(lambda: w.width() == 1024 and w.height() == 640)
    hint = w.minimumSizeHint()
    assert hint.width() <= 1024 and hint.height() <= 640, hint
    w.show_new_run("sample")
    start = w.new_run_page.start_button
    qtbot.waitUntil(start.isVisible)
    corner = start.mapTo(w, start.rect().bottomRight())
    assert 0 < corner.x() <= 1024 and 0 < corner.y() <= 640, corner
    # Its form's two columns stand one under the other there: no sideways scrolling (it needed
    # 913 px side by side); at 1400 px they stand side by side again.
    form = w.new_run_page
    qtbot.waitUntil(lambda: form._columns.narrow)
    assert not form._form_scroll.horizontalScrollBar().isVisible()
    w.resize(1400, 900)
    qtbot.waitUntil(lambda: not form._columns.narrow)
    assert not form._form_scroll.horizontalScrollBar().isVisible()
    w.resize(1024, 640)
    qtbot.waitUntil(lambda: w.width() == 1024)
    # The Run page fits the width there: no sideways scrolling, its Export button in the window
    # (it was 831 px wide at least, its title at full length, and Export sat off the right edge).
    from studio.engine.train import TrainConfig
    from studio.services.training import create_run

    run = create_run(project, "sample", TrainConfig(method="simclr", backbone="resnet18", steps=10, batch_size=8))
    w.panel.select_run(run.id)
    w.show_page("Run")
    holder = w._holders["Run"]
    qtbot.waitUntil(lambda: w.run_page.width() == holder.viewport().width())
    assert not holder.horizontalScrollBar().isVisible()
    export = w.run_page.export_button
    corner = export.mapTo(w, export.rect().bottomRight())
    assert 0 < corner.x() <= 1024, corner
    assert w.run_page.title_label.text() == f"Run {run.id}: SimCLR on resnet18"  # whole, though it may show elided
