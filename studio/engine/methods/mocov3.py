"""MoCo v3: Chen, Xie, He. "An Empirical Study of Training Self-Supervised Vision Transformers",
ICCV 2021."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from lightly.models.modules import BYOLPredictionHead, MoCoProjectionHead

from studio.engine.data.views import ViewSpec, byol_views
from studio.engine.methods.base import Method, StepState, full_precision, momentum_copy, option


@dataclass
class MoCoV3Config:
    temperature: float = option(0.2, "InfoNCE temperature tau (paper: 0.2 for ViTs, 1.0 for ResNets)", min=1e-3, max=10.0)
    hidden_dim: int = option(2048, "hidden width of the projection and prediction MLPs (paper: 4096)", min=1)
    output_dim: int = option(256, "size of the queries and keys (paper: 256)", min=1)
    momentum: float = option(0.99, "key-encoder EMA momentum at the start (paper: 0.99, cosine to 1)", min=0.0, max=1.0)
    momentum_end: float = option(1.0, "momentum at the last step, reached along a cosine (paper: 1)", min=0.0, max=1.0)
    freeze_patch_embedding: bool = option(
        True, "keep a ViT's random patch projection fixed (paper, section 4.2: it removes the training "
              "instability of ViTs); no effect on CNNs")


def mocov3_loss(q: torch.Tensor, k: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo v3's contrastive loss (algorithm 1): with q and k L2-normalised (N, D), the keys of the
    same batch as the negatives, L = 2 tau * CrossEntropy(q k^T / tau, labels = 0..N-1): the
    positive of query i is key i. The 2 tau factor keeps the gradient scale independent of tau."""
    q, k = F.normalize(full_precision(q), dim=1), F.normalize(full_precision(k), dim=1)
    logits = q @ k.T / temperature
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device)) * 2 * temperature


def _gathered_loss(q: torch.Tensor, k: torch.Tensor, temperature: float, world_size: int) -> torch.Tensor:
    """The same loss with the keys of every process as negatives (the paper's concat_all_gather);
    query i of rank r has its positive at r * N + i of the gathered keys."""
    if world_size <= 1:
        return mocov3_loss(q, k, temperature)
    from lightly.utils import dist

    keys = torch.cat(dist.gather(F.normalize(full_precision(k), dim=1)), 0).detach()
    q = F.normalize(full_precision(q), dim=1)
    labels = torch.arange(len(q), device=q.device) + dist.rank() * len(q)
    return F.cross_entropy(q @ keys.T / temperature, labels) * 2 * temperature


class MoCoV3(Method):
    name = "mocov3"
    title = "MoCo v3"
    family = "contrastive"
    summary = ("A query encoder with a predictor contrasts against a momentum encoder's keys of the same "
               "batch, both ways; no queue, BatchNorm in the heads, and a ViT's patch projection frozen "
               "at random for stability. The contrastive recipe made for ViTs.")
    paper = "Chen, Xie, He, An Empirical Study of Training Self-Supervised Vision Transformers, ICCV 2021"
    config_class = MoCoV3Config
    # Paper (ViT): AdamW, lr 1.5e-4 x batch/256, weight decay 0.1; ResNets use LARS (lr 0.3).
    default_optimizer = "adamw"
    default_lr = 1.5e-4
    default_weight_decay = 0.1
    collapse_advice = ("lower the learning rate or keep freeze_patch_embedding on (MoCo v3's fix for ViT instability), and "
                       "raise the temperature")

    def __init__(self, backbone, config: MoCoV3Config, world_size: int = 1):
        super().__init__(backbone, config, world_size)
        c = config
        # Projection: 3 layers with BN (the last without affine), prediction: 2 layers (paper, 4.1).
        self.projection_head = MoCoProjectionHead(backbone.feature_dim, c.hidden_dim, c.output_dim,
                                                  num_layers=3, batch_norm=True)
        self.prediction_head = BYOLPredictionHead(c.output_dim, c.hidden_dim, c.output_dim)
        if c.freeze_patch_embedding and backbone.kind == "vit":
            patch = getattr(backbone.model, "conv_proj", None)
            if patch is not None:
                patch.requires_grad_(False)
        self.backbone_momentum = momentum_copy(backbone)
        self.projection_head_momentum = momentum_copy(self.projection_head)

    def view_specs(self, image_size: int) -> list[ViewSpec]:
        return list(byol_views(image_size))  # the paper uses BYOL's asymmetric augmentations

    def momentum_pairs(self):
        return [(self.backbone, self.backbone_momentum), (self.projection_head, self.projection_head_momentum)]

    def training_step(self, views, state: StepState):
        x1, x2 = views[0], views[1]
        b = x1.shape[0]
        q1, q2 = self.prediction_head(self.projection_head(self.backbone(torch.cat([x1, x2])))).split(b)
        with torch.no_grad():
            k1, k2 = self.projection_head_momentum(self.backbone_momentum(torch.cat([x1, x2]))).split(b)
        tau = self.config.temperature
        loss = _gathered_loss(q1, k2, tau, self.world_size) + _gathered_loss(q2, k1, tau, self.world_size)
        return {"loss": loss}
