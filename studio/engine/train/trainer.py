"""The Trainer: one loop for every method, on any device.

It owns what methods share (data order, views, optimiser, schedule, mixed precision, EMA of
momentum pairs, checkpoints, pause/stop, metrics) and reports only through callbacks.
"""

from __future__ import annotations

import collections
import errno
import math
import random
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from lightly.models.utils import update_momentum

from studio.engine.backbones import build_backbone
from studio.engine.data.cache import DecodedImages
from studio.engine.data.views import make_view
from studio.engine.device import DeviceInfo, resolve_device
from studio.engine.errors import ConfigError, DiskFullError, DivergedError, StudioError
from studio.engine.methods import StepState, build_config, method_class
from studio.engine.train.callbacks import CallbackList, RunInfo, TrainingCallbacks, TrainResult
from studio.engine.train.checkpoint import (
    AUTO_CHECKPOINT, LAST_CHECKPOINT, CheckpointSchedule, HealthyCheckpointKeeper, host_rng_state, load_backbone_from,
    load_checkpoint, save_checkpoint, set_host_rng_state,
)
from studio.engine.train.config import MAX_MONITOR_CHECKS, TrainConfig
from studio.engine.train.control import TrainingControl
from studio.engine.train.optim import build_optimizer, resolve_optimizer
from studio.engine.train.reporting import HealthReporter, MetricsWindow
from studio.engine.train.schedules import warmup_cosine, warmup_steps

MONITOR_ACTIVITY = "checking the kNN and health monitors"
# A monitor looks at the encoder now and then (kNN accuracy, collapse) and returns metrics; its
# `looks_at` ("backbone", the default, or "output") says which (studio.engine.train.monitor).
Monitor = Callable[[torch.nn.Module, int], dict[str, float]]

class _MethodOutput(torch.nn.Module):
    """A method's `output` as an encoder module, for the monitors that look at it."""

    def __init__(self, method):
        super().__init__()
        self.method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.method.output(x)


def build_method(config: TrainConfig, world_size: int = 1):
    cls = method_class(config.method)
    method_cfg = build_config(cls.config_class, config.method_config)
    spec_kind = None
    from studio.engine.backbones import backbone_spec

    spec_kind = backbone_spec(config.backbone).kind
    cls.check_backbone(spec_kind, config.backbone)
    backbone = build_backbone(config.backbone, config.image_size, pretrained=config.pretrained, **config.backbone_options)
    return cls(backbone, method_cfg, world_size=world_size)


