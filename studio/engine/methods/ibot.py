"""iBOT and DINOv2: DINO's image-level self-distillation combined with a masked-patch
self-distillation on one ViT, and (DINOv2) a KoLeo spread term.

iBOT: Zhou, Wei, Wang, Shen, Xie, Yuille, Kong. "iBOT: Image BERT Pre-Training with Online
Tokenizer", ICLR 2022. DINOv2: Oquab et al. "DINOv2: Learning Robust Visual Features without
Supervision", TMLR 2024 (its default config weighs DINO, iBOT and KoLeo 1, 1 and 0.1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from lightly.loss import IBOTPatchLoss, KoLeoLoss
from lightly.models import utils
from lightly.models.modules import MaskedVisionTransformerTorchvision

from studio.engine.methods.base import StepState, full_precision, option
from studio.engine.methods.dino import DINO, DINOConfig


@dataclass
class IBOTConfig(DINOConfig):
    output_dim: int = option(8192, "prototypes K of the shared head's last layer, for the class token and the "
                                   "patches (paper: 8192)", min=2)
    ibot_weight: float = option(1.0, "weight of the masked-patch self-distillation loss (paper: 1)", min=0.0, max=100.0)
    koleo_weight: float = option(0.0, "weight of the KoLeo spread term on the class tokens (iBOT: 0; DINOv2: 0.1)",
                                 min=0.0, max=100.0)
    mask_probability: float = option(0.5, "fraction of the global crops whose patches are masked (paper: 0.5)",
                                     min=0.0, max=1.0)
    min_mask_ratio: float = option(0.1, "least fraction of a masked image's patches hidden (paper: 0.1)", min=0.0, max=1.0)
    max_mask_ratio: float = option(0.5, "largest fraction of a masked image's patches hidden (paper: 0.5)", min=0.0, max=1.0)


@dataclass
class DINOv2Config(IBOTConfig):
    output_dim: int = option(8192, "prototypes K of the head's last layer (paper: 65536 on LVD-142M; 8192 for small sets)", min=2)
    koleo_weight: float = option(0.1, "weight of the KoLeo spread term on the class tokens (paper: 0.1)", min=0.0, max=100.0)
    momentum: float = option(0.992, "teacher EMA momentum at the start (paper: 0.992)", min=0.0, max=1.0)
    teacher_temp: float = option(0.07, "teacher temperature after the warm-up (paper: 0.07)", min=1e-3, max=10.0)
    local_crops: int = option(8, "small local crops per image, seen by the student only (paper: 8)", min=0, max=16)
    global_crop_min_scale: float = option(0.32, "smallest area fraction of a global crop (paper: 0.32)", min=0.01, max=1.0)
    local_crop_max_scale: float = option(0.32, "largest area fraction of a local crop (paper: 0.32)", min=0.01, max=1.0)


def ibot_patch_loss(teacher_patches: torch.Tensor, student_patches: torch.Tensor, mask: torch.Tensor,
                    center: torch.Tensor, teacher_temp: float, student_temp: float) -> torch.Tensor:
    """iBOT eq. 2 (the patch term): for each masked patch i of image b, with P_t = softmax((g_t(u_i) - c) /
    tau_t) from the teacher on the unmasked view and P_s = softmax(g_s(u~_i) / tau_s) from the student
    on the masked view, the cross-entropy -sum_k P_t,k log P_s,k, averaged over the masked patches of
    each image and then over images. `*_patches` are (M, K) for the M True entries of `mask` (B, H, W).

    Computed by lightly's IBOTPatchLoss; this function names it for readers and tests and leaves
    `center` unchanged."""
    loss = IBOTPatchLoss(output_dim=center.shape[-1], teacher_temp=teacher_temp, student_temp=student_temp)
    loss.center.center.copy_(center.reshape(loss.center.center.shape))
    return loss(teacher_patches, student_patches, mask)


class IBOT(DINO):
    name = "ibot"
    title = "iBOT"
    family = "combined"
    summary = ("Combines DINO's self-distillation of the class token with a masked-patch self-distillation: "
               "the student sees some patches masked and matches the teacher's view of them through the "
               "same head. Stronger ViT features than DINO alone; needs a ViT backbone.")
    paper = "Zhou et al., iBOT: Image BERT Pre-Training with Online Tokenizer, ICLR 2022"
    combines = ("dino", "masked-patch self-distillation")
    config_class = IBOTConfig
    backbone_kinds = ("vit",)
    vit_reason = "masks image patches"
    # Paper (ViT-S): AdamW, lr 5e-4 x batch/256, weight decay 0.04 (cosine to 0.4).
    default_optimizer = "adamw"
    default_lr = 5e-4
    default_weight_decay = 0.04
    collapse_advice = ("lower teacher_temp (sharper targets), or the learning rate; iBOT shares DINO's teacher, centring and "
                       "their failure modes")

    @classmethod
    def collapse_change(cls, config) -> dict:
        return {"teacher_temp": 0.04} if config.teacher_temp > 0.04 else {}

    def __init__(self, backbone, config: IBOTConfig, world_size: int = 1):
        super().__init__(backbone, config, world_size)
        c = config
        # The student's ViT with a learned mask token for the hidden patches, and the teacher's;
        # both share their modules' weights with the backbones (nothing re-initialised).
        self.mask_token = torch.nn.Parameter(torch.zeros(1, 1, backbone.model.hidden_dim))
        torch.nn.init.normal_(self.mask_token, std=0.02)
        self.student_encoder = MaskedVisionTransformerTorchvision(
            vit=backbone.model, mask_token=self.mask_token, weight_initialization="skip", pos_embed_initialization="skip")
        self.teacher_encoder = MaskedVisionTransformerTorchvision(
            vit=self.teacher_backbone.model, weight_initialization="skip", pos_embed_initialization="skip")
        self.teacher_encoder.mask_token.requires_grad_(False)
        self.patch_criterion = IBOTPatchLoss(output_dim=c.output_dim, teacher_temp=c.teacher_temp,
                                             student_temp=c.student_temp, center_momentum=c.center_momentum)
        self.koleo = KoLeoLoss()
        self.grid = int(backbone.model.image_size) // int(backbone.model.patch_size)

    def patch_mask(self, b: int, device) -> torch.Tensor:
        """Block masks (B, H, W) for a `mask_probability` share of the images (iBOT's blockwise masking)."""
        c = self.config
        return utils.random_block_mask(size=(b, self.grid, self.grid), batch_mask_ratio=c.mask_probability,
                                       min_image_mask_ratio=c.min_mask_ratio,
                                       max_image_mask_ratio=max(c.min_mask_ratio, c.max_mask_ratio),
                                       min_num_masks_per_block=1, device=device)

    def training_step(self, views, state: StepState):
        globals_, locals_ = torch.cat(views[:2]), views[2:]
        b = views[0].shape[0]
        block = self.patch_mask(2 * b, globals_.device)
        mask = torch.zeros(2 * b, 1 + self.grid * self.grid, dtype=torch.bool, device=globals_.device)
        mask[:, 1:] = block.flatten(1)  # token 0 is the class token: never masked
        temp = self.teacher_temperature(state)
        with torch.no_grad():
            t_tokens = self.teacher_encoder.encode(globals_)
            t_cls = self.teacher_head(t_tokens[:, 0])
            t_patch = self.teacher_head(t_tokens[mask])
        s_tokens = self.student_encoder.encode(globals_, mask=mask)
        s_cls_token = s_tokens[:, 0]
        s_cls = list(self.projection_head(s_cls_token).chunk(2))
        if locals_:
            s_cls += list(self.projection_head(self.backbone(torch.cat(locals_))).split(b))
        dino = self.criterion([full_precision(t) for t in t_cls.chunk(2)], [full_precision(s) for s in s_cls], teacher_temp=temp)
        out = {"loss/dino": dino}
        loss = dino
        if block.any() and self.config.ibot_weight > 0:
            s_patch = self.projection_head(s_tokens[mask])
            ibot = self.patch_criterion(full_precision(t_patch), full_precision(s_patch), block, teacher_temp=temp)
            loss = loss + self.config.ibot_weight * ibot
            out["loss/ibot"] = ibot
        if self.config.koleo_weight > 0:
            koleo = sum(self.koleo(F.normalize(full_precision(t), dim=1)) for t in s_cls_token.chunk(2))
            loss = loss + self.config.koleo_weight * koleo
            out["loss/koleo"] = koleo
        out["loss"] = loss
        out["teacher_temp"] = torch.tensor(temp, device=loss.device)
        return out


class DINOv2(IBOT):
    name = "dinov2"
    title = "DINOv2"
    summary = ("DINO plus iBOT's masked-patch self-distillation plus a KoLeo term that spreads the class "
               "tokens apart (weights 1, 1, 0.1, as its default config); mean centring of the teacher "
               "(the paper uses Sinkhorn-Knopp). The strongest general-purpose ViT recipe; needs a ViT.")
    paper = "Oquab et al., DINOv2: Learning Robust Visual Features without Supervision, TMLR 2024"
    combines = ("dino", "ibot", "koleo")
    config_class = DINOv2Config
    # Paper: AdamW, base lr 4e-3 x batch/1024 (1e-3 per 256), weight decay 0.04 (cosine to 0.2).
    default_lr = 1e-3
