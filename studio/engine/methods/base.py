"""What every pretext method shares: its config's fields, its backbone check, its momentum
schedule, and the contract the Trainer drives (solo-learn's base-method idea, smaller)."""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from studio.engine.backbones import Backbone
from studio.engine.data.views import ViewSpec
from studio.engine.errors import ConfigError
from studio.engine.settings import FieldInfo, build_config, config_fields, option, parse_value  # noqa: F401


@dataclass
class StepState:
    """Where training is, for schedules that depend on it (momentum, temperatures)."""

    step: int
    total_steps: int
    epoch: int = 0
    steps_per_epoch: int = 0  # 0: unknown (then schedules in epochs treat the run as one epoch)
    # The dataset indices of the step's images (the global batch), for methods that look up more
    # than pixels about them (CLIP's captions); None where a step has no dataset behind it.
    indices: torch.Tensor | None = None

    @property
    def progress(self) -> float:
        """0 at the first step, 1 at the last."""
        return min(1.0, self.step / max(1, self.total_steps - 1))

    def steps_in_epochs(self, epochs: float, max_fraction: float = 1.0) -> int:
        """`epochs` as a number of steps, at most `max_fraction` of the run (so a schedule stated in
        epochs still completes in a run shorter than it)."""
        per_epoch = self.steps_per_epoch or self.total_steps
        return int(min(epochs * per_epoch, max_fraction * self.total_steps))


def bank_for_dataset(size: int, images: int, batch: int) -> int | None:
    """A memory bank's size for `images` images: at most the images less a batch, as a power of
    two, so that no image's own older embedding is among the keys it is compared with (MoCo's
    65,536 keys are 5 % of ImageNet, NNCLR's 98,304 are 8 %); None when `size` fits already."""
    room = images - batch
    if size <= room or room < batch:
        return None
    p = batch
    while p * 2 <= room:
        p *= 2
    return p


def momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen copy of `module` for a momentum (EMA) target: same weights, no gradients."""
    from lightly.models.utils import deactivate_requires_grad

    target = copy.deepcopy(module)
    deactivate_requires_grad(target)
    return target


def linear_warmup(step: int, warmup_steps: int, start: float, end: float) -> float:
    """start at step 0, end from step `warmup_steps - 1` on, linear between (DINO's teacher temperature)."""
    if step >= warmup_steps - 1:
        return end
    return start + (end - start) * step / (warmup_steps - 1)


def cosine_schedule(progress: float, start: float, end: float) -> float:
    """start -> end along half a cosine (BYOL's momentum schedule, eq. in section 3.2)."""
    return end - (end - start) * (math.cos(math.pi * min(max(progress, 0.0), 1.0)) + 1) / 2


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """A loss's input in float32 at least: autocast's half precision is too coarse for softmaxes
    and squared errors, and float64 stays float64 (the distributed tests compare in it)."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


class Method(nn.Module):
    """A pretext method: heads + loss over views of the backbone's features.

    Subclasses set the class attributes and implement `view_specs` and `training_step`.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    family: ClassVar[str]  # one of methods.FAMILIES
    combines: ClassVar[tuple[str, ...]] = ()  # a "combined" recipe: the objectives it sums
    summary: ClassVar[str]  # one or two sentences: what it is, what it suits
    paper: ClassVar[str]
    config_class: ClassVar[type]
    backbone_kinds: ClassVar[tuple[str, ...]] = ("cnn", "vit")
    vit_reason: ClassVar[str] = ""  # why a ViT-only method needs one ("masks image patches")
    # Optimiser defaults; lr is for a batch of 256 and scales linearly with the batch.
    default_optimizer: ClassVar[str] = "sgd"
    default_lr: ClassVar[float] = 0.06
    default_weight_decay: ClassVar[float] = 5e-4
    # Where the paper's optimiser was measured to fail a ViT: (name, lr for a batch of 256 with
    # linear scaling, weight decay) and why (engine.train.optim.method_optimizer).
    vit_optimizer: ClassVar[tuple[str, float, float] | None] = None
    vit_optimizer_reason: ClassVar[str] = ""
    # The likely causes of a collapse for this method and the change to try, naming its settings:
    # the health monitor's warning ends with it (eval.health.collapse_verdict).
    collapse_advice: ClassVar[str] = ""
    # Whether a collapse is this method's failure at all (a masked model reconstructs pixels:
    # low spread there means "not distinct yet", and halving its learning rate is no remedy).
    can_collapse: ClassVar[bool] = True
    # A method with a text tower beside the image encoder (CLIP): it trains on captions and has
    # the image-text evaluations (zero-shot, image<->text retrieval).
    image_text: ClassVar[bool] = False
    # Settings whose default changed the model's shape, with their former default: a stored config
    # without the setting was written before the change and keeps the former value, so its
    # checkpoints still load; every config written since names it (TrainConfig.to_dict).
    former_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, backbone: Backbone, config: Any, world_size: int = 1):
        super().__init__()
        self.check_backbone(backbone.kind, backbone.name)
        self.backbone = backbone
        self.config = config
        self.world_size = world_size

    @classmethod
    def check_backbone(cls, kind: str, name: str = "") -> None:
        if kind in cls.backbone_kinds:
            return
        if cls.backbone_kinds == ("vit",):
            why = f" {cls.vit_reason}, so it" if cls.vit_reason else ""
            raise ConfigError(f"{cls.title}{why} needs a ViT backbone (vit_tiny, vit_small or vit_base); "
                              f"{name or 'this backbone'} is a CNN. Choose a ViT, or a method that suits CNNs "
                              f"such as SimCLR, BYOL or DINO.")
        wanted = " or ".join("a ViT" if k == "vit" else "a CNN" for k in cls.backbone_kinds)
        raise ConfigError(f"{cls.title} needs {wanted} backbone; {name or kind} is a {kind.upper()}.")

    @classmethod
    def collapse_change(cls, config: Any) -> dict[str, Any]:
        """The method settings to change after a collapse: the first remedy of `collapse_advice`
        that `config` (the method's built config) does not already have, as {field: value}.
        {} leaves the remedy to the learning rate (engine.train.remedy halves it)."""
        return {}

    @classmethod
    def sized_settings(cls, config: Any, *, images: int, steps: int, batch: int) -> list[tuple[str, Any, str]]:
        """Method settings for a run of `steps` steps of `batch` over `images` images, within what
        the paper allows: (field, value, why) for each that should differ from `config` (the
        method's built config). The budget applies them to the settings the person left alone
        (services.budget)."""
        return []

    @classmethod
    def fields(cls) -> list[FieldInfo]:
        return config_fields(cls.config_class)

    def attach_data(self, data: Any) -> None:
        """Hook called with the run's DecodedImages before training, for what a method needs of the
        dataset beyond the pixels of a step (CLIP tokenises the captions here); raises ConfigError
        when the dataset lacks it."""

    def view_specs(self, image_size: int) -> list[ViewSpec]:
        raise NotImplementedError

    def training_step(self, views: list[torch.Tensor], state: StepState) -> dict[str, torch.Tensor]:
        """Return {'loss': scalar tensor, ...}; other entries are logged as metrics."""
        raise NotImplementedError

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, target) modules whose target is an EMA of the online one; the Trainer updates."""
        return []

    def momentum_updates(self, state: StepState) -> list[tuple[float, list[tuple[nn.Module, nn.Module]]]]:
        """(momentum, pairs) groups the Trainer applies after each step: this method's schedule for
        its pairs (a combination gives one group per objective)."""
        pairs = self.momentum_pairs()
        return [(self.momentum(state), pairs)] if pairs else []

    def momentum(self, state: StepState) -> float:
        base = float(getattr(self.config, "momentum", 0.99))
        end = float(getattr(self.config, "momentum_end", 1.0))
        return cosine_schedule(state.progress, base, end)

    def on_before_optimizer_step(self, state: StepState) -> None:
        """Hook between backward and the optimiser step, to edit gradients (DINO's last-layer freeze)."""

    def on_after_step(self, state: StepState) -> None:
        """Hook for per-step bookkeeping outside autograd (e.g. DINO's last-layer freeze)."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def output(self, x: torch.Tensor) -> torch.Tensor:
        """The method's output where its loss is computed: the projection head's (SimSiam's z, on
        which its collapse monitor looks, section 4.1; collapse shows there first), or the backbone's
        feature for a method without one (MAE)."""
        head = getattr(self, "projection_head", None)
        return self.backbone(x) if head is None else head(self.backbone(x))

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "name": cls.name,
            "title": cls.title,
            "family": cls.family,
            "summary": cls.summary,
            "paper": cls.paper,
            "combines": list(cls.combines),
            "backbones": list(cls.backbone_kinds),
            "optimizer": cls.default_optimizer,
            "lr": cls.default_lr,
            "weight_decay": cls.default_weight_decay,
            "fields": [f.to_json() for f in cls.fields()],
        }
