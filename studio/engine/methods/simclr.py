"""SimCLR: Chen, Kornblith, Norouzi, Hinton. "A Simple Framework for Contrastive Learning of
Visual Representations", ICML 2020."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead

from studio.engine.data.views import ViewSpec, simclr_view
from studio.engine.methods.base import Method, StepState, option


@dataclass
class SimCLRConfig:
    temperature: float = option(0.5, "NT-Xent temperature tau (paper: 0.5 for CIFAR, 0.1 for ImageNet)", min=1e-3, max=10.0)
    hidden_dim: int = option(0, "projection head hidden width; 0 means the backbone's feature size", min=0, max=65_536)
    output_dim: int = option(128, "projection output size, where the loss is computed", min=1, max=262_144)
    num_layers: int = option(2, "layers of the projection MLP (SimCLR v1: 2, v2: 3)", min=2, max=4)
    color_strength: float = option(0.5, "colour jitter strength s (paper: 1.0 ImageNet, 0.5 CIFAR)", min=0.0, max=2.0)


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (SimCLR eq. 1) over the 2N views of N pairs, averaged over all 2N anchors:
    l(i, j) = -log exp(sim(z_i, z_j)/tau) / sum_{k != i} exp(sim(z_i, z_k)/tau), sim = cosine.

    Computed by lightly's NTXentLoss; this function names it for readers and tests.
    """
    return NTXentLoss(temperature=temperature)(z1, z2)


class SimCLR(Method):
    name = "simclr"
    title = "SimCLR"
    family = "contrastive"
    summary = ("Pulls two augmented views of an image together and pushes other images apart. "
               "Simple and strong for retrieval; wants large batches.")
    paper = "Chen et al., A Simple Framework for Contrastive Learning of Visual Representations, ICML 2020"
    config_class = SimCLRConfig
    default_optimizer = "sgd"
    default_lr = 0.06
    default_weight_decay = 5e-4
    collapse_advice = ("lower the learning rate, or raise the temperature (NT-Xent with negatives rarely collapses: when it "
                       "does, the learning rate is too high for the batch)")

    def __init__(self, backbone, config: SimCLRConfig, world_size: int = 1):
        super().__init__(backbone, config, world_size)
        dim = backbone.feature_dim
        self.projection_head = SimCLRProjectionHead(dim, config.hidden_dim or dim, config.output_dim, config.num_layers)
        self.criterion = NTXentLoss(temperature=config.temperature, gather_distributed=world_size > 1)

    def view_specs(self, image_size: int) -> list[ViewSpec]:
        view = simclr_view(image_size, self.config.color_strength)
        return [view, view]

    def training_step(self, views, state: StepState):
        x = torch.cat(views[:2])
        z = self.projection_head(self.backbone(x))
        z1, z2 = z.chunk(2)
        return {"loss": self.criterion(z1, z2)}
