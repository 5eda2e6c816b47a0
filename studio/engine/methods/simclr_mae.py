"""Contrastive plus masked reconstruction on one ViT: SimCLR's NT-Xent on two augmented views and
MAE's pixel reconstruction of a masked view, summed (the CMAE idea: Huang et al., "Contrastive
Masked Autoencoders are Stronger Vision Learners", TPAMI 2023, in its simplest form, without
CMAE's feature decoder and pixel shift)."""

from __future__ import annotations

from studio.engine.methods.combined import combined_class
from studio.engine.methods.mae import MAE
from studio.engine.methods.simclr import SimCLR

SimCLRMAE = combined_class(
    (SimCLR, MAE), class_name="SimCLRMAE", title="SimCLR + MAE",
    summary=("Contrastive and masked reconstruction on one ViT: SimCLR pulls two views of an image together "
             "while MAE rebuilds the hidden patches of a third, weighted 1 and 1. Aims at features good for "
             "retrieval (the contrastive term) and for fine-tuning (the reconstruction); needs a ViT backbone."),
    paper=("Chen et al., ICML 2020 (SimCLR) + He et al., CVPR 2022 (MAE); combined as in Huang et al., "
           "Contrastive Masked Autoencoders are Stronger Vision Learners, TPAMI 2023"),
    # MAE's optimiser (AdamW, 1.5e-4 x batch/256, weight decay 0.05): the reconstruction sets the ViT recipe.
    default_optimizer="adamw", default_lr=1.5e-4, default_weight_decay=0.05,
)
