"""Starting, running and resuming training runs, recorded in the project database."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from studio.engine.errors import CheckpointError, ConfigError, DiskFullError
from studio.engine.train import TrainConfig, Trainer, TrainingCallbacks, TrainingControl, TrainResult, build_method
from studio.engine.train.checkpoint import is_disk_full
from studio.services.datasets import load_images
from studio.status import RunStatus
from studio.store import Project, RunRecord, RunRecorder

Progress = Callable[[int, int], None]


# Settings that change where or how verbosely a stored run trains, never what it learns: the
# only ones a resumed or queued run may be given anew.
RUNTIME_SETTINGS = ("device", "log_every")


def validate_config(config: TrainConfig, processes: int = 1) -> TrainConfig:
    """Everything that can be checked before Start: fields, method x backbone, backbone options,
    and, for data-parallel runs, the batch split over `processes`. Returns the config with its
    method settings as their typed values (text from the command line becomes numbers)."""
    from studio.engine.backbones import backbone_spec
    from studio.engine.methods import build_config, method_class
    from studio.engine.train.config import check_batch_split

    config.validate()
    cls = method_class(config.method)
    built = build_config(cls.config_class, config.method_config)
    spec = backbone_spec(config.backbone)
    cls.check_backbone(spec.kind, config.backbone)
    options = spec.check_options(config.image_size, config.backbone_options)
    check_batch_split(config.batch_size, processes)
    typed = {name: getattr(built, name) for name in config.method_config}
    if typed == config.method_config and options == config.backbone_options:
        return config
    return dataclasses.replace(config, method_config=typed, backbone_options=options)


def create_run(project: Project, dataset: str | int, config: TrainConfig, parent_run_id: int | None = None,
               processes: int = 1) -> RunRecord:
    config = validate_config(config, processes)
    if config.init_from and not project.abs(config.init_from).is_file():
        raise ConfigError(f"the checkpoint {config.init_from} to start the image encoder from is not in the project; "
                          "choose a run that has one (its newest: runs/N/last.ckpt).", setting="init_from")
    ds = project.dataset(dataset)
    return project.create_run(ds.id, config.method, config.backbone, config.to_dict(), parent_run_id=parent_run_id)


def image_encoder_from(project: Project, config: TrainConfig, run_id: int, step: int | None = None) -> TrainConfig:
    """`config` starting its image encoder from run `run_id`'s checkpoint at `step` (its newest
    when None): LiT's start. The other run must have trained the same backbone at the same image
    size, so that its weights fit; ConfigError says what differs."""
    source = project.run(run_id)
    on_disk = [c for c in project.checkpoints(run_id) if project.abs(c.path).is_file()]
    chosen = on_disk[-1:] if step is None else [c for c in on_disk if c.step == step][-1:]
    if not chosen:
        have = ", ".join(str(c.step) for c in on_disk) or "none on disk"
        at = f" at step {step}" if step is not None else ""
        raise ConfigError(f"run {run_id} has no checkpoint{at} to start the image encoder from (steps: {have}).",
                          setting="init_from")
    mismatch = _encoder_mismatch(TrainConfig.from_dict(source.config), config)
    if mismatch:
        raise ConfigError(f"run {run_id} trained its image encoder with {mismatch}: its weights fit only the same.",
                          setting="init_from")
    return dataclasses.replace(config, init_from=chosen[0].path)


def _encoder_mismatch(theirs: TrainConfig, config: TrainConfig) -> str | None:
    """What differs between two runs' image encoders such that one's weights do not fit the other."""
    for name, label in (("backbone", "backbone"), ("image_size", "image size"), ("backbone_options", "backbone options")):
        if getattr(theirs, name) != getattr(config, name):
            return f"{label} {getattr(theirs, name)}, this run asks for {getattr(config, name)}"
    return None


@dataclass(frozen=True)
class EncoderSource:
    """A run whose newest checkpoint on disk can start another run's image encoder."""

    run_id: int
    method: str
    dataset: str
    step: int
    path: str  # relative to the project folder, as init_from stores it

    def describe(self) -> str:
        return f"run {self.run_id} · {self.method} on {self.dataset}, step {self.step:,}"


