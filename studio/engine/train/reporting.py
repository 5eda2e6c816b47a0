"""What the Trainer reports besides its steps: the metrics window (points off the device in one
transfer, the speed) and the health verdicts over a run (collapse, below the untrained baseline),
each said once in the run's log when it turns."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from studio.engine.errors import DivergedError
from studio.engine.eval.health import baseline_verdict, collapse_verdict, spread_text

if TYPE_CHECKING:
    from studio.engine.train.callbacks import TrainingCallbacks
    from studio.engine.train.trainer import Trainer


class MetricsWindow:
    """The steps' metrics not yet reported: they stay on the device until `emit` moves them off
    in one transfer (rule 6), checks the loss and reports every point. It also measures the
    images per second since the window's clock was last restarted."""

    def __init__(self, trainer: "Trainer"):
        self.trainer = trainer
        self.pending: list[tuple[int, dict[str, torch.Tensor], float]] = []
        self.restart()

    @property
    def full(self) -> bool:
        """log_every steps since the last report (counted apart from the points emitted early
        for a checkpoint or a monitor, so a run that checks often still reports its speed)."""
        return self.steps >= self.trainer.config.log_every

    def add(self, step: int, metrics: dict[str, torch.Tensor], lr: float, images: int) -> None:
        self.pending.append((step, metrics, lr))
        self.images += images
        self.steps += 1

    def restart(self) -> None:
        self.started, self.images, self.steps = time.perf_counter(), 0, 0

    def exclude(self, seconds: float) -> None:
        """Leave time spent outside the steps (a monitor's check, a checkpoint) out of the speed."""
        self.started += seconds

    def emit(self) -> None:
        pending, self.pending = self.pending, []
        if not pending:
            return
        tr = self.trainer
        names = sorted(pending[0][1])
        stacked = torch.stack([torch.stack([p[1][k].float().reshape(()) for k in names]) for p in pending]).cpu().numpy()
        li = names.index("loss")
        for (step, _, lr), row in zip(pending, stacked):
            loss = float(row[li])
            if not math.isfinite(loss):
                raise DivergedError(step, loss, tr.last_checkpoint)
            metrics = {k: float(v) for k, v in zip(names, row)}
            metrics["lr"] = lr
            tr.callbacks.on_metrics(step, step / tr.steps_per_epoch, metrics)
            tr._last_losses.append(loss)
            tr.final_loss = float(np.mean(tr._last_losses))  # callbacks.final_loss_meaning

    def report_speed(self, total: int) -> None:
        """images/s over the window, and the run's ETA in seconds (`eta_s`): the steps left at the
        window's pace plus the monitor checks left at the checks' mean time so far."""
        tr = self.trainer
        elapsed = time.perf_counter() - self.started
        if elapsed > 0 and self.steps:
            tr.throughput = self.images / elapsed
            eta = (total - tr.step) * elapsed / self.steps
            if tr.monitor_seconds:
                eta += tr.monitor_checks_left(tr.step, total) * float(np.mean(tr.monitor_seconds[-5:]))
            tr.callbacks.on_metrics(tr.step, tr.step / tr.steps_per_epoch, {"images_per_s": tr.throughput, "eta_s": eta})
        self.restart()


class HealthReporter:
    """The monitors' verdicts over a run: one line in the log when the collapse verdict turns on
    (with the method's advice) and one when it turns off, the same for kNN top-1 below the
    untrained encoder's (`baseline`, the check at step 0), and a last word if the run ends below."""

    def __init__(self, callbacks: "TrainingCallbacks", advice: str = ""):
        self.callbacks = callbacks
        self.advice = advice
        self.collapsed = False  # the latest collapse verdict
        self.below_baseline = False
        self.baseline: float | None = None  # kNN top-1 of the untrained encoder

    def collapse(self, step: int, metrics: dict[str, float]) -> bool:
        """Log a turn of the collapse verdict; True when it has just turned on."""
        if "collapse" not in metrics:
            return False
        collapsed, message = collapse_verdict(metrics, self.advice)
        if collapsed == self.collapsed:
            return False
        self.collapsed = collapsed
        if collapsed:
            self.callbacks.on_log(f"step {step}: {message}", "warning")
        else:
            self.callbacks.on_log(f"step {step}: the outputs have spread again ({spread_text(metrics.get('embedding_std_ratio'))}).")
        return collapsed

    def against_baseline(self, step: int, metrics: dict[str, float], last: bool) -> None:
        if "knn_top1" not in metrics:
            return
        below, message = baseline_verdict(metrics["knn_top1"], self.baseline)
        if below != self.below_baseline:
            self.below_baseline = below
            self.callbacks.on_log(f"step {step}: {message}", "warning" if below else "info")
        if below and last:
            self.callbacks.on_log(f"the run ended below random init: {message}", "warning")
