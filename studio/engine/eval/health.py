"""Representation-health metrics on a batch of embeddings z of shape (N, D).

They answer "is the encoder collapsing?" while training runs, without labels:

* embedding_std: Chen & He, "Exploring Simple Siamese Representation Learning" (CVPR 2021), §4.1
  and Fig. 2: the mean over dimensions of the per-dimension standard deviation of z/‖z‖₂. Collapse
  to a constant gives 0; unit vectors spread like an isotropic Gaussian give 1/√D.
* effective_rank: Roy & Vetterli, "The effective rank: a measure of effective dimensionality"
  (EUSIPCO 2007): erank(z) = exp(H(p)), p_k = σ_k / Σ_j σ_j over the singular values σ of z. The
  same quantity as RankMe (Garrido et al., ICML 2023), which shows it tracks downstream accuracy.
  Detects dimensional collapse (all embeddings on a line or plane) that std alone can miss.
* alignment, uniformity: Wang & Isola, "Understanding Contrastive Representation Learning through
  Alignment and Uniformity on the Hypersphere" (ICML 2020), eq. 4 and 5.

Each function accepts a torch tensor (any device) or numpy array and returns a Python float; the
work is done on the CPU in float64 because the batches are small and the SVD wants precision.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from studio.engine.eval._arrays import EvaluationError, to_tensor

# A run is called collapsed when either holds. std_ratio = embedding_std · √D is ~1 for healthy
# embeddings whatever D is; SimSiam's collapsed runs sit at ~0 while its healthy ones stay near 1,
# so a tenth of the healthy value leaves a wide margin on both sides.
STD_RATIO_COLLAPSE_THRESHOLD = 0.1
# An effective rank below 1.5 means one direction carries (nearly) all the energy: complete
# collapse gives exactly 1, collapse onto one line ~1, while embeddings spread over just two
# directions already give ~2. Only applied when min(N, D) >= 2, since a single row or column has rank 1 by nature.
EFFECTIVE_RANK_COLLAPSE_THRESHOLD = 1.5
COLLAPSE_THRESHOLD = {"std_ratio": STD_RATIO_COLLAPSE_THRESHOLD, "effective_rank": EFFECTIVE_RANK_COLLAPSE_THRESHOLD}

# Uniformity is O(N²); beyond this many rows health_report measures a seeded random subset.
HEALTH_MAX_POINTS = 4096
# Rows per block of the pairwise-distance matrix in uniformity: keeps memory at 1024 × N.
_UNIFORMITY_CHUNK = 1024


def _as_batch(z, what: str = "embeddings", min_rows: int = 1) -> torch.Tensor:
    t = to_tensor(z).to("cpu", torch.float64)
    if t.ndim != 2:
        raise EvaluationError(f"{what} must be (N, D); got shape {tuple(t.shape)}.")
    if t.shape[0] < min_rows or t.shape[1] < 1:
        raise EvaluationError(f"{what} need at least {min_rows} rows and 1 column; got shape {tuple(t.shape)}.")
    if not torch.isfinite(t).all():
        raise EvaluationError(f"{what} contain NaN or infinite values; the encoder may have diverged.")
    return t


def embedding_std(z) -> float:
    """SimSiam's collapse monitor (Chen & He 2021): mean_d std_n( z_n / ‖z_n‖₂ )_d.

    Uses the unbiased (N−1) standard deviation, as torch.std does in SimSiam's code. Needs N >= 2.
    """
    t = _as_batch(z, min_rows=2)
    return float(F.normalize(t, dim=1).std(dim=0).mean())


def effective_rank(z, eps: float = 1e-12) -> float:
    """Roy & Vetterli 2007: exp(−Σ_k p_k log p_k), p_k = σ_k / ‖σ‖₁, σ the singular values of z.

    z is not centred (as in RankMe) so a batch collapsed to one constant vector has rank 1, not a
    rank made of rounding noise. An all-zero batch returns 0.
    """
    t = _as_batch(z)
    sigma = torch.linalg.svdvals(t)
    total = sigma.sum()
    if total <= eps:
        return 0.0
    p = sigma / total
    entropy = -(p * torch.log(p + eps)).sum()
    return float(torch.exp(entropy))


def alignment(z1, z2, alpha: float = 2) -> float:
    """Wang & Isola 2020 eq. 4: E_{(x,y)~positive pairs} ‖f(x) − f(y)‖₂^α on L2-normalised f.

    Row i of z1 and row i of z2 are the two views of one image. 0 means perfectly invariant
    (also true of a collapsed encoder, so read it next to uniformity); at most 2^α.
    """
    a = F.normalize(_as_batch(z1, "first views"), dim=1)
    b = F.normalize(_as_batch(z2, "second views"), dim=1)
    if a.shape != b.shape:
        raise EvaluationError(f"alignment needs paired views of one shape; got {tuple(a.shape)} and {tuple(b.shape)}.")
    return float((a - b).norm(dim=1).pow(alpha).mean())


def uniformity(z, t: float = 2) -> float:
    """Wang & Isola 2020 eq. 5: log E_{x≠y} exp(−t ‖f(x) − f(y)‖₂²) on L2-normalised f.

    The mean runs over the N(N−1)/2 unordered pairs, as torch.pdist does in the paper's code.
    0 for a collapsed batch; more negative is more uniform (≥ −4t). Computed as a blockwise
    log-sum-exp so large N neither overflows memory nor underflows exp.
    """
    x = F.normalize(_as_batch(z, min_rows=2), dim=1)
    n = x.shape[0]
    parts = []
    for start in range(0, n - 1, _UNIFORMITY_CHUNK):
        rows = x[start : start + _UNIFORMITY_CHUNK]
        # ‖a − b‖² = 2 − 2 a·b on the unit sphere; clamp the rounding that dips below 0.
        sq = (2.0 - 2.0 * rows @ x.T).clamp_min(0.0)
        i = torch.arange(start, start + rows.shape[0]).unsqueeze(1)
        j = torch.arange(n).unsqueeze(0)
        upper = j > i  # each unordered pair once, no self-pairs
        if upper.any():
            parts.append(torch.logsumexp((-t * sq)[upper], dim=0))
    log_sum = torch.logsumexp(torch.stack(parts), dim=0)
    return float(log_sum - math.log(n * (n - 1) / 2))


def spread_text(std_ratio: float | None) -> str:
    """The std ratio as the run's log and the Run page word it."""
    return "spread not finite" if std_ratio is None else f"spread {std_ratio:.3f} of a healthy ~1"


