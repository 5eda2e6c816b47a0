"""Embeddings of a dataset: the encoder on the deterministic eval view, batched, without grad,
written as CSV, NumPy (+ a CSV index) or Parquet (with pyarrow) with paths and labels."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from studio.engine.data.views import IMAGENET_MEAN, IMAGENET_STD, eval_view
from studio.engine.export.common import ExportCancelled, ExportError
from studio.engine.files import atomic_path

Progress = Callable[[int, int], None]


def compute_embeddings(
    encoder: nn.Module,
    images: np.ndarray | torch.Tensor,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """(N, D) float32 features of uint8 images (N, 3, S, S); `should_stop` is asked between batches."""
    encoder = encoder.to(device).eval()
    n = len(images)
    out: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            if should_stop is not None and should_stop():
                raise ExportCancelled("the export was cancelled.")
            chunk = images[start:start + batch_size]
            # A copy: the cache is a read-only memory map, which torch will not wrap.
            x = chunk if isinstance(chunk, torch.Tensor) else torch.from_numpy(np.array(chunk))
            x = eval_view(x.to(device), mean=mean, std=std)
            out.append(encoder(x).float().cpu().numpy())
            if progress is not None:
                progress(min(start + batch_size, n), n)
    if not out:
        raise ExportError("the dataset holds no image to embed.")
    return np.concatenate(out).astype(np.float32, copy=False)


def _class_of(label: int, class_names: Sequence[str]) -> str:
    return class_names[label] if 0 <= label < len(class_names) else ""


def write_csv(path: str | os.PathLike, features: np.ndarray, names: Sequence[str], labels: Sequence[int],
              class_names: Sequence[str]) -> Path:
    """One row per image: path, label, class, f0..f{D-1} (float32 written with 9 significant digits)."""
    path = Path(path)
    dim = features.shape[1]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "class", *[f"f{i}" for i in range(dim)]])
            for name, label, row in zip(names, labels, features):
                w.writerow([name, int(label), _class_of(int(label), class_names), *(f"{v:.9g}" for v in row)])
    return path


def index_path_for(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(f"{path.stem}.index.csv")


def write_npy(path: str | os.PathLike, features: np.ndarray, names: Sequence[str], labels: Sequence[int],
              class_names: Sequence[str]) -> list[Path]:
    """`<stem>.npy` (N, D) float32 and `<stem>.index.csv` (row, path, label, class) in the same order."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, features.astype(np.float32, copy=False))
    index = index_path_for(path)
    with atomic_path(index) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["row", "path", "label", "class"])
            for i, (name, label) in enumerate(zip(names, labels)):
                w.writerow([i, name, int(label), _class_of(int(label), class_names)])
    return [path, index]


def parquet_available() -> bool:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def write_parquet(path: str | os.PathLike, features: np.ndarray, names: Sequence[str], labels: Sequence[int],
                  class_names: Sequence[str]) -> Path:
    """Columns path, label, class and embedding (a fixed-size list of float32)."""
    if not parquet_available():
        raise ExportError("Parquet export needs pyarrow: pip install 'ssl-studio[parquet]', or export CSV or NPY.")
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, dim = features.shape
    flat = pa.array(np.ascontiguousarray(features, dtype=np.float32).reshape(-1), type=pa.float32())
    table = pa.table({
        "path": pa.array(list(names), type=pa.string()),
        "label": pa.array([int(v) for v in labels], type=pa.int64()),
        "class": pa.array([_class_of(int(v), class_names) for v in labels], type=pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
    })
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, str(tmp))
    return path
