"""Workers that drive the engine off the GUI thread (DESIGN.md rule 4).

`TrainingWorker` lives on its own QThread and calls `execute_run`; the engine's reports become Qt
signals at a bounded rate. Cancelling is the TrainingControl's flags, never a killed thread. The
curves themselves are not sent through signals: the RunRecorder writes them to the store and the
run page reads them back, so a run from the CLI draws the same way.

`DistributedTrainingJob` trains a run on all GPUs: torchrun in a child process (QProcess, so
the event loop never waits on it), whose rank 0 writes to the store like any CLI run.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QProcess, Qt, QRunnable, QThread, QThreadPool, QTimer, Signal, Slot

from studio.engine.train import TrainingCallbacks, TrainingControl


class _SignalCallbacks(TrainingCallbacks):
    """Engine callbacks -> worker signals; progress at most every `min_interval` seconds."""

    def __init__(self, worker: "TrainingWorker", min_interval: float):
        self.worker = worker
        self.min_interval = min_interval
        self.total = 0
        self.images_per_s = 0.0
        self._last_emit = 0.0
        self._last_step = -1

    def on_start(self, info) -> None:
        self.total = int(info.total_steps)
        self.worker.progress.emit(int(info.start_step), self.total, 0.0)

    def on_metrics(self, step, epoch, metrics) -> None:
        if "images_per_s" in metrics:
            self.images_per_s = float(metrics["images_per_s"])
        now = time.monotonic()
        if step != self._last_step and (now - self._last_emit >= self.min_interval or step >= self.total):
            self._last_emit, self._last_step = now, step
            self.worker.progress.emit(int(step), self.total, self.images_per_s)

    def on_status(self, status, reason=None) -> None:
        self.worker.status.emit(status, reason or "")


GUI_SWITCH_INTERVAL_S = 0.0005  # Python's GIL switch interval while GUI-started training threads run


def lower_thread_priority(steps: int = 10) -> None:
    """Make the calling thread (and the compute threads it starts: OpenMP's team is created by the
    thread that first runs a parallel op, and inherits its nice value) yield the CPU to the GUI.

    On a machine whose cores the training fills, the GUI thread would otherwise get a third of a
    core when it wakes to paint; at nice +10 the scheduler gives it about 90 %, and the training
    loses only what the GUI uses. Linux sets nice per thread; elsewhere this does nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + steps))
    except (OSError, AttributeError):
        pass


class TrainingWorker(QObject):
    """Runs one stored run to its end; move it to a QThread and connect `thread.started` to `run`."""

    progress = Signal(int, int, float)  # step, total steps, images/s
    status = Signal(str, str)  # status, reason
    finished = Signal(dict)  # {"run_id", "status", "reason", "steps", "final_loss", "images_per_s", "checkpoint"}

    def __init__(self, project_root: str | Path, run_id: int, resume: bool = False, min_interval: float = 0.2,
                 checkpoint_step: int | None = None):
        super().__init__()
        self.project_root = Path(project_root)
        self.run_id = int(run_id)
        self.resume = resume
        self.checkpoint_step = checkpoint_step
        self.min_interval = min_interval
        self.control = TrainingControl()

    @Slot()
    def run(self) -> None:
        from studio.services.training import execute_run
        from studio.store import Project

        out: dict[str, Any] = {"run_id": self.run_id}
        project = None
        lower_thread_priority()
        try:
            # A Project of its own: the GUI thread's timers never share a session with training.
            project = Project.open(self.project_root)
            result = execute_run(project, self.run_id, control=self.control,
                                 callbacks=[_SignalCallbacks(self, self.min_interval)], resume=self.resume,
                                 checkpoint_step=self.checkpoint_step)
            out.update(status=result.status, reason=result.reason, steps=result.steps, final_loss=result.final_loss,
                       images_per_s=result.images_per_s, checkpoint=result.checkpoint)
        except Exception as exc:  # noqa: BLE001 - the GUI shows it; execute_run already stored it
            out.update(status="failed", reason=str(exc) or exc.__class__.__name__, traceback=traceback.format_exc())
            if project is not None:
                try:
                    if project.run(self.run_id).status in ("queued", "running", "paused"):
                        project.set_run_status(self.run_id, "failed", out["reason"])
                except Exception:  # noqa: BLE001
                    pass
        finally:
            if project is not None:
                project.close()
        self.finished.emit(out)