# The health monitor writes its verdict as the metric `collapse` (1.0 collapsing, 0.0 healthy);
# a value from the store is read as collapsing from this cut-off on.
COLLAPSE_METRIC_CUTOFF = 0.5


GENERIC_COLLAPSE_ADVICE = "try a lower learning rate, or the method's defaults"


def collapse_verdict(report: Mapping[str, Any], advice: str = "") -> tuple[bool, str]:
    """(collapsing, what to tell the user) for a health check, in the one wording the run's log
    and the Run page share.

    `report` is a `health_report` (keys `collapsed`, `std_ratio`) or the health monitor's
    metrics as stored (`collapse`, `embedding_std_ratio`); a missing spread reads as not finite.
    `advice` is the method's likely cause and change (`Method.collapse_advice`).
    """
    if "collapsed" in report:
        collapsing = bool(report["collapsed"])
    else:
        collapsing = float(report.get("collapse", 0.0)) >= COLLAPSE_METRIC_CUTOFF
    std_ratio = report.get("std_ratio", report.get("embedding_std_ratio"))
    spread = spread_text(std_ratio)
    if collapsing:
        return True, (f"the outputs are collapsing towards one point ({spread}; under "
                      f"{STD_RATIO_COLLAPSE_THRESHOLD} counts as collapse). If it lasts, the run learns "
                      f"nothing: {advice or GENERIC_COLLAPSE_ADVICE}.")
    return False, f"the outputs are spread out ({spread})."


# kNN top-1 this far under the untrained encoder's counts as "worse than no training" (the
# monitor's held-out split has a few hundred images: a point or two is noise).
BELOW_BASELINE_MARGIN = 0.01


def baseline_verdict(knn_top1: float, baseline: float | None) -> tuple[bool, str]:
    """(below, what to tell the user) for a kNN check against the untrained encoder's (the
    monitor's check at step 0): a short run must not end worse than random init unsaid."""
    if baseline is None or not math.isfinite(knn_top1) or not math.isfinite(baseline):
        return False, ""
    if knn_top1 < baseline - BELOW_BASELINE_MARGIN:
        return True, (f"kNN top-1 {knn_top1:.3f} is below the untrained encoder's {baseline:.3f} (step 0): the "
                      f"features are worse than none so far. A longer run usually passes it; if it does not, "
                      f"compare another method on these images.")
    return False, f"kNN top-1 {knn_top1:.3f} is above the untrained encoder's {baseline:.3f} again."


def health_report(z, z2=None, max_points: int | None = HEALTH_MAX_POINTS, seed: int = 0) -> dict:
    """All health metrics of one batch as plain values, plus a `collapsed` verdict.

    Keys: std, std_ratio (= std · √D), effective_rank, uniformity, alignment (only with z2, the
    other view of each row of z), collapsed (bool; see COLLAPSE_THRESHOLD). Batches larger than
    `max_points` are measured on a seeded random subset (same rows of z and z2) to bound the
    O(N²) uniformity; pass max_points=None to use every row.
    """
    a = _as_batch(z, min_rows=2)
    b = None if z2 is None else _as_batch(z2, "second views")
    if b is not None and b.shape != a.shape:
        raise EvaluationError(f"z2 must match z's shape {tuple(a.shape)}; got {tuple(b.shape)}.")
    if max_points is not None and a.shape[0] > max_points:
        keep = torch.randperm(a.shape[0], generator=torch.Generator().manual_seed(seed))[:max_points]
        a = a[keep]
        b = None if b is None else b[keep]
    n, d = a.shape
    std = embedding_std(a)
    std_ratio = std * math.sqrt(d)
    erank = effective_rank(a)
    report = {
        "std": std,
        "std_ratio": std_ratio,
        "effective_rank": erank,
        "uniformity": uniformity(a),
    }
    if b is not None:
        report["alignment"] = alignment(a, b)
    rank_collapsed = min(n, d) >= 2 and erank < EFFECTIVE_RANK_COLLAPSE_THRESHOLD
    report["collapsed"] = bool(std_ratio < STD_RATIO_COLLAPSE_THRESHOLD or rank_collapsed)
    return report

