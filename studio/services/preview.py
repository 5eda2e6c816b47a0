"""What a method's views look like before a run: a few images of the dataset, each with the views
the Trainer would make of it (issue 16, "expected and missing").

The views come from the Trainer's own path, never a copy of it: the method built from the run's
config (`build_method`, on the meta device: no weights, no random draws) says its `view_specs` at
the run's image size, the images are decoded as the decoded-image cache decodes them
(`resize_square` at that size), and `make_view` augments them. Its parameters come from a
generator of the preview's own, so a preview drawn while a run trains beside it leaves the run's
random stream alone, and the same seed draws the same images and views. The normalised views are
mapped back to displayable RGB with each view's own mean and std.

Methods that hide patches show one more column, view 1 as the encoder gets it: MAE's and SimMIM's
random token mask (lightly's `random_token_mask`, as their `training_step` draws it, with the
method's sequence length and mask ratio), and iBOT's/DINOv2's block mask (the method's own
`patch_mask`). The hidden patches are drawn grey.
"""

from __future__ import annotations

import dataclasses
import os
import random
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from studio.engine.data.cache import resize_square
from studio.engine.data.views import ViewSpec, make_view
from studio.engine.errors import DatasetError
from studio.engine.train import TrainConfig, build_method

DEFAULT_IMAGES = 6
MASK_GREY = 128  # the value a hidden patch is drawn with
# The fields of a run's config its views depend on: a change elsewhere needs no new preview.
VIEW_FIELDS = ("method", "method_config", "backbone", "backbone_options", "image_size")


class PreviewCancelled(Exception):
    """Raised between two images when the caller's `cancelled()` turned true."""


@dataclass(frozen=True)
class PreviewRow:
    """One image of the dataset and its views, each uint8 (H, W, 3)."""

    name: str  # the image's name in its source ("sample/17", a path)
    caption: str  # its class where the dataset has classes, else its name
    original: np.ndarray  # as the decoded-image cache holds it: image_size x image_size
    views: list[np.ndarray]  # one per column of `labels`, in the order the method trains on them


@dataclass(frozen=True)
class ViewPreview:
    method: str  # the method's title
    image_size: int
    original_label: str  # "original (16 px)"
    labels: list[str]  # one per view: "view 1 (global, 16 px)", "view 3 (local, 8 px)", "view 1 masked (…)"
    rows: list[PreviewRow]
    seed: int

    @property
    def columns(self) -> list[str]:
        """Every column's label, the original's first."""
        return [self.original_label, *self.labels]


def preview_key(config: TrainConfig) -> tuple:
    """What of `config` the preview depends on (the GUI redraws only when it changes)."""
    return tuple(repr(getattr(config, name)) for name in VIEW_FIELDS)


def view_labels(specs: list[ViewSpec], image_size: int) -> list[str]:
    """A label per view: the first two are the global views every method compares (DINO's and
    SwAV's `views[:2]`), a smaller one after them multi-crop's local view (a combined run's further
    full-size views, MAE's beside SimCLR's two, are global)."""
    return [f"view {i} ({'global' if i <= 2 or spec.size >= image_size else 'local'}, {spec.size} px)"
            for i, spec in enumerate(specs, 1)]


def to_rgb(views: torch.Tensor, spec: ViewSpec) -> np.ndarray:
    """Normalised float (N, 3, S, S) -> displayable uint8 (N, S, S, 3), undoing the view's normalisation."""
    mean = torch.tensor(spec.mean, dtype=views.dtype).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=views.dtype).view(1, 3, 1, 1)
    x = (views.detach().float().cpu() * std + mean).clamp(0, 1)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


@contextmanager
def _seeded_global_rng(seed: int):
    """lightly's mask functions draw from torch's and Python's global generators and take no
    generator: seed them for the draw and put them back after."""
    torch_state, py_state = torch.get_rng_state(), random.getstate()
    torch.manual_seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        random.setstate(py_state)


