"""Several objectives on one backbone: the Trainer sees one Method whose loss is the weighted
sum of its objectives' losses.

A combination is named by its objectives joined with "+" ("simclr+mae"). Its config is flat, so
the form and the flags are generated from it as for any method: each objective's settings under
its name ("simclr_temperature", "mae_mask_ratio") and its weight ("simclr_weight"). Each
objective keeps its own heads, views and momentum targets; a view spec several objectives ask
for is made once. A single method is one objective and needs none of this.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Sequence

import torch
from torch import nn

from studio.engine.data.views import ViewSpec
from studio.engine.errors import ConfigError
from studio.engine.methods.base import Method, StepState, build_config, config_fields, option

SEPARATOR = "+"  # between the objectives of a combination's name
WEIGHT = "weight"  # the setting "<objective>_weight"


def setting_name(objective: str, field: str) -> str:
    """The combined config's name for an objective's setting: ("simclr", "temperature") -> "simclr_temperature"."""
    return f"{objective}_{field}"


def _field_options(info, objective_title: str) -> dict[str, Any]:
    return dict(choices=info.choices, min=info.min, max=info.max, group=info.group,
                label=f"{objective_title} {info.label}", unit=info.unit, none=info.none)


def combined_config_class(parts: Sequence[type[Method]], weights: dict[str, float] | None = None,
                          defaults: dict[str, Any] | None = None) -> type:
    """A dataclass with every objective's weight and settings, each described as its own."""
    weights, defaults = weights or {}, defaults or {}
    specs = []
    for cls in parts:
        names = {f.name for f in cls.fields()}
        if WEIGHT in names:
            raise ValueError(f"{cls.name} has a setting called {WEIGHT!r}, which its objective's weight would shadow")
        weight = float(weights.get(cls.name, 1.0))
        specs.append((setting_name(cls.name, WEIGHT), float, option(
            weight, f"weight of {cls.title}'s loss in the total (default {weight:g})", min=0.0, max=1000.0,
            label=f"{cls.title} weight")))
        for info in cls.fields():
            name = setting_name(cls.name, info.name)
            default = defaults.get(name, info.default)
            tp = {"int": int, "float": float, "bool": bool, "str": str}[info.type]
            specs.append((name, tp | None if info.optional else tp,
                          option(default, info.help, **_field_options(info, cls.title))))
    title = "".join(cls.__name__ for cls in parts)
    return dataclasses.make_dataclass(f"{title}Config", specs)


