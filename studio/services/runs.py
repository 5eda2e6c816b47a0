"""What may be done with a run, and why not: the one place both front doors ask.

Each rule answers with a `Verdict`: whether the action is allowed, the reason when it is not
(the CLI prints it as its error, the GUI shows it as the disabled control's tooltip) and a
warning to show when it is allowed but risky.

The resume rule: a run that ended before its planned end (stopped, interrupted, failed or
diverged) can be continued from its last checkpoint on disk; a diverged run's last checkpoint
was written before the loss stopped being finite, and resuming it warns that the same settings
may diverge again. A finished run cannot be resumed (duplicate it to train longer), nor can a run
that a process holds (queued, running, paused). With a chosen checkpoint `step`, any ended run
can be continued from that checkpoint as long as it lies before the planned end; the metric
points after it are then replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.engine.errors import CheckpointError, ConfigError, StudioError
from studio.status import RESUMABLE, RunStatus
from studio.store import Project, RunRecord


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""  # why not, when not ok
    warning: str = ""  # what to say although it is ok
    error: type[StudioError] = ConfigError  # what `check` raises

    def __bool__(self) -> bool:
        return self.ok

    def check(self) -> "Verdict":
        """Raise the refusal as a typed error (for code paths that act rather than show)."""
        if not self.ok:
            raise self.error(self.reason)
        return self


YES = Verdict(True)


def _no(reason: str, error: type[StudioError] = ConfigError) -> Verdict:
    return Verdict(False, reason, error=error)


def is_active(run: RunRecord) -> bool:
    """A process holds the run (or is about to): it cannot be resumed, deleted or changed now.
    A run waiting in the queue is held by nobody until the queue takes it."""
    return RunStatus.of(run.status).is_active and run.queue_position is None


def _held(run: RunRecord) -> Verdict:
    status = RunStatus.of(run.status)
    if status is RunStatus.QUEUED:
        return _no(f"run {run.id} is queued: it has not started yet.")
    where = f" (process {run.pid} on {run.host})" if run.pid else ""
    return _no(f"run {run.id} is {status}{where}; stop it first.")


def can_resume(project: Project, run: RunRecord, step: int | None = None, busy: bool = False) -> Verdict:
    """Whether `run` can be continued here, from its newest checkpoint or from the one at `step`.

    `busy`: this front door already runs it (the GUI's own job)."""
    status = RunStatus.of(run.status)
    if busy or status.is_active:
        return _held(run)
    if step is not None:
        if not any(c.step == step and project.abs(c.path).is_file() for c in project.checkpoints(run.id)):
            return _no(f"run {run.id} has no checkpoint at step {step} on disk.", CheckpointError)
        if run.total_steps and step >= run.total_steps:
            return _no(f"the checkpoint at step {step:,} is the end of run {run.id}: there is nothing to resume. "
                       "Duplicate the run to train longer.")
        return YES
    if status is RunStatus.FINISHED:
        return _no(f"run {run.id} is finished: there is nothing to resume. Duplicate it to train longer.")
    if status not in RESUMABLE:
        return _no(f"run {run.id} is {status} and cannot be resumed.")
    if project.latest_checkpoint(run.id) is None:
        return _no(f"run {run.id} has no checkpoint to resume from; start a new run instead.", CheckpointError)
    if status is RunStatus.DIVERGED:
        return Verdict(True, warning=(f"run {run.id} diverged; it continues from its last good checkpoint with the "
                                      "same settings, which may diverge again (a lower learning rate helps)."))
    return YES


def can_start_queued(run: RunRecord, busy: bool = False) -> Verdict:
    """Whether a stored run that has not started can be trained now with its own settings."""
    status = RunStatus.of(run.status)
    if busy:
        return _no(f"run {run.id} is being started.")
    if status is RunStatus.QUEUED:
        return YES
    hint = (" Continue it with resume instead." if status in RESUMABLE else " Start a new run instead.")
    return _no(f"run {run.id} is {status}; only a run that has not started yet (queued) can be started.{hint}")


def can_delete(run: RunRecord, busy: bool = False) -> Verdict:
    if busy or is_active(run):
        return _held(run)
    return YES


def can_branch(run: RunRecord, busy: bool = False) -> Verdict:
    """A run can be continued from one of its checkpoints as a new run (services.branch) once no
    process holds it; which checkpoint, and which changes, branch decides."""
    if busy or is_active(run):
        return _held(run)
    return YES


def can_pause(run: RunRecord, busy: bool = True) -> Verdict:
    """Pause and stop reach only a run this front door trains (`busy`)."""
    if not busy:
        return _no(f"run {run.id} is not trained by this window.")
    if RunStatus.of(run.status) is not RunStatus.RUNNING:
        return _no(f"run {run.id} is {run.status}.")
    return YES


def can_stop(run: RunRecord, busy: bool = True) -> Verdict:
    if not busy:
        return _no(f"run {run.id} is not trained by this window.")
    if not RunStatus.of(run.status).is_active:
        return _no(f"run {run.id} has already ended ({run.status}).")
    return YES


def can_continue_paused(run: RunRecord, busy: bool = True) -> Verdict:
    if busy and RunStatus.of(run.status) is RunStatus.PAUSED:
        return YES
    return _no(f"run {run.id} is not paused.")


def can_export(project: Project, run: RunRecord, step: int | None = None) -> Verdict:
    """Any run with a checkpoint on disk can be exported (a live run's latest checkpoint too)."""
    cks = [c for c in project.checkpoints(run.id) if project.abs(c.path).is_file()]
    if step is not None:
        cks = [c for c in cks if c.step == step]
        if not cks:
            return _no(f"run {run.id} has no checkpoint at step {step} on disk.", CheckpointError)
    if not cks:
        return _no(f"run {run.id} has no checkpoint to export yet; train it first.", CheckpointError)
    return YES


def can_evaluate(project: Project, run: RunRecord, step: int | None = None) -> Verdict:
    """Evaluation reads a checkpoint, as export does."""
    verdict = can_export(project, run, step)
    if not verdict:
        return _no(verdict.reason.replace("to export", "to evaluate"), verdict.error)
    return verdict


# -- a checkpoint belongs to its run ------------------------------------------------------------
# What a checkpoint may differ in from its run: where and how verbosely it trained, never what.
_RUNTIME_FIELDS = ("device", "log_every")


def _learning_settings(config: dict) -> dict:
    from studio.engine.train import TrainConfig

    full = TrainConfig.from_dict(config).to_dict()
    return {k: v for k, v in full.items() if k not in _RUNTIME_FIELDS}


def verify_checkpoint(project: Project, run: RunRecord, checkpoint) -> dict:
    """Load a run's checkpoint (a CheckpointRecord) and check that it is this run's: same method,
    backbone, options and settings, a step within the run (and the one recorded for it), sane
    backbone facts. Returns the loaded state; raises CheckpointError with a clear line
    otherwise. Resume, export and evaluation read checkpoints only through this."""
    from studio.engine.train.checkpoint import load_checkpoint
    from studio.engine.train import TrainConfig

    path = project.abs(checkpoint.path)
    name = project.rel(path)
    state = load_checkpoint(path)
    where = f"the checkpoint {name}"
    cfg = state.get("config")
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{where} holds no run settings; it was not written by this run.")
    try:
        theirs = _learning_settings(cfg)
        TrainConfig.from_dict(cfg).validate()
    except (TypeError, ValueError, StudioError) as exc:
        raise CheckpointError(f"{where} holds settings this studio refuses ({exc}); it was not used.") from None
    ours = _learning_settings(run.config)
    differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    if differ:
        shown = ", ".join(f"{k}: {theirs.get(k)!r} (run: {ours.get(k)!r})" for k in differ[:3])
        raise CheckpointError(f"{where} belongs to another run ({shown}); it was not used.")
    info = state.get("backbone") or {}
    if isinstance(info, dict) and info.get("name") not in (None, run.backbone):
        raise CheckpointError(f"{where} holds a {info.get('name')} encoder, not this run's {run.backbone}; it was not used.")
    step = state.get("step")
    if isinstance(step, bool) or not isinstance(step, int):
        raise CheckpointError(f"{where} records no whole step ({step!r}); it was not used.")
    total = run.total_steps or 0
    if step < 0 or (total and step > total):
        raise CheckpointError(f"{where} says step {step}, outside this run's 0..{total} steps; it was not used.")
    if checkpoint.step is not None and Path(checkpoint.path).name != "last.ckpt" and step != checkpoint.step:
        raise CheckpointError(f"{where} says step {step}, but was recorded at step {checkpoint.step}; it was not used.")
    for key in ("model", "optimizer", "scheduler", "rng"):
        if key not in state:
            raise CheckpointError(f"{where} lacks its {key} state; it was not used.")
    return state


def checkpoint_digest(project: Project, checkpoint) -> str:
    """A short fingerprint of a checkpoint file's content (what cached embeddings are keyed by:
    a file replaced under the same step is another checkpoint)."""
    import hashlib

    h = hashlib.sha256()
    with open(project.abs(checkpoint.path), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def writable(project: Project) -> Verdict:
    """May anything be written to this project? A read-only one (its folder or file system) is
    open for viewing only: no training, evaluation, export, deletion or new dataset."""
    if getattr(project, "read_only", False):
        return _no(f"{project.root.name} is open for viewing only: its folder is read-only. Copy the project "
                   "somewhere writable to train, evaluate or export.")
    return Verdict(True)