class TrainingJob(QObject):
    """A worker and its thread, owned by the main window until the thread ends.

    The job lives on the GUI thread: it relays the worker's signals with the run id added, so
    whatever listens to it runs on the GUI thread too.
    """

    progress = Signal(int, int, int, float)  # run_id, step, total, images/s
    status = Signal(int, str, str)  # run_id, status, reason
    finished = Signal(int, dict)  # run_id, result

    def __init__(self, project_root: str | Path, run_id: int, resume: bool = False, parent: QObject | None = None,
                 checkpoint_step: int | None = None):
        super().__init__(parent)
        self.thread = QThread()
        self.thread.setObjectName(f"training-run-{run_id}")
        self.worker = TrainingWorker(project_root, run_id, resume=resume, checkpoint_step=checkpoint_step)
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.run)
        # Direct: the thread must end even while the GUI thread blocks in wait() (closing).
        self.worker.finished.connect(self.thread.quit, Qt.ConnectionType.DirectConnection)
        self.worker.progress.connect(self._on_progress)
        self.worker.status.connect(self._on_status)
        self.worker.finished.connect(self._on_finished)
        self.last_progress: tuple[int, int, float] | None = None
        self.result: dict | None = None

    @Slot(int, int, float)
    def _on_progress(self, step: int, total: int, ips: float) -> None:
        self.last_progress = (step, total, ips)
        self.progress.emit(self.run_id, step, total, ips)

    @Slot(str, str)
    def _on_status(self, status: str, reason: str) -> None:
        self.status.emit(self.run_id, status, reason)

    @Slot(dict)
    def _on_finished(self, result: dict) -> None:
        self.result = result
        self.thread.wait()
        self.finished.emit(self.run_id, result)

    @property
    def run_id(self) -> int:
        return self.worker.run_id

    @property
    def control(self) -> TrainingControl:
        return self.worker.control

    def start(self) -> None:
        # The training thread and the GUI's share the GIL: with Python's default 5 ms switch
        # interval a paint waits up to 5 ms at each of its many GIL hand-overs. 0.5 ms bounds that
        # (measured in bench/gui_stall.py; the training thread also ran faster with it).
        sys.setswitchinterval(GUI_SWITCH_INTERVAL_S)
        self.thread.start()

    def is_running(self) -> bool:
        return self.thread.isRunning()

    def stop_and_wait(self, timeout_ms: int = 120_000) -> bool:
        """Ask the trainer to stop (it saves a checkpoint) and join the thread."""
        self.control.stop()
        return self.thread.wait(timeout_ms)

    # The same small interface as DistributedTrainingJob, for the main window.
    can_pause = True

    def pause(self) -> None:
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    def stop(self) -> None:
        self.control.stop()

    def wait(self, timeout_ms: int = 120_000) -> bool:
        return self.thread.wait(timeout_ms)


