"""Barlow Twins: Zbontar, Jing, Misra, LeCun, Deny. "Barlow Twins: Self-Supervised Learning via
Redundancy Reduction", ICML 2021."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from lightly.loss import BarlowTwinsLoss
from lightly.utils.dist import gather
from lightly.models.modules import BarlowTwinsProjectionHead

from studio.engine.data.views import ViewSpec, byol_views
from studio.engine.methods.base import Method, StepState, option


@dataclass
class BarlowTwinsConfig:
    lambda_param: float = option(5e-3, "weight lambda of the redundancy-reduction (off-diagonal) term (paper: 5e-3)", min=0.0, max=1.0)
    hidden_dim: int = option(2048, "hidden width of the 3-layer projector (paper: 8192 on ImageNet; 2048 for small images)", min=1, max=65_536)
    output_dim: int = option(2048, "projection size, where the cross-correlation is computed (paper: 8192)", min=1, max=262_144)


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambda_param: float) -> torch.Tensor:
    """Barlow Twins eq. 1-2: with each dimension standardised over the batch,
    C_ij = sum_b z1_bi z2_bj / N,  L = sum_i (1 - C_ii)^2 + lambda sum_i sum_{j != i} C_ij^2.

    Computed by lightly's BarlowTwinsLoss; this function names it for readers and tests.
    """
    return BarlowTwinsLoss(lambda_param=lambda_param)(z1, z2)


class BarlowTwins(Method):
    name = "barlowtwins"
    title = "Barlow Twins"
    family = "redundancy-reduction"
    summary = ("Makes the cross-correlation of two views' embeddings the identity: views agree, "
               "dimensions decorrelate. No negatives or momentum; works with small batches.")
    paper = "Zbontar et al., Barlow Twins: Self-Supervised Learning via Redundancy Reduction, ICML 2021"
    config_class = BarlowTwinsConfig
    # Paper: LARS, base lr 0.2 x batch/256 for weights, weight decay 1.5e-6.
    default_optimizer = "lars"
    default_lr = 0.2
    default_weight_decay = 1.5e-6
    collapse_advice = ("lower the learning rate, or lambda_param if the off-diagonal term dominates; a batch much smaller "
                       "than output_dim makes the cross-correlation noisy, so lower output_dim")

    def __init__(self, backbone, config: BarlowTwinsConfig, world_size: int = 1):
        super().__init__(backbone, config, world_size)
        self.projection_head = BarlowTwinsProjectionHead(backbone.feature_dim, config.hidden_dim, config.output_dim)
        # Not lightly's gather_distributed: it standardises each rank's share of the batch on its
        # own before averaging the cross-correlations, which is not the loss of the global batch
        # (the paper's code standardises with a SyncBatchNorm). training_step gathers the
        # embeddings instead, so the standardisation is over the global batch.
        self.criterion = BarlowTwinsLoss(lambda_param=config.lambda_param)

    def view_specs(self, image_size: int) -> list[ViewSpec]:
        return list(byol_views(image_size))  # the paper uses BYOL's asymmetric augmentations

    def training_step(self, views, state: StepState):
        z1, z2 = self.projection_head(self.backbone(torch.cat(views[:2]))).chunk(2)
        # Mixed precision's half-precision embeddings go up to float32 for the loss (float64 stays).
        dtype = torch.promote_types(z1.dtype, torch.float32)
        z1, z2 = gather_batch(z1.to(dtype)), gather_batch(z2.to(dtype))
        return {"loss": self.criterion(z1, z2)}


def gather_batch(z: torch.Tensor) -> torch.Tensor:
    """Every rank's embeddings, in rank order (the global batch), when several processes train.

    The loss is then that of the global batch on every rank. lightly's GatherLayer sums the
    gradients of all ranks in its backward pass, so this rank's embeddings receive world_size times
    the global loss's gradient; DDP divides the parameter gradients by world_size again, which
    makes the update that of one process on the global batch. One process: `z` as it is."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return torch.cat(gather(z.contiguous()), dim=0)
    return z
