"""Data-parallel training over many processes (one per GPU, or gloo processes on the CPU), with
PyTorch's own distributed engine (torch.distributed + DistributedDataParallel).

The contract: N processes with the same seed train *the same run* as one process would with the
same global batch. `--batch-size` is the global batch; each step every process takes the same
global batch (the seeded permutation of `Trainer.epoch_order`), draws the same augmentations for
it and trains on its own contiguous slice of `batch / N` images. What makes the gradient equal
to the one-process gradient:

- BatchNorm statistics over the whole global batch: `torch.nn.SyncBatchNorm` on CUDA, and on
  the CPU (which SyncBatchNorm refuses) `GlooSyncBatchNorm` below, whose statistics go through
  an autograd-aware all_reduce (`sum_over_ranks`);
- the losses that use the whole batch gather it with lightly's `gather_distributed` options (the
  methods pass `world_size > 1`); lightly's GatherLayer sums the gradients of every rank in its
  backward pass, so each rank's embeddings get the gradient of every rank's loss;
- DDP averages the gradients of the per-rank losses, and the global loss is the mean of the
  per-rank losses (each a mean over its equal share of the batch), so the averaged gradient is
  the gradient of the global loss;
- the loss that is logged is that mean over ranks (every rank sees the same value, so a diverged
  run stops on every rank at the same step).

Only rank 0 reports to the outside (the caller gives the other ranks no callbacks) and writes
checkpoints (`Trainer._save`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from studio.engine.data.cache import DecodedImages
from studio.engine.data.views import make_view
from studio.engine.errors import ConfigError
from studio.engine.train.checkpoint import load_checkpoint
from studio.engine.train.config import check_batch_split
from studio.engine.train.trainer import Trainer, _StepModule


# -- the torchrun environment ---------------------------------------------------------------
@dataclass(frozen=True)
class DistributedEnv:
    """What torchrun (torch.distributed.run) tells each process it starts."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int


def torchrun_env(environ: dict[str, str] | None = None) -> DistributedEnv | None:
    """The process's place among its peers when torchrun started it, else None."""
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        world = int(env["WORLD_SIZE"])
        rank = int(env["RANK"])
        local = int(env.get("LOCAL_RANK", rank))
        local_world = int(env.get("LOCAL_WORLD_SIZE", world))
    except ValueError:
        return None
    return DistributedEnv(rank, world, local, local_world)


@dataclass
class DistributedContext:
    rank: int
    world_size: int
    local_rank: int
    backend: str  # nccl | gloo
    device: str  # "cuda:<local rank>" | "cpu"
    # Objects (the run's plan, images, a checkpoint) and the per-step stop flag travel on the
    # CPU over gloo, so a big tensor never has to fit on a GPU to be shared.
    cpu_group: Any = None

    @property
    def device_type(self) -> str:
        return torch.device(self.device).type

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(env: DistributedEnv, device: str | None = "auto", timeout_s: float = 1800.0) -> DistributedContext:
    """Join the process group: NCCL with one CUDA device per local rank, gloo on the CPU."""
    requested = (device or "auto").lower()
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if env.local_rank >= count:
            raise ConfigError(f"process {env.rank} wants CUDA device {env.local_rank}, but this machine has {count}; "
                              "start at most one process per GPU, or set the device to cpu.", setting="device")
        torch.cuda.set_device(env.local_rank)
        backend, dev = "nccl", f"cuda:{env.local_rank}"
    elif requested == "cpu":
        backend, dev = "gloo", "cpu"
    else:
        raise ConfigError(f"distributed training runs on CUDA GPUs or on the CPU, not on {requested!r}.")
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"backend": backend, "timeout": timedelta(seconds=timeout_s)}
        if backend == "nccl":
            kwargs["device_id"] = torch.device(dev)
        dist.init_process_group(**kwargs)
    cpu_group = dist.new_group(backend="gloo") if backend != "gloo" else dist.group.WORLD
    return DistributedContext(dist.get_rank(), dist.get_world_size(), env.local_rank, backend, dev, cpu_group)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj: Any, ctx: DistributedContext, src: int = 0) -> Any:
    """`obj` from rank `src` on every rank (pickled; for small things such as the run's plan)."""
    box = [obj if ctx.rank == src else None]
    dist.broadcast_object_list(box, src=src, group=ctx.cpu_group)
    return box[0]


