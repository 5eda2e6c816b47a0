"""The main window end to end: add the sample, train from the form, watch the curves come from the
store, stop, reopen; runs written by another process; the screenshot mode."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from PySide6.QtGui import QImage  # noqa: E402

from conftest import tiny_train_config  # noqa: E402

WAIT_MS = 60_000
pytestmark = pytest.mark.usefixtures("private_settings")


def test_train_from_the_form_stop_and_reopen(make_window, qtbot, tmp_path):
    from studio.store import Project

    root = tmp_path / "proj"
    Project.create(root).close()
    w = make_window(root)
    assert w.panel.dataset_names() == []
    assert not w.new_run_page.start_button.isEnabled()  # no dataset yet, and it says so
    assert "dataset" in w.new_run_page.error_label.text().lower()

    w.add_sample()  # the File ▸ Add sample action's method, on a worker
    qtbot.waitUntil(lambda: w.panel.dataset_names() == ["sample"], timeout=WAIT_MS)
    # the panel's poll of the store may list it a moment before the worker's result reaches the page
    qtbot.waitUntil(lambda: w.dataset_page.images_card.value_label.text() == "1,797", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: w.dataset_page.thumbnail_count() == 16, timeout=WAIT_MS)

    w.show_new_run("sample")
    page = w.new_run_page
    page.set_config(tiny_train_config(steps=500, batch_size=8))  # trains in seconds; Stop comes first
    assert page.start_button.isEnabled(), page.error_label.text()
    qtbot.mouseClick(page.start_button, Qt.MouseButton.LeftButton)
    assert len(w.jobs) == 1
    run_id = next(iter(w.jobs))
    assert w.current_page_title() == "Run" and w.run_page.run_id == run_id

    qtbot.waitUntil(lambda: len(w.run_page.curve_data("loss")[0]) > 0, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: w.run_page.stop_button.isEnabled(), timeout=WAIT_MS)
    steps, values = w.run_page.curve_data("loss")
    with Project.open(root) as other:
        stored = other.metric_series(run_id, ["loss"])
    n = len(steps)
    assert list(steps) == stored.steps["loss"][:n]
    assert list(values) == pytest.approx(stored.values["loss"][:n])
    assert all(math.isfinite(v) for v in values)

    qtbot.mouseClick(w.run_page.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: run_id not in w.jobs, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: "stopped" in w.panel.run_text(run_id), timeout=WAIT_MS)
    with Project.open(root) as other:
        run = other.run(run_id)
        assert run.status == "stopped"
        assert run.steps < 500
        assert other.latest_checkpoint(run_id) is not None
        stored = other.metric_series(run_id, ["loss"])
    qtbot.waitUntil(lambda: len(w.run_page.curve_data("loss")[0]) == len(stored.steps["loss"]), timeout=WAIT_MS)
    assert w.run_page.resume_button.isEnabled()  # a stopped run with a checkpoint can go on
    assert not w.run_page.stop_button.isEnabled()

    # A new window on the same project redraws the stored curve, point for point.
    w2 = make_window(root)
    assert w2.run_page.run_id == run_id  # the most recent run is shown
    qtbot.waitUntil(lambda: len(w2.run_page.curve_data("loss")[0]) == len(stored.steps["loss"]), timeout=WAIT_MS)
    assert list(w2.run_page.curve_data("loss")[1]) == pytest.approx(stored.values["loss"])
    assert w2.run_page.status_pill.text() == "stopped"


def test_closing_the_window_stops_a_training_run_cleanly(make_window, qtbot, project):
    from studio.store import Project

    w = make_window(project.root)
    w.show_new_run("sample")
    w.new_run_page.set_config(tiny_train_config(steps=100_000, batch_size=8))
    qtbot.mouseClick(w.new_run_page.start_button, Qt.MouseButton.LeftButton)
    run_id = next(iter(w.jobs))
    job = w.jobs[run_id]
    qtbot.waitUntil(lambda: project.run(run_id).status == "running", timeout=WAIT_MS)
    w.close()
    assert not w.jobs and not job.is_running()
    with Project.open(project.root) as p:
        assert p.run(run_id).status == "stopped"
        assert p.latest_checkpoint(run_id) is not None


def test_a_run_written_by_another_process_appears_and_draws(make_window, qtbot, project):
    import time

    from conftest import tiny_train_config

    from studio.services.training import create_run
    from studio.store import Project

    w = make_window(project.root)
    assert w.panel.run_ids() == []
    # Another Project instance plays the CLI: it creates the run and records points as RunRecorder does.
    cli = Project.open(project.root)
    try:
        run = create_run(cli, "sample", tiny_train_config(steps=20))
        cli.update_run(run.id, total_steps=20)
        cli.set_run_status(run.id, "running")
        t = time.time()
        cli.add_metrics([(run.id, s, s / 10, name, v, t) for s in range(1, 11)
                         for name, v in (("loss", 5.0 - 0.1 * s), ("lr", 0.01), ("images_per_s", 100.0 + s))])
        cli.update_run(run.id, steps=10)

        qtbot.waitUntil(lambda: run.id in w.panel.run_ids(), timeout=10_000)
        assert "running" in w.panel.run_text(run.id)
        w.panel.select_run(run.id)
        assert w.current_page_title() == "Run"
        qtbot.waitUntil(lambda: len(w.run_page.curve_data("loss")[0]) == 10, timeout=10_000)
        assert list(w.run_page.curve_data("loss")[1]) == pytest.approx([5.0 - 0.1 * s for s in range(1, 11)])
        assert len(w.run_page.curve_data("lr")[0]) == 10
        assert w.run_page.progress_bar.value() == 10 and w.run_page.progress_bar.maximum() == 20
        # Not ours: the window must not pretend it can stop it.
        assert not w.run_page.stop_button.isEnabled() and not w.run_page.pause_button.isEnabled()

        # New points are read incrementally and appended.
        cli.add_metrics([(run.id, s, s / 10, "loss", 4.0, t) for s in range(11, 16)])
        qtbot.waitUntil(lambda: len(w.run_page.curve_data("loss")[0]) == 15, timeout=10_000)
        assert list(w.run_page.curve_data("loss")[0][-5:]) == [11, 12, 13, 14, 15]

        cli.set_run_status(run.id, "diverged", "the loss became nan at step 16")
        qtbot.waitUntil(lambda: "diverged" in w.panel.run_text(run.id), timeout=10_000)
        qtbot.waitUntil(lambda: "nan at step 16" in w.run_page.reason_label.text(), timeout=10_000)
    finally:
        cli.close()


def test_the_run_heading_says_collapsing_while_the_health_monitor_does(make_window, qtbot, project):
    import time

    from conftest import tiny_train_config

    from studio.services.training import create_run

    run = create_run(project, "sample", tiny_train_config(steps=40))
    project.set_run_status(run.id, "running")
    t = time.time()
    health = lambda step, collapse, spread: [(run.id, step, step / 10, "collapse", collapse, t),  # noqa: E731
                                             (run.id, step, step / 10, "embedding_std_ratio", spread, t)]
    project.add_metrics([(run.id, s, s / 10, "loss", 5.0 - 0.1 * s, t) for s in range(1, 21)]
                        + health(10, 0.0, 0.62) + health(20, 1.0, 0.02))
    w = make_window(project.root)
    w.panel.select_run(run.id)
    pill = w.run_page.heading.health_pill
    qtbot.waitUntil(lambda: pill.isVisible(), timeout=10_000)
    assert pill.text() == "collapsing"
    assert "step 20" in pill.toolTip() and "spread 0.020" in pill.toolTip()

    # The next check finds the outputs spread again: the pill goes. A run that ended collapsed
    # keeps it, in the past tense.
    project.add_metrics(health(30, 0.0, 0.4))
    qtbot.waitUntil(lambda: not pill.isVisible(), timeout=10_000)
    assert w.run_page.status_pill.isVisible()
    project.add_metrics(health(40, 1.0, 0.01))
    project.set_run_status(run.id, "finished")
    qtbot.waitUntil(lambda: pill.isVisible() and pill.text() == "collapsed", timeout=10_000)


def test_the_run_page_marks_the_untrained_encoders_knn_and_says_when_a_run_is_below_it(make_window, qtbot, project):
    """The monitors' check at step 0 is the untrained encoder's: the kNN plot draws it as a dashed
    line, and the heading says "below random init" while the latest check is under it."""
    import time

    from conftest import tiny_train_config

    from studio.services.training import create_run

    run = create_run(project, "sample", tiny_train_config(steps=40))
    project.set_run_status(run.id, "running")
    t = time.time()
    knn = lambda step, v: (run.id, step, step / 10, "knn_top1", v, t)  # noqa: E731
    project.add_metrics([(run.id, s, s / 10, "loss", 5.0 - 0.1 * s, t) for s in range(1, 21)]
                        + [knn(0, 0.52), knn(10, 0.61), knn(20, 0.35)])
    w = make_window(project.root)
    w.panel.select_run(run.id)
    page = w.run_page
    pill = page.heading.baseline_pill
    qtbot.waitUntil(lambda: pill.isVisible(), timeout=10_000)
    assert "step 20" in pill.toolTip() and "0.350 is below the untrained encoder's 0.520" in pill.toolTip()
    page.flush_drawing()
    assert page.other_combo.currentData() == "knn_top1"
    assert page._baseline_line is not None and page._baseline_line.value() == 0.52
    project.add_metrics([knn(30, 0.7)])
    qtbot.waitUntil(lambda: not pill.isVisible(), timeout=10_000)


def test_screenshot_writes_the_window_as_a_png(project, tmp_path):
    import os
    import subprocess
    import sys
    import time

    from conftest import tiny_train_config

    from studio.gui.app import WINDOW_SIZE
    from studio.services.training import create_run

    run = create_run(project, "sample", tiny_train_config(steps=30))
    project.set_run_status(run.id, "running")
    project.add_metrics([(run.id, s, s / 10, "loss", 6.0 / s, time.time()) for s in range(1, 31)])
    project.set_run_status(run.id, "finished")
    png = tmp_path / "shot.png"
    # As a user runs it: its own process (run_gui quits the Qt application it runs in).
    done = subprocess.run([sys.executable, "-m", "studio", "gui", str(project.root), "--screenshot", str(png)],
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0, done.stderr
    assert png.stat().st_size > 10_000
    img = QImage(str(png))
    assert (img.width(), img.height()) == WINDOW_SIZE
    # The curve is drawn: the loss plot holds pixels of the curve's colour.
    from PySide6.QtGui import QColor

    from studio.gui.style import CURVE_COLOURS

    blue = QColor(CURVE_COLOURS[0]).rgb()
    hits = sum(1 for x in range(300, img.width(), 3) for y in range(150, 450, 3) if img.pixel(x, y) == blue)
    assert hits > 20
