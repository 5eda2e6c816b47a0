"""Problems in a dataset, seen through its embeddings: near-duplicate groups and outliers.

* Near duplicates: pairs of images whose embeddings' cosine similarity is at least a threshold,
  joined into groups by union-find (a and b alike, b and c alike: one group a, b, c).
* Outliers: the cosine distance (1 - similarity) of each image to its k-th nearest other image;
  an image far from even its k-th neighbour is unlike the rest (Ramaswamy et al., "Efficient
  algorithms for mining outliers from large data sets", SIGMOD 2000: the k-th neighbour distance).

Both search exactly, with torch matmuls over blocks of rows (memory block x N, not N x N): fine up
to about 50k images on a CPU; beyond that an approximate index (faiss, usearch) is the tool.
Numpy or torch in; numpy arrays and dataclasses out (DESIGN.md rule 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from studio.engine.eval._arrays import EvaluationError

BLOCK_ELEMENTS = 1 << 24  # similarities held at once (64 MB of float32): rows per block = this / N
MAX_BLOCK_ROWS = 1024


class SearchCancelled(Exception):
    """The search was asked to stop (its `cancelled` callback said so between two blocks)."""


@dataclass(frozen=True)
class DuplicateGroup:
    indices: np.ndarray  # (M,) int64, M >= 2, ascending
    similarity: float  # the highest cosine similarity of a pair in the group


def _unit_rows(vectors) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(vectors) if not isinstance(vectors, torch.Tensor) else vectors)
    x = x.detach().to("cpu", torch.float32)
    if x.ndim != 2:
        raise EvaluationError(f"expected (N, D) embeddings, got shape {tuple(x.shape)}.")
    if not torch.isfinite(x).all():
        raise EvaluationError("the embeddings hold NaN or infinite values; compute them again.")
    return torch.nn.functional.normalize(x, dim=1)


def _blocks(n: int, block: int | None, cancelled: Callable[[], bool] | None):
    block = block or max(16, min(MAX_BLOCK_ROWS, BLOCK_ELEMENTS // max(1, n)))
    for start in range(0, n, block):
        if cancelled is not None and cancelled():
            raise SearchCancelled("the search was cancelled.")
        yield start, min(n, start + block)


def near_duplicate_groups(vectors, threshold: float = 0.97, block: int | None = None,
                          cancelled: Callable[[], bool] | None = None) -> list[DuplicateGroup]:
    """Groups of images whose embeddings are near copies (cosine >= threshold), largest first."""
    if not -1.0 <= threshold <= 1.0:
        raise EvaluationError(f"a cosine threshold lies in [-1, 1], not {threshold}.")
    z = _unit_rows(vectors)
    n = len(z)
    component = np.arange(n)  # union-find's roots, relabelled after each block's unions
    best = np.zeros(n, np.float64)  # each point's highest similarity to a partner
    linked = np.zeros(n, bool)
    for a, b in _blocks(n, block, cancelled):
        sims = z[a:b] @ z.T  # (rows, N)
        # Each pair once: column j > row i (the lower triangle and the diagonal are off).
        cols = torch.arange(n)[None, :]
        rows = torch.arange(a, b)[:, None]
        hit = (sims >= threshold) & (cols > rows)
        if not bool(hit.any()):
            continue
        i, j = (t.numpy() for t in torch.nonzero(hit, as_tuple=True))
        s = sims[i, j].numpy().astype(np.float64)
        i = i + a
        np.maximum.at(best, i, s)
        np.maximum.at(best, j, s)
        linked[i] = linked[j] = True
        _union(component, i, j)
    groups: dict[int, list[int]] = {}
    for idx in np.flatnonzero(linked):
        groups.setdefault(int(component[idx]), []).append(int(idx))
    out = [DuplicateGroup(np.asarray(members, np.int64), float(best[members].max())) for members in groups.values()]
    out.sort(key=lambda g: (-len(g.indices), -g.similarity, int(g.indices[0])))
    return out


def _union(component: np.ndarray, i: np.ndarray, j: np.ndarray) -> None:
    """Join the components of each pair (i[k], j[k]) in place: a union-find over the current
    roots, solved as connected components of the roots' graph (vectorised, no Python loop per pair)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    roots, inverse = np.unique(np.concatenate([component[i], component[j]]), return_inverse=True)
    m = len(roots)
    half = len(i)
    graph = coo_matrix((np.ones(half, np.int8), (inverse[:half], inverse[half:])), shape=(m, m))
    _, labels = connected_components(graph, directed=False)
    # Every member of a joined component takes the smallest root of its new component.
    new_root = np.full(labels.max() + 1, np.iinfo(np.int64).max)
    np.minimum.at(new_root, labels, roots)
    remap = np.arange(len(component))
    remap[roots] = new_root[labels]
    component[:] = remap[component]


def kth_neighbour_distance(vectors, k: int = 5, block: int | None = None,
                           cancelled: Callable[[], bool] | None = None) -> np.ndarray:
    """(N,) cosine distance of each image to its k-th nearest other image (larger: more alone)."""
    z = _unit_rows(vectors)
    n = len(z)
    if n < 2:
        return np.zeros(n, np.float32)
    k = max(1, min(int(k), n - 1))
    out = np.empty(n, np.float32)
    for a, b in _blocks(n, block, cancelled):
        sims = z[a:b] @ z.T
        sims[torch.arange(b - a), torch.arange(a, b)] = -float("inf")  # not its own neighbour
        kth = sims.topk(k, dim=1).values[:, -1]
        out[a:b] = (1.0 - kth).numpy()
    return out


def outlier_ranking(vectors, k: int = 5, block: int | None = None,
                    cancelled: Callable[[], bool] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indices, distances): every image, the most alone first (k-th neighbour distance)."""
    d = kth_neighbour_distance(vectors, k, block, cancelled)
    order = np.argsort(-d, kind="stable")
    return order.astype(np.int64), d[order]


__all__ = ["DuplicateGroup", "SearchCancelled", "kth_neighbour_distance", "near_duplicate_groups", "outlier_ranking"]
