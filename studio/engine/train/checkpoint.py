"""Checkpoints: written whole or not at all, read without running any code from the file."""

from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from studio.engine.errors import CheckpointError, DiskFullError

FORMAT = "ssl-studio-checkpoint"
VERSION = 1


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename over `path`: a crash at
    any moment leaves either the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    payload = {"format": FORMAT, "version": VERSION, **state}
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"the disk is full; could not write the checkpoint {path.name}. Free some space and resume.") from exc
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with `weights_only=True`: a checkpoint is data, and a file replaced by a malicious
    pickle is refused instead of run."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"the checkpoint {path} does not exist.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise CheckpointError(
            f"{path.name} is not a valid SSL Studio checkpoint, or holds code rather than data, and was not loaded ({first[:200]})."
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path.name} is not an SSL Studio checkpoint.")
    if int(state.get("version", 0)) > VERSION:
        raise CheckpointError(f"{path.name} was written by a newer SSL Studio; update to read it.")
    return state


def encoder_state(method_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The backbone's own parameters out of a method's state dict (heads dropped)."""
    prefix = "backbone."
    return {k[len(prefix):]: v for k, v in method_state.items() if k.startswith(prefix)}


def load_encoder(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Rebuild the run's backbone from a checkpoint and load its trained weights.

    Returns (backbone in eval mode, the checkpoint's TrainConfig, the checkpoint dict).
    """
    from studio.engine.backbones import build_backbone
    from studio.engine.train.config import TrainConfig

    state = load_checkpoint(path)
    config = TrainConfig.from_dict(state["config"])
    backbone = build_backbone(config.backbone, config.image_size, pretrained=False, **config.backbone_options)
    backbone.load_state_dict(encoder_state(state["model"]), strict=True)
    return backbone.to(device).eval(), config, state