class Combined(Method):
    """The weighted sum of `parts` (Method classes) on one backbone. Subclasses are made by
    `combined_class`; a named recipe is one with its own defaults and optimiser."""

    parts: tuple[type[Method], ...] = ()
    family = "combined"

    def __init__(self, backbone, config, world_size: int = 1):
        super().__init__(backbone, config, world_size)
        self.objectives = nn.ModuleDict({cls.name: cls(backbone, self.objective_config(cls, config), world_size)
                                         for cls in self.parts})
        # One objective may reinitialise the shared ViT as it is built (MAE's initialisation): the
        # momentum targets built before it start again from the weights training starts from.
        with torch.no_grad():
            for _, pairs in self.momentum_updates(StepState(0, 1)):
                for online, target in pairs:
                    target.load_state_dict(online.state_dict())
        self._view_index: dict[str, list[int]] = {}  # objective -> its views' places in view_specs

    @classmethod
    def objective_config(cls, part: type[Method], config) -> Any:
        values = {f.name: getattr(config, setting_name(part.name, f.name)) for f in part.fields()}
        return build_config(part.config_class, values)

    @classmethod
    def weights(cls, config) -> dict[str, float]:
        return {part.name: float(getattr(config, setting_name(part.name, WEIGHT))) for part in cls.parts}

    @classmethod
    def collapse_change(cls, config) -> dict[str, Any]:
        for part in cls.parts:
            change = part.collapse_change(cls.objective_config(part, config))
            if change:
                return {setting_name(part.name, k): v for k, v in change.items()}
        return {}

    @classmethod
    def sized_settings(cls, config, *, images: int, steps: int, batch: int):
        out = []
        for part in cls.parts:
            for name, value, why in part.sized_settings(cls.objective_config(part, config), images=images, steps=steps,
                                                        batch=batch):
                out.append((setting_name(part.name, name), value, f"{part.title}: {why}"))
        return out

    def view_specs(self, image_size: int) -> list[ViewSpec]:
        # The k-th use of a spec by one objective is the k-th use by another: two objectives that
        # both ask for two SimCLR views share both, and each view stays a separate draw.
        views: list[ViewSpec] = []
        keys: list[tuple[ViewSpec, int]] = []
        index: dict[str, list[int]] = {}
        for name, part in self.objectives.items():
            seen: dict[ViewSpec, int] = {}
            index[name] = []
            for spec in part.view_specs(image_size):
                key = (spec, seen.get(spec, 0))
                seen[spec] = key[1] + 1
                if key not in keys:
                    keys.append(key)
                    views.append(spec)
                index[name].append(keys.index(key))
        self._view_index = index
        return views

    def training_step(self, views, state: StepState):
        if not self._view_index:
            self.view_specs(int(self.backbone.image_size))
        weights = self.weights(self.config)
        total, out = None, {}
        for name, part in self.objectives.items():
            terms = part.training_step([views[i] for i in self._view_index[name]], state)
            loss = terms["loss"]
            out[f"loss/{name}"] = loss
            for key, value in terms.items():
                if key != "loss":
                    sub = key.split("/", 1)
                    out[f"loss/{name}/{sub[1]}" if sub[0] == "loss" and len(sub) == 2 else f"{name}/{key}"] = value
            total = weights[name] * loss if total is None else total + weights[name] * loss
        out["loss"] = total
        return out

    def momentum_pairs(self):
        return [pair for part in self.objectives.values() for pair in part.momentum_pairs()]

    def momentum_updates(self, state: StepState):
        # Each objective's targets follow its own schedule.
        return [group for part in self.objectives.values() for group in part.momentum_updates(state)]

    def momentum(self, state: StepState) -> float:
        updates = self.momentum_updates(state)
        return updates[0][0] if updates else super().momentum(state)

    def attach_data(self, data) -> None:
        for part in self.objectives.values():  # CLIP's captions, for a combination with it
            part.attach_data(data)

    def on_before_optimizer_step(self, state: StepState) -> None:
        for part in self.objectives.values():
            part.on_before_optimizer_step(state)

    def on_after_step(self, state: StepState) -> None:
        for part in self.objectives.values():
            part.on_after_step(state)

    def output(self, x: torch.Tensor) -> torch.Tensor:
        """The first objective's output: where its loss, and the collapse monitor, look."""
        return next(iter(self.objectives.values())).output(x)


def _advice(parts: Sequence[type[Method]]) -> str:
    """Each objective's collapse advice, its settings named as the combination names them."""
    out = []
    for part in parts:
        text = part.collapse_advice
        for info in sorted(part.fields(), key=lambda f: -len(f.name)):
            text = re.sub(rf"(?<![\w.]){re.escape(info.name)}\b", setting_name(part.name, info.name), text)
        out.append(f"{part.title}: {text}")
    return "; ".join(out)


