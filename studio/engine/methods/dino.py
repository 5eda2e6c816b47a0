"""DINO: Caron, Touvron, Misra, Jégou, Mairal, Bojanowski, Joulin. "Emerging Properties in
Self-Supervised Vision Transformers", ICCV 2021."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad

from studio.engine.data.views import ViewSpec, dino_views, local_crop_size
from studio.engine.methods.base import Method, StepState, full_precision, linear_warmup, momentum_copy, option


@dataclass
class DINOConfig:
    output_dim: int = option(4096, "prototypes K of the head's last layer (paper: 65536 on ImageNet; 4096 for small sets)", min=2, max=262_144)
    hidden_dim: int = option(2048, "hidden width of the head's 3-layer MLP (paper: 2048)", min=1, max=65_536)
    bottleneck_dim: int = option(256, "bottleneck before the weight-normalised last layer (paper: 256)", min=1, max=65_536)
    norm_last_layer: bool = option(True, "keep the last layer's weight norm fixed (paper: on; off is better but less stable)")
    head_batch_norm: bool = option(True, "batch norm in the head's MLP (the paper's use_bn_in_head; its ViTs: off). On: without it a short run's head gave every image one output (collapse by step 22 of 300 on a small ViT, bench/quality.py)")
    freeze_last_layer_epochs: float = option(1.0, "epochs the last layer stays frozen at the start (paper: 1; at most a tenth of the run)", min=0.0, max=10_000.0)
    student_temp: float = option(0.1, "student softmax temperature (paper: 0.1)", min=1e-3, max=10.0)
    warmup_teacher_temp: float = option(0.04, "teacher temperature at the first step (paper: 0.04)", min=1e-3, max=10.0)
    teacher_temp: float = option(0.07, "teacher temperature after the warm-up (paper: 0.04-0.07)", min=1e-3, max=10.0)
    warmup_teacher_temp_epochs: float = option(30.0, "epochs of linear teacher-temperature warm-up (paper: 30; at most the run)", min=0.0, max=10_000.0)
    center_momentum: float = option(0.9, "EMA rate of the centre subtracted from the teacher's output (paper: 0.9)", min=0.0, max=1.0)
    momentum: float = option(0.996, "teacher EMA momentum at the start (paper: 0.996)", min=0.0, max=1.0)
    momentum_end: float = option(1.0, "momentum at the last step, reached along a cosine (paper: 1)", min=0.0, max=1.0)
    local_crops: int = option(6, "small local crops per image, seen by the student only (paper: 6-10)", min=0, max=16)
    global_crop_min_scale: float = option(0.4, "smallest area fraction of a global crop (paper: 0.4)", min=0.01, max=1.0)
    local_crop_min_scale: float = option(0.05, "smallest area fraction of a local crop (paper: 0.05)", min=0.01, max=1.0)
    local_crop_max_scale: float = option(0.4, "largest area fraction of a local crop (paper: 0.4)", min=0.01, max=1.0)
    local_crop_size: int = option(0, "side of a local crop in px; 0 means 96/224 of the image size", min=0, max=1024)


def dino_loss(teacher_out: list[torch.Tensor], student_out: list[torch.Tensor], center: torch.Tensor,
              teacher_temp: float, student_temp: float) -> torch.Tensor:
    """DINO eq. 1 over crops (section 3.1): with P_t = softmax((g_t(x) - c) / tau_t) on the global
    crops and P_s = softmax(g_s(x') / tau_s) on every crop,
    L = mean over pairs (global t, crop s), s != t, of H(P_t, P_s) = -sum_k P_t,k log P_s,k.

    Computed by lightly's DINOLoss (which then moves the centre c, as the paper's EMA); this
    function names it for readers and tests and leaves `center` unchanged.
    """
    loss = DINOLoss(output_dim=center.shape[-1], student_temp=student_temp)
    loss.center.copy_(center.reshape(loss.center.shape))
    return loss(teacher_out, student_out, teacher_temp=teacher_temp)


class DINO(Method):
    name = "dino"
    title = "DINO"
    family = "self-distillation"
    summary = ("A student matches a momentum teacher's sharpened, centred output across global and "
               "local crops. Gives the strongest kNN and attention maps, especially with ViTs.")
    paper = "Caron et al., Emerging Properties in Self-Supervised Vision Transformers, ICCV 2021"
    config_class = DINOConfig
    # Paper (ViT): AdamW, lr 0.0005 x batch/256, weight decay 0.04 (cosine to 0.4 in the paper).
    default_optimizer = "adamw"
    default_lr = 5e-4
    default_weight_decay = 0.04
    former_defaults = {"head_batch_norm": False}  # runs stored before 2026-12-04 had no batch norm in the head
    collapse_advice = ("lower teacher_temp (0.04 sharpens the teacher's targets) if all outputs go uniform, lower "
                       "center_momentum (faster centring) if one dimension wins every image, and lower the learning rate")

    @classmethod
    def collapse_change(cls, config) -> dict:
        if config.teacher_temp > 0.04:
            return {"teacher_temp": 0.04}
        if config.center_momentum > 0.5:
            return {"center_momentum": 0.5}
        return {}

    def __init__(self, backbone, config: DINOConfig, world_size: int = 1):
        super().__init__(backbone, config, world_size)
        self.projection_head = self._head()
        self.teacher_backbone = momentum_copy(backbone)
        # A new head loaded with the student's weights: a weight-normalised layer cannot be deep-copied.
        self.teacher_head = self._head()
        self.teacher_head.load_state_dict(self.projection_head.state_dict())
        deactivate_requires_grad(self.teacher_head)
        self.criterion = DINOLoss(
            output_dim=config.output_dim, warmup_teacher_temp=config.warmup_teacher_temp,
            teacher_temp=config.teacher_temp, student_temp=config.student_temp,
            center_momentum=config.center_momentum,
        )

    def _head(self) -> DINOProjectionHead:
        c = self.config
        return DINOProjectionHead(self.backbone.feature_dim, c.hidden_dim, c.bottleneck_dim, c.output_dim,
                                  batch_norm=c.head_batch_norm, norm_last_layer=c.norm_last_layer)

    def view_specs(self, image_size: int) -> list[ViewSpec]:
        c = self.config
        # A ViT's local crops must tile into whole patches.
        multiple = int(getattr(self.backbone.model, "patch_size", 4)) if self.backbone.kind == "vit" else 4
        local = c.local_crop_size or local_crop_size(image_size, multiple)
        return dino_views(image_size, local_crops=c.local_crops, local_size=local,
                          global_scale=(c.global_crop_min_scale, 1.0),
                          local_scale=(c.local_crop_min_scale, max(c.local_crop_min_scale, c.local_crop_max_scale)))

    def momentum_pairs(self):
        return [(self.backbone, self.teacher_backbone), (self.projection_head, self.teacher_head)]

    def teacher_temperature(self, state: StepState) -> float:
        warmup = state.steps_in_epochs(self.config.warmup_teacher_temp_epochs)
        return linear_warmup(state.step, warmup, self.config.warmup_teacher_temp, self.config.teacher_temp)

    def training_step(self, views, state: StepState):
        globals_, locals_ = views[:2], views[2:]
        b = globals_[0].shape[0]
        with torch.no_grad():
            teacher_out = self.teacher_head(self.teacher_backbone(torch.cat(globals_))).chunk(2)
        student_out = list(self.projection_head(self.backbone(torch.cat(globals_))).chunk(2))
        if locals_:
            student_out += list(self.projection_head(self.backbone(torch.cat(locals_))).split(b))
        temp = self.teacher_temperature(state)
        loss = self.criterion([full_precision(t) for t in teacher_out], [full_precision(s) for s in student_out], teacher_temp=temp)
        return {"loss": loss, "teacher_temp": torch.tensor(temp, device=loss.device)}

    def on_before_optimizer_step(self, state: StepState) -> None:
        # Freezing the last layer at the start keeps the prototypes from collapsing (paper, appendix).
        if state.step < state.steps_in_epochs(self.config.freeze_last_layer_epochs, max_fraction=0.1):
            for p in self.projection_head.last_layer.parameters():
                p.grad = None
