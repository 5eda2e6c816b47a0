"""A run's optimiser: which one, its learning rate and weight decay, and its parameter groups.

The one rule for the Trainer, the cost estimate and the New run form's hints. A method states
its paper's optimiser (default_optimizer, default_lr for a batch of 256, default_weight_decay), a
ViT gets AdamW where that was LARS (below), and a setting the person gives wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from studio.engine.errors import ConfigError


@dataclass(frozen=True)
class OptimizerChoice:
    """A method's optimiser for one kind of backbone, and why."""

    name: str  # sgd | adamw | lars
    lr: float  # for a batch of 256
    weight_decay: float
    reason: str = ""  # "" for the paper's own setting; else why it differs (shown in the form)
    scaling: str = "linear"  # how lr follows the batch: "linear" (lr x batch/256) or "sqrt"

    def lr_at(self, batch: int) -> float:
        """The learning rate for a batch of `batch` images."""
        ratio = batch / 256
        return self.lr * (math.sqrt(ratio) if self.scaling == "sqrt" else ratio)

    def describe_lr(self) -> str:
        """The rule in words, for the form: '0.06 × batch/256' or '0.001 × √(batch/256)'."""
        return f"{self.lr:g} × " + ("√(batch/256)" if self.scaling == "sqrt" else "batch/256")


# ViTs train with AdamW (MoCo v3, Chen, Xie, He 2021, who ran BYOL and SwAV on ViTs so; DINO;
# MAE), not with LARS, the large-batch optimiser of the ResNet papers, whose layer-wise trust
# ratio leaves a ViT little learnt in a short run. Adam's learning rate follows the square root of
# the batch (Malladi et al. 2022, "On the SDEs and Scaling Rules for Adaptive Gradient
# Algorithms"): 1e-3 per 256 is 5e-4 at 64, 2e-3 at 1024. Measured on the sample (bench/quality.py,
# 2-layer ViT-Tiny, 16 px, 300 steps of 64, seed 0): BYOL's kNN top-1 0.308 with LARS (under the
# untrained ViT's 0.353), 0.458 with AdamW 1.25e-4 (DINO's linear 5e-4 per 256), 0.500 with 5e-4.
# Methods whose paper trains with SGD keep it: SimCLR scored 0.614 with SGD, 0.511 with AdamW.
VIT_LR = 1e-3
VIT_WEIGHT_DECAY = 0.04
VIT_REASON = "AdamW for a ViT, as MoCo v3 and DINO train ViTs; the paper's LARS is for ResNets"


# An optimiser's usual setting where a method's paper did not use it (lr for a batch of 256):
# SGD as SimCLR's and MoCo's CIFAR recipes, LARS as BYOL's, AdamW as DINO's ViT recipe.
USUAL = {
    "sgd": OptimizerChoice("sgd", 0.06, 5e-4),
    "lars": OptimizerChoice("lars", 0.2, 1.5e-6),
    "adamw": OptimizerChoice("adamw", 5e-4, 0.04),
}


def method_optimizer(method_cls, backbone_kind: str) -> OptimizerChoice:
    """The optimiser a method trains this kind of backbone with: its paper's (the class's
    default_optimizer, default_lr, default_weight_decay), except on a ViT: the method's measured
    `vit_optimizer` where it has one, else AdamW where the paper's LARS was for ResNets."""
    own = OptimizerChoice(method_cls.default_optimizer, method_cls.default_lr, method_cls.default_weight_decay)
    measured = getattr(method_cls, "vit_optimizer", None)
    if backbone_kind == "vit" and measured:
        name, lr, wd = measured
        return OptimizerChoice(name, lr, wd, method_cls.vit_optimizer_reason)
    if backbone_kind != "vit" or own.name != "lars":
        return own
    return OptimizerChoice("adamw", VIT_LR, VIT_WEIGHT_DECAY, VIT_REASON, scaling="sqrt")


def resolve_optimizer(config, method_cls, backbone_kind: str, batch: int) -> tuple[str, float, float]:
    """(name, learning rate at this batch, weight decay) of a run: the person's settings where
    given, else the method's for the backbone; another optimiser than the method's brings its
    usual learning rate and weight decay (LARS's 0.2 would blow AdamW up)."""
    choice = method_optimizer(method_cls, backbone_kind)
    name = config.optimizer or choice.name
    if name != choice.name:
        choice = USUAL[name]
    lr = config.lr if config.lr is not None else choice.lr_at(batch)
    wd = config.weight_decay if config.weight_decay is not None else choice.weight_decay
    return name, lr, wd


def param_groups(model: torch.nn.Module, weight_decay: float):
    """No weight decay on biases and normalisation weights (as the papers' code). A parameter
    with an `lr_scale` attribute (LiT's image tower, unlocked) goes in a group of its own whose
    "lr_scale" the optimiser's learning rate is multiplied by; the run's own groups come first."""
    decay, no_decay = [], []
    scaled: dict[tuple[float, bool], list] = {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        scale = float(getattr(p, "lr_scale", 1.0))
        if scale != 1.0:
            scaled.setdefault((scale, p.ndim <= 1), []).append(p)
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    for (scale, bare), params in sorted(scaled.items(), key=lambda kv: (-kv[0][0], kv[0][1])):
        groups.append({"params": params, "weight_decay": 0.0 if bare else weight_decay, "lr_scale": scale})
    return groups


def build_optimizer(name: str, model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay)
    for group in groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))
    if name == "lars":
        from lightly.utils.lars import LARS

        return LARS(groups, lr=lr, momentum=0.9)
    raise ConfigError(f"unknown optimizer {name!r}.")
