"""Image sources, the decoded-image cache and batched views (augmentations)."""

from studio.engine.data.cache import DecodedImages, decode_images
from studio.engine.data.sources import (
    FolderSource,
    ImageSource,
    SampleSource,
    SourceInfo,
    TorchvisionSource,
    default_dataset_name,
    open_source,
    parse_source_spec,
)

__all__ = [
    "DecodedImages",
    "FolderSource",
    "ImageSource",
    "SampleSource",
    "SourceInfo",
    "TorchvisionSource",
    "decode_images",
    "default_dataset_name",
    "open_source",
    "parse_source_spec",
]
