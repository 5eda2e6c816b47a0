"""The engine's only way to the outside (DESIGN.md rule 1): plain data through callbacks.

The GUI worker and the CLI each plug a store writer (and the GUI a signal emitter) in here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunInfo:
    total_steps: int
    steps_per_epoch: int
    start_step: int
    batch_size: int
    images: int
    device_name: str
    device_type: str
    amp: str | None  # "bfloat16" | "float16" | None
    feature_dim: int
    parameters: int


def final_loss_meaning(log_every: int | None) -> str:
    """What a run's "final loss" is, in the words every front door shows beside it: one point's
    loss is noisy, so it is the mean of the last logged window."""
    from studio.engine.train.config import TrainConfig

    n = int(log_every or TrainConfig().log_every)
    return f"mean of the last {n} steps" if n > 1 else "the last step's"


@dataclass(frozen=True)
class TrainResult:
    status: str  # finished | stopped | diverged | failed
    reason: str | None
    steps: int
    epochs: int
    final_loss: float | None  # the mean loss of the last log_every steps (final_loss_meaning)
    images_per_s: float | None
    checkpoint: str | None  # path of the last checkpoint written
    error: BaseException | None = None
    epochs_done: float | None = None  # steps / steps an epoch (`epochs` counts whole ones)


class TrainingCallbacks:
    """No-op base: override what you need. Called on the training thread; keep them quick."""

    def on_start(self, info: RunInfo) -> None: ...

    def on_metrics(self, step: int, epoch: float, metrics: dict[str, float]) -> None: ...

    def on_checkpoint(self, path: str, step: int, epoch: float) -> None: ...

    def on_checkpoint_removed(self, path: str) -> None:
        """The checkpoint at `path` was deleted (an automatic one, superseded by a newer)."""

    def on_status(self, status: str, reason: str | None = None) -> None: ...

    def on_log(self, message: str, level: str = "info") -> None: ...

    def on_activity(self, text: str | None) -> None:
        """What the run does between steps, while it does it ("checking the kNN and health
        monitors"); None when the steps go on."""

    def on_end(self, result: TrainResult) -> None: ...


class CallbackList(TrainingCallbacks):
    """Fans every call out to several listeners, in order."""

    def __init__(self, *listeners: Any):
        self.listeners = [cb for cb in listeners if cb is not None]

    def _call(self, name: str, *args: Any, **kwargs: Any) -> None:
        for cb in self.listeners:
            fn = getattr(cb, name, None)
            if fn is not None:
                fn(*args, **kwargs)

    def on_start(self, info):
        self._call("on_start", info)

    def on_metrics(self, step, epoch, metrics):
        self._call("on_metrics", step, epoch, metrics)

    def on_checkpoint(self, path, step, epoch):
        self._call("on_checkpoint", path, step, epoch)

    def on_checkpoint_removed(self, path):
        self._call("on_checkpoint_removed", path)

    def on_status(self, status, reason=None):
        self._call("on_status", status, reason)

    def on_log(self, message, level="info"):
        self._call("on_log", message, level)

    def on_activity(self, text):
        self._call("on_activity", text)

    def on_end(self, result):
        self._call("on_end", result)
