"""How well k-means on frozen features recovers the classes: NMI and ARI against the labels.

The clustering evaluation of DeepCluster (Caron et al., ECCV 2018, §4.1: NMI) and of SCAN /
"Self-supervised learning for clustering" papers (Van Gansbeke et al., ECCV 2020: NMI, ARI):
run k-means with k = the number of classes on the L2-normalised features (spherical k-means,
the cosine geometry SSL trains; `projection.kmeans_labels`) and compare the clusters with the
labels, both scores invariant to how clusters are numbered:

* NMI: Strehl & Ghosh, "Cluster Ensembles" (JMLR 2002): I(C; Y) / mean(H(C), H(Y)) in [0, 1].
* ARI: Hubert & Arabie, "Comparing partitions" (J. Classification 1985): the Rand index
  corrected for chance, 1 for identical partitions and ~0 for a random one.
"""

from __future__ import annotations

import numpy as np

from studio.engine.eval._arrays import EvaluationError, check_matrix, to_numpy
from studio.engine.eval.projection import kmeans_labels


def partition_scores(clusters, labels) -> dict:
    """{"nmi", "ari"} of a clustering against labels (scikit-learn's metrics, arithmetic NMI)."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    c = to_numpy(clusters).reshape(-1)
    y = to_numpy(labels).reshape(-1)
    if c.shape != y.shape or c.shape[0] < 2:
        raise EvaluationError(f"clusters and labels must be two lists of one length >= 2; got {c.shape} and {y.shape}.")
    return {"nmi": float(normalized_mutual_info_score(y, c)), "ari": float(adjusted_rand_score(y, c))}


def clustering_scores(features, labels, k: int | None = None, seed: int = 0) -> dict:
    """k-means (k: the number of classes by default) on `features`, scored against `labels`.

    Returns {"nmi", "ari", "k", "num_images"}.
    """
    x = check_matrix(to_numpy(features, np.float32), "clustering features", min_rows=2)
    y = to_numpy(labels).reshape(-1)
    if x.shape[0] != y.shape[0]:
        raise EvaluationError(f"{x.shape[0]} features but {y.shape[0]} labels.")
    k = int(k or np.unique(y).shape[0])
    clusters = kmeans_labels(x, k, seed=seed, normalize=True)
    return {**partition_scores(clusters, y), "k": min(k, x.shape[0]), "num_images": int(x.shape[0])}
