"""CLIP: Radford, Kim, Hallacy, Ramesh, Goh, Agarwal, Sastry, Askell, Mishkin, Clark, Krueger,
Sutskever. "Learning Transferable Visual Models From Natural Language Supervision", ICML 2021;
with SigLIP's loss as an option (Zhai, Mustafa, Kolesnikov, Beyer, "Sigmoid Loss for Language
Image Pre-Training", ICCV 2023) and locked-image tuning (LiT: Zhai et al., CVPR 2022).

The image tower is the run's backbone with a linear projection; the text tower, its BPE
tokenizer (the vocabulary ships inside the package, so it works offline) and both losses, with
their gather across processes, are open_clip's (MIT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from studio.engine.data.views import ViewSpec
from studio.engine.errors import ConfigError
from studio.engine.methods.base import Method, StepState, option

# (width, heads, layers) of the text transformer. CLIP's own is (512, 8, 12); small corpora and
# CPUs want less: "small" is the width 256, 4 heads, 4 layers.
TEXT_TOWERS = {"tiny": (128, 2, 2), "small": (256, 4, 4), "medium": (256, 4, 6), "clip": (512, 8, 12)}
VOCAB_SIZE = 49_408  # CLIP's BPE vocabulary, as open_clip's SimpleTokenizer builds it
MAX_LOGIT_SCALE = math.log(100.0)  # CLIP section 2.5: the temperature is clipped so logits scale at most 100


@dataclass
class CLIPConfig:
    text_tower: str = option("small", "text transformer (width, heads, layers): tiny (128, 2, 2), small (256, 4, 4), "
                                      "medium (256, 4, 6), clip (512, 8, 12: the paper's)", choices=tuple(TEXT_TOWERS))
    context_length: int = option(77, "tokens of a caption the text tower reads (paper: 77); longer ones are cut",
                                 min=8, max=77)
    embed_dim: int = option(256, "size of the shared image-text space (paper: 512 to 1024)", min=8, max=4096)
    loss: str = option("clip", "clip: symmetric InfoNCE over the batch (the paper's); siglip: a sigmoid per "
                               "image-text pair, no batch-wide softmax (SigLIP)", choices=("clip", "siglip"))
    temperature: float = option(0.07, "starting temperature of the clip loss, learnt from there and kept above "
                                      "0.01 (paper: 0.07); SigLIP starts at 0.1 with a bias of -10", min=0.01, max=1.0)
    lock_image: bool = option(False, "LiT: keep the image encoder as it starts (from another run) and train the text "
                                     "side only", label="lock the image encoder")
    image_lr_scale: float = option(1.0, "the image encoder's learning rate as a share of the run's (LiT unlocked: "
                                        "0.1 keeps most of what it learnt before)", min=0.0, max=1.0,
                                   label="image encoder learning-rate share")
    crop_min_scale: float = option(0.5, "smallest random crop, as a share of the image; no flips or colour changes, "
                                        "which a caption may name (paper: a random square crop only)", min=0.08, max=1.0,
                                   label="smallest crop")


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE (figure 3 of the paper): with L = s * I T^T over N normalised
    pairs, loss = (CE(L, arange N) + CE(L^T, arange N)) / 2, s = exp(t) the learnt logit scale.

    Computed by open_clip's ClipLoss; this function names it for readers and tests."""
    from open_clip.loss import ClipLoss

    return ClipLoss()(image_features, text_features, logit_scale)


def siglip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                logit_bias: torch.Tensor) -> torch.Tensor:
    """SigLIP's loss (eq. 1 of its paper): -1/N sum_ij log sigmoid(z_ij (s x_i.y_j + b)), z_ij = 1
    for a matching pair and -1 for every other, summed over the N x N pairs of the batch.

    Computed by open_clip's SigLipLoss."""
    from open_clip.loss import SigLipLoss

    return SigLipLoss()(image_features, text_features, logit_scale, logit_bias)


class TextTokens:
    """open_clip's CLIP tokenizer at a context length: texts in, (N, context) int64 tokens out."""

    def __init__(self, context_length: int):
        from open_clip.tokenizer import SimpleTokenizer

        self.context_length = context_length
        self._tokenizer = SimpleTokenizer(context_length=context_length)

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        return self._tokenizer(list(texts), context_length=self.context_length).long()


