"""'Train on all N GPUs' in the GUI: offered only with more than one CUDA device; Start creates the
run and trains it with torchrun in a child process, whose progress reaches the Run page through
the project database. SSL_STUDIO_FAKE_GPUS=2 pretends two devices and runs the two processes on
the CPU with gloo."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from conftest import tiny_train_config  # noqa: E402

WAIT_MS = 120_000
pytestmark = pytest.mark.usefixtures("private_settings")


@pytest.fixture
def two_fake_gpus(monkeypatch):
    monkeypatch.setenv("SSL_STUDIO_FAKE_GPUS", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two processes on a 2-core machine


def start_on_all_gpus(window, qtbot, steps: int, checkpoint_every: int | None = None):
    """Fill the New run form of `window` (2 fake GPUs), tick 'all GPUs', press Start: (run id, job)."""
    window.show_new_run("sample")
    page = window.new_run_page
    page.set_config(tiny_train_config(steps=steps, batch_size=8, checkpoint_every=checkpoint_every or 0))
    page.all_gpus_check.setChecked(True)
    qtbot.mouseClick(page.start_button, Qt.MouseButton.LeftButton)
    return next(iter(window.jobs.items()))


@pytest.mark.parametrize("count", [0, 1, 2, 4])
def test_all_gpus_is_offered_only_with_several_devices(qtbot, monkeypatch, count):
    from studio.gui.new_run_page import NewRunPage

    monkeypatch.setenv("SSL_STUDIO_FAKE_GPUS", str(count))
    page = NewRunPage()
    qtbot.addWidget(page)
    page.set_datasets(["sample"])
    page.show()
    check = page.all_gpus_check
    if count < 2:
        assert not check.isVisible() and page.distributed_processes() == 1
        return
    assert check.isVisible() and check.text() == f"Train on all {count} GPUs (distributed)"
    assert not check.isChecked() and page.distributed_processes() == 1  # opt-in
    page.set_config(tiny_train_config(steps=3, batch_size=8))
    check.setChecked(True)
    assert page.distributed_processes() == count
    assert not page.device_combo.isEnabled()  # one GPU per process: the device choice does not apply
    # The batch is the global batch: it must split evenly over the processes.
    page.batch_spin.setValue(4 * count + 1)
    assert not page.start_button.isEnabled()
    assert f"multiple of {count}" in page.error_label.text()
    page.batch_spin.setValue(4 * count)
    assert page.start_button.isEnabled() and page.error_label.text() == ""
    with qtbot.waitSignal(page.start_requested, timeout=1000) as blocker:
        qtbot.mouseClick(page.start_button, Qt.MouseButton.LeftButton)
    (request,) = blocker.args
    assert request.dataset == "sample" and request.processes == count and request.config.batch_size == 4 * count
    # Fewer devices later (a GPU unplugged): the option goes and Start trains one process again.
    page.set_gpu_count(1)
    assert not check.isVisible() and not check.isChecked() and page.distributed_processes() == 1
    assert page.device_combo.isEnabled()


def test_all_gpus_trains_the_run_in_a_child_process(make_window, qtbot, project, two_fake_gpus):
    """Start with 'all GPUs': the run is created here, trained by torchrun's two processes, and
    drawn from the database until the Run page shows it finished with its checkpoint."""
    from studio.gui.workers import DistributedTrainingJob

    w = make_window(project.root)
    run_id, job = start_on_all_gpus(w, qtbot, steps=3, checkpoint_every=2)
    assert len(w.jobs) == 1
    assert isinstance(job, DistributedTrainingJob) and job.processes == 2
    assert project.run(run_id).status in ("queued", "running")  # created before the child starts
    assert w.current_page_title() == "Run" and w.run_page.run_id == run_id
    assert w.run_page.stop_button.isEnabled()  # this window can stop it

    with qtbot.waitSignal(job.finished, timeout=WAIT_MS) as done:
        pass
    result = done.args[1]
    assert result["status"] == "finished", f"{result.get('reason')}\n{job.output_tail(40)}"
    assert result["exit_code"] == 0

    run = project.run(run_id)
    assert run.status == "finished" and run.steps == 3 and run.total_steps == 3
    assert run.config["device"] == "cpu"  # where the processes ran (gloo)
    assert [c.step for c in project.checkpoints(run_id)] == [2, 3]
    assert result["checkpoint"] == f"runs/{run_id}/last.ckpt" and project.abs(result["checkpoint"]).is_file()
    series = project.metric_series(run_id, ["loss"])
    assert sorted(series.steps["loss"]) == [1, 2, 3]

    # The Run page read it all from the store.
    qtbot.waitUntil(lambda: w.run_page.status_pill.text().lower().startswith("finished"), timeout=10_000)
    qtbot.waitUntil(lambda: list(w.run_page.curve_data("loss")[0]) == [1, 2, 3], timeout=10_000)
    assert w.run_page.progress_bar.value() == 3 and w.run_page.progress_bar.maximum() == 3
    assert not w.run_page.stop_button.isEnabled() and not w.jobs
    assert f"Run {run_id} finished" in w.statusBar().currentMessage()


def test_a_child_that_dies_fails_the_run_with_its_last_output(make_window, qtbot, project, two_fake_gpus,
                                                             monkeypatch):
    """torchrun dying before rank 0 records an outcome: the run is marked failed and the Run page
    shows why (the child's last output lines)."""
    import studio.services.distributed as distributed

    crash = ("import sys; print('starting 2 processes'); "
             "sys.stderr.write('torch.distributed.DistBackendError: NCCL error: unhandled system error\\n'); "
             "sys.exit(1)")
    monkeypatch.setattr(distributed, "stored_run_command", lambda root, run_id, count: [sys.executable, "-c", crash])

    w = make_window(project.root)
    run_id, job = start_on_all_gpus(w, qtbot, steps=3)
    with qtbot.waitSignal(job.finished, timeout=30_000) as done:
        pass
    assert done.args[1]["status"] == "failed"
    run = project.run(run_id)
    assert run.status == "failed"
    assert "exit code 1" in run.reason and "NCCL error: unhandled system error" in run.reason
    assert "starting 2 processes" in run.reason  # stdout and stderr, in order
    qtbot.waitUntil(lambda: "NCCL error" in w.run_page.reason_label.text(), timeout=10_000)
    assert w.run_page.reason_label.isVisible()
    assert not w.jobs


def test_stop_ends_the_child_processes_with_a_checkpoint(make_window, qtbot, project, two_fake_gpus):
    """Stop on the Run page: torchrun passes SIGTERM on, the processes agree on a step, rank 0
    saves a checkpoint and records 'stopped'; Pause is refused with a reason."""
    w = make_window(project.root)
    run_id, job = start_on_all_gpus(w, qtbot, steps=100_000)
    qtbot.waitUntil(lambda: project.run(run_id).steps >= 1, timeout=WAIT_MS)

    qtbot.waitUntil(lambda: not w.pause_action.isEnabled() and "cannot pause" in w.pause_action.toolTip(),
                    timeout=10_000)
    w.pause_action.trigger()  # a disabled action does nothing; the tooltip said why
    assert project.run(run_id).status == "running"
    assert "cannot pause" in w.run_page.pause_button.toolTip()

    qtbot.waitUntil(lambda: w.run_page.stop_button.isEnabled(), timeout=10_000)
    assert not w.run_page.pause_button.isEnabled()  # Stop (with its checkpoint) is the way out
    with qtbot.waitSignal(job.finished, timeout=WAIT_MS) as done:
        qtbot.mouseClick(w.run_page.stop_button, Qt.MouseButton.LeftButton)
    assert done.args[1]["status"] == "stopped", f"{done.args[1].get('reason')}\n{job.output_tail(40)}"
    run = project.run(run_id)
    assert run.status == "stopped" and run.steps >= 1
    ck = project.latest_checkpoint(run_id)
    assert ck is not None and ck.step == run.steps and project.abs(ck.path).is_file()
    qtbot.waitUntil(lambda: w.run_page.status_pill.text().lower().startswith("stopped"), timeout=10_000)
    # continues from the checkpoint (in this process)
    qtbot.waitUntil(lambda: w.run_page.button_states()["resume"], timeout=10_000)