def image_encoder_sources(project: Project, config: TrainConfig) -> list[EncoderSource]:
    """The project's runs whose image encoder `config` can start from (the front doors offer
    these): each one's newest checkpoint on disk, of the same backbone, image size and options."""
    out = []
    for run in project.runs():
        on_disk = [c for c in project.checkpoints(run.id) if project.abs(c.path).is_file()]
        try:
            theirs = TrainConfig.from_dict(run.config)
        except Exception:  # noqa: BLE001 - a run stored by another version: not offered
            continue
        if on_disk and _encoder_mismatch(theirs, config) is None:
            out.append(EncoderSource(run.id, run.method, run.dataset, on_disk[-1].step, on_disk[-1].path))
    return out


@dataclass(frozen=True)
class PreparedRun:
    """A stored run ready for `execute_run`: what to train and how to start it."""

    run: RunRecord
    resume: bool = False
    checkpoint_step: int | None = None
    warning: str = ""  # to show before training (a resumed diverged run)
    created: bool = False
    resume_from: str | None = None  # the checkpoint a resume starts from, as stored ("runs/3/last.ckpt")
    resume_step: int | None = None  # and its step


def prepare_run(
    project: Project,
    *,
    new: tuple[str | int, TrainConfig] | None = None,
    resume: int | None = None,
    queued: int | None = None,
    step: int | None = None,
    overrides: dict[str, Any] | None = None,
    parent_run_id: int | None = None,
    processes: int = 1,
) -> PreparedRun:
    """The one way a front door gets a run to train: a `new` one (dataset, config), a stopped one
    to `resume` (from checkpoint `step`, or its newest), or a `queued` one made earlier.

    `overrides` may change only RUNTIME_SETTINGS of a stored run; anything else keeps the
    run's own settings (a resumed run must learn what it was learning). Refused requests raise
    ConfigError/CheckpointError and change nothing."""
    from studio.engine.settings import field_info, parse_value
    from studio.services.runs import can_resume, can_start_queued

    if sum(x is not None for x in (new, resume, queued)) != 1:
        raise ValueError("prepare_run takes exactly one of new, resume or queued")
    overrides = dict(overrides or {})
    if new is not None:
        dataset, config = new
        if overrides:
            config = dataclasses.replace(config, **overrides)
        run = create_run(project, dataset, config, parent_run_id=parent_run_id, processes=processes)
        return PreparedRun(run, created=True)
    run_id = resume if resume is not None else queued
    run = project.run(run_id)
    not_runtime = sorted(set(overrides) - set(RUNTIME_SETTINGS))
    if not_runtime:
        names = ", ".join(field_info(TrainConfig, n).label for n in not_runtime)
        raise ConfigError(f"run {run.id} keeps its own settings; {names} cannot be changed when continuing it.",
                          setting=not_runtime[0])
    verdict = (can_resume(project, run, step) if resume is not None else can_start_queued(run)).check()
    config = TrainConfig.from_dict(run.config)
    changed = {n: parse_value(field_info(TrainConfig, n), v) for n, v in overrides.items()
               if v is not None and getattr(config, n) != v}
    if changed:
        config = validate_config(dataclasses.replace(config, **changed), processes)
        project.update_run(run.id, config=config.to_dict())
        run = project.run(run.id)
    else:
        validate_config(config, processes)
    ck = None
    if resume is not None:
        ck = next((c for c in project.checkpoints(run.id) if c.step == step), None) if step is not None \
            else project.latest_checkpoint(run.id)
    return PreparedRun(run, resume=resume is not None, checkpoint_step=step, warning=verdict.warning,
                       resume_from=ck.path if ck else None, resume_step=ck.step if ck else None)


def describe_start(prepared: PreparedRun, processes: int = 1, backend: str = "") -> list[str]:
    """What a front door says as a run starts: which run, what it trains, and any warning."""
    run = prepared.run
    where = f", {processes} processes ({backend}), global batch {run.config.get('batch_size')}" if processes > 1 else ""
    if prepared.resume:
        at = (f" at step {prepared.resume_step:,} of {run.total_steps:,} ({prepared.resume_from})"
              if prepared.resume_step is not None else "")
        lines = [f"run {run.id}: resuming {run.method} on {run.backbone}{at}{where}"]
    else:
        lines = [f"run {run.id}: {run.method} on {run.backbone}, dataset {run.dataset!r}{where}"]
    if prepared.warning:
        lines.append(f"warning: {prepared.warning}")
    return lines


