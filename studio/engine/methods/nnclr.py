"""NNCLR: Dwibedi, Aytar, Tompson, Sermanet, Zisserman. "With a Little Help from My Friends:
Nearest-Neighbor Contrastive Learning of Visual Representations", ICCV 2021."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from lightly.loss import NTXentLoss
from lightly.models.modules import NNCLRPredictionHead, NNCLRProjectionHead

from studio.engine.data.views import ViewSpec, byol_views
from studio.engine.methods.banks import FilledMemoryBank
from studio.engine.methods.base import Method, StepState, bank_for_dataset, option


@dataclass
class NNCLRConfig:
    temperature: float = option(0.1, "InfoNCE temperature tau (paper: 0.1)", min=1e-3, max=10.0)
    support_size: int = option(4096, "embeddings kept in the support set the neighbours come from "
                                     "(paper: 98304 on ImageNet; 4096 suits small sets)", min=1)
    hidden_dim: int = option(2048, "hidden width of the projection MLP (paper: 2048)", min=1)
    output_dim: int = option(256, "embedding size where neighbours are found (paper: 256)", min=1)
    predictor_hidden_dim: int = option(4096, "hidden width of the prediction MLP (paper: 4096)", min=1)


def nnclr_loss(nn_z: torch.Tensor, p: torch.Tensor, temperature: float) -> torch.Tensor:
    """NNCLR eq. 2: the nearest neighbour NN(z_i) of view 1's embedding in the support set is the
    positive of view 2's prediction p_i, the other p_k and NN(z_k) the negatives:
    L_i = -log exp(NN(z_i).p_i / tau) / sum_k exp(NN(z_i).p_k / tau), on L2-normalised vectors
    (lightly's NTXentLoss, which also contrasts within each side, as the paper's code)."""
    return NTXentLoss(temperature=temperature)(nn_z, p)


def nearest_neighbours(z: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """NNCLR eq. 1: NN(z_i), the support embedding of highest cosine similarity with z_i (as
    lightly's NNMemoryBankModule finds it). With an empty support set (the first step) each z_i is
    its own neighbour, which makes the loss SimCLR's."""
    if len(support) == 0:
        return z
    return support[(F.normalize(z, dim=1) @ F.normalize(support.to(z.dtype), dim=1).T).argmax(dim=1)]


class NNCLR(Method):
    name = "nnclr"
    title = "NNCLR"
    family = "contrastive"
    summary = ("SimCLR with a friend: each view's positive is the nearest neighbour of the other view's "
               "embedding among recent images, so positives span different images of the same kind. "
               "Helps when augmentations alone are too weak.")
    paper = "Dwibedi et al., With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning, ICCV 2021"
    config_class = NNCLRConfig
    # Paper: LARS, lr 0.3 x batch/256 (4096 batch: 4.8), weight decay 1e-6; AdamW is the small-batch choice.
    default_optimizer = "adamw"
    default_lr = 1e-3
    default_weight_decay = 1e-6
    collapse_advice = ("lower the learning rate, or shrink support_size on a small dataset (neighbours from a queue of stale "
                       "embeddings agree too easily)")

    @classmethod
    def sized_settings(cls, config, *, images: int, steps: int, batch: int) -> list:
        size = bank_for_dataset(config.support_size, images, batch)
        if size is None:
            return []
        return [("support_size", size, f"support_size {size:,}: the support set holds fewer embeddings than the {images:,} images, "
                 "so an image's own older one is not among them (the paper's is under a tenth of ImageNet)")]

    def __init__(self, backbone, config: NNCLRConfig, world_size: int = 1):
        super().__init__(backbone, config, world_size)
        c = config
        self.projection_head = NNCLRProjectionHead(backbone.feature_dim, c.hidden_dim, c.output_dim)
        self.prediction_head = NNCLRPredictionHead(c.output_dim, c.predictor_hidden_dim, c.output_dim)
        # Each process keeps its own support set of its own embeddings (the paper's code gathers);
        # it starts empty, not full of random neighbours (methods.banks).
        self.support = FilledMemoryBank(c.support_size, c.output_dim)
        self.criterion = NTXentLoss(temperature=c.temperature, gather_distributed=world_size > 1)

    def view_specs(self, image_size: int) -> list[ViewSpec]:
        return list(byol_views(image_size))  # paper: BYOL's augmentations

    def training_step(self, views, state: StepState):
        x1, x2 = views[0], views[1]
        b = x1.shape[0]
        z = self.projection_head(self.backbone(torch.cat([x1, x2])))
        p1, p2 = self.prediction_head(z).split(b)
        z1, z2 = z.split(b)
        support = self.support(z2.detach(), update=self.training)  # what it held before this step
        nn1, nn2 = nearest_neighbours(z1.detach(), support), nearest_neighbours(z2.detach(), support)
        loss = 0.5 * (self.criterion(nn1, p2) + self.criterion(nn2, p1))
        return {"loss": loss}
