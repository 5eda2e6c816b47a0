"""MAE: He, Chen, Xie, Li, Dollár, Girshick. "Masked Autoencoders Are Scalable Vision Learners",
CVPR 2022."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.models import utils
from lightly.models.modules import MAEDecoder, MaskedVisionTransformerTorchvision

from studio.engine.data.views import ViewSpec, mae_view
from studio.engine.methods.base import Method, StepState, full_precision, option


@dataclass
class MAEConfig:
    mask_ratio: float = option(0.75, "fraction of patches hidden from the encoder (paper: 0.75)", min=0.05, max=0.95)
    norm_pix_loss: bool = option(True, "regress each patch's pixels normalised by its own mean and std (paper: on, better features)")
    decoder_dim: int = option(256, "width of the decoder (paper: 512 on ImageNet; 256 for small images)", min=8, max=4096)
    decoder_depth: int = option(4, "transformer blocks of the decoder (paper: 8; 1-4 give similar fine-tuning)", min=1, max=16)
    decoder_heads: int = option(8, "attention heads of the decoder (paper: 16)", min=1, max=64)


def mae_loss(pred: torch.Tensor, patches: torch.Tensor, idx_mask: torch.Tensor, norm_pix_loss: bool = True,
             eps: float = 1e-6) -> torch.Tensor:
    """MAE's reconstruction loss (section 3): the mean squared error between the predicted and the
    true pixels of the masked patches only; with norm_pix_loss each target patch is first
    normalised by its own mean and variance, (x - mean) / sqrt(var + 1e-6).

    pred: (B, M, P) predictions for the masked patches in the order of `idx_mask`;
    patches: (B, N, P) all patches of the image (lightly's `patchify`); idx_mask: (B, M) indices
    of the masked patches in 0..N-1.
    """
    target = utils.get_at_index(patches, idx_mask)
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, unbiased=True, keepdim=True)
        target = (target - mean) / (var + eps) ** 0.5
    return ((full_precision(pred) - full_precision(target)) ** 2).mean()


class MAE(Method):
    name = "mae"
    title = "MAE"
    family = "masked-image-modelling"
    summary = ("Hides three quarters of a ViT's patches and reconstructs their pixels from the rest. "
               "Scales well and suits fine-tuning and dense tasks; needs a ViT backbone.")
    paper = "He et al., Masked Autoencoders Are Scalable Vision Learners, CVPR 2022"
    config_class = MAEConfig
    backbone_kinds = ("vit",)
    vit_reason = "masks image patches"
    # Paper: AdamW (betas 0.9, 0.95), base lr 1.5e-4 x batch/256, weight decay 0.05.
    default_optimizer = "adamw"
    default_lr = 1.5e-4
    default_weight_decay = 0.05
    collapse_advice = ("a masked autoencoder cannot collapse in this sense (it reconstructs pixels); low spread means the "
                       "features are not yet distinct: train longer, or raise mask_ratio")
    can_collapse = False

    def __init__(self, backbone, config: MAEConfig, world_size: int = 1):
        super().__init__(backbone, config, world_size)
        vit = backbone.model
        fresh = backbone.arch.get("builder") == "VisionTransformer"
        # Shares the backbone's VisionTransformer (same parameters), adding the token dropping;
        # a fresh ViT gets MAE's initialisation and fixed sine-cosine position embedding, a
        # pretrained one keeps its weights.
        self.encoder = MaskedVisionTransformerTorchvision(
            vit=vit,
            weight_initialization="" if fresh else "skip",
            pos_embed_initialization="sincos" if fresh else "skip",
        )
        self.patch_size = int(vit.patch_size)
        self.sequence_length = int(vit.seq_length)
        self.decoder = MAEDecoder(
            seq_length=vit.seq_length, num_layers=config.decoder_depth, num_heads=config.decoder_heads,
            embed_input_dim=vit.hidden_dim, hidden_dim=config.decoder_dim, mlp_dim=4 * config.decoder_dim,
            out_dim=3 * self.patch_size**2,
        )
        self.mask_token = torch.nn.Parameter(torch.zeros(1, 1, config.decoder_dim))
        torch.nn.init.normal_(self.mask_token, std=0.02)

    def view_specs(self, image_size: int) -> list[ViewSpec]:
        return [mae_view(image_size)]

    def training_step(self, views, state: StepState):
        images = views[0]
        b = images.shape[0]
        # Index 0 of the sequence is the class token: never masked, so patch i is token i + 1.
        idx_keep, idx_mask = utils.random_token_mask(
            size=(b, self.sequence_length), mask_ratio=self.config.mask_ratio, device=images.device)
        encoded = self.encoder.encode(images, idx_keep=idx_keep)
        tokens = self.decoder.embed(encoded)
        full = utils.repeat_token(self.mask_token, (b, self.sequence_length))
        full = utils.set_at_index(full, idx_keep, tokens.type_as(full))
        decoded = self.decoder.decode(full)
        pred = self.decoder.predict(utils.get_at_index(decoded, idx_mask))
        patches = utils.patchify(images, self.patch_size)
        return {"loss": mae_loss(pred, patches, idx_mask - 1, self.config.norm_pix_loss)}
