"""VICReg: Bardes, Ponce, LeCun. "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.loss import VICRegLoss
from lightly.models.modules.heads import VICRegProjectionHead

from studio.engine.data.views import ViewSpec, byol_views
from studio.engine.methods.base import Method, StepState, option


@dataclass
class VICRegConfig:
    invariance_weight: float = option(25.0, "lambda, weight of the invariance (mean squared distance) term (paper: 25)", min=0.0, max=1000.0)
    variance_weight: float = option(25.0, "mu, weight of the variance hinge term (paper: 25)", min=0.0, max=1000.0)
    covariance_weight: float = option(1.0, "nu, weight of the covariance term (paper: 1)", min=0.0, max=1000.0)
    hidden_dim: int = option(2048, "hidden width of the expander (paper: 8192 on ImageNet; 2048 for small images)", min=1, max=65_536)
    output_dim: int = option(2048, "expander output size, where the loss is computed (paper: 8192)", min=1, max=262_144)
    num_layers: int = option(3, "layers of the expander MLP (paper: 3)", min=2, max=4)


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, lam: float = 25.0, mu: float = 25.0, nu: float = 1.0) -> torch.Tensor:
    """VICReg eq. 6: lam * s(Z, Z') + mu * [v(Z) + v(Z')] / 2 + nu * [c(Z) + c(Z')], with
    s the mean squared distance, v(Z) = mean_j max(0, 1 - sqrt(Var(z_j) + eps)) and
    c(Z) = sum_{i != j} Cov(Z)_ij^2 / d. (The paper writes mu [v + v'] and the authors' code halves
    it, as lightly does.) Computed by lightly's VICRegLoss."""
    return VICRegLoss(lambda_param=lam, mu_param=mu, nu_param=nu)(z1, z2)


class VICReg(Method):
    name = "vicreg"
    title = "VICReg"
    family = "redundancy-reduction"
    summary = ("Keeps two views' embeddings close while holding every dimension's variance up and "
               "their covariances down. Stable, no negatives or momentum; works with small batches.")
    paper = "Bardes, Ponce & LeCun, VICReg: Variance-Invariance-Covariance Regularization, ICLR 2022"
    config_class = VICRegConfig
    # Paper: LARS, base lr 0.2 x batch/256, weight decay 1e-6.
    default_optimizer = "lars"
    default_lr = 0.2
    default_weight_decay = 1e-6
    collapse_advice = "raise variance_weight (the term that keeps each dimension spread), or lower the learning rate"

    @classmethod
    def collapse_change(cls, config) -> dict:
        return {"variance_weight": min(1000.0, 2 * config.variance_weight)} if config.variance_weight < 1000 else {}

    def __init__(self, backbone, config: VICRegConfig, world_size: int = 1):
        super().__init__(backbone, config, world_size)
        self.projection_head = VICRegProjectionHead(backbone.feature_dim, config.hidden_dim, config.output_dim, config.num_layers)
        # gather_distributed takes the variance and covariance terms over the global batch (every
        # rank's embeddings, with their gradients summed back by lightly's GatherLayer); the
        # invariance term is a mean over this rank's pairs, whose DDP average is the global mean.
        # So N processes compute the loss and the update of one process on the global batch.
        self.criterion = VICRegLoss(lambda_param=config.invariance_weight, mu_param=config.variance_weight,
                                    nu_param=config.covariance_weight, gather_distributed=world_size > 1)

    def view_specs(self, image_size: int) -> list[ViewSpec]:
        return list(byol_views(image_size))  # the paper follows BYOL's augmentations

    def training_step(self, views, state: StepState):
        z1, z2 = self.projection_head(self.backbone(torch.cat(views[:2]))).chunk(2)
        # Mixed precision's half-precision embeddings go up to float32 for the loss (float64 stays).
        dtype = torch.promote_types(z1.dtype, torch.float32)
        return {"loss": self.criterion(z1.to(dtype), z2.to(dtype))}
