"""Conversions shared by the evaluation modules: accept torch or numpy, hand back numpy."""

from __future__ import annotations

import numpy as np
import torch

from studio.engine.errors import StudioError


class EvaluationError(StudioError, ValueError):
    """Inputs to an evaluation cannot give a meaningful number (too few points, wrong shape, NaN).

    A ValueError too, so callers that only know the standard library still catch it.
    """


def to_numpy(array, dtype=None) -> np.ndarray:
    """A numpy view/copy of a torch tensor (any device) or array-like, detached from autograd."""
    if isinstance(array, torch.Tensor):
        array = array.detach()
        # numpy has no bfloat16/float16 matmul worth using; widen before leaving torch.
        if array.dtype in (torch.bfloat16, torch.float16):
            array = array.float()
        array = array.cpu().numpy()
    array = np.asarray(array)
    return array if dtype is None else array.astype(dtype, copy=False)


def to_tensor(array, device: torch.device | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A detached torch tensor from a tensor or array-like, optionally moved/cast."""
    tensor = array.detach() if isinstance(array, torch.Tensor) else torch.as_tensor(np.asarray(array))
    return tensor.to(device=device, dtype=dtype)


def check_matrix(array: np.ndarray, what: str, min_rows: int = 1) -> np.ndarray:
    """Reject anything that is not a finite (N, D) matrix with at least `min_rows` rows."""
    if array.ndim != 2:
        raise EvaluationError(f"{what} must be a 2-D array (N, D); got shape {tuple(array.shape)}.")
    if array.shape[0] < min_rows:
        raise EvaluationError(f"{what} needs at least {min_rows} rows; got {array.shape[0]}.")
    if array.shape[1] < 1:
        raise EvaluationError(f"{what} has no feature columns.")
    if not np.isfinite(array).all():
        raise EvaluationError(f"{what} contains NaN or infinite values; the encoder may have diverged.")
    return array
