"""BYOL: Grill et al. "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning",
NeurIPS 2020."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead

from studio.engine.data.views import ViewSpec, byol_views
from studio.engine.methods.base import Method, StepState, momentum_copy, option


@dataclass
class BYOLConfig:
    hidden_dim: int = option(4096, "hidden width of the projector and predictor MLPs (paper: 4096)", min=1, max=65_536)
    output_dim: int = option(256, "projection size, where the loss is computed (paper: 256)", min=1, max=262_144)
    momentum: float = option(0.99, "target EMA momentum at the start (paper: 0.996 for ImageNet; 0.99 for small sets)", min=0.0, max=1.0)
    momentum_end: float = option(1.0, "momentum at the last step, reached along a cosine (paper: 1)", min=0.0, max=1.0)


def byol_loss(p1: torch.Tensor, z2: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
    """BYOL eq. 2 symmetrised (eq. 3), rescaled: the paper's L = ||p/|p| - z'/|z'| ||^2 = 2 - 2 cos(p, z');
    this returns the mean over both directions of -cos(p, sg(z')), i.e. (L/2 - 1), whose gradient is
    the paper's up to a constant factor. Predictions p from the online network, z from the target."""
    criterion = NegativeCosineSimilarity()
    return 0.5 * (criterion(p1, z2.detach()) + criterion(p2, z1.detach()))


class BYOL(Method):
    name = "byol"
    title = "BYOL"
    family = "self-distillation"
    summary = ("An online network learns to predict a slowly moving target network's view of the "
               "same image; no negatives, so small batches work. Strong general features.")
    paper = "Grill et al., Bootstrap Your Own Latent, NeurIPS 2020"
    config_class = BYOLConfig
    # Paper: LARS, base lr 0.2 x batch/256, weight decay 1.5e-6 (biases and norms excluded).
    default_optimizer = "lars"
    default_lr = 0.2
    default_weight_decay = 1.5e-6
    collapse_advice = ("raise the target's starting momentum (0.996) so it moves slower, or lower the learning rate; BYOL "
                       "holds only while its predictor keeps up with a slow target")

    @classmethod
    def collapse_change(cls, config) -> dict:
        return {"momentum": 0.996} if config.momentum < 0.996 else {}

    def __init__(self, backbone, config: BYOLConfig, world_size: int = 1):
        super().__init__(backbone, config, world_size)
        dim = backbone.feature_dim
        self.projection_head = BYOLProjectionHead(dim, config.hidden_dim, config.output_dim)
        self.prediction_head = BYOLPredictionHead(config.output_dim, config.hidden_dim, config.output_dim)
        self.backbone_momentum = momentum_copy(backbone)
        self.projection_head_momentum = momentum_copy(self.projection_head)

    def view_specs(self, image_size: int) -> list[ViewSpec]:
        return list(byol_views(image_size))

    def momentum_pairs(self):
        return [(self.backbone, self.backbone_momentum), (self.projection_head, self.projection_head_momentum)]

    def training_step(self, views, state: StepState):
        x = torch.cat(views[:2])
        p1, p2 = self.prediction_head(self.projection_head(self.backbone(x))).chunk(2)
        with torch.no_grad():
            z1, z2 = self.projection_head_momentum(self.backbone_momentum(x)).chunk(2)
        return {"loss": byol_loss(p1, z2, p2, z1)}
