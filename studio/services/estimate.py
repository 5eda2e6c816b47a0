"""What a run will cost before it starts: time per epoch and peak memory, measured with a few real
training steps of the chosen config on the chosen device (the same model, views and optimiser the
Trainer builds), with warnings when it would take more than a day or not fit in memory."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from studio.engine.data.cache import DecodedImages
from studio.engine.data.views import make_view
from studio.engine.device import resolve_device
from studio.engine.methods import StepState
from studio.engine.train import TrainConfig, build_method
from studio.engine.train.optim import build_optimizer, resolve_optimizer
from studio.engine.train.trainer import plan_steps

DAY_S = 86_400.0
# Slots of optimiser state per parameter (SGD/LARS momentum; AdamW's two moments).
OPTIMIZER_SLOTS = {"sgd": 1, "lars": 1, "adamw": 2}
# Above this share of the device's memory a run is said not to fit (allocator slack, the rest of
# the system, fragmentation).
FIT_SHARE = 0.9


@dataclass
class CostEstimate:
    device: str  # "cpu" | "cuda" | "mps"
    device_name: str
    batch_size: int
    seconds_per_step: float
    steps_per_epoch: int
    total_steps: int
    seconds_per_epoch: float
    total_seconds: float
    peak_memory_bytes: int
    device_memory_bytes: int | None
    memory_measured: bool  # True: the device's allocator peak; False: parameters + activations
    measured_steps: int
    warnings: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.device_memory_bytes is None or self.peak_memory_bytes <= FIT_SHARE * self.device_memory_bytes

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "fits": self.fits}


def total_memory_bytes(device_type: str, device_total: int | None) -> int | None:
    """The memory a run on this device may use: the GPU's, or the machine's RAM for the CPU."""
    if device_total:
        return int(device_total)
    if device_type == "cpu":
        try:
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError, AttributeError):
            return None
    return None


def _activation_bytes(method, views, state) -> int:
    """Bytes of the outputs of every leaf module in one forward pass: what autograd keeps for the
    backward pass, roughly (the CPU has no allocator peak to read)."""
    total = 0

    def hook(_module, _inputs, output):
        nonlocal total
        outs = output if isinstance(output, (tuple, list)) else (output,)
        for o in outs:
            if isinstance(o, torch.Tensor):
                total += o.numel() * o.element_size()

    handles = [m.register_forward_hook(hook) for m in method.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            method.training_step(views, state)
    finally:
        for h in handles:
            h.remove()
    return total


class EstimateCancelled(Exception):
    """Raised between two steps when the caller's `cancelled()` turned true."""


def _check(cancelled: Callable[[], bool] | None) -> None:
    if cancelled is not None and cancelled():
        raise EstimateCancelled("the estimate was cancelled.")