def all_ranks(flag: bool, ctx: DistributedContext) -> list[bool]:
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, bool(flag), group=ctx.cpu_group)
    return [bool(v) for v in out]


# -- BatchNorm over the global batch --------------------------------------------------------
class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) whose backward sums the gradients over the ranks again (the gradient of
    every rank's loss reaches every rank's input). torch.distributed.nn.all_reduce does the same
    but is deprecated."""

    @staticmethod
    def forward(ctx, tensor):
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    return _SumOverRanks.apply(tensor)


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the whole global batch, for CPU
    processes (torch.nn.SyncBatchNorm runs on GPUs only). Mean and variance are summed over the
    ranks with `sum_over_ranks`, whose backward sums the gradients again, so the
    gradient is that of BatchNorm over the concatenated batch. Same parameters and buffers as
    BatchNorm*d, so checkpoints load into the plain modules."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        synced = self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not synced:
            return super().forward(x)
        world = dist.get_world_size()
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = [1, c] + [1] * (x.dim() - 2)
        # Statistics accumulate in float64, as PyTorch's CPU BatchNorm does: ReLU and max-pool
        # kinks turn float32 rounding into different gradients, so one process and many must
        # round alike to train alike.
        total = (x.numel() // c) * world  # every rank holds an equal share of the batch (_plan)
        xd = x.double()
        mean = sum_over_ranks(xd.sum(dims)) / total
        centred = xd - mean.view(shape)
        var = sum_over_ranks((centred * centred).sum(dims)) / total  # biased, as BatchNorm normalises
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach().to(self.running_mean.dtype), alpha=m)
                self.running_var.mul_(1 - m).add_((var.detach() * total / max(total - 1, 1)).to(self.running_var.dtype), alpha=m)
        y = (centred * torch.rsqrt(var + self.eps).view(shape)).to(x.dtype)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def convert_sync_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """Every BatchNorm of `module` synchronised over the process group, in place (the same
    Parameter objects, so an optimiser built before still holds them)."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_gloo(module)


def _convert_gloo(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, (GlooSyncBatchNorm, nn.SyncBatchNorm)):
        out = GlooSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                out.weight = module.weight
                out.bias = module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_gloo(child))
    return out


# -- the step and the control ---------------------------------------------------------------
class _DistributedStep(nn.Module):
    """The DDP-wrapped step, whose metrics are the means over ranks.

    The returned loss has the value of the global loss (for logging and divergence checks,
    identical on every rank) and the gradient of this rank's own loss (DDP averages those)."""

    def __init__(self, ddp: nn.Module, world_size: int):
        super().__init__()
        self.ddp = ddp
        self.world_size = world_size

    def forward(self, views, state):
        out = self.ddp(views, state)
        names = sorted(out)
        values = torch.stack([out[k].detach().double().reshape(()) for k in names])
        dist.all_reduce(values)
        values = values / self.world_size
        averaged = {}
        for name, value in zip(names, values):
            if name == "loss":
                local = out[name]
                averaged[name] = local + (value.to(local.dtype) - local.detach())
            else:
                averaged[name] = value
        return averaged


class AgreedControl:
    """A stop asked on any rank (Ctrl-C, SIGTERM, a store write failure on rank 0) stops every
    rank at the same step: the flag is reduced over the ranks each time the loop looks at it.
    Pausing is not offered: a paused rank would hold every other rank in a collective."""

    def __init__(self, control, ctx: DistributedContext):
        self.control = control
        self.ctx = ctx

    @property
    def stop_requested(self) -> bool:
        flag = torch.tensor([1 if self.control.stop_requested else 0], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.ctx.cpu_group)
        if flag.item() and not self.control.stop_requested:
            self.control.stop()
        return bool(flag.item())

    @property
    def paused(self) -> bool:
        return False

    def wait_while_paused(self, timeout: float | None = None) -> bool:
        return True

    def stop(self) -> None:
        self.control.stop()

    def __getattr__(self, name):
        return getattr(self.control, name)


