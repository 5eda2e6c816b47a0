"""Shared pieces of the exporters: the error type and the encoder-with-heads wrapper (their
atomic writes are studio.engine.files.atomic_path, as checkpoints')."""

from __future__ import annotations

import torch
from torch import nn

from studio.engine.errors import StudioError

# Keys of the method's own modules (projection/prediction heads, momentum copies) in a weights
# file exported with heads; the prefix keeps them apart from the encoder's torchvision keys
# (a torchvision ViT already has a `heads.` of its own).
HEADS_PREFIX = "ssl_heads."


class ExportError(StudioError):
    """An export cannot be written or would not load as promised; the message says why."""


class ExportCancelled(ExportError):
    """The user stopped an export; nothing was recorded and no partial file is left."""


class EncoderWithHeads(nn.Module):
    """images -> (features, projections): the encoder followed by the method's projection head."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(x)
        return features, self.head(features)


def example_input(image_size: int, batch: int = 2) -> torch.Tensor:
    """A normalised-looking batch to trace with; two images so no size-1 dimension gets baked in."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, image_size, image_size, generator=generator)
