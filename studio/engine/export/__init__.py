"""Exports of a trained encoder: torch.export programs, TorchScript, ONNX, library weights (torchvision/timm),
safetensors, dataset embeddings, and the model card written beside each.

Pure torch (no store, no Qt): `studio.services.export` joins these to a project's runs.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from studio.engine.export.card import (
    EMBEDDING_FORMATS, FORMAT_HINTS, FORMAT_TITLES, FORMATS, GRAPH_FORMATS, MODEL_FORMATS, build_card, readme, snippet,
)
from studio.engine.export.common import HEADS_PREFIX, EncoderWithHeads, ExportCancelled, ExportError
from studio.engine.export.embeddings import compute_embeddings, parquet_available, write_csv, write_npy, write_parquet

# The file name an export gets when only a folder is given.
DEFAULT_FILE_NAMES = {
    "exported-program": "encoder.pt2",
    "torchscript": "encoder.torchscript.pt",
    "onnx": "encoder.onnx",
    "torchvision": "encoder.pth",
    "safetensors": "encoder.safetensors",
    "embeddings-csv": "embeddings.csv",
    "embeddings-npy": "embeddings.npy",
    "embeddings-parquet": "embeddings.parquet",
}
SUFFIXES = {
    "exported-program": (".pt2",),
    "torchscript": (".pt", ".pth", ".ts", ".torchscript"),
    "onnx": (".onnx",),
    "torchvision": (".pth", ".pt", ".bin"),
    "safetensors": (".safetensors",),
    "embeddings-csv": (".csv",),
    "embeddings-npy": (".npy",),
    "embeddings-parquet": (".parquet",),
}


@dataclass
class LoadedEncoder:
    """A checkpoint's encoder ready to export, with what the card needs to say about it."""

    backbone: nn.Module
    config: Any  # TrainConfig
    step: int | None
    epoch: float | None
    method_state: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)

    @property
    def arch(self) -> dict[str, Any]:
        return dict(self.backbone.arch)


def load_for_export(checkpoint_path: str | os.PathLike, state: dict[str, Any] | None = None) -> LoadedEncoder:
    from studio.engine.train.checkpoint import load_encoder

    backbone, config, state = load_encoder(checkpoint_path, "cpu", state=state)
    step = state.get("step")
    epoch = state.get("epoch")
    return LoadedEncoder(backbone, config, int(step) if step is not None else None,
                         float(epoch) if epoch is not None else None, state.get("model", {}))


def projection_head(loaded: LoadedEncoder) -> nn.Module:
    """The trained projection head of the checkpoint's method, for graph exports with heads."""
    from studio.engine.train.trainer import build_method

    # Never download ImageNet weights just to rebuild a module whose weights are then replaced.
    method = build_method(dataclasses.replace(loaded.config, pretrained=False))
    method.load_state_dict(loaded.method_state, strict=True)
    head = getattr(method, "projection_head", None)
    if not isinstance(head, nn.Module):
        raise ExportError(
            f"{loaded.config.method} has no projection head to put in a torch.export, TorchScript or ONNX graph; "
            "export without heads, or to safetensors/torchvision weights, which keep every head."
        )
    return head.eval()


def export_model(loaded: LoadedEncoder, format: str, path: str | os.PathLike, with_heads: bool = False,
                 metadata: dict[str, str] | None = None) -> list[Path]:
    """Write `loaded` in a model format; returns the files written, the main one first."""
    from studio.engine.export import weights
    from studio.engine.export.text_tower import export_image_text, is_image_text

    if format in ("torchscript", "onnx", "safetensors") and is_image_text(loaded.config):
        return export_image_text(loaded, format, path, metadata=metadata)  # both towers, in the shared space
    backbone = loaded.backbone.cpu().eval()
    size = int(loaded.config.image_size)
    if format == "exported-program":
        from studio.engine.export.exported_program import export_program

        module = EncoderWithHeads(backbone, projection_head(loaded)) if with_heads else backbone
        return [export_program(module, size, path)]
    if format == "torchscript":
        from studio.engine.export.torchscript import export_torchscript

        module = EncoderWithHeads(backbone, projection_head(loaded)) if with_heads else backbone
        return [export_torchscript(module, size, path)]
    if format == "onnx":
        from studio.engine.export.onnx_export import export_onnx

        module = EncoderWithHeads(backbone, projection_head(loaded)) if with_heads else backbone
        return [export_onnx(module, size, path, with_heads=with_heads)]
    heads = weights.heads_state_dict(loaded.method_state) if with_heads else None
    if format == "torchvision":
        return weights.export_torchvision(backbone, path, heads)
    if format == "safetensors":
        return weights.export_safetensors(backbone, path, heads, metadata=metadata)
    raise ExportError(f"unknown model format {format!r}; choose one of {', '.join(MODEL_FORMATS)}.")


__all__ = [
    "DEFAULT_FILE_NAMES",
    "EMBEDDING_FORMATS",
    "FORMATS",
    "FORMAT_HINTS",
    "FORMAT_TITLES",
    "GRAPH_FORMATS",
    "HEADS_PREFIX",
    "MODEL_FORMATS",
    "SUFFIXES",
    "EncoderWithHeads",
    "ExportCancelled",
    "ExportError",
    "LoadedEncoder",
    "build_card",
    "compute_embeddings",
    "export_model",
    "load_for_export",
    "parquet_available",
    "projection_head",
    "readme",
    "snippet",
    "write_csv",
    "write_npy",
    "write_parquet",
]
