"""SwAV: Caron, Misra, Mairal, Goyal, Bojanowski, Joulin. "Unsupervised Learning of Visual
Features by Contrasting Cluster Assignments", NeurIPS 2020."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from lightly.loss import SwaVLoss
from lightly.models.modules import SwaVProjectionHead, SwaVPrototypes

from studio.engine.data.views import ViewSpec, dino_views, local_crop_size
from studio.engine.methods.base import Method, StepState, option


@dataclass
class SwAVConfig:
    prototypes: int = option(3000, "learnable cluster centres (paper: 3000 on ImageNet)", min=2, max=65536)
    temperature: float = option(0.1, "softmax temperature of the swapped prediction (paper: 0.1)", min=1e-3, max=10.0)
    sinkhorn_epsilon: float = option(0.05, "entropy weight of the Sinkhorn-Knopp assignment (paper: 0.05)", min=1e-3, max=1.0)
    sinkhorn_iterations: int = option(3, "Sinkhorn-Knopp iterations (paper: 3)", min=1, max=100)
    hidden_dim: int = option(2048, "hidden width of the projection MLP (paper: 2048)", min=1)
    output_dim: int = option(128, "embedding size compared with the prototypes (paper: 128)", min=1)
    local_crops: int = option(6, "small crops per image besides the two large ones (paper: 6 of 96 px)", min=0, max=16)
    freeze_prototypes_epochs: float = option(1.0, "epochs the prototypes stay fixed at the start (paper: 1; "
                                                  "at most a tenth of the run)", min=0.0)


def swav_loss(scores: list[torch.Tensor], codes: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """SwAV eq. 1-2 given the codes: for every pair of a global crop s with its code q_s and another
    crop t, l(z_t, q_s) = -sum_k q_s,k log softmax(z_t . c_k / tau); the loss is the mean over
    pairs. `scores` are z . c for every crop (globals first), `codes` the globals' Sinkhorn codes."""
    total, pairs = 0.0, 0
    for s, q in enumerate(codes):
        for t, z in enumerate(scores):
            if t != s:
                total = total - (q * F.log_softmax(z / temperature, dim=1)).sum(1).mean()
                pairs += 1
    return total / pairs


class SwAV(Method):
    name = "swav"
    title = "SwAV"
    family = "clustering"
    summary = ("Assigns each image's views to learned prototypes with an equal-partition (Sinkhorn) "
               "constraint and predicts one view's code from another, with multi-crop. Needs no "
               "negatives or momentum encoder; strong on linear probes.")
    paper = "Caron et al., Unsupervised Learning of Visual Features by Contrasting Cluster Assignments, NeurIPS 2020"
    config_class = SwAVConfig
    # Paper: LARS, lr 0.6 x batch/256 (4.8 at 4096), weight decay 1e-6; no queue below batch 256 here.
    default_optimizer = "lars"
    default_lr = 0.6
    default_weight_decay = 1e-6
    collapse_advice = ("lower the learning rate, or keep freeze_prototypes_epochs at 1 or more (the paper freezes the "
                       "prototypes in the first epoch: moving early, they can take every image's assignment)")

    @classmethod
    def collapse_change(cls, config) -> dict:
        return {"freeze_prototypes_epochs": 1.0} if config.freeze_prototypes_epochs < 1 else {}

    def __init__(self, backbone, config: SwAVConfig, world_size: int = 1):
        super().__init__(backbone, config, world_size)
        c = config
        self.projection_head = SwaVProjectionHead(backbone.feature_dim, c.hidden_dim, c.output_dim)
        self.prototypes = SwaVPrototypes(c.output_dim, n_prototypes=c.prototypes)
        # Codes are balanced over the whole global batch (the paper's distributed Sinkhorn).
        self.criterion = SwaVLoss(temperature=c.temperature, sinkhorn_iterations=c.sinkhorn_iterations,
                                  sinkhorn_epsilon=c.sinkhorn_epsilon, sinkhorn_gather_distributed=world_size > 1)

    def view_specs(self, image_size: int) -> list[ViewSpec]:
        # Paper: two 224 px crops of 14-100 % and six 96 px crops of 5-14 % of the image.
        multiple = int(getattr(self.backbone.model, "patch_size", 4)) if self.backbone.kind == "vit" else 4
        return dino_views(image_size, local_crops=self.config.local_crops,
                          local_size=local_crop_size(image_size, multiple),
                          global_scale=(0.14, 1.0), local_scale=(0.05, 0.14))

    def _scores(self, x: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.projection_head(self.backbone(x)), dim=1)
        return self.prototypes(z)

    def output(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection_head(self.backbone(x)), dim=1)

    def training_step(self, views, state: StepState):
        self.prototypes.normalize()  # prototypes on the unit sphere before each step (paper, code)
        globals_, locals_ = views[:2], views[2:]
        b = globals_[0].shape[0]
        high = list(self._scores(torch.cat(globals_)).split(b))
        low = list(self._scores(torch.cat(locals_)).split(b)) if locals_ else []
        # Sinkhorn's exp(score / 0.05) needs at least float32 (autocast may give half precision).
        wide = torch.promote_types(high[0].dtype, torch.float32)
        loss = self.criterion([h.to(wide) for h in high], [lo.to(wide) for lo in low])
        return {"loss": loss}

    def on_before_optimizer_step(self, state: StepState) -> None:
        # Fixed prototypes at the start keep them from collapsing (paper, appendix A).
        if state.step < state.steps_in_epochs(self.config.freeze_prototypes_epochs, max_fraction=0.1):
            for p in self.prototypes.parameters():
                p.grad = None
