"""Few-shot linear evaluation: a linear probe fitted on n labelled images per class.

The low-shot protocol of Goyal, Mahajan, Gupta & Misra, "Scaling and Benchmarking Self-Supervised
Visual Representation Learning" (ICCV 2019, §5) and of the semi-supervised tables of SimCLR / DINO
/ MSN (Assran et al. 2022, "Masked Siamese Networks", 1-5 images per class): freeze the encoder,
draw n images of every class from the training split, fit the same logistic regression as the
linear probe (`linear.linear_probe`) and score it on the whole held-out split. With so few
examples one draw is noisy, so the draw is repeated and the mean and standard deviation reported.
"""

from __future__ import annotations

import numpy as np

from studio.engine.eval._arrays import EvaluationError, check_matrix, to_numpy
from studio.engine.eval.linear import linear_probe

FEW_SHOTS = (1, 5, 10)
FEW_SHOT_DRAWS = 5


def draw_shots(labels, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of n rows of every class of `labels` (all of a class that has fewer)."""
    y = to_numpy(labels).reshape(-1)
    picked = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        picked.append(rng.choice(rows, size=min(n, len(rows)), replace=False))
    return np.sort(np.concatenate(picked)).astype(np.int64)


def few_shot(
    train_x,
    train_y,
    test_x,
    test_y,
    shots=FEW_SHOTS,
    draws: int = FEW_SHOT_DRAWS,
    seed: int = 0,
    C: float = 1.0,
    max_iter: int = 1000,
) -> dict:
    """Held-out top-1 of the linear probe trained on n images per class, for each n in `shots`.

    Returns {n: {"mean", "std", "draws": [top1 of each draw], "num_train": images per draw}}
    (n as int; std is the population std over the draws, 0 for one draw). Draws are seeded.
    """
    xtr = check_matrix(to_numpy(train_x, np.float32), "few-shot training features")
    ytr = to_numpy(train_y).reshape(-1)
    if draws < 1:
        raise EvaluationError(f"draws must be at least 1; got {draws}.")
    if np.unique(ytr).shape[0] < 2:
        raise EvaluationError("few-shot evaluation needs at least 2 classes in the training split.")
    if xtr.shape[0] != ytr.shape[0]:
        raise EvaluationError(f"{xtr.shape[0]} training features but {ytr.shape[0]} labels.")
    out = {}
    for n in shots:
        n = int(n)
        if n < 1:
            raise EvaluationError(f"shots must be at least 1; got {n}.")
        rng = np.random.default_rng([seed, n])
        scores, size = [], 0
        for _ in range(draws):
            rows = draw_shots(ytr, n, rng)
            size = len(rows)
            scores.append(linear_probe(xtr[rows], ytr[rows], test_x, test_y, C=C, max_iter=max_iter)["top1"])
        out[n] = {"mean": float(np.mean(scores)), "std": float(np.std(scores)), "draws": [float(s) for s in scores],
                  "num_train": int(size)}
    return out
