"""Evaluation math of the engine: kNN, linear probe, health metrics, 2-D maps and neighbours.

Pure functions over torch tensors or numpy arrays that return numpy arrays and Python numbers;
no Qt, SQLAlchemy or store imports (DESIGN.md rule 1). scikit-learn and umap-learn load lazily.
"""

from studio.engine.eval._arrays import EvaluationError
from studio.engine.eval.embed import EmbeddingCancelled, embed_images
from studio.engine.eval.finetune import finetune
from studio.engine.eval.health import (
    COLLAPSE_THRESHOLD,
    EFFECTIVE_RANK_COLLAPSE_THRESHOLD,
    STD_RATIO_COLLAPSE_THRESHOLD,
    alignment,
    collapse_verdict,
    effective_rank,
    embedding_std,
    health_report,
    uniformity,
)
from studio.engine.eval.knn import knn_predict, knn_scores, knn_top1
from studio.engine.eval.linear import linear_probe, split_indices
from studio.engine.eval.projection import (
    PROJECTION_ALGORITHMS,
    kmeans_labels,
    nearest_neighbors,
    nearest_to_vector,
    project_2d,
)

__all__ = [
    "COLLAPSE_THRESHOLD",
    "EFFECTIVE_RANK_COLLAPSE_THRESHOLD",
    "PROJECTION_ALGORITHMS",
    "STD_RATIO_COLLAPSE_THRESHOLD",
    "EmbeddingCancelled",
    "EvaluationError",
    "alignment",
    "collapse_verdict",
    "effective_rank",
    "embed_images",
    "embedding_std",
    "finetune",
    "health_report",
    "kmeans_labels",
    "knn_predict",
    "knn_scores",
    "knn_top1",
    "linear_probe",
    "nearest_neighbors",
    "nearest_to_vector",
    "project_2d",
    "split_indices",
    "uniformity",
]