def run_monitors(project: Project, run: RunRecord, config: TrainConfig, images) -> list:
    """The kNN / health monitors for a run, when the engine has them and the data has labels."""
    try:
        from studio.engine.train.monitor import build_monitors
    except ImportError:
        return []
    return build_monitors(config, images)


def execute_run(
    project: Project,
    run_id: int,
    control: TrainingControl | None = None,
    callbacks: Sequence[TrainingCallbacks] = (),
    resume: bool = False,
    progress: Progress | None = None,
    trainer_factory: Callable[..., Trainer] = Trainer,
    trainer_kwargs: dict[str, Any] | None = None,
    record: bool = True,
    checkpoint_step: int | None = None,
) -> TrainResult:
    """Run (or resume) a stored run to its end on this thread, writing everything to the store.

    With `resume`, training continues from the newest checkpoint, or from the one saved at
    `checkpoint_step` (the metrics after it are then replaced).

    The run is held (`Project.lease_run`) from here to its end: a second trainer of the same run,
    in this process or another, gets RunHeldError and changes nothing."""
    if not record:
        return _execute_run(project, run_id, control, callbacks, resume, progress, trainer_factory, trainer_kwargs,
                            record, checkpoint_step)
    with project.lease_run(run_id):
        if resume:
            # Checked again now that it is held: another trainer may have ended it meanwhile.
            from studio.services.runs import can_resume

            can_resume(project, project.run(run_id), checkpoint_step).check()
        elif RunStatus.of(project.run(run_id).status) is not RunStatus.QUEUED:
            raise ConfigError(f"run {run_id} has already been started ({project.run(run_id).status}); "
                              "continue it with resume instead.")
        return _execute_run(project, run_id, control, callbacks, resume, progress, trainer_factory, trainer_kwargs,
                            record, checkpoint_step)


def _execute_run(project, run_id, control, callbacks, resume, progress, trainer_factory, trainer_kwargs, record,
                 checkpoint_step) -> TrainResult:
    run = project.run(run_id)
    config = TrainConfig.from_dict(run.config)
    if config.init_from:  # stored relative to the project folder, read from wherever it is now
        config = dataclasses.replace(config, init_from=str(project.abs(config.init_from)))
    resume_from = None
    if resume:
        ck = project.latest_checkpoint(run_id)
        if checkpoint_step is not None:
            ck = next((c for c in project.checkpoints(run_id)
                       if c.step == checkpoint_step and project.abs(c.path).is_file()), None)
            if ck is None:
                raise CheckpointError(f"run {run_id} has no checkpoint at step {checkpoint_step} on disk.")
        if ck is None:
            raise CheckpointError(f"run {run_id} has no checkpoint to resume from; start a new run instead.")
        resume_from = project.abs(ck.path)
        if checkpoint_step is None and ck.step >= (run.total_steps or 0) > 0 and run.status == "finished":
            raise ConfigError(f"run {run_id} is finished; there is nothing to resume.")
        from studio.services.runs import verify_checkpoint

        verify_checkpoint(project, run, ck)
    control = control or TrainingControl()
    recorder = RunRecorder(project, run_id, on_write_error=lambda exc: control.stop()) if record else None
    gate = None
    if recorder is not None and resume:
        recorder = gate = _UntilStarted(recorder)
    try:
        images = load_images(project, project.dataset(run.dataset_id), config.image_size, progress)
    except Exception as exc:
        reason = DISK_FULL if is_disk_full(exc) else str(exc)
        if record:
            try:
                project.set_run_status(run_id, "failed", reason)
            except Exception:  # noqa: BLE001 - the database itself is out of reach
                pass
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise DiskFullError(reason) from exc
        raise
    trainer = trainer_factory(
        config, images, project.run_dir(run_id),
        callbacks=[_ProjectPaths(c, project) for c in (recorder, *callbacks) if c is not None],
        control=control, resume_from=resume_from,
        monitors=run_monitors(project, run, config, images),
        **(trainer_kwargs or {}),
    )
    result = trainer.run()
    if result.reason:
        result = dataclasses.replace(result, reason=relative_paths(project, result.reason))
    if gate is not None and not gate.started:
        # The resume failed before its first step: the run stays exactly as it was.
        raise CheckpointError(f"run {run_id} could not be resumed ({result.reason}); it was left as it was.")
    if recorder is not None and recorder.error is not None:
        reason = store_write_failure(recorder.error)
        try:
            project.set_run_status(run_id, "failed", reason)
        except Exception:  # noqa: BLE001 - the database itself is out of reach: say so, keep going
            pass
        result = dataclasses.replace(result, status="failed", reason=reason, error=recorder.error)
    return result


