"""SimMIM: Xie, Zhang, Cao, Lin, Bao, Yao, Dai, Hu. "SimMIM: A Simple Framework for Masked Image
Modeling", CVPR 2022. The tokenizer-free form of BEiT's masked image modelling."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from lightly.models import utils
from lightly.models.modules import MaskedVisionTransformerTorchvision

from studio.engine.data.views import ViewSpec, crop_scale, mae_view
from studio.engine.methods.base import Method, StepState, option


@dataclass
class SimMIMConfig:
    mask_ratio: float = option(0.6, "fraction of patches replaced by a learned mask token (paper: 0.6)", min=0.05, max=0.95)


def simmim_loss(pred: torch.Tensor, patches: torch.Tensor, idx_mask: torch.Tensor) -> torch.Tensor:
    """SimMIM eq. 1: L = ||y_M - x_M||_1 / Omega(x_M), the L1 distance between the predicted and the
    true raw pixels of the masked patches, averaged over their pixels. pred: (B, M, P) for the
    masked patches in the order of idx_mask; patches: (B, N, P); idx_mask: (B, M) in 0..N-1."""
    target = utils.get_at_index(patches, idx_mask)
    return (pred.float() - target.float()).abs().mean()


class SimMIM(Method):
    name = "simmim"
    title = "SimMIM"
    family = "masked-image-modelling"
    summary = ("Replaces random patches of a ViT's input with a mask token, keeps them in the encoder, "
               "and regresses their raw pixels with one linear layer (BEiT's masked image modelling "
               "without its tokenizer). Suits fine-tuning; needs a ViT backbone.")
    paper = "Xie et al., SimMIM: A Simple Framework for Masked Image Modeling, CVPR 2022"
    config_class = SimMIMConfig
    backbone_kinds = ("vit",)
    vit_reason = "masks image patches"
    # Paper (ViT-B): AdamW (betas 0.9, 0.999), base lr 8e-4 x batch/2048 (1e-4 per 256), weight decay 0.05.
    default_optimizer = "adamw"
    default_lr = 1e-4
    default_weight_decay = 0.05
    collapse_advice = ("a masked image model cannot collapse in this sense (it reconstructs pixels); low spread means the "
                       "features are not yet distinct: train longer, or change mask_ratio")
    can_collapse = False

    def __init__(self, backbone, config: SimMIMConfig, world_size: int = 1):
        super().__init__(backbone, config, world_size)
        vit = backbone.model
        # Shares the backbone's ViT; the masked patches are replaced by the learned mask token
        # (lightly's masked ViT), the backbone's own initialisation and position embedding kept.
        self.mask_token = torch.nn.Parameter(torch.zeros(1, 1, vit.hidden_dim))
        torch.nn.init.normal_(self.mask_token, std=0.02)
        self.encoder = MaskedVisionTransformerTorchvision(vit=vit, mask_token=self.mask_token,
                                                          weight_initialization="skip",
                                                          pos_embed_initialization="skip")
        self.patch_size = int(vit.patch_size)
        self.sequence_length = int(vit.seq_length)
        self.prediction_head = torch.nn.Linear(vit.hidden_dim, 3 * self.patch_size**2)

    def view_specs(self, image_size: int) -> list[ViewSpec]:
        # Paper: a random resized crop of 67-100 % and a flip, nothing else.
        return [replace(mae_view(image_size), scale=crop_scale(image_size, (0.67, 1.0)))]

    def training_step(self, views, state: StepState):
        images = views[0]
        b = images.shape[0]
        # Index 0 of the sequence is the class token: never masked, so patch i is token i + 1.
        _, idx_mask = utils.random_token_mask(size=(b, self.sequence_length), mask_ratio=self.config.mask_ratio,
                                              device=images.device)
        encoded = self.encoder.encode(images, idx_mask=idx_mask)
        pred = self.prediction_head(utils.get_at_index(encoded, idx_mask))
        patches = utils.patchify(images, self.patch_size)
        return {"loss": simmim_loss(pred, patches, idx_mask - 1)}
