"""Batched embedding of decoded images by a frozen encoder.

The images are the decoded-image cache's uint8 (N, 3, S, S) array (often memory-mapped); each
batch is copied to the encoder's device, put through the deterministic evaluation view
(resize + normalise, `views.eval_view`) and encoded under `torch.no_grad`. Only one batch of
images and the (N, D) float32 result are ever in memory, so 100,000 images embed in bounded RAM.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from studio.engine.data.views import eval_view
from studio.engine.eval._arrays import EvaluationError

Progress = Callable[[int, int], None]


class EmbeddingCancelled(Exception):
    """Raised when the caller's `cancelled()` turned true between two batches."""


def module_device(module: torch.nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def embed_images(
    encoder: torch.nn.Module,
    images,
    batch_size: int = 256,
    image_size: int | None = None,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    indices=None,
) -> np.ndarray:
    """Embeddings (len, D) float32 of uint8 images (N, 3, S, S) (numpy, memmap or tensor).

    `indices` selects rows (the order of the result follows it). `image_size` resizes the
    evaluation view (default: the images' own size). The encoder is put in eval mode and restored
    to its previous mode afterwards, so a monitor can call this in the middle of training.
    """
    if batch_size < 1:
        raise EvaluationError(f"batch_size must be at least 1; got {batch_size}.")
    n_total = len(images)
    order = np.arange(n_total) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    n = int(order.shape[0])
    if n == 0:
        raise EvaluationError("there are no images to embed.")
    device = torch.device(device) if device is not None else module_device(encoder)
    was_training = encoder.training
    encoder.eval()
    chunks: list[np.ndarray] = []
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                if cancelled is not None and cancelled():
                    raise EmbeddingCancelled("embedding was cancelled")
                rows = order[start : start + batch_size]
                if isinstance(images, torch.Tensor):
                    batch = images[torch.from_numpy(rows).to(images.device)]
                else:
                    # Sorted fancy indexing reads a memory-mapped cache sequentially.
                    batch = torch.from_numpy(np.ascontiguousarray(images[rows]))
                x = eval_view(batch.to(device, non_blocking=True), image_size)
                z = encoder(x)
                if z.ndim != 2:
                    z = z.flatten(1)
                chunks.append(z.float().cpu().numpy())
                if progress is not None:
                    progress(min(start + batch_size, n), n)
    finally:
        encoder.train(was_training)
    out = np.concatenate(chunks, axis=0).astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        raise EvaluationError("the encoder produced NaN or infinite embeddings; the checkpoint may have diverged.")
    return out
