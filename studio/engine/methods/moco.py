"""MoCo v2: Chen, Fan, Girshick, He. "Improved Baselines with Momentum Contrastive Learning",
arXiv 2003.04297, 2020, on He et al. "Momentum Contrast for Unsupervised Visual Representation
Learning", CVPR 2020."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from lightly.models.modules import MoCoProjectionHead

from studio.engine.data.views import ViewSpec, moco_v2_view
from studio.engine.methods.banks import FilledMemoryBank
from studio.engine.methods.base import Method, StepState, bank_for_dataset, momentum_copy, option


@dataclass
class MoCoConfig:
    temperature: float = option(0.2, "InfoNCE temperature tau (MoCo v2: 0.2)", min=1e-3, max=10.0)
    queue_size: int = option(4096, "negative keys kept in the queue (paper: 65536 on ImageNet; 4096 suits CIFAR-sized sets; 0: the batch's other keys, as MoCo v3)", min=0, max=1_000_000)
    momentum: float = option(0.99, "key-encoder EMA momentum at the start (paper: 0.999 on ImageNet, 0.99 for small sets)", min=0.0, max=1.0)
    momentum_end: float = option(1.0, "momentum at the last step, reached along a cosine", min=0.0, max=1.0)
    hidden_dim: int = option(2048, "hidden width of the MLP head (MoCo v2: 2048)", min=1, max=65_536)
    output_dim: int = option(128, "key/query size, where the loss is computed (MoCo: 128)", min=1, max=262_144)
    symmetric: bool = option(False, "also contrast view 2's query against view 1's key (MoCo v3 style); paper: off")
    head_batch_norm: bool = option(True, "batch norm in the projection MLP, its output included (MoCo v3's heads; MoCo v2: off). On: "
                                         "without it a short ViT run's outputs collapsed (spread 0.46 -> 0.04 by step 8, bench/quality.py)")


def moco_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE with a queue (MoCo eq. 1): for query q, its positive key k+ and the queued keys k_i,
    L_q = -log exp(q.k+/tau) / (exp(q.k+/tau) + sum_i exp(q.k_i/tau)), q and k L2-normalised.

    `queue` is (K, D), the keys of earlier batches. With K = 0 (the first step, before any key is
    queued) the other images' keys of the batch are the negatives, as in MoCo v3 (its eq. 1).
    """
    q = F.normalize(q, dim=1)
    k = F.normalize(k.detach(), dim=1)
    if queue.shape[0] == 0:
        logits = q @ k.T / temperature
        return F.cross_entropy(logits, torch.arange(len(q), device=q.device))
    pos = (q * k).sum(dim=1, keepdim=True)
    logits = torch.cat([pos, q @ F.normalize(queue, dim=1).T.to(q.dtype)], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


class MoCo(Method):
    name = "moco"
    title = "MoCo v2"
    family = "contrastive"
    summary = ("Contrasts each image against a long queue of earlier keys from a slowly moving "
               "encoder, so it needs no large batch. Good for retrieval on one modest GPU.")
    paper = "Chen et al., Improved Baselines with Momentum Contrastive Learning, 2020 (MoCo v2); He et al., CVPR 2020"
    config_class = MoCoConfig
    default_optimizer = "sgd"
    default_lr = 0.06  # paper 0.03 for batch 256 on ImageNet; 0.06 is the CIFAR recipe
    default_weight_decay = 5e-4
    former_defaults = {"head_batch_norm": False}  # runs stored before 2026-12-06 had no batch norm in the head
    collapse_advice = ("lower the learning rate; with head_batch_norm off, start a new run with it on (without it a ViT's "
                       "outputs collapsed within a few steps); on a small dataset shrink queue_size so the queue holds "
                       "fewer stale keys than images")

    @classmethod
    def sized_settings(cls, config, *, images: int, steps: int, batch: int) -> list:
        size = bank_for_dataset(config.queue_size, images, batch)
        if size is None:
            return []
        return [("queue_size", size, f"queue_size {size:,}: the queue holds fewer embeddings than the {images:,} images, "
                 "so an image's own older one is not among them (the paper's is under a tenth of ImageNet)")]

    def __init__(self, backbone, config: MoCoConfig, world_size: int = 1):
        super().__init__(backbone, config, world_size)
        dim = backbone.feature_dim
        self.projection_head = MoCoProjectionHead(dim, config.hidden_dim, config.output_dim,
                                                  batch_norm=config.head_batch_norm)
        self.backbone_momentum = momentum_copy(backbone)
        self.projection_head_momentum = momentum_copy(self.projection_head)
        # The queue starts empty (methods.banks says why); with gather_distributed it takes
        # every GPU's keys, as the paper's code does. queue_size 0: the batch's keys only.
        self.queue = (FilledMemoryBank(config.queue_size, config.output_dim, gather_distributed=world_size > 1)
                      if config.queue_size > 0 else None)

    def view_specs(self, image_size: int) -> list[ViewSpec]:
        view = moco_v2_view(image_size)
        return [view, view]

    def momentum_pairs(self):
        return [(self.backbone, self.backbone_momentum), (self.projection_head, self.projection_head_momentum)]

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection_head_momentum(self.backbone_momentum(x))

    def negatives(self, keys: torch.Tensor) -> torch.Tensor:
        """The queued keys of earlier steps (K, D), then `keys` (normalised) join the queue."""
        keys = F.normalize(keys, dim=1)
        if self.queue is None:
            return keys.new_zeros((0, keys.shape[1]))
        return self.queue(keys, update=self.training)

    def training_step(self, views, state: StepState):
        x1, x2 = views[0], views[1]
        tau = self.config.temperature
        if self.config.symmetric:
            q1, q2 = self.projection_head(self.backbone(torch.cat([x1, x2]))).chunk(2)
            k1, k2 = self.keys(torch.cat([x1, x2])).chunk(2)
            queue = self.negatives(k2)  # one key per image joins the queue, as in the one-way form
            loss = 0.5 * (moco_loss(q1, k2, queue, tau) + moco_loss(q2, k1, queue, tau))
        else:
            q = self.projection_head(self.backbone(x1))
            k = self.keys(x2)
            loss = moco_loss(q, k, self.negatives(k), tau)
        return {"loss": loss}