def combined_class(parts: Sequence[type[Method]], *, weights: dict[str, float] | None = None,
                   defaults: dict[str, Any] | None = None, **attributes) -> type[Combined]:
    """The Method class of `parts` summed on one backbone; `attributes` override the derived
    class attributes (a recipe's title, summary, optimiser)."""
    parts = tuple(parts)
    names = [p.name for p in parts]
    if len(parts) < 2:
        raise ConfigError("a combination needs at least two objectives.", setting="method")
    if len(set(names)) != len(names):
        raise ConfigError(f"an objective can be combined only once: {SEPARATOR.join(names)}.", setting="method")
    nested = [p.name for p in parts if issubclass(p, Combined)]
    if nested:
        raise ConfigError(f"{', '.join(nested)} is itself a combination: list its objectives instead.", setting="method")
    kinds = tuple(k for k in ("cnn", "vit") if all(k in p.backbone_kinds for p in parts))
    if not kinds:
        raise ConfigError(f"{' and '.join(p.title for p in parts)} need different kinds of backbone.", setting="method")
    first = parts[0]
    vit_only = next((p for p in parts if p.backbone_kinds == ("vit",)), None)
    attrs: dict[str, Any] = dict(
        name=SEPARATOR.join(names), title=" + ".join(p.title for p in parts), combines=tuple(names),
        summary=(f"Sums the weighted losses of {', '.join(p.title for p in parts)} on one backbone; each keeps its own "
                 f"heads and views."),
        paper="; ".join(p.paper for p in parts), config_class=combined_config_class(parts, weights, defaults),
        backbone_kinds=kinds, vit_reason=vit_only.vit_reason if vit_only else "",
        # The first objective's optimiser (a recipe states its own).
        default_optimizer=first.default_optimizer, default_lr=first.default_lr,
        default_weight_decay=first.default_weight_decay, vit_optimizer=first.vit_optimizer,
        vit_optimizer_reason=first.vit_optimizer_reason,
        collapse_advice=_advice(parts), can_collapse=any(p.can_collapse for p in parts),
        former_defaults={setting_name(p.name, k): v for p in parts for k, v in p.former_defaults.items()},
        parts=parts,
    )
    class_name = attributes.pop("class_name", "".join(p.__name__ for p in parts))
    attrs.update(attributes)
    return type(class_name, (Combined,), attrs)


def objectives_setting(objectives: Sequence[tuple[str, float | None]], settings: dict[str, Any],
                       method: str | None = None) -> tuple[str, dict[str, Any]]:
    """(method, method settings) of a run given as objectives with optional weights (the CLI's
    `--objective METHOD[:WEIGHT]`) and settings named FIELD or METHOD.FIELD (`--set`); `method`,
    when also given, is the first objective. One objective without a weight is that method."""
    names = ([method.lower()] if method else []) + [n.lower() for n, _ in objectives]
    given = {n.lower(): w for n, w in objectives if w is not None}
    if not names:
        raise ConfigError("name a method or at least one objective.", setting="method")
    if len(names) == 1 and not given:
        return names[0], dotted_settings(names[0], settings)
    if len(names) == 1:
        raise ConfigError(f"a weight needs a second objective to weigh {names[0]} against.", setting="method")
    method = SEPARATOR.join(names)
    return method, {**{setting_name(n, WEIGHT): w for n, w in given.items()}, **dotted_settings(method, settings)}


def dotted_settings(method: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Settings named METHOD.FIELD as `method`'s config names them: the field itself when METHOD is
    the run's one method, else the combination's "<objective>_<field>"; other names unchanged."""
    out = {}
    for key, value in settings.items():
        objective, dot, field = key.partition(".")
        if not dot:
            out[key] = value
        elif objective.lower() == method.lower():
            out[field] = value
        else:
            out[setting_name(objective.lower(), field)] = value
    return out


def parse_objective(text: str) -> tuple[str, float | None]:
    """'mae:0.5' -> ('mae', 0.5); 'mae' -> ('mae', None)."""
    name, sep, weight = text.partition(":")
    if not name.strip():
        raise ConfigError(f"expected METHOD[:WEIGHT], got {text!r}.", setting="method")
    if not sep:
        return name.strip().lower(), None
    try:
        value = float(weight)
    except ValueError:
        raise ConfigError(f"the weight of {name.strip()} must be a number, not {weight!r}.", setting="method") from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"the weight of {name.strip()} must be a finite number of at least 0.", setting="method")
    return name.strip().lower(), value

