"""How a run ended, for a front door whose training process (or thread) is gone.

`execute_run` and the Trainer record every ending they see (finished, stopped, diverged,
failed). What they cannot record is their own death: a child process that crashed, or an error
raised before the Trainer ran. `settle_unrecorded_end` writes that ending once, here, for every
front door; `run_outcome` is the stored outcome a front door reports.
"""

from __future__ import annotations

from typing import Any

from studio.status import RunStatus
from studio.store import Project


def settle_unrecorded_end(project: Project, run_id: int, reason: str, stop_requested: bool = False) -> None:
    """The process that held `run_id` has ended: a run it left active is marked failed with
    `reason` (or stopped, when a stop was asked before training began)."""
    run = project.run(run_id)
    status = RunStatus.of(run.status)
    if not status.is_active:
        return
    if stop_requested and status is RunStatus.QUEUED:
        project.set_run_status(run_id, RunStatus.STOPPED.value, "stopped before training began")
    else:
        project.set_run_status(run_id, RunStatus.FAILED.value, reason)


def refused_before_training(exc: BaseException) -> bool:
    """A typed refusal raised before training began, which leaves the run as it was: another
    process trains it (RunHeldError), or its checkpoint does not fit it (CheckpointError). Such a
    run must not be marked failed; any other early error fails it (settle_unrecorded_end)."""
    from studio.engine.errors import CheckpointError
    from studio.store import RunHeldError

    return isinstance(exc, (RunHeldError, CheckpointError))


def run_outcome(project: Project, run_id: int) -> dict[str, Any]:
    """The stored ending of a run, as the front doors report it."""
    run = project.run(run_id)
    ck = project.latest_checkpoint(run_id)
    return {"run_id": run_id, "status": run.status, "reason": run.reason, "steps": run.steps,
            "final_loss": run.final_loss, "images_per_s": run.images_per_s,
            "checkpoint": ck.path if ck is not None else None}
