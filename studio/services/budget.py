"""A run sized to the time a person has: from a budget ("about 5 minutes", "about an hour",
"overnight" or the paper's schedule), the batch size, image size and length are chosen for the
device and the dataset from a quick measured estimate, each with the reason it was chosen. A
setting the person chose is kept (`keep`). One rule for the GUI's New run page and `train --budget`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Iterable

from studio.engine.device import resolve_device
from studio.engine.train import TrainConfig
from studio.engine.train.config import DEFAULT_EPOCHS

# name -> (what a person reads, seconds; None: the paper's schedule, nothing is shortened)
BUDGETS: dict[str, tuple[str, float | None]] = {
    "5m": ("about 5 minutes", 5 * 60.0),
    "1h": ("about an hour", 3600.0),
    "8h": ("overnight (about 8 hours)", 8 * 3600.0),
    "paper": ("the paper's schedule", None),
}
# The batch each kind of device trains fastest per image at, before memory runs out (a CPU's
# step time grows with the batch while its throughput does not; GPUs want the papers' 256).
DEVICE_BATCH = {"cpu": 64, "mps": 128, "cuda": 256}
DEVICE_BATCH_REASON = {"cpu": "a CPU's step time grows with the batch, so a small one gives more steps",
                       "mps": "what Apple GPUs take without running out of shared memory",
                       "cuda": "the papers' batch, which a GPU runs at full speed"}
# On a CPU larger views cost time quadratically and small datasets rarely need them.
CPU_MAX_IMAGE_SIZE = 32
# The share of the budget for training steps; the rest goes to monitors, checkpoints and start-up.
TRAIN_SHARE = 0.8
MIN_STEPS = 20
SIZED = ("batch_size", "image_size", "epochs", "steps")


@dataclass(frozen=True)
class SizedConfig:
    """The config for the budget and why each sized setting is what it is."""

    config: TrainConfig
    budget: str
    reasons: tuple[str, ...]
    seconds_per_step: float | None = None

    def summary(self) -> str:
        return "; ".join(self.reasons)


def budget_seconds(budget: str) -> float | None:
    try:
        return BUDGETS[budget][1]
    except KeyError:
        from studio.engine.errors import ConfigError

        raise ConfigError(f"unknown budget {budget!r}; choose one of: {', '.join(BUDGETS)}.", setting="budget") from None


def _power_of_two_at_most(n: int) -> int:
    p = 1
    while p * 2 <= n:
        p *= 2
    return p


def size_method(config: TrainConfig, images: int, resize: Iterable[str] = ()) -> tuple[TrainConfig, list[str]]:
    """`config` with the method's settings for its length and `images` (Method.sized_settings)
    and why; a method setting in config.method_config is the person's and stays, unless named
    in `resize` (one the last sizing chose, which the person left alone)."""
    from studio.engine.methods import build_config, method_class
    from studio.engine.train.trainer import plan_steps

    cls = method_class(config.method)
    resize = set(resize)
    own = {k for k in config.method_config if k not in resize}
    batch, _, total = plan_steps(config, images)
    built = build_config(cls.config_class, {k: v for k, v in config.method_config.items() if k in own})
    changes, reasons = {}, []
    for name, value, why in cls.sized_settings(built, images=images, steps=total, batch=batch):
        if name not in own:
            changes[name] = value
            reasons.append(why)
    if not changes and not (resize & set(config.method_config)):
        return config, []
    kept = {k: v for k, v in config.method_config.items() if k in own}
    return dataclasses.replace(config, method_config={**kept, **changes}), reasons


def size_for_budget(config: TrainConfig, images, budget: str, *, keep: Iterable[str] = (),
                    measure: Callable | None = None, cancelled: Callable[[], bool] | None = None,
                    resize: Iterable[str] = ()) -> SizedConfig:
    """`config` with batch size, image size and length chosen for `budget` on its device and
    `images` (a DecodedImages or an array of them); names in `keep` are the person's and stay.
    The method's own settings follow the length and the data (`size_method`; `resize` as there).

    The length comes from `measure(config, images, steps=..., cancelled=...)` (the cost estimate:
    a few real training steps); it may raise EstimateCancelled."""
    seconds = budget_seconds(budget)
    keep = set(keep)
    n = len(getattr(images, "images", images))
    device = resolve_device(config.device, config.amp)
    kind = device.device.type
    reasons: list[str] = []
    changes: dict = {}
    if seconds is None:
        if not {"epochs", "steps"} & keep:
            changes.update(epochs=None, steps=None)
            reasons.append(f"{DEFAULT_EPOCHS} epochs: the papers' schedule length")
        return SizedConfig(dataclasses.replace(config, **changes), budget, tuple(reasons))
    if "batch_size" not in keep:
        batch = DEVICE_BATCH.get(kind, 64)
        # At least four steps an epoch, so an epoch is not one batch of the whole set.
        batch = max(8, min(batch, _power_of_two_at_most(max(8, n // 4))))
        changes["batch_size"] = batch
        why = DEVICE_BATCH_REASON.get(kind, "") if batch == DEVICE_BATCH.get(kind, 64) \
            else f"a quarter of the {n:,} images at most, so an epoch has several steps"
        reasons.append(f"batch {batch}: {why}")
    if "image_size" not in keep and kind == "cpu" and config.image_size > CPU_MAX_IMAGE_SIZE:
        changes["image_size"] = CPU_MAX_IMAGE_SIZE
        reasons.append(f"image size {CPU_MAX_IMAGE_SIZE}: larger views cost a CPU time faster than they teach")
    sized = dataclasses.replace(config, **changes)
    if {"epochs", "steps"} & keep:
        sized, why = size_method(sized, n, resize)
        return SizedConfig(sized, budget, tuple(reasons + why))
    if measure is None:
        from studio.services.estimate import estimate_cost as measure
    est = measure(dataclasses.replace(sized, steps=MIN_STEPS, epochs=None), images, steps=3, cancelled=cancelled)
    per_step = max(est.seconds_per_step, 1e-6)
    per_epoch = max(1, est.steps_per_epoch)
    steps = max(MIN_STEPS, int(seconds * TRAIN_SHARE / per_step))
    label = BUDGETS[budget][0]
    measured = f"{per_step:.2g} s a step measured on {est.device_name}"
    if steps >= DEFAULT_EPOCHS * per_epoch:
        sized = dataclasses.replace(sized, epochs=DEFAULT_EPOCHS, steps=None)
        reasons.append(f"{DEFAULT_EPOCHS} epochs: the papers' length fits in {label} ({measured})")
    elif steps >= 3 * per_epoch:
        epochs = steps // per_epoch
        sized = dataclasses.replace(sized, epochs=epochs, steps=None)
        reasons.append(f"{epochs} epochs of {per_epoch} steps: {label} at {measured}")
    else:
        sized = dataclasses.replace(sized, epochs=None, steps=steps)
        reasons.append(f"{steps} steps: {label} at {measured}")
    sized, why = size_method(sized, n, resize)
    return SizedConfig(sized, budget, tuple(reasons + why), per_step)


def size_for_dataset(project_root, dataset: str | int, config: TrainConfig, budget: str, *, keep: Iterable[str] = (),
                     cancelled: Callable[[], bool] | None = None, resize: Iterable[str] = ()) -> SizedConfig:
    """`size_for_budget` on a project's dataset, with a Project of its own (for worker threads)."""
    from pathlib import Path

    from studio.services.datasets import load_images
    from studio.services.estimate import EstimateCancelled
    from studio.store import Project

    def loading(done: int, total: int) -> None:
        if cancelled is not None and cancelled():
            raise EstimateCancelled("the sizing was cancelled.")

    if budget_seconds(budget) is None:
        return size_for_budget(config, [None, None], budget, keep=keep)
    with Project.open(Path(project_root)) as project:
        images = load_images(project, project.dataset(dataset), min(config.image_size, CPU_MAX_IMAGE_SIZE), loading)
    return size_for_budget(config, images, budget, keep=keep, cancelled=cancelled, resize=resize)
