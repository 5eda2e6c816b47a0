"""A run's optimiser: which one, its learning rate and weight decay, and its parameter groups.

The one rule for the Trainer, the cost estimate and the New run form's hints. A method states
its paper's optimiser for the backbones the paper trained (`Method.optimizer_defaults`); a setting
the person gives wins; the learning rate is for a batch of 256 and scales linearly with the batch.
"""

from __future__ import annotations

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


# ViTs train with AdamW (MoCo v3, Chen, Xie, He 2021, who ran SimCLR, BYOL and SwAV on ViTs so;
# DINO; MAE): with the SGD or LARS of the ResNet papers they learn little in a short run. lr and
# weight decay as DINO's (5e-4 per 256 images, 0.04), which trains the studio's small ViTs well.
VIT_LR = 5e-4
VIT_WEIGHT_DECAY = 0.04
VIT_REASON = "AdamW for a ViT, as MoCo v3 and DINO train ViTs; the paper's {paper} is for ResNets"


# An optimiser's usual setting where a method's paper did not use it (lr for a batch of 256):
# SGD as SimCLR's and MoCo's CIFAR recipes, LARS as BYOL's, AdamW as DINO's ViT recipe.
USUAL = {
    "sgd": OptimizerChoice("sgd", 0.06, 5e-4),
    "lars": OptimizerChoice("lars", 0.2, 1.5e-6),
    "adamw": OptimizerChoice("adamw", VIT_LR, VIT_WEIGHT_DECAY),
}


def method_optimizer(method_cls, backbone_kind: str) -> OptimizerChoice:
    """The optimiser a method trains this kind of backbone with: its paper's (the class's
    default_optimizer, default_lr, default_weight_decay), except that a ViT gets AdamW where the
    paper's SGD or LARS was for ResNets."""
    own = OptimizerChoice(method_cls.default_optimizer, method_cls.default_lr, method_cls.default_weight_decay)
    if backbone_kind != "vit" or own.name == "adamw":
        return own
    return OptimizerChoice("adamw", VIT_LR, VIT_WEIGHT_DECAY, VIT_REASON.format(paper=own.name.upper()))


def resolve_optimizer(config, method_cls, backbone_kind: str, batch: int) -> tuple[str, float, float]:
    """(name, learning rate at this batch, weight decay) of a run: the person's settings where
    given, else the method's for the backbone; another optimiser than the method's brings its
    usual learning rate and weight decay (LARS's 0.2 would blow AdamW up)."""
    choice = method_optimizer(method_cls, backbone_kind)
    name = config.optimizer or choice.name
    if name != choice.name:
        choice = USUAL[name]
    lr = config.lr if config.lr is not None else choice.lr * batch / 256
    wd = config.weight_decay if config.weight_decay is not None else choice.weight_decay
    return name, lr, wd


def param_groups(model: torch.nn.Module, weight_decay: float):
    """No weight decay on biases and normalisation weights (as the papers' code)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(name: str, model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))
    if name == "lars":
        from lightly.utils.lars import LARS

        return LARS(groups, lr=lr, momentum=0.9)
    raise ConfigError(f"unknown optimizer {name!r}.")
