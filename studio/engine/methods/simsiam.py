"""SimSiam: Chen & He. "Exploring Simple Siamese Representation Learning", CVPR 2021."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead

from studio.engine.data.views import ViewSpec, moco_v2_view
from studio.engine.methods.base import Method, StepState, option


@dataclass
class SimSiamConfig:
    hidden_dim: int = option(2048, "hidden width of the projection MLP (paper: 2048)", min=1, max=65_536)
    output_dim: int = option(2048, "projection size, where the loss is computed (paper: 2048)", min=1, max=262_144)
    predictor_hidden_dim: int = option(512, "bottleneck of the prediction MLP (paper: 512, a quarter of the output)", min=1, max=65_536)


def simsiam_loss(p1: torch.Tensor, z2: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
    """SimSiam eq. 2 with stop-gradient (eq. 3): L = D(p1, sg(z2))/2 + D(p2, sg(z1))/2,
    D(p, z) = -cos(p, z), computed with lightly's NegativeCosineSimilarity."""
    criterion = NegativeCosineSimilarity()
    return 0.5 * (criterion(p1, z2.detach()) + criterion(p2, z1.detach()))


class SimSiam(Method):
    name = "simsiam"
    title = "SimSiam"
    family = "self-distillation"
    summary = ("Two views through one network, a predictor on one side and a stop-gradient on the "
               "other: no negatives, no momentum encoder. The simplest method; cheap in memory.")
    paper = "Chen & He, Exploring Simple Siamese Representation Learning, CVPR 2021"
    config_class = SimSiamConfig
    # Paper: SGD, base lr 0.05 x batch/256 (ImageNet; 0.03 on CIFAR), weight decay 1e-4 (5e-4 on CIFAR).
    default_optimizer = "sgd"
    default_lr = 0.05
    default_weight_decay = 5e-4
    # On a ViT, AdamW as DINO's ViT recipe (5e-4 x batch/256, weight decay 0.04). Measured with
    # bench/quality.py (sample, 2-layer ViT-Tiny, 16 px, 300 steps of 64, seed 0; untrained
    # 0.353): SGD 0.319, AdamW 1.25e-4 0.508, AdamW 5e-4 0.469; lightly's recipe 0.419.
    vit_optimizer = ("adamw", 5e-4, 0.04)
    vit_optimizer_reason = "AdamW for a ViT: SimSiam's SGD left a short ViT run below its untrained encoder"
    collapse_advice = ("lower the learning rate and keep weight decay on; SimSiam holds only with its predictor and stop- "
                       "gradient, which a high learning rate overwhelms")

    def __init__(self, backbone, config: SimSiamConfig, world_size: int = 1):
        super().__init__(backbone, config, world_size)
        self.projection_head = SimSiamProjectionHead(backbone.feature_dim, config.hidden_dim, config.output_dim)
        self.prediction_head = SimSiamPredictionHead(config.output_dim, config.predictor_hidden_dim, config.output_dim)

    def view_specs(self, image_size: int) -> list[ViewSpec]:
        view = moco_v2_view(image_size)
        return [view, view]

    def training_step(self, views, state: StepState):
        z = self.projection_head(self.backbone(torch.cat(views[:2])))
        p = self.prediction_head(z)
        z1, z2 = z.chunk(2)
        p1, p2 = p.chunk(2)
        loss = simsiam_loss(p1, z2, p2, z1)
        # The paper's collapse monitor: the std of the l2-normalised output stays near 1/sqrt(d).
        z_std = torch.nn.functional.normalize(z1.detach(), dim=1).std(dim=0).mean()
        return {"loss": loss, "z_std": z_std}
