"""Training jobs: how this window trains a run (DESIGN.md rule 4).

`TrainingJob` calls `services.training.execute_run` in a `Task` (studio.gui.tasks: a superqt
worker on its own thread); the engine's reports reach the job as the task's progress and posts,
at a bounded rate. Stop is the TrainingControl's flag, never a killed thread. The curves are not
sent through signals: the RunRecorder writes them to the store and the run page reads them back,
so a run from the CLI draws the same way. How a run ended is recorded below the GUI
(`execute_run`, the Trainer, `services.jobs.settle_unrecorded_end`); a job only reports it.

`DistributedTrainingJob` trains a run on all GPUs: torchrun in a child process (QProcess, so
the event loop never waits on it), whose rank 0 writes to the store like any CLI run.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QProcess, QTimer, Signal, Slot

from studio.engine.train import TrainingCallbacks, TrainingControl
from studio.gui.tasks import Progress, Task, TaskState
from studio.status import RunStatus


class _StateCallbacks(TrainingCallbacks):
    """Engine callbacks -> the task's state: progress (rate-limited by the state) and status."""

    def __init__(self, state: TaskState):
        self.state = state
        self.total = 0
        self.images_per_s = 0.0

    def on_start(self, info) -> None:
        self.total = int(info.total_steps)
        self.state.report("training", int(info.start_step), self.total)

    def on_metrics(self, step, epoch, metrics) -> None:
        if "images_per_s" in metrics:
            self.images_per_s = float(metrics["images_per_s"])
        self.state.report("training", int(step), self.total, self.images_per_s)

    def on_status(self, status, reason=None) -> None:
        self.state.post("status", (str(status), reason or ""))

    def on_activity(self, text) -> None:
        self.state.post("activity", text or "")


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


class TrainingJob(QObject):
    """One stored run trained on a Task of this window; owned by the run controller until it ends.

    Signals carry the run id, and reach listeners on the GUI thread."""

    progress = Signal(int, int, int, float)  # run_id, step, total, images/s
    status = Signal(int, str, str)  # run_id, status, reason
    activity = Signal(int, str)  # run_id, what it does between steps ("" when the steps go on)
    finished = Signal(int, dict)  # run_id, the stored outcome (services.jobs.run_outcome)

    can_pause = True

    def __init__(self, project_root: str | Path, run_id: int, resume: bool = False, parent: QObject | None = None,
                 checkpoint_step: int | None = None):
        super().__init__(parent)
        self.project_root = Path(project_root)
        self._run_id = int(run_id)
        self.resume_from_checkpoint = resume
        self.checkpoint_step = checkpoint_step
        self.control = TrainingControl()
        self.task = Task(self._train, name=f"training-run-{run_id}", min_interval=0.2,
                         on_cancel=self.control.stop, result_after_cancel=True, own_thread=True, parent=self)
        self.task.progress.connect(self._on_progress)
        self.task.posted.connect(self._on_posted)
        self.task.done.connect(self._on_done)
        self.task.failed.connect(self._on_failed)

    @property
    def run_id(self) -> int:
        return self._run_id

    def _train(self, state: TaskState) -> dict[str, Any]:
        from studio.services.jobs import run_outcome, settle_unrecorded_end
        from studio.services.training import execute_run
        from studio.store import Project

        lower_thread_priority()
        # A Project of its own: the GUI thread's reads never share a session with training.
        with Project.open(self.project_root) as project:
            try:
                execute_run(project, self._run_id, control=self.control, callbacks=[_StateCallbacks(state)],
                            resume=self.resume_from_checkpoint, checkpoint_step=self.checkpoint_step)
            except Exception as exc:  # noqa: BLE001 - raised before the Trainer could record it
                from studio.gui.tasks import error_text
                from studio.services.jobs import refused_before_training

                if refused_before_training(exc):  # the run is left as it was; say why it did not start
                    return {**run_outcome(project, self._run_id), "refused": error_text(exc)}
                settle_unrecorded_end(project, self._run_id, error_text(exc))
            return run_outcome(project, self._run_id)

    @Slot(object)
    def _on_progress(self, p: Progress) -> None:
        self.progress.emit(self._run_id, p.done, p.total, p.rate)

    @Slot(str, object)
    def _on_posted(self, kind: str, payload) -> None:
        if kind == "status":
            self.status.emit(self._run_id, *payload)
        elif kind == "activity":
            self.activity.emit(self._run_id, payload)

    @Slot(object)
    def _on_done(self, outcome: dict) -> None:
        self.finished.emit(self._run_id, outcome)

    @Slot(str)
    def _on_failed(self, message: str) -> None:  # the store itself was out of reach
        self.finished.emit(self._run_id, {"run_id": self._run_id, "status": RunStatus.FAILED.value, "reason": message})

    def start(self) -> None:
        # The training thread and the GUI's share the GIL: with Python's default 5 ms switch
        # interval a paint waits up to 5 ms at each of its many GIL hand-overs. 0.5 ms bounds that
        # (measured in bench/gui_stall.py; the training thread also ran faster with it).
        sys.setswitchinterval(GUI_SWITCH_INTERVAL_S)
        self.task.start()

    def is_running(self) -> bool:
        return self.task.is_running()

    def pause(self) -> None:
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    def stop(self) -> None:
        """Ask the trainer to stop after its step (it saves a checkpoint)."""
        self.task.cancel()

    def wait(self, timeout_ms: int = 120_000) -> bool:
        return self.task.wait(timeout_ms)


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
    activity = Signal(int, str)  # not used: a child process's checks show through the store's ETA
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
        self._outcome: dict | None = None
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
        if self._outcome is not None:
            return
        from studio.services.jobs import run_outcome, settle_unrecorded_end

        self._kill_timer.stop()
        try:
            settle_unrecorded_end(self.project, self._run_id, reason, stop_requested=self.stop_requested)
            out: dict[str, Any] = run_outcome(self.project, self._run_id)
        except Exception as exc:  # noqa: BLE001 - the store is out of reach: report what we know
            out = {"run_id": self._run_id, "status": RunStatus.FAILED.value, "reason": f"{reason} (and the project could not be read: {exc})"}
        out["exit_code"] = code
        self._outcome = out
        self.status.emit(self._run_id, out["status"], out.get("reason") or "")
        self.finished.emit(self._run_id, out)
