"""Image retrieval by cosine similarity: recall@k and mean average precision of same-class images.

The retrieval protocol of deep metric learning (Song et al., "Deep Metric Learning via Lifted
Structured Feature Embedding", CVPR 2016, §5: Recall@K) and of DINO's image-retrieval table
(Caron et al. 2021, §4.2.2, mAP): each query image ranks the gallery by cosine similarity of
frozen features; an image of the query's class is relevant.

* recall@k: the fraction of queries with at least one relevant image among their k nearest.
* average precision of a query: the mean, over the ranks r of its relevant images, of the
  precision of the top r; mAP is its mean over queries (Manning et al., "Introduction to
  Information Retrieval", §8.4).

Queries whose class is absent from the gallery have nothing to find and are left out (counted).
"""

from __future__ import annotations

import numpy as np

from studio.engine.eval._arrays import EvaluationError, check_matrix, to_numpy

RECALL_AT = (1, 5, 10)
# Elements of the (chunk × gallery) similarity and rank matrices held at once.
_BUDGET = 2**23


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def retrieval_scores(query, query_labels, gallery, gallery_labels, ks=RECALL_AT) -> dict:
    """{"recall@k" for k in ks, "map", "num_queries", "num_gallery", "skipped_queries"}.

    k is capped by the gallery size. Ties in similarity keep gallery order (a stable sort).
    """
    q = _unit(check_matrix(to_numpy(query, np.float32), "query features").astype(np.float64))
    g = _unit(check_matrix(to_numpy(gallery, np.float32), "gallery features").astype(np.float64))
    qy = to_numpy(query_labels).reshape(-1)
    gy = to_numpy(gallery_labels).reshape(-1)
    if q.shape[1] != g.shape[1]:
        raise EvaluationError(f"query features have {q.shape[1]} dims but gallery features {g.shape[1]}.")
    if q.shape[0] != qy.shape[0] or g.shape[0] != gy.shape[0]:
        raise EvaluationError("retrieval needs one label per query and per gallery image.")
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise EvaluationError(f"every k must be at least 1; got {ks}.")
    keep = np.isin(qy, gy)
    q, qy = q[keep], qy[keep]
    if q.shape[0] == 0:
        raise EvaluationError("no query's class is in the gallery: retrieval has nothing to find.")
    hits = dict.fromkeys(ks, 0)
    ap_sum = 0.0
    positions = np.arange(1, g.shape[0] + 1)
    chunk = max(1, _BUDGET // g.shape[0])
    for start in range(0, q.shape[0], chunk):
        sims = q[start : start + chunk] @ g.T
        order = np.argsort(-sims, axis=1, kind="stable")
        relevant = gy[order] == qy[start : start + chunk, None]
        for k in ks:
            hits[k] += int(relevant[:, : min(k, g.shape[0])].any(axis=1).sum())
        precision = np.cumsum(relevant, axis=1) / positions
        ap_sum += float(((precision * relevant).sum(axis=1) / relevant.sum(axis=1)).sum())
    n = q.shape[0]
    out = {f"recall@{k}": hits[k] / n for k in ks}
    out.update({"map": ap_sum / n, "num_queries": int(n), "num_gallery": int(g.shape[0]),
                "skipped_queries": int((~keep).sum())})
    return out
