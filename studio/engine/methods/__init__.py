"""Every pretext method, one file each, listed in one explicit table (no import side effects)."""

from __future__ import annotations

from studio.engine.errors import ConfigError
from studio.engine.methods.base import FieldInfo, Method, StepState, build_config, config_fields
from studio.engine.methods.simclr import SimCLR

METHODS: dict[str, type[Method]] = {
    "simclr": SimCLR,
}

FAMILIES = ("contrastive", "self-distillation", "redundancy-reduction", "masked-image-modelling")


def method_class(name: str) -> type[Method]:
    try:
        return METHODS[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}.") from None


__all__ = ["FAMILIES", "METHODS", "FieldInfo", "Method", "StepState", "build_config", "config_fields", "method_class"]
