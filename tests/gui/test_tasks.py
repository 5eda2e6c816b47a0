"""The one task idiom of the GUI (studio.gui.tasks): progress only when it moved, one ending
each (done, failed or cancelled), cancel checked between steps; used by the estimate and by
adding a dataset."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("pytestqt")

pytestmark = pytest.mark.usefixtures("private_settings")


def run_task(qtbot, fn, **kwargs):
    from studio.gui.tasks import Task

    task = Task(fn, **kwargs)
    seen = {"progress": [], "done": [], "failed": [], "cancelled": 0}
    task.progress.connect(seen["progress"].append)
    task.done.connect(seen["done"].append)
    task.failed.connect(seen["failed"].append)
    task.cancelled.connect(lambda: seen.__setitem__("cancelled", seen["cancelled"] + 1))
    return task, seen


def test_progress_is_emitted_only_when_it_moved(qtbot):
    def work(state):
        for _ in range(1000):
            state.report("reading", 0, 100)  # the same news, again and again
        for i in range(1, 101):
            state.report("reading", i, 100)  # a hundred counts in far less than min_interval
        state.report("mapping", 0, 0)  # a new stage: at once
        return "ok"

    task, seen = run_task(qtbot, work, min_interval=10.0)
    with qtbot.waitSignal(task.ended, timeout=10_000):
        task.start()
    stages = [(p.stage, p.done) for p in seen["progress"]]
    assert stages == [("reading", 0), ("reading", 100), ("mapping", 0)]  # first, end, new stage
    assert seen["done"] == ["ok"] and seen["failed"] == [] and seen["cancelled"] == 0


def test_cancel_is_a_flag_checked_between_steps(qtbot):
    steps = []

    def work(state):
        while not state.cancelled():
            steps.append(1)
            time.sleep(0.01)
        return "unused"

    task, seen = run_task(qtbot, work)
    task.start()
    qtbot.waitUntil(lambda: len(steps) > 2, timeout=10_000)
    with qtbot.waitSignal(task.ended, timeout=10_000):
        task.cancel()
    assert seen["cancelled"] == 1 and seen["done"] == [] and seen["failed"] == []
    assert not task.is_running()


def test_errors_are_one_message(qtbot):
    from studio.engine.errors import DatasetError

    task, seen = run_task(qtbot, lambda state: (_ for _ in ()).throw(DatasetError("the folder holds no images.")))
    with qtbot.waitSignal(task.ended, timeout=10_000):
        task.start()
    assert seen["failed"] == ["the folder holds no images."] and seen["done"] == []
    task, seen = run_task(qtbot, lambda state: {}["missing"])
    with qtbot.waitSignal(task.ended, timeout=10_000):
        task.start()
    assert seen["failed"] == ["'missing' (KeyError)"]  # not the studio's: its kind is named


def test_the_estimate_can_be_cancelled(make_window, qtbot, project):
    from PySide6.QtCore import Qt

    from conftest import tiny_train_config

    w = make_window(project.root)
    w.show_new_run("sample")
    page = w.new_run_page
    page.set_config(tiny_train_config(backbone="mobilenet_v3_small", steps=None, epochs=2, batch_size=8))
    w.estimate_action.trigger()  # Run ▸ Estimate cost
    assert page.busy() and page.cancel_estimate_button.isVisible()
    qtbot.mouseClick(page.cancel_estimate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.busy(), timeout=120_000)
    assert "cancelled" in page.estimate_label.text() and page.estimate_result is None
    assert not page.cancel_estimate_button.isVisible() and page.estimate_button.isEnabled()


def test_services_estimate_stops_between_steps():
    import numpy as np

    from conftest import tiny_train_config

    from studio.services.estimate import EstimateCancelled, estimate_cost

    calls = []
    images = np.random.default_rng(0).integers(0, 256, size=(20, 3, 16, 16), dtype=np.uint8)
    with pytest.raises(EstimateCancelled):
        estimate_cost(tiny_train_config(backbone="mobilenet_v3_small", batch_size=4), images, steps=5,
                      cancelled=lambda: len(calls) >= 2, progress=lambda stage, done, total: calls.append(done))
    assert calls == [0, 1]  # two steps measured, then it stopped


def test_adding_a_dataset_can_be_cancelled(make_window, qtbot, tmp_path):
    from PySide6.QtCore import Qt

    from studio.store import Project

    root = tmp_path / "p"
    Project.create(root).close()
    w = make_window(root)
    w.add_sample()  # File ▸ Add sample, on a task
    assert w.dataset_cancel_button.isVisible()
    qtbot.mouseClick(w.dataset_cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not w.dataset_cancel_button.isVisible(), timeout=60_000)
    assert "cancelled" in w.statusBar().currentMessage() and w.panel.dataset_names() == []
    with Project.open(root) as p:
        assert p.datasets() == []
