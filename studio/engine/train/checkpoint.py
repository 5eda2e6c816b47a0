"""Checkpoints: written whole or not at all, read without running any code from the file."""

from __future__ import annotations

import errno
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from studio.engine.files import atomic_path
from studio.engine.errors import CheckpointError, DiskFullError, StudioError

if TYPE_CHECKING:
    from studio.engine.train.config import TrainConfig

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
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
    except Exception as exc:  # atomic_path has removed the temporary file
        if is_disk_full(exc):
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


def load_backbone_from(backbone, path: str | os.PathLike) -> int:
    """Put the backbone weights of another run's checkpoint into `backbone` (LiT: an image tower
    pretrained by any method of the studio); returns the checkpoint's step. A checkpoint of
    another backbone, or one that does not fit, is a ConfigError that says which."""
    from studio.engine.errors import ConfigError

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"the checkpoint {path.name} to start the image encoder from is not on disk.", setting="init_from")
    state = load_checkpoint(path)
    name = (state.get("backbone") or {}).get("name")
    if name and name != backbone.name:
        raise ConfigError(f"the checkpoint {path.name} holds a {name}, not a {backbone.name}: choose the same backbone "
                          "as the run it comes from.", setting="init_from")
    try:
        backbone.load_state_dict(encoder_state(state["model"]), strict=True)
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise ConfigError(f"the checkpoint {path.name} does not fit this {backbone.name} (same image size and backbone "
                          f"options as its run?): {first}", setting="init_from") from None
    return int(state.get("step", 0))


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


# -- what a checkpoint holds beyond the modules, and when one is written --------------------------
def host_rng_state() -> dict[str, Any]:
    """Python's and NumPy's generators, as plain data a weights-only checkpoint can hold."""
    version, mt, gauss = random.getstate()
    _, key, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, torch.tensor(mt, dtype=torch.int64), gauss],
        "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(cached)},
    }


def set_host_rng_state(rng: dict[str, Any]) -> None:
    if rng.get("python") is not None:
        version, mt, gauss = rng["python"]
        random.setstate((version, tuple(int(v) for v in mt.tolist()), gauss))
    if rng.get("numpy") is not None:
        n = rng["numpy"]
        np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))


LAST_CHECKPOINT = "last.ckpt"  # written at the end of a run and when it is stopped
AUTO_CHECKPOINT = "auto.ckpt"  # the automatic one (by time or by share of the run), rewritten in place
HEALTHY_CHECKPOINT = "healthy.ckpt"  # the newest automatic one a health check found healthy (HealthyCheckpointKeeper)
# The automatic checkpoint comes at least every `checkpoint_minutes` and every twentieth of the
# run, so a crash costs at most that much work; but not more often than every
# AUTO_CHECKPOINT_MIN_S of training, as writing one costs seconds for a large model.
AUTO_CHECKPOINT_SHARE = 0.05
AUTO_CHECKPOINT_MIN_S = 60.0  # also keeps short runs (and tests) from writing one every few steps


class CheckpointSchedule:
    """When a run writes a checkpoint before its end: every `checkpoint_every` steps (kept, as
    step-N.ckpt) and, as the automatic checkpoint, once `checkpoint_minutes` of training time or
    a twentieth of the run's steps have passed since the last checkpoint, whichever comes first."""

    def __init__(self, config: TrainConfig, total: int, start_step: int, clock: Callable[[], float]):
        self.every = config.checkpoint_every
        self.seconds = config.checkpoint_minutes * 60.0
        self.share_steps = max(1, round(total * AUTO_CHECKPOINT_SHARE))
        self.total = total
        self.clock = clock
        self.saved(start_step)

    def saved(self, step: int) -> None:
        self.last_step, self.last_time = step, self.clock()

    def paused_for(self, seconds: float) -> None:
        """A pause is not training time."""
        self.last_time += max(0.0, seconds)

    def due(self, step: int) -> str | None:
        """The file name of the checkpoint to write after `step`, or None."""
        if step >= self.total:
            return None  # the end writes last.ckpt
        if self.every and step % self.every == 0:
            return f"step-{step}.ckpt"
        elapsed = self.clock() - self.last_time
        if self.seconds and elapsed >= self.seconds:
            return AUTO_CHECKPOINT
        if step - self.last_step >= self.share_steps and elapsed >= AUTO_CHECKPOINT_MIN_S:
            return AUTO_CHECKPOINT
        return None


class HealthyCheckpointKeeper:
    """Keeps the newest automatic checkpoint that a health check found healthy as healthy.ckpt,
    so that a run which collapses can be continued from before the collapse with a change
    (services.branch), although its automatic checkpoint is rewritten after the collapse.

    A checkpoint's verdict is the first health check at or after its step: the same weights, or
    later ones that grew from them. Before the automatic checkpoint is rewritten, a healthy one
    is renamed to healthy.ckpt (a rename: no copy is written); a run that ends healthy removes
    healthy.ckpt, one that ends collapsed keeps it. `notify` is (removed path | None, added
    (path, step) | None) for the run's listeners."""

    def __init__(self, run_dir: Path, notify: Callable[[Path | None, tuple[Path, int] | None], None]):
        self.run_dir = Path(run_dir)
        self.notify = notify
        self.auto: list = []  # [step, verdict]: the automatic checkpoint on disk; verdict None until checked

    @property
    def kept(self) -> Path:
        return self.run_dir / HEALTHY_CHECKPOINT

    def saved_auto(self, step: int) -> None:
        self.auto = [step, None]

    def checked(self, step: int, collapsed: bool) -> None:
        if self.auto and self.auto[1] is None and step >= self.auto[0]:
            self.auto[1] = not collapsed

    def before_auto_save(self) -> None:
        """The automatic checkpoint is about to be rewritten (or removed): keep it if healthy."""
        if not self.auto or not self.auto[1]:
            return
        auto = self.run_dir / AUTO_CHECKPOINT
        if not auto.is_file():
            return
        if self.kept.is_file():
            self.notify(self.kept, None)
        auto.replace(self.kept)
        self.notify(auto, (self.kept, self.auto[0]))
        self.auto = []

    def at_end(self, healthy: bool) -> None:
        """The run's last checkpoint is written and the automatic one is about to go."""
        if healthy:
            if self.kept.is_file():
                self.kept.unlink()
                self.notify(self.kept, None)
        else:
            self.before_auto_save()
