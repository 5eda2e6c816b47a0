"""Checkpoints: written whole or not at all, read without running any code from the file."""

from __future__ import annotations

import errno
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch

from studio.engine.errors import CheckpointError, DiskFullError, StudioError

FORMAT = "ssl-studio-checkpoint"
VERSION = 1


# How every layer says "no space left": the OS (errno), torch.save's zip writer (which turns the
# OSError of its file object into "unexpected pos"), SQLite, and the C library's message.
_DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_DISK_FULL_TEXTS = ("no space left", "disk is full", "disk quota exceeded", "database or disk is full")
# A safety margin beyond the checkpoint's own size: the database and the OS need room too.
FREE_SPACE_MARGIN = 16 * 2**20


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether `exc`, or any error it was raised from, says the disk (or quota) is full."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError):
            return True
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
            return True
        text = str(exc).lower()
        if any(t in text for t in _DISK_FULL_TEXTS):
            return True
        orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's error
        if isinstance(orig, BaseException) and is_disk_full(orig):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _disk_full(path: Path) -> DiskFullError:
    return DiskFullError(f"the disk is full; could not write the checkpoint {path.name}. Free some space and resume the run.")


def expected_size(path: Path, state: dict[str, Any]) -> int:
    """What the checkpoint will take: its tensors' bytes, or the previous checkpoint beside it
    when that was larger (the first checkpoint tells the size of every later one)."""
    nbytes = 0
    stack: list[Any] = [state]
    while stack:
        obj = stack.pop()
        if isinstance(obj, torch.Tensor):
            nbytes += obj.numel() * obj.element_size()
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
    previous = [p.stat().st_size for p in path.parent.glob("*.ckpt") if p.is_file()]
    return max([nbytes, *previous])


def free_space(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename over `path`: a crash at
    any moment leaves either the old file or the new one, never half of one.

    Refused before writing when the disk lacks room for it; a write that fails for lack of
    space (in any of its forms, see `is_disk_full`) raises DiskFullError and leaves no
    temporary file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    payload = {"format": FORMAT, "version": VERSION, **state}
    need = expected_size(path, payload) + FREE_SPACE_MARGIN
    try:
        have = free_space(path.parent)
    except OSError:
        have = need
    if have < need:
        raise DiskFullError(
            f"the disk is full: the checkpoint {path.name} needs about {need / 2**20:.0f} MB and "
            f"{have / 2**20:.0f} MB are free. Free some space and resume the run.")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(exc, Exception) and is_disk_full(exc):
            raise _disk_full(path) from exc
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


def load_encoder(path: str | os.PathLike, device: str | torch.device = "cpu", state: dict[str, Any] | None = None):
    """Rebuild the run's backbone from a checkpoint (or its `state`, loaded and checked already)
    and load its trained weights; the settings are checked against their bounds first, so a
    doctored file cannot ask for a 100,000-pixel model.

    Returns (backbone in eval mode, the checkpoint's TrainConfig, the checkpoint dict).
    """
    from studio.engine.backbones import build_backbone
    from studio.engine.train.config import TrainConfig

    state = load_checkpoint(path) if state is None else state
    try:
        config = TrainConfig.from_dict(state["config"]).validate()
    except (KeyError, TypeError, ValueError, StudioError) as exc:
        raise CheckpointError(f"{Path(path).name} holds settings this studio refuses ({exc}).") from None
    backbone = build_backbone(config.backbone, config.image_size, pretrained=False, **config.backbone_options)
    backbone.load_state_dict(encoder_state(state["model"]), strict=True)
    return backbone.to(device).eval(), config, state
