"""What to change when a run collapses, as settings a continued run can take.

The health monitor says a run is collapsing and the method's `collapse_advice` says why in words;
this turns the advice's first remedy into settings: the method's own (`Method.collapse_change`,
e.g. DINO's teacher_temp 0.07 -> 0.04), else half the learning rate the run trains with. Every
change keeps the model's shape, so the run can continue from a checkpoint written before the
collapse with its optimiser state (services.branch).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from studio.engine.train.config import TrainConfig

# The share of the learning rate a collapsed run continues with when its method names no
# setting of its own (the papers' first remedy for a collapse: a gentler step).
LR_FACTOR = 0.5


@dataclass(frozen=True)
class Remedy:
    """Settings to change, how they read ("teacher_temp 0.07 → 0.04"), and the config with them."""

    changes: dict[str, Any]  # TrainConfig fields; method settings under "method_config" (merged)
    text: str
    config: TrainConfig


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def collapse_remedy(config: TrainConfig) -> Remedy | None:
    """The change to try after `config`'s run collapsed; None for a method that does not
    collapse in this sense (masked image models)."""
    from studio.engine.backbones import backbone_spec
    from studio.engine.methods import build_config, method_class
    from studio.engine.train.optim import resolve_optimizer

    cls = method_class(config.method)
    if not cls.can_collapse:
        return None
    built = build_config(cls.config_class, config.method_config)
    own = cls.collapse_change(built)
    if own:
        text = ", ".join(f"{k} {_fmt(getattr(built, k))} → {_fmt(v)}" for k, v in own.items())
        merged = {**config.method_config, **own}
        return Remedy({"method_config": merged}, text, dataclasses.replace(config, method_config=merged))
    _, lr, _ = resolve_optimizer(config, cls, backbone_spec(config.backbone).kind, config.batch_size)
    new = float(f"{lr * LR_FACTOR:.3g}")
    return Remedy({"lr": new}, f"learning rate {_fmt(lr)} → {_fmt(new)}", dataclasses.replace(config, lr=new))