class DistributedTrainingJob(QObject):
    """A stored, queued run trained by `processes` processes: torchrun running `ssl-studio train
    PROJECT --run-id ID` as a child of the GUI (`studio.services.distributed.stored_run_command`).

    Rank 0 records the run in the project database, so its progress reaches the views as a CLI
    run's does: through the store. Stop sends SIGTERM to torchrun, which passes it to its
    processes; they agree on a step, save a checkpoint and record 'stopped'. Pausing is not
    offered (a paused process would hold the others in a collective). When the child ends without
    having recorded how the run ended (it crashed, or never got going), the run is marked failed
    with the tail of the child's output as the reason.

    Same signals and control methods as TrainingJob, so the main window treats both alike.
    """

    progress = Signal(int, int, int, float)  # run_id, step, total, images/s (not used: the store has it)
    status = Signal(int, str, str)  # run_id, status, reason
    finished = Signal(int, dict)  # run_id, result (the stored run's outcome)

    can_pause = False
    TAIL_LINES = 12
    KILL_AFTER_MS = 90_000  # after Stop, torchrun itself SIGKILLs its processes after 30 s

    def __init__(self, project, run_id: int, processes: int, parent: QObject | None = None,
                 command: list[str] | None = None):
        super().__init__(parent)
        from studio.services.distributed import stored_run_command

        self.project = project  # the GUI thread's: only short reads and one status write
        self._run_id = int(run_id)
        self.processes = int(processes)
        self.command = command or stored_run_command(project.root, self._run_id, self.processes)
        self.output: deque[str] = deque(maxlen=400)
        self._partial = ""
        self.stop_requested = False
        self.result: dict | None = None
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        self.process.readyReadStandardOutput.connect(self._read_output)
        self.process.finished.connect(self._on_process_finished)
        self.process.errorOccurred.connect(self._on_process_error)
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self.process.kill)

    @property
    def run_id(self) -> int:
        return self._run_id

    def start(self) -> None:
        self.process.setProgram(self.command[0])
        self.process.setArguments(self.command[1:])
        self.process.start()
        try:
            self.project.log(self._run_id, f"started {self.processes} training processes (torchrun, "
                                           f"process {self.process.processId() or '?'})")
        except Exception:  # noqa: BLE001 - the log line is a courtesy
            pass

    def is_running(self) -> bool:
        return self.process.state() != QProcess.ProcessState.NotRunning

    def pause(self) -> None:
        """Not offered; the main window says so."""

    def resume(self) -> None:
        """Nothing is ever paused."""

    def stop(self) -> None:
        """Ask every process to stop after its step, with a checkpoint (SIGTERM to torchrun)."""
        if not self.is_running() or self.stop_requested:
            return
        self.stop_requested = True
        self.process.terminate()
        self._kill_timer.start(self.KILL_AFTER_MS)

    def wait(self, timeout_ms: int = 120_000) -> bool:
        """Block until the child has ended (for closing the window only)."""
        if not self.is_running():
            return True
        return self.process.waitForFinished(timeout_ms)

    def stop_and_wait(self, timeout_ms: int = 120_000) -> bool:
        self.stop()
        return self.wait(timeout_ms)

    def output_tail(self, lines: int | None = None) -> str:
        n = lines or self.TAIL_LINES
        kept = [line for line in self.output if line.strip()]
        if self._partial.strip():
            kept.append(self._partial)
        return "\n".join(kept[-n:])

    @Slot()
    def _read_output(self) -> None:
        text = self._partial + bytes(self.process.readAllStandardOutput().data()).decode("utf-8", "replace")
        *complete, self._partial = text.replace("\r", "\n").split("\n")
        self.output.extend(line.rstrip() for line in complete)

    @Slot(QProcess.ProcessError)
    def _on_process_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._finish(None, f"the training processes could not be started ({self.process.errorString()}): "
                               f"{' '.join(self.command[:4])} …")

    @Slot(int, QProcess.ExitStatus)
    def _on_process_finished(self, code: int, exit_status: QProcess.ExitStatus) -> None:
        self._read_output()
        how = (f"exit code {code}" if exit_status == QProcess.ExitStatus.NormalExit else "crashed")
        tail = self.output_tail()
        self._finish(code, f"the training processes ended ({how}) without recording how the run ended"
                           + (f"; their last output:\n{tail}" if tail else "."))

    def _finish(self, code: int | None, reason: str) -> None:
        if self.result is not None:
            return
        self._kill_timer.stop()
        out: dict[str, Any] = {"run_id": self._run_id, "exit_code": code}
        try:
            run = self.project.run(self._run_id)
            if run.status in ("queued", "running", "paused"):
                if self.stop_requested and run.status == "queued":
                    self.project.set_run_status(self._run_id, "stopped", "stopped before training began")
                else:
                    self.project.set_run_status(self._run_id, "failed", reason)
                run = self.project.run(self._run_id)
            ck = self.project.latest_checkpoint(self._run_id)
            out.update(status=run.status, reason=run.reason, steps=run.steps, final_loss=run.final_loss,
                       images_per_s=run.images_per_s, checkpoint=ck.path if ck is not None else None)
        except Exception as exc:  # noqa: BLE001 - the store is out of reach: report what we know
            out.update(status="failed", reason=f"{reason} (and the project could not be read: {exc})")
        self.result = out
        self.status.emit(self._run_id, out["status"], out.get("reason") or "")
        self.finished.emit(self._run_id, out)


class _TaskSignals(QObject):
    done = Signal(object)
    failed = Signal(str)


class BackgroundTask(QRunnable):
    """A short job (add a dataset, load thumbnails) on Qt's thread pool; results come back as signals."""

    def __init__(self, fn: Callable[[], Any]):
        super().__init__()
        self.fn = fn
        self.signals = _TaskSignals()
        # Python keeps the runnable (and so its signals object) alive until the result has been
        # delivered on the GUI thread: a queued signal from a deleted sender would be dropped.
        self.setAutoDelete(False)

    def run(self) -> None:
        try:
            result = self.fn()
        except Exception as exc:  # noqa: BLE001 - shown to the user by whoever listens
            self.signals.failed.emit(str(exc) or exc.__class__.__name__)
        else:
            self.signals.done.emit(result)


_live_tasks: set[BackgroundTask] = set()


def start_task(fn: Callable[[], Any], on_done: Callable[[Any], None] | None = None,
               on_failed: Callable[[str], None] | None = None) -> BackgroundTask:
    task = BackgroundTask(fn)
    _live_tasks.add(task)
    # Dropped after the delivery has returned, never from inside it.
    task.signals.done.connect(lambda _r: QTimer.singleShot(0, lambda: _live_tasks.discard(task)))
    task.signals.failed.connect(lambda _e: QTimer.singleShot(0, lambda: _live_tasks.discard(task)))
    if on_done is not None:
        task.signals.done.connect(on_done)
    if on_failed is not None:
        task.signals.failed.connect(on_failed)
    QThreadPool.globalInstance().start(task)
    return task


def wait_for_tasks(timeout_ms: int = 30_000) -> bool:
    """Join the pool's threads (at exit, so no task outlives the objects it reports to)."""
    return QThreadPool.globalInstance().waitForDone(timeout_ms)