DISK_FULL = "the disk is full: free some space and resume the run."


def relative_paths(project: Project, text: str) -> str:
    """A message with the project's own paths relative to it (as paths are stored and printed)."""
    root = str(project.root)
    return text.replace(root + os.sep, "").replace(root, ".") if text else text


class _ProjectPaths(TrainingCallbacks):
    """Hands the engine's messages on with the project's paths made relative (a diverged run
    names its last good checkpoint `runs/3/step-200.ckpt`, not by its absolute path)."""

    def __init__(self, inner, project: Project):
        self.inner = inner
        self.project = project

    def __getattr__(self, name):  # error, started, ... of the wrapped listener
        return getattr(self.inner, name)

    def on_start(self, info) -> None:
        self.inner.on_start(info)

    def on_metrics(self, step, epoch, metrics) -> None:
        self.inner.on_metrics(step, epoch, metrics)

    def on_checkpoint(self, path, step, epoch) -> None:
        self.inner.on_checkpoint(path, step, epoch)

    def on_checkpoint_removed(self, path) -> None:
        hand_on = getattr(self.inner, "on_checkpoint_removed", None)  # a listener may have only some
        if hand_on is not None:
            hand_on(path)

    def on_status(self, status, reason=None) -> None:
        self.inner.on_status(status, relative_paths(self.project, reason) if reason else reason)

    def on_log(self, message, level="info") -> None:
        self.inner.on_log(relative_paths(self.project, message), level)

    def on_activity(self, text) -> None:
        hand_on = getattr(self.inner, "on_activity", None)
        if hand_on is not None:
            hand_on(text)

    def on_end(self, result) -> None:
        if getattr(result, "reason", None):
            result = dataclasses.replace(result, reason=relative_paths(self.project, result.reason))
        self.inner.on_end(result)


class _UntilStarted(TrainingCallbacks):
    """The recorder of a resumed run, deaf until training has started: a resume refused while
    loading its checkpoint changes nothing in the stored run (status, steps, log)."""

    def __init__(self, recorder: RunRecorder):
        self.recorder = recorder
        self.started = False

    @property
    def error(self):
        return self.recorder.error

    def on_start(self, info) -> None:
        self.started = True
        self.recorder.on_start(info)

    def on_metrics(self, step, epoch, metrics) -> None:
        if self.started:
            self.recorder.on_metrics(step, epoch, metrics)

    def on_checkpoint(self, path, step, epoch) -> None:
        if self.started:
            self.recorder.on_checkpoint(path, step, epoch)

    def on_checkpoint_removed(self, path) -> None:
        if self.started:
            self.recorder.on_checkpoint_removed(path)

    def on_status(self, status, reason=None) -> None:
        if self.started:
            self.recorder.on_status(status, reason)

    def on_activity(self, text: str) -> None:
        hand_on = getattr(self.recorder, "on_activity", None)  # a store recorder has no use for it
        if self.started and hand_on is not None:
            hand_on(text)

    def on_log(self, message, level="info") -> None:
        if self.started:
            self.recorder.on_log(message, level)

    def on_end(self, result) -> None:
        if self.started:
            self.recorder.on_end(result)


def store_write_failure(exc: BaseException) -> str:
    """What to tell a person whose run could not be written to the project database."""
    text = str(getattr(exc, "orig", None) or exc)
    if is_disk_full(exc):
        return ("the disk is full: the project database could not be written, so the run was stopped. "
                "Free some space and resume it.")
    return f"the project database could not be written ({text.splitlines()[0][:200]}), so the run was stopped."


def preflight(config: TrainConfig) -> None:
    """Build the model once on the CPU to surface errors before a run is queued."""
    validate_config(config)
    build_method(config)