def _is_oom(exc: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def plan_steps(config: TrainConfig, n: int) -> tuple[int, int, int]:
    """(batch, steps per epoch, total steps) of a run over `n` images: the batch at most the
    images, whole batches an epoch, the length in steps or epochs (DEFAULT_EPOCHS when neither).
    The one rule; the cost estimate and the budget plan with it too."""
    from studio.engine.train.config import DEFAULT_EPOCHS

    batch = min(config.batch_size, n)
    steps_per_epoch = max(1, n // batch)
    total = config.steps if config.steps is not None else (config.epochs or DEFAULT_EPOCHS) * steps_per_epoch
    return batch, steps_per_epoch, total


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        data: DecodedImages,
        run_dir: str | Path,
        callbacks: TrainingCallbacks | Sequence[TrainingCallbacks] | None = None,
        control: TrainingControl | None = None,
        resume_from: str | Path | None = None,
        monitors: Sequence[Monitor] = (),
        world_size: int = 1,
        rank: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.config = config.validate()
        self.data = data
        self.run_dir = Path(run_dir)
        if isinstance(callbacks, (list, tuple)):
            callbacks = CallbackList(*callbacks)
        self.callbacks = callbacks or TrainingCallbacks()
        self.control = control or TrainingControl()
        self.resume_from = Path(resume_from) if resume_from else None
        self.monitors = list(monitors)
        self.health = HealthReporter(self.callbacks)
        self.healthy_checkpoint = HealthyCheckpointKeeper(self.run_dir, self._checkpoint_moved)
        self.monitor_seconds: list[float] = []  # how long each monitor check took (the ETA counts them)
        self.world_size = world_size
        self.rank = rank
        self.last_checkpoint: str | None = None
        self.method = None
        self.device_info: DeviceInfo | None = None
        self.clock = clock  # seconds of training time, for the automatic checkpoint (tests pass a fake one)
        # Where the run is; kept on the trainer so that _finish can report it however the run ended.
        self.step = 0
        self.steps_per_epoch: int | None = None
        self.final_loss: float | None = None
        self.throughput: float | None = None

    # -- set-up -----------------------------------------------------------------------------
    def _plan(self) -> tuple[int, int, int]:
        n = len(self.data)
        cfg = self.config
        if n < 2:
            raise ConfigError("the dataset needs at least two images.")
        batch, steps_per_epoch, total = plan_steps(cfg, n)
        if batch < cfg.batch_size:
            self.callbacks.on_log(f"the batch size was lowered from {cfg.batch_size} to {batch}, the number of images.", "warning")
        return batch, steps_per_epoch, total

    def _images_on(self, device: torch.device) -> torch.Tensor:
        with warnings.catch_warnings():
            # The cache is a read-only memory map; the tensor over it is only ever read.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            images = torch.from_numpy(np.ascontiguousarray(self.data.images))
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if images.numel() < 0.25 * free:
                return images.to(device)  # the whole uint8 set fits: no host->device copy per step
            return images.pin_memory()
        return images

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> TrainResult:
        self.step, self.final_loss, self.throughput, self.steps_per_epoch = 0, None, None, None
        self._last_losses = collections.deque(maxlen=max(1, self.config.log_every))
        try:
            t = self._setup()
            self._restore(t)
            self._announce(t)
            status, reason = self._loop(t)
            return self._finish(status, reason)
        except DivergedError as exc:
            self.step, self.final_loss = exc.step, None
            return self._finish("diverged", str(exc), exc)
        except StudioError as exc:
            return self._finish("failed", str(exc), exc)
        except Exception as exc:  # noqa: BLE001 - every failure ends the run with its reason
            reason, exc = failure_reason(exc, self.config.batch_size)
            return self._finish("failed", reason, exc)

    def _setup(self) -> "_Training":
        """Device, seeds, plan, model, optimiser and schedule: everything a step needs."""
        cfg = self.config
        info = resolve_device(cfg.device, cfg.amp)
        self.device_info = info
        device = info.device
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        batch, steps_per_epoch, total = self._plan()
        self.steps_per_epoch = steps_per_epoch

        method = build_method(cfg, world_size=self.world_size)
        if cfg.init_from:
            load_backbone_from(method.backbone, cfg.init_from)
        method.attach_data(self.data)
        method = method.to(device)
        self.method = method
        self.health.advice = method.collapse_advice
        channels_last = cfg.channels_last if cfg.channels_last is not None else (device.type == "cuda" and method.backbone.kind == "cnn")
        if channels_last:
            method = method.to(memory_format=torch.channels_last)
        # `batch` is the global batch (all processes together), so the lr does not depend on
        # how many processes share it.
        opt_name, base_lr, wd = resolve_optimizer(cfg, type(method), method.backbone.kind, batch)
        optimizer = build_optimizer(opt_name, method, base_lr, wd)
        warmup = warmup_steps(cfg.warmup_epochs, steps_per_epoch, total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total, warmup))
        fresh_groups = [(g["initial_lr"], g["weight_decay"]) for g in optimizer.param_groups]
        use_scaler = info.amp_dtype == torch.float16 and device.type == "cuda"
        scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
        train_model = self.wrap_model(method)
        step_fn = self._compiled_step(train_model) if cfg.compile else None
        return _Training(info=info, device=device, method=method, optimizer=optimizer, scheduler=scheduler,
                         scaler=scaler, use_scaler=use_scaler, train_model=train_model, step_fn=step_fn,
                         channels_last=channels_last, batch=batch, total=total, fresh_groups=fresh_groups)

    def _restore(self, t: "_Training") -> None:
        """Continue from `resume_from`: weights, optimiser, schedule, step and random streams."""
        if self.resume_from is None:
            return
        state = self.load_resume_state()
        t.method.load_state_dict(state["model"])
        t.optimizer.load_state_dict(state["optimizer"])
        t.scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state and t.use_scaler:
            t.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.health.baseline = state.get("knn_baseline")
        self._config_learning_rate(t, state)
        torch.set_rng_state(state["rng"]["torch"])
        set_host_rng_state(state["rng"])
        if t.device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], t.device)
        self.last_checkpoint = str(self.resume_from)
        if self.step >= t.total:
            raise ConfigError(f"this run already completed its {t.total} steps; nothing to resume.")

    @staticmethod
    def _config_learning_rate(t: "_Training", state: dict[str, Any]) -> None:
        """The run's settings decide the learning rate and weight decay, the checkpoint only where
        the schedule is: the same on a plain resume, the changed ones on a run continued with a
        change (services.branch; an optimiser state restores its groups' old values)."""
        fresh = t.fresh_groups
        for group, (lr, wd) in zip(t.optimizer.param_groups, fresh):
            group["initial_lr"], group["weight_decay"] = lr, wd
        t.scheduler.base_lrs = [lr for lr, _ in fresh]
        factor = t.scheduler.lr_lambdas[0](t.scheduler.last_epoch)
        for group, (lr, _) in zip(t.optimizer.param_groups, fresh):
            group["lr"] = lr * factor

    def _announce(self, t: "_Training") -> None:
        """Put the images where the steps read them and tell the listeners what the run is."""
        t.images = self._images_on(t.device)
        t.specs = t.method.view_specs(self.config.image_size)
        params = sum(p.numel() for p in t.method.backbone.parameters())
        self.callbacks.on_start(RunInfo(
            total_steps=t.total, steps_per_epoch=self.steps_per_epoch, start_step=self.step, batch_size=t.batch,
            images=len(t.images), device_name=t.info.name, device_type=t.device.type,
            amp=str(t.info.amp_dtype).replace("torch.", "") if t.info.amp_dtype else None,
            feature_dim=t.method.backbone.feature_dim, parameters=params,
        ))
        if self.step:
            self.callbacks.on_log(f"resumed at step {self.step} from {Path(self.resume_from).name}")

    def _loop(self, t: "_Training") -> tuple[str, str | None]:
        """Steps until the run's end or a stop; returns (status, reason)."""
        window = MetricsWindow(self)
        schedule = CheckpointSchedule(self.config, t.total, self.step, self.clock)
        perm_epoch, perm = -1, None
        if self.step == 0 and self.monitors and self.config.monitor_every >= 0:
            # The untrained encoder's figures start the curves: the baseline a run must beat.
            self._run_monitors(t.method, 0, self.steps_per_epoch)
        t.method.train()
        while self.step < t.total:
            if self.control.stop_requested:
                window.emit()
                self._save(t, LAST_CHECKPOINT)
                return "stopped", "stopped by the user"
            if self.control.paused:
                window.emit()
                paused_at = self.clock()
                self._wait_while_paused()
                schedule.paused_for(self.clock() - paused_at)
                window.restart()
                continue

            epoch, pos = divmod(self.step, self.steps_per_epoch)
            if epoch != perm_epoch:
                perm = self.epoch_order(epoch, len(t.images))
                perm_epoch = epoch
            idx = perm[pos * t.batch:(pos + 1) * t.batch]
            out, lr = self._train_step(t, idx, epoch)
            self.step += 1
            window.add(self.step, out, lr, len(idx))

            step, last = self.step, self.step == t.total
            if window.full or last:
                window.emit()
                window.report_speed(t.total)
            checkpoint = schedule.due(step)
            if checkpoint is not None:
                window.emit()
                began = time.perf_counter()
                self._save(t, checkpoint)
                schedule.saved(step)
                window.exclude(time.perf_counter() - began)
            if self._monitor_due(step, self.steps_per_epoch, t.total):
                window.emit()
                began = time.perf_counter()
                self._run_monitors(t.method, step, self.steps_per_epoch, last=last)
                t.method.train()
                window.exclude(time.perf_counter() - began)
        self._save(t, LAST_CHECKPOINT)
        return "finished", None

    def _train_step(self, t: "_Training", idx: torch.Tensor, epoch: int) -> tuple[dict[str, torch.Tensor], float]:
        """One optimiser step on the images `idx`; returns (the step's metrics on the device, its lr)."""
        cfg, method, optimizer = self.config, t.method, t.optimizer
        x = t.images[idx.to(t.images.device)]
        if x.device != t.device:
            x = x.to(t.device, non_blocking=True)
        state = StepState(step=self.step, total_steps=t.total, epoch=epoch, steps_per_epoch=self.steps_per_epoch,
                          indices=idx)
        views = self.make_views(x, t.specs)
        if t.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]

        with t.autocast():
            out = t.step_fn(views, state) if t.step_fn else t.train_model(views, state)
        loss = out["loss"]
        optimizer.zero_grad(set_to_none=True)
        t.scaler.scale(loss).backward()
        if cfg.max_grad_norm:
            t.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(method.parameters(), cfg.max_grad_norm)
        method.on_before_optimizer_step(state)
        lr_now = optimizer.param_groups[0]["lr"]
        t.scaler.step(optimizer)
        t.scaler.update()
        t.scheduler.step()
        updates = method.momentum_updates(state)
        for m, pairs in updates:
            for online, target in pairs:
                update_momentum(online, target, m)
        if updates:
            out = {**out, "momentum": torch.tensor(updates[0][0], device=loss.device)}  # metrics are stacked on one device
        method.on_after_step(state)
        return {k: v.detach() for k, v in out.items()}, lr_now

    def _wait_while_paused(self) -> None:
        self.callbacks.on_status("paused")
        while not self.control.wait_while_paused(0.25):
            pass
        if not self.control.stop_requested:
            self.callbacks.on_status("running")

    # -- pieces the distributed trainer overrides --------------------------------------------
    def wrap_model(self, method):
        """The callable that runs a training step (DDP wraps the method here)."""
        return _StepModule(method)

    def epoch_order(self, epoch: int, n: int) -> torch.Tensor:
        """A permutation that depends only on (seed, epoch), so a resumed run sees the same order."""
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return torch.randperm(n, generator=g)

    def make_views(self, x: torch.Tensor, specs) -> list[torch.Tensor]:
        """The augmented views of batch `x` this process trains on."""
        return [make_view(x, spec) for spec in specs]

    def load_resume_state(self) -> dict[str, Any]:
        return load_checkpoint(self.resume_from)

    def _compiled_step(self, model):
        try:
            return torch.compile(model)
        except Exception as exc:  # noqa: BLE001 - compile is an optimisation, never a requirement
            self.callbacks.on_log(f"torch.compile is not available here ({exc}); running eagerly.", "warning")
            return None

    # -- helpers ----------------------------------------------------------------------------
    def _save(self, t: "_Training", filename: str) -> None:
        """Checkpoint the run at its current step as `filename` in the run's folder (rank 0 only).

        The automatic checkpoint is rewritten in place, so only its newest is kept; once the
        run's last checkpoint is written it is older than that one, and is removed."""
        if self.rank != 0:
            return
        step, steps_per_epoch = self.step, self.steps_per_epoch
        rng = {"torch": torch.get_rng_state(), "cuda": None, **host_rng_state()}
        if self.device_info and self.device_info.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device_info.device)
        method = t.method
        state = {
            "step": step,
            "epoch": step / steps_per_epoch,
            "config": self.config.to_dict(),
            "model": {k: v.detach().cpu() for k, v in method.state_dict().items()},
            "optimizer": t.optimizer.state_dict(),
            "scheduler": t.scheduler.state_dict(),
            "scaler": t.scaler.state_dict(),
            "rng": rng,
            "knn_baseline": self.health.baseline,
            "backbone": {"name": method.backbone.name, "kind": method.backbone.kind,
                         "feature_dim": method.backbone.feature_dim, "arch": method.backbone.arch},
        }
        if filename == AUTO_CHECKPOINT:
            self.healthy_checkpoint.before_auto_save()
        path = save_checkpoint(self.run_dir / filename, state)
        if filename == AUTO_CHECKPOINT:
            self.healthy_checkpoint.saved_auto(step)
        self.last_checkpoint = str(path)
        self.callbacks.on_checkpoint(str(path), step, step / steps_per_epoch)
        if filename == LAST_CHECKPOINT:
            if step == t.total:
                self.healthy_checkpoint.at_end(healthy=not self.health.collapsed)
            else:
                self.healthy_checkpoint.before_auto_save()
            auto = self.run_dir / AUTO_CHECKPOINT
            if auto.is_file():
                auto.unlink()
                self.callbacks.on_checkpoint_removed(str(auto))

    def _monitor_interval(self, steps_per_epoch: int, total: int) -> int | None:
        """Steps between monitor checks (and one at the last step); None: no checks."""
        every = self.config.monitor_every
        if not self.monitors or every < 0:
            return None
        if every == 0:
            # Each epoch, but at most MAX_MONITOR_CHECKS a run: on 60 images of batch 32 an epoch
            # is one step, and a check every step made the run all checks.
            every = max(steps_per_epoch, math.ceil(total / MAX_MONITOR_CHECKS))
        return every

    def _monitor_due(self, step: int, steps_per_epoch: int, total: int) -> bool:
        every = self._monitor_interval(steps_per_epoch, total)
        return every is not None and (step % every == 0 or step == total)

    def _run_monitors(self, method, step: int, steps_per_epoch: int, last: bool = False) -> None:
        began = time.perf_counter()
        self.callbacks.on_activity(MONITOR_ACTIVITY if step else "measuring the untrained encoder (the baseline)")
        try:
            self._check(method, step, steps_per_epoch, last)
        finally:
            self.monitor_seconds.append(time.perf_counter() - began)
            self.callbacks.on_activity(None)

    def monitor_checks_left(self, step: int, total: int) -> int:
        """How many monitor checks the run makes after `step` (for the ETA)."""
        every = self._monitor_interval(self.steps_per_epoch, total)
        if every is None or step >= total:
            return 0
        return total // every - step // every + (1 if total % every else 0)

    def _check(self, method, step: int, steps_per_epoch: int, last: bool) -> None:
        method.eval()
        metrics: dict[str, float] = {}
        encoders = {"backbone": method.backbone, "output": _MethodOutput(method)}
        with torch.no_grad():
            for monitor in self.monitors:
                try:
                    metrics.update(monitor(encoders[getattr(monitor, "looks_at", "backbone")], step))
                except StudioError as exc:
                    self.callbacks.on_log(f"monitor skipped: {exc}", "warning")
        if metrics:
            self.callbacks.on_metrics(step, step / steps_per_epoch, metrics)
        if step == 0:
            self.health.baseline = metrics.get("knn_top1")
            return
        self._report_collapse(step, metrics)
        self.health.against_baseline(step, metrics, last)

    @property
    def knn_baseline(self) -> float | None:
        """kNN top-1 of the untrained encoder: the monitors' check at step 0."""
        return self.health.baseline

    def _report_collapse(self, step: int, metrics: dict[str, float]) -> None:
        self.health.collapse(step, metrics)
        if "collapse" in metrics:
            self.healthy_checkpoint.checked(step, self.health.collapsed)

    def _checkpoint_moved(self, removed: Path | None, added: tuple[Path, int] | None) -> None:
        if removed is not None:
            self.callbacks.on_checkpoint_removed(str(removed))
            if self.last_checkpoint == str(removed):
                self.last_checkpoint = str(added[0]) if added else None
        if added is not None:
            path, step = added
            self.callbacks.on_checkpoint(str(path), step, step / self.steps_per_epoch)

    def _finish(self, status: str, reason: str | None, error: BaseException | None = None) -> TrainResult:
        epochs = int(self.step // self.steps_per_epoch) if self.steps_per_epoch else 0
        if status != "finished" and reason:
            self.callbacks.on_log(reason, "error" if status in ("failed", "diverged") else "info")
        result = TrainResult(status, reason, self.step, epochs, self.final_loss, self.throughput, self.last_checkpoint, error,
                             self.step / self.steps_per_epoch if self.steps_per_epoch else None)
        try:
            self.callbacks.on_status(status, reason)
        finally:
            self.callbacks.on_end(result)
        return result


def failure_reason(exc: BaseException, batch_size: int) -> tuple[str, BaseException]:
    """What to tell the user of a run ended by an untyped exception, and the error to keep
    (a full disk becomes a DiskFullError)."""
    if _is_oom(exc):
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return (f"the device ran out of memory at batch size {batch_size}; try a smaller batch size or image "
                "size, or a smaller backbone."), exc
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "the disk is full; free some space and resume the run."
        return reason, DiskFullError(reason)
    return f"{exc.__class__.__name__}: {exc}", exc


@dataclass
class _Training:
    """What `_setup` builds for the steps of one run."""

    info: DeviceInfo
    device: torch.device
    method: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    use_scaler: bool
    train_model: Any
    step_fn: Any
    channels_last: bool
    batch: int
    total: int
    fresh_groups: list[tuple[float, float]] = field(default_factory=list)  # (lr, weight decay) the settings give
    images: torch.Tensor | None = None
    specs: Any = None
    autocast: Callable[[], Any] = field(init=False)

    def __post_init__(self):
        dtype = self.info.amp_dtype
        self.autocast = (lambda: torch.autocast(self.device.type, dtype=dtype)) if dtype else nullcontext


class _StepModule(torch.nn.Module):
    """Routes `forward` to the method's training_step, so DDP and torch.compile can wrap it."""

    def __init__(self, method):
        super().__init__()
        self.method = method

    def forward(self, views, state):
        return self.method.training_step(views, state)
