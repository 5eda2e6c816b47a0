"""Weighted k-nearest-neighbour classification of frozen features.

Wu, Xiong, Yu & Lin, "Unsupervised Feature Learning via Non-Parametric Instance Discrimination",
CVPR 2018, section 3.4. For a test feature f̂ (L2-normalised) and its k most cosine-similar
training features f_i with labels c_i, the score of class c is

    p_c = sum_{i in N_k(f̂)} exp(s_i / τ) · 1(c_i = c),      s_i = cos(f_i, f̂)

and the prediction is argmax_c p_c. This is the monitor most SSL papers report (InstDisc, MoCo,
DINO, solo-learn, lightly) because it needs no training and tracks linear-probe accuracy closely.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from studio.engine.eval._arrays import EvaluationError, to_tensor

# Elements of the (chunk × train) similarity matrix held at once: 2**25 float32 = 128 MiB, so a
# 100k × 100k evaluation runs in ~300 chunks instead of asking for a 40 GB matrix.
SIMILARITY_BUDGET = 2**25


def _prepare(train_features, train_labels, num_classes: int):
    train = to_tensor(train_features)
    if not train.is_floating_point() or train.dtype in (torch.float16, torch.bfloat16):
        # Half-precision cosine sums lose the ordering of close neighbours; float32 is cheap here.
        train = train.float()
    if train.ndim != 2 or train.shape[0] == 0:
        raise EvaluationError(f"kNN needs a non-empty (N, D) training set; got shape {tuple(train.shape)}.")
    labels = to_tensor(train_labels, device=train.device).long().reshape(-1)
    if labels.shape[0] != train.shape[0]:
        raise EvaluationError(
            f"kNN got {train.shape[0]} training features but {labels.shape[0]} labels."
        )
    if num_classes < 1:
        raise EvaluationError(f"num_classes must be at least 1; got {num_classes}.")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise EvaluationError(
            f"training labels must lie in [0, {num_classes}); got [{int(labels.min())}, {int(labels.max())}]."
        )
    return F.normalize(train, dim=1), labels


def knn_scores(
    train_features,
    train_labels,
    test_features,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Class scores p_c of Wu et al. 2018 (eq. above) for every test feature: (N_test, C) float32.

    Torch tensors on any device or numpy arrays; the work runs on the training features' device.
    `k` is clipped to the training-set size so a small labelled set still gives an answer.
    """
    if temperature <= 0:
        raise EvaluationError(f"temperature must be positive; got {temperature}.")
    if k < 1:
        raise EvaluationError(f"k must be at least 1; got {k}.")
    train, labels = _prepare(train_features, train_labels, num_classes)
    test = to_tensor(test_features)
    if test.ndim != 2 or test.shape[1] != train.shape[1]:
        raise EvaluationError(
            f"test features must be (N, {train.shape[1]}) like the training features; got {tuple(test.shape)}."
        )
    k = min(k, train.shape[0])
    if chunk_size is None:
        chunk_size = max(1, SIMILARITY_BUDGET // train.shape[0])
    out = np.empty((test.shape[0], num_classes), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, test.shape[0], chunk_size):
            # Moving per chunk keeps a CPU-resident test set from being copied to the GPU whole.
            chunk = F.normalize(test[start : start + chunk_size].to(train.device, train.dtype), dim=1)
            sims, idx = (chunk @ train.T).topk(k, dim=1)
            weights = (sims / temperature).exp()
            # scatter_add keeps memory at chunk × C; a one-hot (chunk × k × C) would not fit for
            # ImageNet-sized label sets.
            scores = torch.zeros(chunk.shape[0], num_classes, device=train.device, dtype=weights.dtype)
            scores.scatter_add_(1, labels[idx], weights)
            out[start : start + chunk.shape[0]] = scores.float().cpu().numpy()
    return out


def knn_predict(
    train_features,
    train_labels,
    test_features,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Weighted-kNN predicted labels (Wu et al. 2018): argmax_c p_c, as an int64 array (N_test,)."""
    scores = knn_scores(train_features, train_labels, test_features, num_classes, k, temperature, chunk_size)
    return scores.argmax(axis=1).astype(np.int64)


def knn_top1(
    train_features,
    train_labels,
    test_features,
    test_labels,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int | None = None,
) -> float:
    """Top-1 accuracy (0..1) of the weighted kNN classifier of Wu et al. 2018 on the test set."""
    truth = to_tensor(test_labels).long().reshape(-1).cpu().numpy()
    if truth.shape[0] == 0:
        raise EvaluationError("kNN accuracy needs at least one labelled test feature.")
    predicted = knn_predict(train_features, train_labels, test_features, num_classes, k, temperature, chunk_size)
    if predicted.shape[0] != truth.shape[0]:
        raise EvaluationError(f"kNN got {predicted.shape[0]} test features but {truth.shape[0]} test labels.")
    return float((predicted == truth).mean())


# The k of the sweep SSL papers report (InstDisc/DINO: 20 and 200; 10 for small label sets).
KNN_SWEEP = (10, 20, 200)


def knn_sweep(
    train_features,
    train_labels,
    test_features,
    test_labels,
    num_classes: int,
    ks=KNN_SWEEP,
    temperature: float = 0.1,
    chunk_size: int | None = None,
) -> dict:
    """Weighted-kNN top-1 (Wu et al. 2018) for several k in one pass over the similarities.

    Each k is capped by the training-set size; k that cap to the same value are scored once.
    Returns {"top1": {k: accuracy}, "k_requested": [...], "temperature": τ}, k as ints (the actual
    neighbours used). The top-k of the largest k holds every smaller top-k, so the cost is one kNN.
    """
    if temperature <= 0:
        raise EvaluationError(f"temperature must be positive; got {temperature}.")
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise EvaluationError(f"every k must be at least 1; got {ks}.")
    train, labels = _prepare(train_features, train_labels, num_classes)
    test = to_tensor(test_features)
    truth = to_tensor(test_labels).long().reshape(-1).to(train.device)
    if test.ndim != 2 or test.shape[1] != train.shape[1] or test.shape[0] != truth.shape[0] or test.shape[0] == 0:
        raise EvaluationError(
            f"test features must be a non-empty (N, {train.shape[1]}) matrix with one label each; "
            f"got {tuple(test.shape)} and {truth.shape[0]} labels."
        )
    used = sorted({min(k, train.shape[0]) for k in ks})
    kmax = used[-1]
    if chunk_size is None:
        chunk_size = max(1, SIMILARITY_BUDGET // train.shape[0])
    correct = dict.fromkeys(used, 0)
    with torch.no_grad():
        for start in range(0, test.shape[0], chunk_size):
            chunk = F.normalize(test[start : start + chunk_size].to(train.device, train.dtype), dim=1)
            sims, idx = (chunk @ train.T).topk(kmax, dim=1)  # sorted: most similar first
            weights = (sims / temperature).exp()
            want = truth[start : start + chunk.shape[0]]
            for k in used:
                scores = torch.zeros(chunk.shape[0], num_classes, device=train.device, dtype=weights.dtype)
                scores.scatter_add_(1, labels[idx[:, :k]], weights[:, :k])
                correct[k] += int((scores.argmax(1) == want).sum())
    n = test.shape[0]
    return {"top1": {k: correct[k] / n for k in used}, "k_requested": ks, "temperature": float(temperature)}
