"""The explorer's search index (engine.eval.index): exact below the threshold, IVF above it, and
an IVF index that finds what exact search finds, as often as it says."""

import numpy as np
import pytest

from studio.engine.eval import EvaluationError, NeighbourIndex, nearest_neighbors
from studio.engine.eval.index import RECALL_TARGET
from studio.engine.eval.problems import SearchCancelled


def embeddings(n: int, dim: int = 32, latent: int = 6, seed: int = 0) -> np.ndarray:
    # Real embeddings lie near a low-dimensional set; so do these (a 6-d latent in 32 dims).
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, latent)) @ rng.normal(size=(latent, dim)) + 0.05 * rng.normal(size=(n, dim))).astype(np.float32)


def exact_top(x: np.ndarray, q: np.ndarray, k: int, exclude=None) -> np.ndarray:
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = u @ (q / np.linalg.norm(q))
    if exclude is not None:
        s[exclude] = -np.inf
    return np.argsort(-s, kind="stable")[:k]


def test_exact_index_below_the_threshold_matches_a_direct_scan():
    x = embeddings(300)
    index = NeighbourIndex(x)
    assert index.kind == "exact" and index.recall == 1.0
    idx, sims = index.neighbours_of(7, 10)
    assert 7 not in idx
    assert list(idx) == list(exact_top(x, x[7], 10, exclude=7))
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(sims, u[idx] @ u[7], atol=1e-5)
    assert list(nearest_neighbors(x, 7, 10)[0]) == list(idx)


def test_ivf_index_finds_what_exact_search_finds_as_often_as_it_says():
    x = embeddings(6000)
    index = NeighbourIndex(x, exact_up_to=1000, seed=0)
    assert index.kind == "ivf" and index.cells > 1 and 1 <= index.nprobe <= index.cells
    assert index.recall >= RECALL_TARGET
    assert index.nprobe < index.cells  # it scans a part of the data, or it is no index
    # On queries the calibration did not see, the recall holds (within a margin for the sample).
    queries = np.random.default_rng(5).choice(len(x), 100, replace=False)
    found = [len(set(index.neighbours_of(int(i), 16)[0]) & set(exact_top(x, x[i], 16, exclude=i))) / 16 for i in queries]
    assert np.mean(found) >= RECALL_TARGET - 0.05
    idx, sims = index.neighbours_of(11, 16)
    assert 11 not in idx and len(idx) == 16
    assert np.all(np.diff(sims) <= 1e-6)  # most similar first
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(sims, u[idx] @ u[11], atol=1e-5)  # exact similarities of what it found
    assert "cells" in index.describe() and f"{index.recall:.0%}" in index.describe()


def test_outside_query_and_bad_input():
    x = embeddings(2000)
    index = NeighbourIndex(x, exact_up_to=500)
    q = x[3] * 2.0  # the same direction: row 3 is its nearest
    idx, sims = index.search(q, 5)
    assert idx[0] == 3 and sims[0] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(EvaluationError, match="dims"):
        index.search(np.zeros(5, np.float32))
    with pytest.raises(EvaluationError, match="NaN"):
        index.search(np.full(32, np.nan, np.float32))
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(EvaluationError, match="NaN or infinite"):
        NeighbourIndex(bad)


def test_building_an_index_can_be_cancelled():
    with pytest.raises(SearchCancelled):
        NeighbourIndex(embeddings(3000), exact_up_to=100, cancelled=lambda: True)