# -- the trainer ----------------------------------------------------------------------------
class DistributedTrainer(Trainer):
    """The Trainer, one per process, with the distributed pieces plugged into its hooks.

    `data` may be None on ranks that cannot read the project's image cache (another machine):
    rank 0 then sends the decoded images over the process group before training.
    """

    def __init__(self, config, data, run_dir, *args, context: DistributedContext, **kwargs):
        kwargs["world_size"] = context.world_size
        kwargs["rank"] = context.rank
        super().__init__(config, data, run_dir, *args, **kwargs)
        self.ctx = context
        self.control = AgreedControl(self.control, context)

    def run(self):
        try:
            self._share_images()
        except Exception as exc:  # noqa: BLE001 - reported as every other failure of the run
            return self._finish("failed", f"{exc.__class__.__name__}: {exc}", exc)
        return super().run()

    def _share_images(self) -> None:
        missing = all_ranks(self.data is None, self.ctx)
        if not any(missing):
            return
        shape = broadcast_object(tuple(self.data.images.shape) if self.ctx.is_main else None, self.ctx)
        if self.ctx.is_main:
            buf = torch.from_numpy(np.ascontiguousarray(self.data.images))
        else:
            buf = torch.empty(shape, dtype=torch.uint8)
        dist.broadcast(buf, src=0, group=self.ctx.cpu_group)
        captions = broadcast_object(self.data.captions if self.ctx.is_main else None, self.ctx)
        if self.data is None:
            n = shape[0]
            self.data = DecodedImages(buf.numpy(), np.full(n, -1, dtype=np.int64), [], [], captions=captions)

    def _plan(self) -> tuple[int, int, int]:
        """(global batch, steps per epoch, total steps); the global batch splits evenly."""
        n, world, cfg = len(self.data), self.world_size, self.config
        check_batch_split(cfg.batch_size, world)
        batch, steps_per_epoch, total = super()._plan()
        if batch % world:  # lowered to the number of images
            batch -= batch % world
            if batch < world:
                raise ConfigError(f"the dataset has {n} images, fewer than the {world} processes.")
            steps_per_epoch = max(1, n // batch)
            if cfg.steps is None:
                total = (cfg.epochs if cfg.epochs is not None else 100) * steps_per_epoch
        return batch, steps_per_epoch, total

    def make_views(self, x: torch.Tensor, specs) -> list[torch.Tensor]:
        """Every rank draws the augmentations of the whole global batch (same seed, same draws as
        one process would make) and keeps its own slice: the run does not depend on the number
        of processes. The cost is augmenting the global batch on each rank, which is small next
        to the model's step."""
        share = x.shape[0] // self.world_size
        lo, hi = self.rank * share, (self.rank + 1) * share
        return [make_view(x, spec)[lo:hi] for spec in specs]

    def wrap_model(self, method):
        if has_batchnorm(method):
            convert_sync_batchnorm(method, self.ctx.device_type)
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.ctx.local_rank] if self.ctx.device_type == "cuda" else None
        # Backbones keep parameters a step never uses (a torchvision classifier kept for the
        # weights' export, a frozen DINO layer), which DDP must be told to expect.
        ddp = DistributedDataParallel(_StepModule(method), device_ids=device_ids, find_unused_parameters=True)
        return _DistributedStep(ddp, self.world_size)

    def load_resume_state(self) -> dict[str, Any]:
        """Rank 0's checkpoint on every rank: read from disk where the file is visible, else
        sent by rank 0."""
        path = Path(self.resume_from) if self.resume_from else None
        readable = all_ranks(path is not None and path.is_file(), self.ctx)
        if all(readable):
            return load_checkpoint(path)
        return broadcast_object(load_checkpoint(path) if self.ctx.is_main else None, self.ctx)
