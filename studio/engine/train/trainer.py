"""The Trainer: one loop for every method, on any device.

It owns what methods share (data order, views, optimiser, schedule, mixed precision, EMA of
momentum pairs, checkpoints, pause/stop, metrics) and reports only through callbacks.
"""

from __future__ import annotations

import errno
import math
import random
import time
import warnings
from contextlib import nullcontext
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
from studio.engine.eval.health import STD_RATIO_COLLAPSE_THRESHOLD, spread_text
from studio.engine.methods import StepState, build_config, method_class
from studio.engine.train.callbacks import CallbackList, RunInfo, TrainingCallbacks, TrainResult
from studio.engine.train.checkpoint import load_checkpoint, save_checkpoint
from studio.engine.train.config import TrainConfig
from studio.engine.train.control import TrainingControl
from studio.engine.train.schedules import warmup_cosine

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


def _param_groups(model: torch.nn.Module, weight_decay: float):
    """No weight decay on biases and normalisation weights (as the papers' code)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(name: str, model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    groups = _param_groups(model, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))
    if name == "lars":
        from lightly.utils.lars import LARS

        return LARS(groups, lr=lr, momentum=0.9)
    raise ConfigError(f"unknown optimizer {name!r}.")


def _is_oom(exc: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


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
        self._collapsed = False  # the health monitor's last verdict, to log its changes
        self.world_size = world_size
        self.rank = rank
        self.last_checkpoint: str | None = None
        self.method = None
        self.device_info: DeviceInfo | None = None

    # -- set-up -----------------------------------------------------------------------------
    def _plan(self) -> tuple[int, int, int]:
        n = len(self.data)
        cfg = self.config
        if n < 2:
            raise ConfigError("the dataset needs at least two images.")
        batch = min(cfg.batch_size, n)
        if batch < cfg.batch_size:
            self.callbacks.on_log(f"the batch size was lowered from {cfg.batch_size} to {batch}, the number of images.", "warning")
        steps_per_epoch = max(1, n // batch)
        if cfg.steps is not None:
            total = cfg.steps
        else:
            total = (cfg.epochs if cfg.epochs is not None else 100) * steps_per_epoch
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

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg = self.config
        step = 0
        epoch = 0
        final_loss: float | None = None
        throughput: float | None = None
        try:
            info = resolve_device(cfg.device, cfg.amp)
            self.device_info = info
            device = info.device
            torch.manual_seed(cfg.seed)
            random.seed(cfg.seed)
            np.random.seed(cfg.seed % 2**32)
            batch, steps_per_epoch, total = self._plan()

            method = build_method(cfg, world_size=self.world_size).to(device)
            self.method = method
            channels_last = cfg.channels_last if cfg.channels_last is not None else (device.type == "cuda" and method.backbone.kind == "cnn")
            if channels_last:
                method = method.to(memory_format=torch.channels_last)
            # `batch` is the global batch (all processes together), so the lr does not depend on
            # how many processes share it.
            base_lr = cfg.lr if cfg.lr is not None else method.default_lr * batch / 256
            opt_name = cfg.optimizer or method.default_optimizer
            wd = cfg.weight_decay if cfg.weight_decay is not None else method.default_weight_decay
            optimizer = build_optimizer(opt_name, method, base_lr, wd)
            warmup = int(min(cfg.warmup_epochs * steps_per_epoch, 0.1 * total))
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total, warmup))
            use_scaler = info.amp_dtype == torch.float16 and device.type == "cuda"
            scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
            train_model = self.wrap_model(method)
            step_fn = self._compiled_step(train_model) if cfg.compile else None

            if self.resume_from is not None:
                state = self.load_resume_state()
                method.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
                if "scaler" in state and use_scaler:
                    scaler.load_state_dict(state["scaler"])
                step = int(state["step"])
                torch.set_rng_state(state["rng"]["torch"])
                _set_host_rng_state(state["rng"])
                if device.type == "cuda" and state["rng"].get("cuda") is not None:
                    torch.cuda.set_rng_state(state["rng"]["cuda"], device)
                self.last_checkpoint = str(self.resume_from)
                if step >= total:
                    raise ConfigError(f"this run already completed its {total} steps; nothing to resume.")

            images = self._images_on(device)
            n = len(images)
            specs = method.view_specs(cfg.image_size)
            params = sum(p.numel() for p in method.backbone.parameters())
            self.callbacks.on_start(RunInfo(
                total_steps=total, steps_per_epoch=steps_per_epoch, start_step=step, batch_size=batch,
                images=n, device_name=info.name, device_type=device.type,
                amp=str(info.amp_dtype).replace("torch.", "") if info.amp_dtype else None,
                feature_dim=method.backbone.feature_dim, parameters=params,
            ))
            if step:
                self.callbacks.on_log(f"resumed at step {step} from {Path(self.resume_from).name}")

            autocast = (lambda: torch.autocast(device.type, dtype=info.amp_dtype)) if info.amp_dtype else nullcontext
            pending: list[tuple[int, dict[str, torch.Tensor], float]] = []
            window_start, window_images = time.perf_counter(), 0
            perm_epoch, perm = -1, None
            method.train()

            while step < total:
                if self.control.stop_requested:
                    self._flush(pending, steps_per_epoch)
                    pending = []
                    self._save(method, optimizer, scheduler, scaler, step, steps_per_epoch, "last.ckpt")
                    return self._finish("stopped", "stopped by the user", step, steps_per_epoch, final_loss, throughput)
                if self.control.paused:
                    self._flush(pending, steps_per_epoch)
                    pending = []
                    self.callbacks.on_status("paused")
                    while not self.control.wait_while_paused(0.25):
                        pass
                    if not self.control.stop_requested:
                        self.callbacks.on_status("running")
                    window_start, window_images = time.perf_counter(), 0
                    continue

                epoch, pos = divmod(step, steps_per_epoch)
                if epoch != perm_epoch:
                    perm = self.epoch_order(epoch, n)
                    perm_epoch = epoch
                idx = perm[pos * batch:(pos + 1) * batch]
                x = images[idx.to(images.device)]
                if x.device != device:
                    x = x.to(device, non_blocking=True)
                state = StepState(step=step, total_steps=total, epoch=epoch, steps_per_epoch=steps_per_epoch)
                views = self.make_views(x, specs)
                if channels_last:
                    views = [v.contiguous(memory_format=torch.channels_last) for v in views]

                with autocast():
                    out = step_fn(views, state) if step_fn else train_model(views, state)
                loss = out["loss"]
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.max_grad_norm:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(method.parameters(), cfg.max_grad_norm)
                method.on_before_optimizer_step(state)
                lr_now = optimizer.param_groups[0]["lr"]
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                pairs = method.momentum_pairs()
                if pairs:
                    m = method.momentum(state)
                    for online, target in pairs:
                        update_momentum(online, target, m)
                    out = {**out, "momentum": torch.tensor(m, device=loss.device)}  # metrics are stacked on one device
                method.on_after_step(state)
                step += 1
                window_images += len(idx)
                pending.append((step, {k: v.detach() for k, v in out.items()}, lr_now))

                last = step == total
                if len(pending) >= cfg.log_every or last:
                    final_loss = self._flush(pending, steps_per_epoch)
                    pending = []
                    elapsed = time.perf_counter() - window_start
                    if elapsed > 0:
                        throughput = window_images / elapsed
                        self.callbacks.on_metrics(step, step / steps_per_epoch, {"images_per_s": throughput})
                    window_start, window_images = time.perf_counter(), 0
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and not last:
                    self._flush(pending, steps_per_epoch)
                    pending = []
                    self._save(method, optimizer, scheduler, scaler, step, steps_per_epoch, f"step-{step}.ckpt")
                if self._monitor_due(step, steps_per_epoch, total):
                    self._flush(pending, steps_per_epoch)
                    pending = []
                    self._run_monitors(method, step, steps_per_epoch)
                    method.train()
                    window_start, window_images = time.perf_counter(), 0

            self._save(method, optimizer, scheduler, scaler, step, steps_per_epoch, "last.ckpt")
            return self._finish("finished", None, step, steps_per_epoch, final_loss, throughput)
        except DivergedError as exc:
            return self._finish("diverged", str(exc), exc.step, None, None, throughput, exc)
        except StudioError as exc:
            return self._finish("failed", str(exc), step, None, final_loss, throughput, exc)
        except Exception as exc:  # noqa: BLE001 - every failure ends the run with its reason
            if _is_oom(exc):
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                reason = (f"the device ran out of memory at batch size {self.config.batch_size}; "
                          "try a smaller batch size or image size, or a smaller backbone.")
            elif isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                reason = "the disk is full; free some space and resume the run."
                exc = DiskFullError(reason)
            else:
                reason = f"{exc.__class__.__name__}: {exc}"
            return self._finish("failed", reason, step, None, final_loss, throughput, exc)

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
    def _flush(self, pending, steps_per_epoch: int) -> float | None:
        """Move the window's metrics off the device in one transfer, check them, report them."""
        if not pending:
            return None
        names = sorted(pending[0][1])
        stacked = torch.stack([torch.stack([p[1][k].float().reshape(()) for k in names]) for p in pending]).cpu().numpy()
        li = names.index("loss")
        last_loss = None
        for (step, _, lr), row in zip(pending, stacked):
            loss = float(row[li])
            if not math.isfinite(loss):
                raise DivergedError(step, loss, self.last_checkpoint)
            metrics = {k: float(v) for k, v in zip(names, row)}
            metrics["lr"] = lr
            self.callbacks.on_metrics(step, step / steps_per_epoch, metrics)
            last_loss = loss
        return last_loss

    def _save(self, method, optimizer, scheduler, scaler, step, steps_per_epoch, filename) -> None:
        if self.rank != 0:
            return
        rng = {"torch": torch.get_rng_state(), "cuda": None, **_host_rng_state()}
        if self.device_info and self.device_info.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device_info.device)
        state = {
            "step": step,
            "epoch": step / steps_per_epoch,
            "config": self.config.to_dict(),
            "model": {k: v.detach().cpu() for k, v in method.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng,
            "backbone": {"name": method.backbone.name, "kind": method.backbone.kind,
                         "feature_dim": method.backbone.feature_dim, "arch": method.backbone.arch},
        }
        path = save_checkpoint(self.run_dir / filename, state)
        self.last_checkpoint = str(path)
        self.callbacks.on_checkpoint(str(path), step, step / steps_per_epoch)

    def _monitor_due(self, step: int, steps_per_epoch: int, total: int) -> bool:
        every = self.config.monitor_every
        if not self.monitors or every < 0:
            return False
        if every == 0:
            return step % steps_per_epoch == 0 or step == total
        return step % every == 0 or step == total

    def _run_monitors(self, method, step: int, steps_per_epoch: int) -> None:
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
        self._report_collapse(step, metrics)

    def _report_collapse(self, step: int, metrics: dict[str, float]) -> None:
        """One line in the run's log when the health monitor's collapse verdict turns on, and one
        when it turns off again: the curve alone is easy to miss."""
        if "collapse" not in metrics:
            return
        collapsed = metrics["collapse"] >= 0.5
        if collapsed == self._collapsed:
            return
        self._collapsed = collapsed
        spread = spread_text(metrics.get("embedding_std_ratio"))
        if collapsed:
            self.callbacks.on_log(
                f"step {step}: the outputs are collapsing towards one point ({spread}; under "
                f"{STD_RATIO_COLLAPSE_THRESHOLD} counts as collapse). If it lasts, the run learns nothing: "
                f"try a lower learning rate, or the method's defaults.", "warning")
        else:
            self.callbacks.on_log(f"step {step}: the outputs have spread again ({spread}).")

    def _finish(self, status, reason, step, steps_per_epoch, final_loss, throughput, error=None) -> TrainResult:
        epochs = int(step // steps_per_epoch) if steps_per_epoch else 0
        if steps_per_epoch is None:
            try:
                epochs = int(step // self._plan()[1])
            except Exception:  # noqa: BLE001
                epochs = 0
        if status != "finished" and reason:
            self.callbacks.on_log(reason, "error" if status in ("failed", "diverged") else "info")
        result = TrainResult(status, reason, step, epochs, final_loss, throughput, self.last_checkpoint, error)
        try:
            self.callbacks.on_status(status, reason)
        finally:
            self.callbacks.on_end(result)
        return result


def _host_rng_state() -> dict[str, Any]:
    """Python's and NumPy's generators, as plain data a weights-only checkpoint can hold."""
    version, mt, gauss = random.getstate()
    _, key, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, torch.tensor(mt, dtype=torch.int64), gauss],
        "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(cached)},
    }


def _set_host_rng_state(rng: dict[str, Any]) -> None:
    if rng.get("python") is not None:
        version, mt, gauss = rng["python"]
        random.setstate((version, tuple(int(v) for v in mt.tolist()), gauss))
    if rng.get("numpy") is not None:
        n = rng["numpy"]
        np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))


class _StepModule(torch.nn.Module):
    """Routes `forward` to the method's training_step, so DDP and torch.compile can wrap it."""

    def __init__(self, method):
        super().__init__()
        self.method = method

    def forward(self, views, state):
        return self.method.training_step(views, state)
