"""The run controller: the jobs this window trains, and what may be done with a run.

It owns the TrainingJobs and DistributedTrainingJobs, starts runs through
`services.training.prepare_run` (new= for Start, resume= for Resume; a distributed run's torchrun
child takes the stored run with queued=), asks `services.runs` for every verdict (`verdicts`) and
tells the window what happened through signals; it holds no widget.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from studio.gui.app_state import NO_PROJECT, NO_RUN
from studio.services.branch import can_branch_with_suggestion
from studio.services.labels import can_label
from studio.services.runs import (
    Verdict, can_continue_paused, can_delete, can_evaluate, can_export, can_pause, can_resume, can_start_queued,
    can_stop, writable,
)
from studio.status import RunStatus
from studio.store import RunRecord


class RunController(QObject):
    started = Signal(int)  # run id: a job of this window trains it now
    progress = Signal(int, int, int, float)  # run_id, step, total, images/s
    status_changed = Signal(int, str, str)  # run_id, status, reason
    activity = Signal(int, str)  # run_id, what it does between steps ("" when the steps go on)
    finished = Signal(int, dict)  # run_id, stored outcome
    message = Signal(str, int)  # a line for the status bar, and for how long (ms)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.project = None
        self.jobs: dict[int, object] = {}
        self.pausing: set[int] = set()  # asked to pause; the step under way has not ended yet
        self.queue_held = False  # set by stop_all: runs ending then do not start the queue's next
        self.status_changed.connect(self._on_status)

    def set_project(self, project) -> None:
        self.project = project
        self.queue_held = False

    # -- verdicts ---------------------------------------------------------------------------------
    def busy(self, run_id: int | None) -> bool:
        return run_id in self.jobs

    def verdicts(self, run: RunRecord | None) -> dict[str, Verdict]:
        """Each run action's verdict for `run` in this window (services.runs decides)."""
        if self.project is None or run is None:
            return {}
        busy = self.busy(run.id)
        job = self.jobs.get(run.id)
        pause = can_pause(run, busy)
        if pause and job is not None and not job.can_pause:
            pause = Verdict(False, "A run on several processes cannot pause; Stop saves a checkpoint to resume from.")
        if pause and run.id in self.pausing:
            pause = Verdict(False, f"Pausing run {run.id} after the step under way…")
        if busy:
            resume = can_continue_paused(run, busy)
        else:
            resume = can_resume(self.project, run)
        stop = can_stop(run, busy)
        if not stop and not busy and RunStatus.of(run.status).is_active:
            stop = Verdict(False, f"Run {run.id} is trained by another process; stop it there.")
        verdicts = {"pause": pause, "resume": resume, "stop": stop, "export": can_export(self.project, run),
                    "evaluate": can_evaluate(self.project, run),
                    "duplicate": Verdict(True), "delete": can_delete(run, busy),
                    "branch": can_branch_with_suggestion(self.project, run, busy),
                    "label": can_label(self.project),
                    "start_queued": (can_start_queued(run, busy) if run.queue_position is not None
                                     else Verdict(False, f"Run {run.id} is not waiting in the queue."))}
        if not writable(self.project):
            verdicts = {name: writable(self.project) for name in verdicts}
        return verdicts

    def resume_from_verdict(self, run: RunRecord, step: int | None) -> Verdict:
        if self.project is None:
            return NO_PROJECT
        if step is None:
            return Verdict(False, "Select a checkpoint first.")
        return can_resume(self.project, run, step, busy=self.busy(run.id))

    # -- starting ---------------------------------------------------------------------------------
    def start_new(self, dataset: str, config, processes: int = 1, parent_run_id: int | None = None) -> int:
        """Store a new run and train it; a refused config raises its typed error (nothing stored)."""
        from studio.services.training import prepare_run

        prepared = prepare_run(self.project, new=(dataset, config), parent_run_id=parent_run_id, processes=processes)
        self._launch(prepared, processes)
        return prepared.run.id

    # -- the queue --------------------------------------------------------------------------------
    def enqueue(self, dataset: str, config) -> int:
        """Store a run at the end of the queue (a refused config raises, nothing stored); it starts
        at once when this window trains nothing."""
        from studio.services.labels import enqueue

        run = enqueue(self.project, dataset, config)
        place = self.project.queue_place(run.id)
        if not self.jobs:
            self.start_next_in_queue()
        else:
            self.message.emit(f"Run {run.id} waits in the queue (place {place}): it starts when the run "
                              "training now has ended.", 10_000)
        return run.id

    def start_next_in_queue(self) -> int | None:
        """Train the queue's next run, when this window trains nothing; its id."""
        from studio.services.labels import next_in_queue

        if self.project is None or self.jobs or not writable(self.project):
            return None
        while (run := next_in_queue(self.project)) is not None:
            if self.start_queued(run.id):
                return run.id
        return None

    def start_queued(self, run_id: int) -> bool:
        """Train a stored run that has not started (from the queue, or one taken out of it now)."""
        from studio.services.training import prepare_run

        self.project.take_from_queue(run_id)
        try:
            prepared = prepare_run(self.project, queued=run_id)
        except Exception as exc:  # noqa: BLE001 - a typed refusal: said, and the queue goes on
            from studio.services.labels import not_started

            not_started(self.project, run_id, str(exc))
            self.message.emit(f"Run {run_id} could not start: {exc}", 10_000)
            return False
        self._launch(prepared)
        return True

    def resume(self, run_id: int, step: int | None = None) -> Verdict:
        """Continue a paused job, or resume a stored run (from its checkpoint at `step`)."""
        from studio.services.training import prepare_run

        if self.project is None:
            return NO_PROJECT
        run = self.project.run(run_id)
        job = self.jobs.get(run_id)
        if job is not None and step is None:
            verdict = can_continue_paused(run)
            if verdict:
                job.resume()
            return verdict
        verdict = self.resume_from_verdict(run, step) if step is not None else can_resume(self.project, run,
                                                                                          busy=self.busy(run_id))
        if not verdict:
            self.message.emit(verdict.reason, 10_000)
            return verdict
        try:
            prepared = prepare_run(self.project, resume=run_id, step=step)
        except Exception as exc:  # noqa: BLE001 - a typed refusal, said in the status bar
            self.message.emit(str(exc), 10_000)
            return Verdict(False, str(exc))
        self._launch(prepared)
        if prepared.warning:
            self.message.emit(f"Warning: {prepared.warning}", 15_000)
        return verdict

    def branch(self, run_id: int, changes: dict, why: str = "") -> int | None:
        """A new run continuing `run_id` from a checkpoint with `changes` (services.branch),
        trained at once; its id, or None with the refusal said."""
        from studio.services.branch import branch_run

        try:
            new = branch_run(self.project, run_id, changes, why=why)
        except Exception as exc:  # noqa: BLE001 - a typed refusal, said in the status bar
            self.message.emit(str(exc), 10_000)
            return None
        self.message.emit(f"Run {new.id} {new.reason}.", 10_000)
        return new.id if self.resume(new.id) else None

    def _launch(self, prepared, processes: int = 1) -> None:
        from studio.gui.workers import DistributedTrainingJob, TrainingJob

        run_id = prepared.run.id
        if processes > 1:
            job = DistributedTrainingJob(self.project, run_id, processes, parent=self)
        else:
            job = TrainingJob(self.project.root, run_id, resume=prepared.resume, parent=self,
                              checkpoint_step=prepared.checkpoint_step)
        job.progress.connect(self.progress)
        job.status.connect(self.status_changed)
        job.activity.connect(self.activity)
        job.finished.connect(self._on_finished)
        self.jobs[run_id] = job
        job.start()
        self.started.emit(run_id)

    # -- controlling ------------------------------------------------------------------------------
    def pause(self, run_id: int | None) -> Verdict:
        if self.project is None or run_id is None:
            return NO_RUN
        verdict = self.verdicts(self.project.run(run_id))["pause"]
        if verdict:
            self.jobs[run_id].pause()
            self.pausing.add(run_id)
            self.message.emit(f"Pausing run {run_id} after the step under way…", 0)
        else:
            self.message.emit(verdict.reason, 10_000)
        return verdict

    def stop(self, run_id: int | None) -> Verdict:
        if self.project is None or run_id is None:
            return NO_RUN
        verdict = can_stop(self.project.run(run_id), self.busy(run_id))
        if verdict:
            self.jobs[run_id].stop()
            self.message.emit(f"Stopping run {run_id} (saving a checkpoint)…", 0)
        else:
            self.message.emit(verdict.reason, 10_000)
        return verdict

    def delete_verdict(self, run_id: int) -> Verdict:
        return can_delete(self.project.run(run_id), self.busy(run_id))

    def delete(self, run_id: int) -> Verdict:
        verdict = self.delete_verdict(run_id)
        if verdict:
            self.project.delete_run(run_id)
            self.message.emit(f"Run {run_id} deleted.", 8000)
        else:
            self.message.emit(verdict.reason, 8000)
        return verdict

    def _on_status(self, run_id: int, status: str, reason: str) -> None:
        if run_id in self.pausing and status != RunStatus.RUNNING:
            self.pausing.discard(run_id)
            if status == RunStatus.PAUSED:
                self.message.emit(f"Run {run_id} paused; Resume continues it.", 8000)

    def _on_finished(self, run_id: int, outcome: dict) -> None:
        job = self.jobs.pop(run_id, None)
        self.pausing.discard(run_id)
        if job is not None:
            job.deleteLater()
        self.finished.emit(run_id, outcome)
        # The queue goes on when a run ends, however it ended (a stopped run is the person's
        # choice; the next one is what they queued).
        if not self.jobs and not self.queue_held:
            self.start_next_in_queue()

    def stop_all(self, timeout_ms: int = 120_000) -> None:
        """Stop every run this window trains and wait for each: each ends 'stopped' with a checkpoint.
        The queue waits (its runs stay stored) until a project is opened again."""
        self.queue_held = True
        for job in list(self.jobs.values()):
            job.stop()
        for run_id, job in list(self.jobs.items()):
            job.wait(timeout_ms)
            self.jobs.pop(run_id, None)
