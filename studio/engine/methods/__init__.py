"""Every pretext method, one file each, listed in one explicit table (no import side effects)."""

from __future__ import annotations

import functools

from studio.engine.errors import ConfigError
from studio.engine.methods.base import FieldInfo, Method, StepState, build_config, config_fields
from studio.engine.methods.barlowtwins import BarlowTwins
from studio.engine.methods.byol import BYOL
from studio.engine.methods.clip import CLIP
from studio.engine.methods.combined import SEPARATOR, combined_class
from studio.engine.methods.dino import DINO
from studio.engine.methods.ibot import DINOv2, IBOT
from studio.engine.methods.ijepa import IJEPA
from studio.engine.methods.mae import MAE
from studio.engine.methods.moco import MoCo
from studio.engine.methods.mocov3 import MoCoV3
from studio.engine.methods.nnclr import NNCLR
from studio.engine.methods.simclr import SimCLR
from studio.engine.methods.simclr_mae import SimCLRMAE
from studio.engine.methods.simmim import SimMIM
from studio.engine.methods.simsiam import SimSiam
from studio.engine.methods.swav import SwAV
from studio.engine.methods.vicreg import VICReg

METHODS: dict[str, type[Method]] = {
    "simclr": SimCLR,
    "moco": MoCo,
    "mocov3": MoCoV3,
    "nnclr": NNCLR,
    "byol": BYOL,
    "simsiam": SimSiam,
    "dino": DINO,
    "swav": SwAV,
    "barlowtwins": BarlowTwins,
    "vicreg": VICReg,
    "mae": MAE,
    "simmim": SimMIM,
    "ijepa": IJEPA,
    "ibot": IBOT,
    "dinov2": DINOv2,
    "simclr+mae": SimCLRMAE,
    "clip": CLIP,
}

FAMILIES = ("contrastive", "self-distillation", "clustering", "redundancy-reduction", "masked-image-modelling",
            "combined")


def method_class(name: str) -> type[Method]:
    """The method named `name`, or the combination of the objectives a "+" joins ("simclr+byol")."""
    name = name.lower()
    if name in METHODS:
        return METHODS[name]
    if SEPARATOR in name:
        return _combination(name)
    raise ConfigError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}, or join several with "
                      f"{SEPARATOR!r} to combine them.", setting="method")


@functools.lru_cache(maxsize=None)
def _combination(name: str) -> type[Method]:
    return combined_class([method_class(part) for part in name.split(SEPARATOR)])


def find_method(name: str) -> type[Method] | None:
    """The method named `name` (a combination too), or None for a name the studio does not know."""
    try:
        return method_class(str(name))
    except ConfigError:
        return None


__all__ = ["FAMILIES", "METHODS", "FieldInfo", "Method", "StepState", "build_config", "config_fields", "find_method",
           "method_class"]
