"""Nearest-neighbour search over a dataset's embeddings, exact or through an index.

Up to EXACT_UP_TO rows a query is an exact cosine scan of the rows, normalised once when the index
is made (not at every click). From there on, a faiss inverted-file index (IVF-Flat on unit vectors;
Jégou, Douze & Schmid, "Product quantization for nearest neighbor search", TPAMI 2011, section
III-A): k-means splits the rows into about 4·√N cells and a query scans only the `nprobe` cells
nearest to it, so its cost grows like √N instead of N, and the similarities it returns are exact
for the rows it finds. `nprobe` is chosen when the index is built, by checking the index's recall
of the exact 16 nearest neighbours on sample queries until it reaches RECALL_TARGET: the index
knows, and says, how often it finds what an exact search finds.

Numpy or torch in; numpy out (DESIGN.md rule 4). Build a large index off the GUI thread.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from studio.engine.eval._arrays import EvaluationError, check_matrix, to_numpy

EXACT_UP_TO = 50_000  # rows searched exactly; above, an IVF index (a click at 50k x 512 costs ~10 ms)
RECALL_TARGET = 0.95  # of the exact 16 nearest neighbours, on CALIBRATION_QUERIES sample queries
CALIBRATION_QUERIES = 128
CALIBRATION_K = 16
TRAIN_ROWS_PER_CELL = 40  # k-means learns the cells from this many rows per cell (faiss asks for 39 or more)


def _ranked(candidates: np.ndarray, sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of `candidates` by `sims`, most similar first; equal similarities in index order
    so that results are reproducible."""
    k = min(k, len(candidates))
    if k <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    if k < len(candidates):
        top = np.argpartition(-sims, k - 1)[:k]
        candidates, sims = candidates[top], sims[top]
    order = np.lexsort((candidates, -sims))
    return candidates[order].astype(np.int64), sims[order].astype(np.float32)


def unit_rows(vectors, what: str = "embeddings") -> np.ndarray:
    x = check_matrix(to_numpy(vectors, np.float32), what, min_rows=1)
    if not np.isfinite(x).all():
        raise EvaluationError(f"the {what} contain NaN or infinite values; compute them again.")
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


class NeighbourIndex:
    """Cosine nearest neighbours of a query among N embeddings (N, D).

    `kind` is "exact" or "ivf"; `recall` is 1.0 for exact search and the measured share of the
    exact 16 nearest neighbours an IVF index finds; `nprobe` the cells it scans per query.
    """

    def __init__(self, vectors, *, exact_up_to: float | None = None, seed: int = 0,
                 report: Callable[[str, int, int], None] | None = None, cancelled: Callable[[], bool] | None = None):
        self.source = vectors  # what it was built from (a view asks whether it still shows these)
        self.unit = unit_rows(vectors)
        self.n, self.dim = self.unit.shape
        self.kind, self.recall, self.nprobe, self.cells = "exact", 1.0, 0, 0
        self._ivf = None
        if self.n > (EXACT_UP_TO if exact_up_to is None else exact_up_to):
            self._build_ivf(seed, report or (lambda *_: None), cancelled or (lambda: False))

    # -- building ---------------------------------------------------------------------------
    def _build_ivf(self, seed: int, report, cancelled) -> None:
        import faiss

        from studio.engine.eval.problems import SearchCancelled

        cells = max(1, min(int(4 * math.sqrt(self.n)), self.n // 39))
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, cells, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed = int(seed)
        ivf.cp.min_points_per_centroid = 1  # the training sample is chosen here; no warning about it
        rng = np.random.default_rng(seed)
        rows = min(self.n, cells * TRAIN_ROWS_PER_CELL)
        report("indexing: learning the cells", 0, 3)
        ivf.train(self.unit[np.sort(rng.choice(self.n, size=rows, replace=False))])
        if cancelled():
            raise SearchCancelled("the index was cancelled.")
        report("indexing: filing the embeddings", 1, 3)
        ivf.add(self.unit)
        if cancelled():
            raise SearchCancelled("the index was cancelled.")
        report("indexing: checking its recall", 2, 3)
        self._ivf, self.kind, self.cells = ivf, "ivf", cells
        self._calibrate(rng)
        report("indexing: done", 3, 3)

    def _calibrate(self, rng: np.random.Generator) -> None:
        queries = self.unit[rng.choice(self.n, size=min(CALIBRATION_QUERIES, self.n), replace=False)]
        k = min(CALIBRATION_K, self.n)
        exact = np.argpartition(-(queries @ self.unit.T), k - 1, axis=1)[:, :k]
        truth = [set(row.tolist()) for row in exact]
        nprobe = 1
        while True:
            self._ivf.nprobe = nprobe
            _, found = self._ivf.search(queries, k)
            recall = float(np.mean([len(t & set(f.tolist())) / k for t, f in zip(truth, found)]))
            if recall >= RECALL_TARGET or nprobe >= self.cells:
                self.nprobe, self.recall = nprobe, recall
                return
            nprobe = min(self.cells, nprobe * 2)

    # -- searching --------------------------------------------------------------------------
    def search(self, query, k: int = 16, exclude: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k rows most cosine-similar to `query` (D,), without row `exclude`: (indices int64,
        cosine similarities float32), most similar first; k is clipped to the rows there are."""
        q = to_numpy(query, np.float32).reshape(-1)
        if q.shape[0] != self.dim:
            raise EvaluationError(f"the query has {q.shape[0]} dims but the embeddings have {self.dim}.")
        if not np.isfinite(q).all():
            raise EvaluationError("the query vector contains NaN or infinite values.")
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        k = min(int(k), self.n - (exclude is not None))
        if k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        if self._ivf is None:
            sims = self.unit @ q
            candidates = np.arange(self.n)
            if exclude is not None:
                sims[exclude] = -np.inf
        else:
            sims, candidates = self._ivf.search(q[None, :], k + (exclude is not None))
            sims, candidates = sims[0], candidates[0]
            keep = candidates >= 0  # faiss pads with -1 when the cells scanned hold fewer than asked
            if exclude is not None:
                keep &= candidates != exclude
            sims, candidates = sims[keep], candidates[keep]
        return _ranked(candidates, sims, k)

    def neighbours_of(self, index: int, k: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """The k rows nearest to row `index`, itself excluded (rows identical to it are kept: a
        duplicate image is worth seeing)."""
        if not -self.n <= index < self.n:
            raise EvaluationError(f"index {index} is outside the {self.n} embeddings.")
        index = int(index) % self.n
        return self.search(self.unit[index], k, exclude=index)

    def describe(self) -> str:
        if self.kind == "exact":
            return f"exact search over {self.n:,} embeddings"
        return (f"an index of {self.n:,} embeddings in {self.cells:,} cells, {self.nprobe} scanned per query "
                f"(finds {self.recall:.0%} of the exact nearest 16)")


__all__ = ["EXACT_UP_TO", "NeighbourIndex", "RECALL_TARGET", "unit_rows"]