class CLIP(Method):
    name = "clip"
    title = "CLIP"
    family = "contrastive"
    summary = ("Aligns the image encoder with a text encoder on image-caption pairs: each image is pulled to its "
               "own caption and pushed from the batch's others. Gives zero-shot classification and text search; "
               "needs a dataset with captions (class-name templates do).")
    paper = "Radford et al., Learning Transferable Visual Models From Natural Language Supervision, ICML 2021"
    config_class = CLIPConfig
    image_text = True
    # AdamW as open_clip trains (wd 0.1-0.2). The rate is not a measured optimum: the sample's
    # templated captions (200 images, resnet18, 8 px, batch 64) reached zero-shot top-1 0.855 on them in 60 steps with
    # --lr 2e-3, i.e. 8e-3 per 256; give --lr for short runs (bench/clip.py).
    default_optimizer = "adamw"
    default_lr = 1e-3
    default_weight_decay = 0.1
    collapse_advice = ("lower the learning rate (a contrastive loss with negatives rarely collapses: when it does, "
                       "the learning rate is too high for the batch)")

    def __init__(self, backbone, config: CLIPConfig, world_size: int = 1):
        super().__init__(backbone, config, world_size)
        from open_clip.transformer import TextTransformer

        width, heads, layers = TEXT_TOWERS[config.text_tower]
        self.image_projection = nn.Linear(backbone.feature_dim, config.embed_dim, bias=False)
        self.text = TextTransformer(context_length=config.context_length, vocab_size=VOCAB_SIZE, width=width,
                                    heads=heads, layers=layers, output_dim=config.embed_dim)
        if config.loss == "siglip":
            self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
            self.logit_bias = nn.Parameter(torch.tensor(-10.0))
        else:
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.temperature)))
            self.logit_bias = None
        self.tokenizer = TextTokens(config.context_length)
        if config.lock_image:
            self.backbone.requires_grad_(False)
        elif config.image_lr_scale < 1.0:
            for p in self.backbone.parameters():
                p.lr_scale = config.image_lr_scale  # engine.train.optim gives these their own group
        self._criterion = None
        self.has_captions = torch.zeros(0, dtype=torch.bool)

    # -- the data ---------------------------------------------------------------------------
    def attach_data(self, data) -> None:
        """Tokenise every caption of the run's images once; a step then picks one per image."""
        captions = getattr(data, "captions", None)
        if not captions or not any(captions):
            raise ConfigError("CLIP learns from images with captions, and this dataset has none. Add captions "
                              "(a name.txt beside each image, or captions.csv / captions.jsonl in the folder), "
                              "or use a folder with one sub-folder per class, whose names make templated captions.")
        counts = torch.tensor([len(c) for c in captions], dtype=torch.long)
        # An image without a caption pairs with the empty text where the batch cannot drop it
        # (across processes every rank's share must be the same size).
        texts = [t for c in captions for t in (c or [""])]
        tokens = self.tokenizer(texts)
        starts = torch.cumsum(counts.clamp(min=1), 0) - counts.clamp(min=1)
        self.register_buffer("caption_tokens", tokens, persistent=False)
        self.register_buffer("caption_start", starts, persistent=False)
        self.register_buffer("caption_count", counts.clamp(min=1), persistent=False)
        self.has_captions = counts > 0

    def batch_tokens(self, indices: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens of one caption per image, which images have a caption): a caption drawn at
        random among an image's own, the same for a step on every rank and on a resume."""
        indices = indices.cpu()
        g = torch.Generator().manual_seed(1_000_003 * step + 17)
        draw = (torch.rand(len(indices), generator=g) * self.caption_count.cpu()[indices]).long()
        rows = self.caption_start.cpu()[indices] + draw
        return self.caption_tokens[rows.to(self.caption_tokens.device)], self.has_captions[indices]

    # -- the towers -------------------------------------------------------------------------
    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_projection(self.backbone(x)), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text(tokens), dim=-1)

    def output(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_image(x)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.config.lock_image:
            self.backbone.eval()  # LiT: a locked tower keeps its normalisation statistics too
        return self

    def criterion(self):
        if self._criterion is None:
            from open_clip.loss import ClipLoss, SigLipLoss

            rank = torch.distributed.get_rank() if self.world_size > 1 else 0
            if self.config.loss == "siglip":
                self._criterion = SigLipLoss(rank=rank, world_size=self.world_size)
            else:
                # Each rank's images against every rank's captions, with the gradient through the
                # gather: the sum over ranks is the loss of one process on the global batch.
                self._criterion = ClipLoss(local_loss=True, gather_with_grad=True, rank=rank, world_size=self.world_size)
        return self._criterion

    def view_specs(self, image_size: int) -> list[ViewSpec]:
        return [ViewSpec(size=image_size, scale=(self.config.crop_min_scale, 1.0), hflip_p=0.0, jitter_p=0.0, gray_p=0.0)]

    def training_step(self, views, state: StepState):
        if state.indices is None:
            raise ConfigError("CLIP needs the batch's image indices to find their captions.")
        x = views[0]
        # Captions are drawn for the global batch, so a process draws what one process would.
        tokens, keep = self.batch_tokens(state.indices, state.step)
        if self.world_size > 1:  # the views are this rank's share of the global batch already
            share = len(tokens) // self.world_size
            rank = torch.distributed.get_rank()
            tokens, keep = tokens[rank * share:(rank + 1) * share], keep[rank * share:(rank + 1) * share]
        if self.world_size == 1 and not bool(keep.all()) and int(keep.sum()) >= 2:
            keep = keep.to(x.device)
            x, tokens = x[keep], tokens[keep]
        image = self.encode_image(x)
        text = self.encode_text(tokens)
        scale = self.logit_scale.exp()
        if self.logit_bias is not None:
            loss = self.criterion()(image, text, scale, self.logit_bias)
        else:
            loss = self.criterion()(image, text, scale)
        return {"loss": loss, "logit_scale": scale.detach()}

    def on_after_step(self, state: StepState) -> None:
        with torch.no_grad():
            self.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)