def estimate_cost(config: TrainConfig, images: DecodedImages | np.ndarray, steps: int = 3,
                  cancelled: Callable[[], bool] | None = None,
                  progress: Callable[[str, int, int], None] | None = None) -> CostEstimate:
    """Run `steps` real optimiser steps (the first warms up and is not timed) and extrapolate.

    `cancelled()` is asked before each step (EstimateCancelled then ends it); `progress(stage,
    done, total)` hears of each step."""
    config.validate()
    data = images.images if isinstance(images, DecodedImages) else np.asarray(images)
    n = len(data)
    if n < 2:
        from studio.engine.errors import ConfigError

        raise ConfigError("the dataset needs at least two images.")
    steps = max(2, int(steps))
    info = resolve_device(config.device, config.amp)
    device = info.device
    batch, steps_per_epoch, total = plan_steps(config, n)
    torch.manual_seed(config.seed)

    _check(cancelled)
    method = build_method(config)
    if isinstance(images, DecodedImages):
        method.attach_data(images)  # what the Trainer hands it too (CLIP's captions)
    method = method.to(device)
    opt_name, lr, wd = resolve_optimizer(config, type(method), method.backbone.kind, batch)
    optimizer = build_optimizer(opt_name, method, lr, wd)
    specs = method.view_specs(config.image_size)
    idx = np.random.default_rng(config.seed).choice(n, size=batch, replace=False)
    x = torch.from_numpy(np.ascontiguousarray(data[np.sort(idx)])).to(device)
    indices = torch.from_numpy(np.sort(idx))
    is_cuda = device.type == "cuda"
    if is_cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base_mem = torch.cuda.memory_allocated(device)
    autocast = info.amp_dtype is not None
    method.train()
    timings = []
    for i in range(steps):
        _check(cancelled)
        if progress is not None:
            progress("measuring training steps", i, steps)
        state = StepState(step=i, total_steps=max(total, steps), epoch=0, steps_per_epoch=steps_per_epoch, indices=indices)
        t0 = time.perf_counter()
        views = [make_view(x, spec) for spec in specs]
        with torch.autocast(device.type, dtype=info.amp_dtype) if autocast else _Null():
            out = method.training_step(views, state)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].float().backward()
        optimizer.step()
        for m, pairs in method.momentum_updates(state):
            from lightly.models.utils import update_momentum

            for online, target in pairs:
                update_momentum(online, target, m)
        float(out["loss"].detach().float().cpu())  # waits for the device
        if is_cuda:
            torch.cuda.synchronize(device)
        timings.append(time.perf_counter() - t0)
    seconds_per_step = float(np.median(timings[1:]))

    if is_cuda:
        peak = int(torch.cuda.max_memory_allocated(device) - base_mem + x.numel())
        measured = True
    else:
        params = sum(p.numel() * p.element_size() for p in method.parameters())
        slots = OPTIMIZER_SLOTS.get(opt_name, 2)
        state = StepState(step=0, total_steps=max(total, steps), epoch=0, steps_per_epoch=steps_per_epoch, indices=indices)
        views = [make_view(x, spec) for spec in specs]
        peak = int(params * (2 + slots) + _activation_bytes(method, views, state) + data.nbytes)
        measured = False
    device_total = total_memory_bytes(device.type, info.total_memory)

    est = CostEstimate(
        device=device.type, device_name=info.name, batch_size=batch,
        seconds_per_step=seconds_per_step, steps_per_epoch=steps_per_epoch, total_steps=total,
        seconds_per_epoch=seconds_per_step * steps_per_epoch, total_seconds=seconds_per_step * total,
        peak_memory_bytes=peak, device_memory_bytes=device_total, memory_measured=measured,
        measured_steps=steps,
    )
    est.warnings = cost_warnings(est)
    if batch < config.batch_size:  # the Trainer lowers it the same way (plan_steps) and logs it
        est.warnings.insert(0, f"The batch size {config.batch_size} is more than the {n:,} images: the run will use "
                               f"batches of {batch}, one step an epoch. A smaller batch gives more steps.")
    del method, optimizer, x
    if is_cuda:
        torch.cuda.empty_cache()
    return est


def cost_warnings(est: CostEstimate) -> list[str]:
    """What a person should know before starting: more than a day, or more memory than there is."""
    out = []
    if est.total_seconds > DAY_S:
        out.append(f"This run would take about {est.total_seconds / DAY_S:,.1f} days on {est.device_name}; "
                   "fewer epochs, a smaller image size or a GPU would shorten it.")
    if not est.fits:
        out.append(f"This run needs about {format_bytes(est.peak_memory_bytes)} but {est.device_name} has "
                   f"{format_bytes(est.device_memory_bytes)}: it would not fit. Lower the batch size or image size.")
    return out


def estimate_for_dataset(project_root: str | os.PathLike, dataset: str | int, config: TrainConfig,
                         steps: int = 3, cancelled: Callable[[], bool] | None = None,
                         progress: Callable[[str, int, int], None] | None = None) -> CostEstimate:
    """The estimate for a dataset of a project, with a Project of its own (for worker threads)."""
    from studio.services.datasets import load_images
    from studio.store import Project

    def loading(done: int, total: int) -> None:
        _check(cancelled)
        if progress is not None:
            progress("reading images", done, total)

    with Project.open(Path(project_root)) as project:
        images = load_images(project, project.dataset(dataset), config.image_size, loading)
    return estimate_cost(config, images, steps=steps, cancelled=cancelled, progress=progress)


def format_bytes(n: float | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
