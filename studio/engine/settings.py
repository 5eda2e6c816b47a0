"""Settings that describe themselves: a dataclass field with its default, help, bounds, group
and label, from which the GUI form, the CLI's options and validation are all generated.

Method configs (`SimCLRConfig`, ...) and the run's `TrainConfig` are both built from `option`,
so a bound or a help text is written once, beside the field (DESIGN.md rule 8). Messages here
speak of settings by their label ("the batch size"), never of command-line flags: a front door
maps `ConfigError.setting` to its own words.

Pure Python: no torch, so the store-free CLI parser and the GUI can import it cheaply.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from studio.engine.errors import ConfigError

GROUPS = ("basic", "advanced", "structure")  # structure: set by dedicated controls (method, backbone, ...)


def default_label(name: str) -> str:
    """How a setting without a label of its own is called: its name in words ("num_layers" ->
    "number of layers", "hidden_dim" -> "hidden dim")."""
    words = name.replace("_", " ")
    return "number of " + words[4:] if words.startswith("num ") else words


def option(default: Any, help: str, *, choices: tuple | None = None, min: float | None = None,
           max: float | None = None, group: str = "basic", label: str | None = None, flag: str | None = None,
           none: str | None = None, unit: str = ""):
    """A config field with its default (from the paper), a one-line help text and its bounds.

    `group` places it in the form (basic, or folded away under advanced); `label` is how
    people call it ("batch size"); `flag` overrides the CLI option's name; `none`, for a field
    that may be None, says what None means ("the method's", "auto"); `unit` follows the value.
    """
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}")
    meta = {"help": help, "choices": choices, "min": min, "max": max, "group": group, "label": label,
            "flag": flag, "none": none, "unit": unit}
    if isinstance(default, (list, dict, tuple)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class FieldInfo:
    name: str
    type: str  # "int" | "float" | "bool" | "str" | "dict"
    default: Any
    help: str
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    group: str = "basic"
    label: str = ""
    flag: str = ""
    optional: bool = False  # None is a value: `none` says what it means
    none: str | None = None
    unit: str = ""

    @property
    def title(self) -> str:
        """The label with a capital, for a form row ("Batch size")."""
        return self.label[:1].upper() + self.label[1:]

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["choices"] = list(self.choices) if self.choices else None
        return d


def _type_name(tp: Any) -> tuple[str, bool]:
    """(type name, whether None is allowed)."""
    if isinstance(tp, str):
        text = tp.replace(" ", "")
        optional = "None" in text.split("|") or text.startswith("Optional[")
        for name in ("bool", "int", "float", "str"):
            if text == name or text.startswith(name + "|") or text.endswith("|" + name):
                return name, optional
        return ("dict", optional) if text.startswith("dict") else ("str", optional)
    for name, py in (("bool", bool), ("int", int), ("float", float), ("str", str), ("dict", dict)):
        if tp is py or typing.get_origin(tp) is py:
            return name, False
    args = typing.get_args(tp)
    real = [a for a in args if a is not type(None)]
    if real:
        return _type_name(real[0])[0], len(real) < len(args)
    return "str", False


def config_fields(config_class: type) -> list[FieldInfo]:
    hints = typing.get_type_hints(config_class)
    out = []
    for f in dataclasses.fields(config_class):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        meta = f.metadata or {}
        type_name, optional = _type_name(hints.get(f.name, f.type))
        out.append(FieldInfo(
            f.name, type_name, default, meta.get("help", ""), meta.get("choices"), meta.get("min"), meta.get("max"),
            group=meta.get("group", "basic"), label=meta.get("label") or default_label(f.name),
            flag=meta.get("flag") or "--" + f.name.replace("_", "-"), optional=optional, none=meta.get("none"),
            unit=meta.get("unit", ""),
        ))
    return out


def field_info(config_class: type, name: str) -> FieldInfo:
    for info in config_fields(config_class):
        if info.name == name:
            return info
    raise KeyError(name)


_NONE_WORDS = ("", "none", "auto", "default")


def parse_value(info: FieldInfo, value: Any) -> Any:
    """A value from the CLI (text) or the GUI (typed) as the field's type, within its bounds."""
    what = f"the {info.label}"
    if info.optional and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS)):
        return None
    if value is None:
        raise ConfigError(f"{what} must be set.", setting=info.name)
    try:
        if info.type == "bool":
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(value)
                value = low in ("1", "true", "yes", "on")
            elif isinstance(value, (bool, int)) and value in (0, 1):
                value = bool(value)
            else:
                raise ValueError(value)
        elif info.type == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            if isinstance(value, str):
                value = value.strip()
            value = int(value)
        elif info.type == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(value)
        elif info.type == "dict":
            if not isinstance(value, dict):
                raise ValueError(value)
            value = dict(value)
        else:
            value = str(value)
    except (TypeError, ValueError, OverflowError):
        kind = {"int": "a whole number", "float": "a finite number", "bool": "true or false",
                "dict": "a set of NAME=VALUE pairs"}.get(info.type, "text")
        raise ConfigError(f"{what} must be {kind}, not {value!r}.", setting=info.name) from None
    if info.choices and value not in info.choices:
        raise ConfigError(f"{what} must be one of {', '.join(map(str, info.choices))}, not {value!r}.", setting=info.name)
    if info.min is not None and value < info.min:
        raise ConfigError(f"{what} must be at least {info.min:g}, not {value:g}.", setting=info.name)
    if info.max is not None and value > info.max:
        raise ConfigError(f"{what} must be at most {info.max:g}, not {value:g}.", setting=info.name)
    return value


def build_config(config_class: type, values: dict[str, Any] | None = None):
    """The config with `values` (text or typed) over the defaults; unknown names refused."""
    infos = {i.name: i for i in config_fields(config_class)}
    kwargs = {}
    for name, value in (values or {}).items():
        if name not in infos:
            known = ", ".join(infos) or "none"
            raise ConfigError(f"{config_class.__name__} has no field {name!r} (fields: {known}).", setting=name)
        kwargs[name] = parse_value(infos[name], value)
    return config_class(**kwargs)


def check_fields(config: Any) -> None:
    """Every field of a built config within its description (type, choices, bounds)."""
    for info in config_fields(type(config)):
        parse_value(info, getattr(config, info.name))


def non_default_fields(config: Any) -> dict[str, Any]:
    """The fields of `config` that differ from their defaults (what a person changed)."""
    return {i.name: getattr(config, i.name) for i in config_fields(type(config)) if getattr(config, i.name) != i.default}
