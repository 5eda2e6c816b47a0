"""Aligning one 2-D map onto another, so a map of the next checkpoint does not jump about.

Orthogonal Procrustes with translation and uniform scale (Gower, "Generalized Procrustes
analysis", Psychometrika 1975; the rotation by Schönemann 1966, scipy.linalg.orthogonal_procrustes):
centre both maps, scale each to unit Frobenius norm, find the rotation (or reflection) R that
minimises ||A R - B||_F, and put the result back at the target's centre and scale. Projections
are only defined up to exactly these changes (PCA's signs, t-SNE's and UMAP's rotation and
spread), so removing them leaves only what the embeddings changed.
"""

from __future__ import annotations

import numpy as np

from studio.engine.eval._arrays import EvaluationError

# Below this Frobenius norm a centred map is one point: there is nothing to rotate or scale.
_DEGENERATE = 1e-12


def procrustes_align(source, target) -> np.ndarray:
    """`source` (N, d) rotated/reflected, uniformly scaled and shifted to lie best on `target`
    (N, d), row i onto row i; returns (N, d) with target's centre and Frobenius spread, in
    source's float dtype (float64 for integer input). A map aligned to itself is unchanged."""
    from scipy.linalg import orthogonal_procrustes

    a = np.asarray(source)
    b = np.asarray(target)
    if a.ndim != 2 or a.shape != b.shape:
        raise EvaluationError(f"maps to align need the same (N, d) shape; got {a.shape} and {b.shape}.")
    dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.float64
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if not (np.isfinite(a64).all() and np.isfinite(b64).all()):
        raise EvaluationError("maps to align must not contain NaN or infinite coordinates.")
    a_mean, b_mean = a64.mean(axis=0), b64.mean(axis=0)
    a_c, b_c = a64 - a_mean, b64 - b_mean
    a_norm, b_norm = np.linalg.norm(a_c), np.linalg.norm(b_c)
    if a_norm < _DEGENERATE or b_norm < _DEGENERATE:
        return np.broadcast_to(b_mean, a64.shape).astype(dtype)  # a map collapsed to one point
    rotation, _ = orthogonal_procrustes(a_c / a_norm, b_c / b_norm)
    return ((a_c / a_norm) @ rotation * b_norm + b_mean).astype(dtype)


def align_chain(maps) -> list[np.ndarray]:
    """Each map of a sequence aligned onto the previous one as aligned (the first unchanged), so
    a series of maps, one per checkpoint, moves only as much as the embeddings changed."""
    out: list[np.ndarray] = []
    for m in maps:
        out.append(np.asarray(m).copy() if not out else procrustes_align(m, out[-1]))
    return out


def match_clusters(labels, reference) -> np.ndarray:
    """Cluster ids (N,) renumbered so that each cluster takes the id of the `reference` cluster
    it shares the most points with (one to one, by the Hungarian method on the overlap counts),
    so k-means colours of the next checkpoint's map mean what they meant on the previous one.
    Clusters left without a partner get the ids after the reference's."""
    from scipy.optimize import linear_sum_assignment

    a = np.asarray(labels, dtype=np.int64)
    b = np.asarray(reference, dtype=np.int64)
    if a.shape != b.shape or a.ndim != 1:
        raise EvaluationError(f"cluster ids to match need the same (N,) shape; got {a.shape} and {b.shape}.")
    if not len(a):
        return a.copy()
    ids, inverse = np.unique(a, return_inverse=True)
    ref_ids, ref_inverse = np.unique(b, return_inverse=True)
    overlap = np.zeros((len(ids), len(ref_ids)), np.int64)
    np.add.at(overlap, (inverse, ref_inverse), 1)
    rows, cols = linear_sum_assignment(-overlap)
    new_id = np.empty(len(ids), np.int64)
    new_id[rows] = ref_ids[cols]
    spare = [i for i in range(len(ids)) if i not in set(rows.tolist())]
    new_id[spare] = int(ref_ids.max()) + 1 + np.arange(len(spare))
    return new_id[inverse]
