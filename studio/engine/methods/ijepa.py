"""I-JEPA: Assran, Duval, Misra, Bojanowski, Vincent, Rabbat, LeCun, Ballas. "Self-Supervised
Learning from Images with a Joint-Embedding Predictive Architecture", CVPR 2023."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from lightly.data.ijepa_collate import IJEPAMaskCollator
from lightly.models import utils
from lightly.models.modules import MaskedVisionTransformerTorchvision
from lightly.models.modules.ijepa import IJEPAPredictor

from studio.engine.data.views import ViewSpec, crop_scale
from studio.engine.errors import ConfigError
from studio.engine.methods.base import Method, StepState, full_precision, momentum_copy, option

LOSSES = ("l2", "smooth_l1")


@dataclass
class IJEPAConfig:
    target_blocks: int = option(4, "target blocks M whose representations are predicted (paper: 4)", min=1, max=16)
    target_min_scale: float = option(0.15, "smallest area fraction of a target block (paper: 0.15)", min=0.01, max=1.0)
    target_max_scale: float = option(0.2, "largest area fraction of a target block (paper: 0.2)", min=0.01, max=1.0)
    target_min_aspect: float = option(0.75, "smallest aspect ratio of a target block (paper: 0.75)", min=0.1, max=10.0)
    target_max_aspect: float = option(1.5, "largest aspect ratio of a target block (paper: 1.5)", min=0.1, max=10.0)
    context_min_scale: float = option(0.85, "smallest area fraction of the square context block, before the targets "
                                            "are taken out of it (paper: 0.85)", min=0.01, max=1.0)
    context_max_scale: float = option(1.0, "largest area fraction of the context block (paper: 1)", min=0.01, max=1.0)
    min_keep: int = option(10, "fewest patches a block keeps (paper: 10 of 196; capped at an eighth of a small "
                               "image's patches)", min=1, max=10_000)
    predictor_depth: int = option(12, "transformer blocks of the predictor (paper: 12, beside a 32-block ViT-H; "
                                      "fewer cost far less beside a small ViT)", min=1, max=48)
    predictor_dim: int = option(384, "width of the predictor, a multiple of the encoder's attention heads (paper: "
                                     "384, under a third of ViT-H's width)", min=8, max=4096)
    loss: str = option("l2", "distance between predicted and target patch representations: l2, the paper's "
                             "equation (squared), or smooth_l1, its released code's", choices=LOSSES)
    momentum: float = option(0.996, "target-encoder EMA momentum at the start (paper: 0.996)", min=0.0, max=1.0)
    momentum_end: float = option(1.0, "momentum at the last step, reached linearly (paper: 1)", min=0.0, max=1.0)


def ijepa_loss(pred: torch.Tensor, target: torch.Tensor, loss: str = "l2") -> torch.Tensor:
    """I-JEPA eq. 1: L = 1/M sum_i sum_{j in B_i} ||s^_y(j) - s_y(j)||^2_2, the predicted against
    the target encoder's (layer-normalised) representations of the patches j of the M target
    blocks B_i, here averaged over the patches and the D feature dimensions too (every block has
    the same size, as lightly's masks make them), so its scale does not follow the width.
    "smooth_l1" replaces the squared distance by the Huber form of the authors' released code.
    pred, target: (M * B, K, D), block-major (lightly's apply_masks)."""
    if loss == "smooth_l1":
        return F.smooth_l1_loss(full_precision(pred), full_precision(target))
    return F.mse_loss(full_precision(pred), full_precision(target))


class _BlockMasks(IJEPAMaskCollator):
    """lightly's I-JEPA block sampler, seeded by the training step (so a resumed run draws the
    block sizes an uninterrupted one would) and safe on the few patches of a small image."""

    seed = 0

    def step(self) -> int:
        return self.seed

    def _sample_block_size(self, generator, scale, aspect_ratio_scale):
        h, w = super()._sample_block_size(generator, scale, aspect_ratio_scale)
        # At least two patches: a one-patch block would squeeze to a 0-d index.
        h, w = max(1, h), max(1, w)
        if h * w < 2 and w + 1 < self.width:
            w += 1
        elif h * w < 2 and h + 1 < self.height:
            h += 1
        return h, w

    def _sample_block_mask(self, b_size, acceptable_regions=None):
        # A block must keep more than min_keep patches: at most all but one of its own, or the
        # upstream loop never ends on a small grid.
        keep = self.min_keep
        self.min_keep = min(keep, b_size[0] * b_size[1] - 1)
        try:
            mask, complement = super()._sample_block_mask(b_size, acceptable_regions)
        finally:
            self.min_keep = keep
        return mask.reshape(-1), complement

    def sample(self, batch: int, step: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(context indices [(B, Kc)], target indices [(B, Kt)] * M) of patches 0..N-1."""
        self.seed = step
        _, context, targets = self(list(range(batch)))
        return list(context), list(targets)


class IJEPA(Method):
    name = "ijepa"
    title = "I-JEPA"
    family = "masked-image-modelling"
    summary = ("Predicts, from one large context block of a ViT's patches, the representations a slowly "
               "moving target encoder gives four other blocks: masked prediction in feature space, with no "
               "pixels and no hand-made augmentations. Semantic features at a low cost; needs a ViT backbone.")
    paper = "Assran et al., Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture, CVPR 2023"
    config_class = IJEPAConfig
    backbone_kinds = ("vit",)
    vit_reason = "predicts blocks of image patches"
    # Paper (ViT-H/14): AdamW, lr 1e-3 at batch 2048 (1.25e-4 per 256), weight decay 0.04 (cosine to 0.4).
    default_optimizer = "adamw"
    default_lr = 1.25e-4
    default_weight_decay = 0.04
    collapse_advice = ("raise momentum (a slower target encoder), or lower the learning rate; I-JEPA holds only while "
                       "its predictor keeps up with the target")

    @classmethod
    def collapse_change(cls, config) -> dict:
        return {"momentum": 0.999} if config.momentum < 0.999 else {}

    def __init__(self, backbone, config: IJEPAConfig, world_size: int = 1):
        super().__init__(backbone, config, world_size)
        c = config
        vit = backbone.model
        heads = int(vit.encoder.layers[0].self_attention.num_heads)
        if c.predictor_dim % heads:
            raise ConfigError(f"I-JEPA: the predictor width {c.predictor_dim} must be a multiple of the encoder's "
                              f"{heads} attention heads.", setting="predictor_dim")
        self.grid = int(vit.image_size) // int(vit.patch_size)
        patches = self.grid * self.grid
        # Context and target encoders share the backbone's (and its EMA copy's) ViT and keep their
        # initialisation and position embedding.
        self.encoder = MaskedVisionTransformerTorchvision(vit=vit, weight_initialization="skip",
                                                          pos_embed_initialization="skip")
        self.encoder.mask_token.requires_grad_(False)  # nothing is masked in: tokens are dropped
        self.target_backbone = momentum_copy(backbone)
        self.target_encoder = MaskedVisionTransformerTorchvision(vit=self.target_backbone.model,
                                                                 weight_initialization="skip",
                                                                 pos_embed_initialization="skip")
        self.target_encoder.mask_token.requires_grad_(False)
        # lightly's predictor ties its MLP width to the encoder's width (mlp_dim is both); built with
        # the paper's 4x MLP and its in/out projections sized to the encoder instead.
        width = int(vit.hidden_dim)
        self.predictor = IJEPAPredictor(seq_length=patches + 1, num_layers=c.predictor_depth, num_heads=heads,
                                        hidden_dim=c.predictor_dim, predictor_embed_dim=c.predictor_dim,
                                        num_patches=patches, mlp_dim=4 * c.predictor_dim, dropout=0.0,
                                        attention_dropout=0.0)
        self.predictor.predictor_embed = torch.nn.Linear(width, c.predictor_dim)
        self.predictor.predictor_proj = torch.nn.Linear(c.predictor_dim, width)
        self.predictor.pos_embedding.requires_grad_(False)  # the Encoder's own: unused, the predictor's is sine-cosine
        self.masks = _BlockMasks(
            input_size=int(vit.image_size), patch_size=int(vit.patch_size),
            enc_mask_scale=(c.context_min_scale, max(c.context_min_scale, c.context_max_scale)),
            pred_mask_scale=(c.target_min_scale, max(c.target_min_scale, c.target_max_scale)),
            aspect_ratio=(c.target_min_aspect, max(c.target_min_aspect, c.target_max_aspect)),
            nenc=1, npred=c.target_blocks, min_keep=min(c.min_keep, max(1, patches // 8)), allow_overlap=False)

    def view_specs(self, image_size: int) -> list[ViewSpec]:
        # Paper: a random resized crop (0.3-1 of the area) and nothing else.
        return [ViewSpec(size=image_size, scale=crop_scale(image_size, (0.3, 1.0)), hflip_p=0.0, jitter_p=0.0,
                         gray_p=0.0)]

    def momentum_pairs(self):
        return [(self.backbone, self.target_backbone)]

    def momentum(self, state: StepState) -> float:
        # Paper, section 4: increased linearly from 0.996 to 1.0 over the run.
        start, end = float(self.config.momentum), float(self.config.momentum_end)
        return start + (end - start) * state.progress

    def context_mask(self, n: int, step: int = 0) -> torch.Tensor:
        """(n, grid, grid) bool: True on the patches the context encoder does not see (the targets
        and the rest of the image), as training_step draws them (for the view preview)."""
        context, _ = self.masks.sample(n, step)
        hidden = torch.ones(n, self.grid * self.grid, dtype=torch.bool)
        hidden.scatter_(1, context[0], False)
        return hidden.view(n, self.grid, self.grid)

    def predict(self, images: torch.Tensor, context: list[torch.Tensor], targets: list[torch.Tensor]):
        """(predicted, target) representations of the target blocks' patches, (M * B, K, D) each."""
        with torch.no_grad():
            h = self.target_encoder.encode(images)[:, 1:]  # the patch tokens; 0 is the class token
            h = F.layer_norm(h, (h.shape[-1],))
            h = utils.apply_masks(h, targets)
        ctx = context[0]
        keep = torch.cat([torch.zeros_like(ctx[:, :1]), ctx + 1], dim=1)  # the class token, then the context
        z = self.encoder.encode(images, idx_keep=keep)[:, 1:]
        return self.predictor(z, ctx, targets), h

    def training_step(self, views, state: StepState):
        images = views[0]
        context, targets = self.masks.sample(images.shape[0], state.step)
        context = [m.to(images.device) for m in context]
        targets = [m.to(images.device) for m in targets]
        pred, target = self.predict(images, context, targets)
        return {"loss": ijepa_loss(pred, target, self.config.loss)}
