"""2-D maps, clusters and neighbours of an embedding set, for the embedding-map view.

* PCA: scikit-learn's exact/randomised SVD; linear, fast, deterministic.
* t-SNE: van der Maaten & Hinton, "Visualizing Data using t-SNE" (JMLR 2008), Barnes-Hut variant
  (van der Maaten, JMLR 2014) as implemented by scikit-learn.
* UMAP: McInnes, Healy & Melville, "UMAP: Uniform Manifold Approximation and Projection" (2018),
  from umap-learn.
* k-means: Lloyd's algorithm (scikit-learn KMeans, k-means++ init), or mini-batch k-means
  (Sculley, "Web-scale k-means clustering", WWW 2010) for large N.
* Neighbours by cosine similarity, the similarity SSL losses train (engine.eval.index: exact here).

sklearn and umap are imported inside the functions: umap pulls in numba and takes seconds to load.
"""

from __future__ import annotations

import math

import numpy as np

from studio.engine.eval._arrays import EvaluationError, check_matrix, to_numpy
from studio.engine.eval.index import NeighbourIndex

PROJECTION_ALGORITHMS = ("pca", "tsne", "umap")
# Above this many points k-means switches to mini-batches: full Lloyd on 100k × 2048 takes
# minutes on a laptop, mini-batch seconds, and the colouring does not need the exact optimum.
MINIBATCH_KMEANS_FROM = 10_000


def _prepare(vectors, min_rows: int = 3) -> np.ndarray:
    x = check_matrix(to_numpy(vectors, np.float32), "embeddings", min_rows=1)
    if x.shape[0] < min_rows:
        raise EvaluationError(f"a 2-D map needs at least {min_rows} points; got {x.shape[0]}.")
    if x.shape[1] < 2:
        # A zero column lets every algorithm (and t-SNE's PCA init) ask for 2 components.
        x = np.hstack([x, np.zeros((x.shape[0], 2 - x.shape[1]), dtype=np.float32)])
    return x


def project_2d(vectors, algorithm: str = "pca", seed: int | None = 0, **params) -> np.ndarray:
    """Map (N, D) embeddings to (N, 2) float32 coordinates with 'pca', 'tsne' or 'umap'.

    `params` go to the scikit-learn / umap-learn constructor (e.g. perplexity, n_neighbors,
    min_dist, max_iter, n_epochs). For tiny N the neighbourhood sizes are clipped so the
    algorithms accept the data: t-SNE's perplexity below N/3 (its default is 30) and UMAP's
    n_neighbors below N. A fixed seed makes every algorithm deterministic; for UMAP it also
    makes it single-threaded (umap-learn's rule), so pass seed=None for speed on large sets.
    """
    name = str(algorithm).lower().replace("-", "").replace("_", "")
    if name not in PROJECTION_ALGORITHMS:
        raise EvaluationError(
            f"unknown projection algorithm {algorithm!r}; choose one of {', '.join(PROJECTION_ALGORITHMS)}."
        )
    x = _prepare(vectors)
    n = x.shape[0]

    if name == "pca":
        from sklearn.decomposition import PCA

        out = PCA(n_components=2, random_state=seed, **params).fit_transform(x)

    elif name == "tsne":
        from sklearn.manifold import TSNE

        # The effective neighbour count is ~3·perplexity; sklearn rejects perplexity >= N and the
        # map degenerates well before that.
        perplexity = float(params.pop("perplexity", 30.0))
        perplexity = max(1.0, min(perplexity, (n - 1) / 3.0))
        params.setdefault("init", "pca")
        params.setdefault("learning_rate", "auto")
        out = TSNE(n_components=2, perplexity=perplexity, random_state=seed, **params).fit_transform(x)

    else:
        import umap  # lazily: numba import and JIT cost seconds

        n_neighbors = int(params.pop("n_neighbors", 15))
        n_neighbors = max(2, min(n_neighbors, n - 1))
        if seed is not None:
            # umap-learn forces one thread when seeded and warns unless told so.
            params.setdefault("n_jobs", 1)
        if n <= n_neighbors + 2:
            # Spectral init needs more points than eigenvectors requested; scipy fails otherwise.
            params.setdefault("init", "random")
        out = umap.UMAP(n_components=2, n_neighbors=n_neighbors, random_state=seed, **params).fit_transform(x)

    out = np.asarray(out, dtype=np.float32)
    if not np.isfinite(out).all():
        raise EvaluationError(f"the {name} projection produced NaN or infinite coordinates.")
    return out


def kmeans_labels(vectors, k: int, seed: int = 0, normalize: bool = True) -> np.ndarray:
    """Cluster ids (N,) int64 from k-means, for colouring a map when there are no labels.

    With `normalize` the vectors are L2-normalised first (spherical k-means), matching the cosine
    geometry SSL embeddings are trained in. `k` is clipped to N.
    """
    x = check_matrix(to_numpy(vectors, np.float32), "embeddings", min_rows=1)
    if k < 1:
        raise EvaluationError(f"k-means needs k >= 1; got {k}.")
    k = min(int(k), x.shape[0])
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if x.shape[0] >= MINIBATCH_KMEANS_FROM:
        from sklearn.cluster import MiniBatchKMeans

        model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096)
    else:
        from sklearn.cluster import KMeans

        model = KMeans(n_clusters=k, random_state=seed, n_init="auto")
    return model.fit_predict(x).astype(np.int64)


def nearest_neighbors(vectors, index: int, k: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The k rows most cosine-similar to row `index`, itself excluded.

    Returns (indices int64, cosine similarities float32), most similar first; k is clipped to N−1.
    Other rows identical to the query are kept: a duplicate image is worth seeing.
    """
    return NeighbourIndex(vectors, exact_up_to=math.inf).neighbours_of(index, k)


def nearest_to_vector(vectors, query_vector, k: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The k rows most cosine-similar to an outside `query_vector` (D,), e.g. a new image's embedding.

    Returns (indices int64, cosine similarities float32), most similar first; k is clipped to N.
    """
    return NeighbourIndex(vectors, exact_up_to=math.inf).search(query_vector, k)
