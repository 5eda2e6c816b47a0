"""Evaluation math of the engine: kNN, linear probe, few-shot, fine-tuning, retrieval, clustering,
health metrics, 2-D maps and neighbours.

Pure functions over torch tensors or numpy arrays that return numpy arrays and Python numbers;
no Qt, SQLAlchemy or store imports (DESIGN.md rule 1). scikit-learn and umap-learn load lazily.
"""

from studio.engine.eval._arrays import EvaluationError
from studio.engine.eval.procrustes import align_chain, match_clusters, procrustes_align
from studio.engine.eval.embed import EmbeddingCancelled, embed_images
from studio.engine.eval.clustering import clustering_scores, partition_scores
from studio.engine.eval.fewshot import FEW_SHOT_DRAWS, FEW_SHOTS, draw_shots, few_shot
from studio.engine.eval.finetune import LABEL_FRACTIONS, finetune, fraction_name, label_efficiency, label_subset
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
from studio.engine.eval.index import EXACT_UP_TO, NeighbourIndex
from studio.engine.eval.knn import KNN_SWEEP, knn_predict, knn_scores, knn_sweep, knn_top1
from studio.engine.eval.linear import linear_probe, split_indices
from studio.engine.eval.projection import (
    PROJECTION_ALGORITHMS,
    kmeans_labels,
    nearest_neighbors,
    nearest_to_vector,
    project_2d,
)
from studio.engine.eval.retrieval import RECALL_AT, retrieval_scores

__all__ = [
    "EXACT_UP_TO",
    "NeighbourIndex",
    "FEW_SHOTS",
    "FEW_SHOT_DRAWS",
    "KNN_SWEEP",
    "LABEL_FRACTIONS",
    "RECALL_AT",
    "clustering_scores",
    "draw_shots",
    "few_shot",
    "fraction_name",
    "knn_sweep",
    "label_efficiency",
    "label_subset",
    "partition_scores",
    "procrustes_align",
    "retrieval_scores",
    "COLLAPSE_THRESHOLD",
    "EFFECTIVE_RANK_COLLAPSE_THRESHOLD",
    "PROJECTION_ALGORITHMS",
    "STD_RATIO_COLLAPSE_THRESHOLD",
    "EmbeddingCancelled",
    "EvaluationError",
    "align_chain",
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
    "match_clusters",
    "nearest_neighbors",
    "nearest_to_vector",
    "project_2d",
    "split_indices",
    "uniformity",
]