def patch_masks(method: Any, n: int, seed: int) -> tuple[np.ndarray, str] | None:
    """(n, grid, grid) bool masks of the patches `method` hides from its encoder and the column's
    label, or None for a method that masks nothing."""
    from lightly.models import utils

    config = method.config
    if hasattr(method, "patch_mask"):  # iBOT, DINOv2: block masks on a share of the global views
        with _seeded_global_rng(seed):
            block = method.patch_mask(2 * n, "cpu")[:n]
        return block.numpy(), "view 1 masked (student)"
    if hasattr(method, "context_mask"):  # I-JEPA: the context block, the targets it predicts hidden
        with _seeded_global_rng(seed):
            return method.context_mask(n).numpy(), "view 1: the context block"
    seq, ratio = getattr(method, "sequence_length", None), getattr(config, "mask_ratio", None)
    if seq is None or ratio is None:
        return None
    grid = int(round((seq - 1) ** 0.5))
    with _seeded_global_rng(seed):
        # As MAE's and SimMIM's training_step: token 0 is the class token, never masked.
        _, idx_mask = utils.random_token_mask(size=(n, seq), mask_ratio=ratio, device="cpu")
    flat = np.zeros((n, grid * grid), dtype=bool)
    np.put_along_axis(flat, (idx_mask - 1).numpy(), True, axis=1)
    return flat.reshape(n, grid, grid), f"view 1 masked ({ratio:.0%} of patches)"


def apply_mask(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 (S, S, 3) with the patches True in `mask` (grid, grid) drawn grey."""
    side, grid = image.shape[0], mask.shape[0]
    patch = side // grid
    big = np.kron(mask, np.ones((patch, patch), dtype=bool))
    out = image.copy()
    out[: big.shape[0], : big.shape[1]][big] = MASK_GREY
    return out


def choose_images(source, n: int, size: int, seed: int,
                  cancelled: Callable[[], bool] | None = None) -> list[tuple[int, np.ndarray]]:
    """`n` images of `source` drawn with `seed`, each (index, uint8 (3, S, S)) decoded as the
    decoded-image cache decodes it; unreadable ones are passed over."""
    order = np.random.default_rng(seed).permutation(len(source))
    out: list[tuple[int, np.ndarray]] = []
    for i in order:
        if len(out) == n:
            break
        if cancelled is not None and cancelled():
            raise PreviewCancelled("the preview was cancelled.")
        try:
            out.append((int(i), resize_square(source.load(int(i)), size)))
        except Exception:  # noqa: BLE001 - the cache skips an unreadable image; so does the preview
            continue
    if not out:
        raise DatasetError("none of the dataset's images could be read.")
    return out


def make_preview(source, config: TrainConfig, n: int = DEFAULT_IMAGES, seed: int = 0,
                 cancelled: Callable[[], bool] | None = None) -> ViewPreview:
    """The views `config`'s method trains on, for `n` images of `source` drawn with `seed`."""
    config = dataclasses.replace(config, pretrained=False)  # weights do not change the views
    config.validate()
    with torch.device("meta"):
        method = build_method(config)
    size = config.image_size
    specs = method.view_specs(size)
    chosen = choose_images(source, max(1, int(n)), size, seed, cancelled)
    images = torch.from_numpy(np.stack([img for _, img in chosen]))
    generator = torch.Generator().manual_seed(int(seed))
    columns = []
    for spec in specs:
        if cancelled is not None and cancelled():
            raise PreviewCancelled("the preview was cancelled.")
        columns.append(to_rgb(make_view(images, spec, generator=generator), spec))
    labels = view_labels(specs, size)
    masks = patch_masks(method, len(chosen), int(seed))
    if masks is not None:
        grids, label = masks
        columns.append(np.stack([apply_mask(v, m) for v, m in zip(columns[0], grids)]))
        labels.append(label)
    has_classes = len(source.class_names) > 1
    rows = []
    for r, (i, img) in enumerate(chosen):
        name = source.name(i)
        label = source.label(i) if has_classes else -1
        caption = f"class {source.class_names[label]}" if 0 <= label < len(source.class_names) else Path(name).name
        rows.append(PreviewRow(name=name, caption=caption, original=np.ascontiguousarray(img.transpose(1, 2, 0)),
                               views=[c[r] for c in columns]))
    return ViewPreview(method=type(method).title, image_size=size, original_label=f"original ({size} px)",
                       labels=labels, rows=rows, seed=int(seed))


def preview_views(project, dataset: str | int, config: TrainConfig, n: int = DEFAULT_IMAGES, seed: int = 0,
                  cancelled: Callable[[], bool] | None = None) -> ViewPreview:
    """The preview for a dataset of an open project."""
    from studio.services.datasets import open_dataset_source

    return make_preview(open_dataset_source(project, project.dataset(dataset)), config, n, seed, cancelled)


def preview_for_dataset(project_root: str | os.PathLike, dataset: str | int, config: TrainConfig,
                        n: int = DEFAULT_IMAGES, seed: int = 0,
                        cancelled: Callable[[], bool] | None = None) -> ViewPreview:
    """The preview with a Project of its own (for worker threads)."""
    from studio.store import Project

    with Project.open(Path(project_root), read_only=True) as project:
        return preview_views(project, dataset, config, n, seed, cancelled)
