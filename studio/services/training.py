"""Starting, running and resuming training runs, recorded in the project database."""

from __future__ import annotations

import dataclasses

from typing import Any, Callable, Sequence

from studio.engine.errors import CheckpointError, ConfigError
from studio.engine.train import TrainConfig, Trainer, TrainingCallbacks, TrainingControl, TrainResult, build_method
from studio.services.datasets import load_images
from studio.store import Project, RunRecord, RunRecorder

Progress = Callable[[int, int], None]


def validate_config(config: TrainConfig) -> TrainConfig:
    """Everything that can be checked before Start: fields, method x backbone, image size."""
    from studio.engine.backbones import backbone_spec
    from studio.engine.methods import build_config, method_class

    config.validate()
    cls = method_class(config.method)
    build_config(cls.config_class, config.method_config)
    spec = backbone_spec(config.backbone)
    cls.check_backbone(spec.kind, config.backbone)
    return config


def create_run(project: Project, dataset: str | int, config: TrainConfig, parent_run_id: int | None = None) -> RunRecord:
    validate_config(config)
    ds = project.dataset(dataset)
    return project.create_run(ds.id, config.method, config.backbone, config.to_dict(), parent_run_id=parent_run_id)


def check_resumable(project: Project, run_id: int) -> RunRecord:
    """The run, if it can be continued here: not finished, not running in another process, and
    with a checkpoint on disk."""
    run = project.run(run_id)
    if run.status in ("running", "paused"):
        where = f" (process {run.pid} on {run.host})" if run.pid else ""
        raise ConfigError(f"run {run_id} is still {run.status}{where}; stop it before resuming.")
    if run.status == "finished":
        raise ConfigError(f"run {run_id} is finished; there is nothing to resume. Start a new run instead.")
    if project.latest_checkpoint(run_id) is None:
        raise CheckpointError(f"run {run_id} has no checkpoint to resume from; start a new run instead.")
    return run


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
    `checkpoint_step` (the metrics after it are then replaced)."""
    run = project.run(run_id)
    config = TrainConfig.from_dict(run.config)
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
    control = control or TrainingControl()
    recorder = RunRecorder(project, run_id, on_write_error=lambda exc: control.stop()) if record else None
    try:
        images = load_images(project, project.dataset(run.dataset_id), config.image_size, progress)
    except Exception as exc:
        if record:
            project.set_run_status(run_id, "failed", str(exc))
        raise
    trainer = trainer_factory(
        config, images, project.run_dir(run_id),
        callbacks=[c for c in (recorder, *callbacks) if c is not None],
        control=control, resume_from=resume_from,
        monitors=run_monitors(project, run, config, images),
        **(trainer_kwargs or {}),
    )
    result = trainer.run()
    if recorder is not None and recorder.error is not None:
        reason = store_write_failure(recorder.error)
        try:
            project.set_run_status(run_id, "failed", reason)
        except Exception:  # noqa: BLE001 - the database itself is out of reach: say so, keep going
            pass
        result = dataclasses.replace(result, status="failed", reason=reason, error=recorder.error)
    return result


def store_write_failure(exc: BaseException) -> str:
    """What to tell a person whose run could not be written to the project database."""
    text = str(getattr(exc, "orig", None) or exc)
    if "disk is full" in text or "No space left" in text:
        return ("the disk is full: the project database could not be written, so the run was stopped. "
                "Free some space and resume it.")
    return f"the project database could not be written ({text.splitlines()[0][:200]}), so the run was stopped."


def preflight(config: TrainConfig) -> None:
    """Build the model once on the CPU to surface errors before a run is queued."""
    validate_config(config)
    build_method(config)
