"""Linear probe: logistic regression on frozen, standardised features.

The linear-evaluation protocol of Zhang, Isola & Efros, "Colorful Image Colorization" (ECCV 2016),
used by SimCLR (Chen et al. 2020, §B.6) and most SSL papers since: freeze the encoder, fit a
multinomial logistic regression

    p(y = c | x) = softmax_c(W x̃ + b),   x̃ = (x − μ_train) / σ_train,
    min_{W,b}  ½‖W‖² + C · Σ_i −log p(y_i | x_i)

and report top-1 accuracy on held-out images. Standardising with training statistics only keeps
the held-out set unseen and lets one C suit backbones whose feature scales differ by orders of
magnitude. scikit-learn is imported inside the functions so importing the engine stays fast.
"""

from __future__ import annotations

import numpy as np

from studio.engine.eval._arrays import EvaluationError, check_matrix, to_numpy


def split_indices(labels, holdout_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into (train_idx, test_idx), both sorted int64 arrays.

    Stratified (every class keeps its share on both sides) when every class has at least two
    samples and the held-out side can hold one of each class; plain seeded random otherwise,
    because a stratified split is impossible then and a probe on a rough split beats none.
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise EvaluationError(f"holdout_fraction must lie strictly between 0 and 1; got {holdout_fraction}.")
    from sklearn.model_selection import train_test_split

    y = to_numpy(labels).reshape(-1)
    n = y.shape[0]
    if n < 2:
        raise EvaluationError(f"a train/held-out split needs at least 2 labelled samples; got {n}.")
    indices = np.arange(n)
    n_test = min(max(1, int(round(holdout_fraction * n))), n - 1)
    classes, counts = np.unique(y, return_counts=True)
    stratify = None
    if counts.min() >= 2 and len(classes) <= n_test and len(classes) <= n - n_test:
        stratify = y
    train_idx, test_idx = train_test_split(indices, test_size=n_test, random_state=seed, stratify=stratify)
    return np.sort(train_idx).astype(np.int64), np.sort(test_idx).astype(np.int64)


def linear_probe(
    train_x,
    train_y,
    test_x,
    test_y,
    C: float = 1.0,
    max_iter: int = 1000,
) -> dict:
    """Fit the linear probe above and return plain numbers.

    Returns {"top1": held-out accuracy, "train_top1": training accuracy, "converged": bool,
    "num_train": int, "num_test": int}. A large gap between train_top1 and top1 says the probe
    overfits (lower C); converged False says raise max_iter before trusting top1.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    xtr = check_matrix(to_numpy(train_x, np.float32), "linear-probe training features")
    xte = check_matrix(to_numpy(test_x, np.float32), "linear-probe test features")
    ytr = to_numpy(train_y).reshape(-1)
    yte = to_numpy(test_y).reshape(-1)
    if xtr.shape[0] != ytr.shape[0] or xte.shape[0] != yte.shape[0]:
        raise EvaluationError(
            f"features and labels differ in length: train {xtr.shape[0]} vs {ytr.shape[0]}, "
            f"test {xte.shape[0]} vs {yte.shape[0]}."
        )
    if xtr.shape[1] != xte.shape[1]:
        raise EvaluationError(f"train features have {xtr.shape[1]} dims but test features {xte.shape[1]}.")
    if np.unique(ytr).shape[0] < 2:
        raise EvaluationError("a linear probe needs labelled images of at least 2 classes in its training split.")
    if C <= 0:
        raise EvaluationError(f"C must be positive; got {C}.")

    scaler = StandardScaler().fit(xtr)
    model = LogisticRegression(C=C, max_iter=max_iter)
    model.fit(scaler.transform(xtr), ytr)
    return {
        "top1": float(model.score(scaler.transform(xte), yte)),
        "train_top1": float(model.score(scaler.transform(xtr), ytr)),
        "converged": bool(np.max(model.n_iter_) < max_iter),
        "num_train": int(xtr.shape[0]),
        "num_test": int(xte.shape[0]),
    }
