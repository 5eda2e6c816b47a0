"""One stored run trained by many processes (started by torchrun): rank 0 holds the project.

Rank 0 opens the project, creates (or checks for resuming) the run, decodes the images into the
project's cache and sends the other ranks a small plan: the run id, its config, where the
image cache and the checkpoint to resume from are. The other ranks never open the project
database; they read the image cache and the checkpoint where those files are visible (the same
machine, or a shared file system) and otherwise receive them from rank 0 over the process
group. Only rank 0 records the run (RunRecorder) and writes checkpoints.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from studio.engine.data.cache import DecodedImages
from studio.engine.errors import ConfigError
from studio.engine.train import TrainConfig, TrainingCallbacks, TrainingControl, TrainResult
from studio.engine.train.distributed import DistributedContext, DistributedTrainer, broadcast_object
from studio.services.datasets import load_images
from studio.services.training import describe_start, execute_run, prepare_run
from studio.store import Project

Progress = Callable[[int, int], None]


class PeerFailed(Exception):
    """Rank 0 could not prepare the run (its own error says why); the other ranks just stop."""


@dataclass(frozen=True)
class DistributedOutcome:
    run_id: int
    result: TrainResult
    checkpoint: str | None  # relative to the project folder; known on rank 0 only


def train_distributed(
    ctx: DistributedContext,
    project_path: str | Path,
    request: dict[str, Any],
    *,
    control: TrainingControl | None = None,
    callbacks: Sequence[TrainingCallbacks] = (),
    progress: Progress | None = None,
    trainer_factory: type[DistributedTrainer] = DistributedTrainer,
) -> DistributedOutcome:
    """Train the run that `request` names (the keywords of `prepare_run`: a new run, a run to
    resume, or a queued run's id) with every rank of `ctx`; call it on each rank. Rank 0 prepares
    the run and reports through `callbacks`; the others only train."""
    control = control or TrainingControl()
    if not ctx.is_main:
        return _follow(ctx, control, trainer_factory)

    project: Project | None = None
    try:
        project = Project.open(project_path)
        overrides = {**request.get("overrides", {}), "device": ctx.device_type}
        if "new" in request:
            dataset, config = request["new"]
            prepared = prepare_run(project, new=(dataset, dataclasses.replace(config, device=ctx.device_type)),
                                   processes=ctx.world_size)
        else:
            prepared = prepare_run(project, **{**request, "overrides": overrides}, processes=ctx.world_size)
        run = prepared.run
        for line in describe_start(prepared, ctx.world_size, ctx.backend):
            for cb in callbacks:
                cb.on_log(line.removeprefix("warning: "), "warning" if line.startswith("warning: ") else "info")
        config = TrainConfig.from_dict(run.config)
        images = load_images(project, project.dataset(run.dataset_id), config.image_size, progress)
        resume_from = None
        if prepared.resume:
            ck = project.latest_checkpoint(run.id)
            if prepared.checkpoint_step is not None:
                ck = next((c for c in project.checkpoints(run.id) if c.step == prepared.checkpoint_step), None)
            resume_from = str(project.abs(ck.path)) if ck is not None else None
        plan = {
            "run_id": run.id,
            "config": run.config,
            "run_dir": str(project.run_dir(run.id)),
            "cache_path": str(images.cache_path) if images.cache_path else None,
            "images_shape": list(images.images.shape),
            "resume_from": resume_from,
        }
    except BaseException as exc:
        broadcast_object({"error": f"{exc.__class__.__name__}: {exc}"}, ctx)
        if project is not None:
            project.close()
        raise
    broadcast_object(plan, ctx)
    try:
        result = execute_run(
            project, run.id, control=control, callbacks=list(callbacks), resume=prepared.resume,
            checkpoint_step=prepared.checkpoint_step, trainer_factory=trainer_factory, trainer_kwargs={"context": ctx},
        )
        checkpoint = project.rel(result.checkpoint) if result.checkpoint else None
    finally:
        project.close()
    return DistributedOutcome(run.id, result, checkpoint)


def _follow(ctx: DistributedContext, control: TrainingControl, trainer_factory=DistributedTrainer) -> DistributedOutcome:
    """A rank other than 0: train the plan rank 0 sends, reporting nothing, writing nothing."""
    plan = broadcast_object(None, ctx)
    if "error" in plan:
        raise PeerFailed(plan["error"])
    config = TrainConfig.from_dict(plan["config"])
    data = None
    cache = plan.get("cache_path")
    if cache and Path(cache).is_file():
        try:
            images = np.load(cache, mmap_mode="r")
            if list(images.shape) == plan["images_shape"]:
                data = DecodedImages(images, np.full(len(images), -1, dtype=np.int64), [], [])
        except (OSError, ValueError):
            data = None  # rank 0 sends them
    trainer = trainer_factory(config, data, plan["run_dir"], callbacks=[], control=control,
                                 resume_from=plan["resume_from"], context=ctx)
    return DistributedOutcome(plan["run_id"], trainer.run(), None)


# -- starting torchrun for the user ---------------------------------------------------------
FAKE_GPUS_ENV = "SSL_STUDIO_FAKE_GPUS"


def fake_gpu_count() -> int | None:
    """N when SSL_STUDIO_FAKE_GPUS=N is set: the studio then acts as if this machine had N CUDA
    devices (the GUI offers 'all N GPUs') and runs the N processes on the CPU with gloo. For tests
    and demonstrations on machines without GPUs; unset (or not a number), the real count counts."""
    value = os.environ.get(FAKE_GPUS_ENV, "").strip()
    try:
        return max(0, int(value)) if value else None
    except ValueError:
        return None


def cuda_device_count() -> int:
    """CUDA devices data-parallel training can use here (SSL_STUDIO_FAKE_GPUS overrides)."""
    fake = fake_gpu_count()
    if fake is not None:
        return fake
    import torch

    try:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - a broken driver: no GPUs to offer
        return 0


def stored_run_command(project_root: str | Path, run_id: int, count: int) -> list[str]:
    """torchrun with `count` processes training the stored, queued run `run_id` (`train --run-id`):
    one process per CUDA device, or on the CPU with gloo when the devices are faked."""
    device = "cpu" if fake_gpu_count() is not None else "cuda"
    return torchrun_command(count, ["train", str(project_root), "--run-id", str(int(run_id)), "--device", device])


def check_gpus(count: int, device: str | None) -> None:
    """Refuse `--gpus N` where N processes cannot each have a CUDA device (unless on the CPU)."""
    if device == "cpu":
        return
    if device == "mps":
        raise ConfigError("--gpus runs one process per CUDA GPU; Apple MPS cannot be shared that way. Drop --gpus.")
    import torch

    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if have < count:
        raise ConfigError(f"--gpus {count} needs {count} CUDA devices, but this machine has {have}. "
                          f"Use --gpus {have} or fewer" + (", " if have else " (or leave --gpus out), ")
                          + f"or add --device cpu to run {count} processes on the CPU (slow; for testing).")


def torchrun_command(count: int, studio_args: Sequence[str]) -> list[str]:
    """`python -m torch.distributed.run` on this machine, one process per GPU, running `studio_args`."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={count}",
            "-m", "studio", *studio_args]


def launch_torchrun(count: int, studio_args: Sequence[str]) -> int:
    """Run torchrun as a child and wait for it; its processes share our stdout and stderr.

    Ctrl-C reaches the child's processes too (same process group); they stop cleanly with a
    checkpoint, and we keep waiting for them."""
    proc = subprocess.Popen(torchrun_command(count, studio_args))
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue
