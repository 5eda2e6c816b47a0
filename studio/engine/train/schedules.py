"""Learning-rate schedule: linear warm-up then cosine decay to zero (SimCLR, BYOL, DINO, MAE)."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, final_fraction: float = 0.0) -> float:
    """Multiplier of the base learning rate at `step` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


WARMUP_MAX_SHARE = 0.1  # the warm-up is at most this share of the run


def warmup_steps(warmup_epochs: float, steps_per_epoch: int, total_steps: int) -> int:
    """The learning-rate warm-up in steps: `warmup_epochs` epochs, at most a tenth of the run (so a
    short run is not all warm-up). The Trainer and the New run form's hint use this one rule."""
    return int(min(warmup_epochs * steps_per_epoch, WARMUP_MAX_SHARE * total_steps))
