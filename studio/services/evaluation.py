"""Evaluating runs and computing embeddings and 2-D maps, recorded in the project database.

* `compute_embeddings`: a checkpoint's embeddings of a dataset, saved as float32 .npy under
  `embeddings/` in the project folder, described by a row of the database; computed once.
* `embedding_map`: a 2-D map (PCA, t-SNE, UMAP) of stored embeddings, saved and cached the same
  way, so the explorer reopens instantly.
* `evaluate_run`: kNN, linear probe and fine-tuning (against the same encoder at its random
  initialisation) on a labelled dataset, each stored as an evaluation of the run and checkpoint.

Checkpoint step 0 means the run's encoder at initialisation: built from the run's seed exactly as
the Trainer builds it before its first step, so "random init" is this run's own starting point.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from studio.engine.data.cache import DecodedImages
from studio.engine.errors import CheckpointError, StudioError
from studio.engine.eval import EvaluationError
from studio.engine.train import TrainConfig
from studio.services.datasets import load_images
from studio.store import CheckpointRecord, DatasetRecord, EmbeddingRecord, Project

# report(stage, done, total): what is being done ("embedding", "knn", "map: umap", ...) and how far.
Report = Callable[[str, int, int], None]
INITIAL_STEP = 0
HOLDOUT_FRACTION = 0.2


def _noop(stage: str, done: int, total: int) -> None:
    pass


@dataclass
class EmbeddingSet:
    """Stored embeddings with what the explorer needs beside them (all plain data)."""

    record: EmbeddingRecord
    vectors: np.ndarray  # (N, D) float32
    labels: np.ndarray  # (N,) int64, -1 without labels
    names: list[str]  # file path or id of each image, as the source names it
    class_names: list[str]
    images: np.ndarray  # decoded uint8 (N, 3, S, S), for thumbnails
    dataset: DatasetRecord | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def has_labels(self) -> bool:
        return len(self.class_names) > 1 and bool((self.labels >= 0).all())


# -- encoders -----------------------------------------------------------------------------------
def _device(device: str | torch.device | None) -> torch.device:
    if isinstance(device, torch.device):
        return device
    from studio.engine.device import resolve_device

    return resolve_device(device or "auto", amp=False).device


def checkpoint_for(project: Project, run_id: int, step: int | None = None) -> CheckpointRecord:
    """The run's checkpoint at `step` (None: the newest one on disk)."""
    if step is None:
        ck = project.latest_checkpoint(run_id)
        if ck is None:
            raise CheckpointError(f"run {run_id} has no checkpoint yet; train it first (or evaluate step 0, its initial weights).")
        return ck
    for ck in reversed(project.checkpoints(run_id)):
        if ck.step == step and project.abs(ck.path).is_file():
            return ck
    have = ", ".join(str(c.step) for c in project.checkpoints(run_id)) or "none"
    raise CheckpointError(f"run {run_id} has no checkpoint at step {step} (steps: {have}).")


def run_encoder(project: Project, run_id: int, step: int | None = None, device: str | torch.device | None = "cpu"):
    """(encoder in eval mode, TrainConfig, checkpoint step) of a run; step 0 = initial weights."""
    from studio.engine.train.checkpoint import load_encoder

    dev = _device(device)
    if step == INITIAL_STEP:
        config = TrainConfig.from_dict(project.run(run_id).config)
        return initial_encoder(config, dev), config, INITIAL_STEP
    from studio.services.runs import verify_checkpoint

    ck = checkpoint_for(project, run_id, step)
    state = verify_checkpoint(project, project.run(run_id), ck)
    encoder, config, _ = load_encoder(project.abs(ck.path), dev, state=state)
    return encoder, config, ck.step


def initial_encoder(config: TrainConfig, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The encoder as the Trainer builds it before step 1 (same seed, same construction order)."""
    from studio.engine.train.trainer import build_method

    state = torch.get_rng_state()
    try:
        torch.manual_seed(config.seed)
        backbone = build_method(config).backbone
    finally:
        torch.set_rng_state(state)
    return backbone.to(device).eval()


# -- embeddings ---------------------------------------------------------------------------------
def _dataset_record(project: Project, run_id: int, dataset: str | int | None) -> DatasetRecord:
    return project.dataset(dataset if dataset is not None else project.run(run_id).dataset_id)


def _embedding_path(project: Project, run_id: int, step: int, dataset_id: int, digest: str = ""):
    folder = project.root / "embeddings"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"run{run_id}-step{step}-dataset{dataset_id}{'-' + digest if digest else ''}.npy"


def _checkpoint_key(project: Project, run_id: int, step: int) -> str:
    """What cached embeddings of a checkpoint are keyed by besides its step: its content (a file
    replaced under the same step is another checkpoint); "" for the initial weights."""
    from studio.services.runs import checkpoint_digest

    if step == INITIAL_STEP:
        return "init"
    return checkpoint_digest(project, checkpoint_for(project, run_id, step))


def _cached_embedding(project: Project, run_id: int, step: int, dataset_id: int, digest: str):
    for e in reversed(project.embeddings(run_id)):
        if (e.checkpoint_step == step and e.dataset_id == dataset_id and Path(e.path).stem.endswith("-" + digest)
                and project.abs(e.path).is_file()):
            return e
    return None


def _resolve_step(project: Project, run_id: int, step: int | None) -> int:
    return step if step == INITIAL_STEP else checkpoint_for(project, run_id, step).step


def compute_embeddings(
    project: Project,
    run_id: int,
    dataset: str | int | None = None,
    checkpoint_step: int | None = None,
    device: str | torch.device | None = "auto",
    batch_size: int = 256,
    report: Report | None = None,
    cancelled: Callable[[], bool] | None = None,
    recompute: bool = False,
) -> EmbeddingSet:
    """Embeddings of `dataset` (default: the run's) by the run's checkpoint (default: newest),
    loaded from the project when computed before, else computed and stored."""
    from studio.engine.eval import embed_images

    report = report or _noop
    ds = _dataset_record(project, run_id, dataset)
    step = _resolve_step(project, run_id, checkpoint_step)
    config = TrainConfig.from_dict(project.run(run_id).config)
    report("loading images", 0, 1)
    images = load_images(project, ds, config.image_size, lambda d, t: report("loading images", d, t))
    digest = _checkpoint_key(project, run_id, step)
    record = None if recompute else _cached_embedding(project, run_id, step, ds.id, digest)
    if record is not None:
        vectors = np.load(project.abs(record.path))
        if len(vectors) == len(images):
            return _embedding_set(record, vectors, images, ds)
    encoder, config, step = run_encoder(project, run_id, step, device)
    vectors = embed_images(encoder, images.images, batch_size, config.image_size,
                           progress=lambda d, t: report("embedding", d, t), cancelled=cancelled)
    path = _embedding_path(project, run_id, step, ds.id, digest)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)
    record = project.add_embedding(ds.id, path, len(vectors), int(vectors.shape[1]), run_id=run_id, checkpoint_step=step)
    return _embedding_set(record, vectors, images, ds)


def _embedding_set(record: EmbeddingRecord, vectors: np.ndarray, images: DecodedImages, ds: DatasetRecord) -> EmbeddingSet:
    return EmbeddingSet(record, np.asarray(vectors, dtype=np.float32), np.asarray(images.labels, dtype=np.int64),
                        list(images.names), list(images.class_names), images.images, ds)


def load_embedding_set(project: Project, embedding_id: int) -> EmbeddingSet:
    """A stored embedding with its images' labels and names, without running any encoder."""
    record = next((e for e in project.embeddings() if e.id == embedding_id), None)
    if record is None:
        raise EvaluationError(f"no embedding {embedding_id} in this project.")
    ds = project.dataset(record.dataset_id)
    size = TrainConfig.from_dict(project.run(record.run_id).config).image_size if record.run_id else 32
    images = load_images(project, ds, size)
    vectors = np.load(project.abs(record.path))
    if len(vectors) != len(images):
        raise EvaluationError(f"the dataset {ds.name!r} changed since these embeddings were computed; compute them again.")
    return _embedding_set(record, vectors, images, ds)


# -- 2-D maps -------------------------------------------------------------------------------------
def _params_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def embedding_map(
    project: Project,
    embedding: EmbeddingRecord | EmbeddingSet,
    algorithm: str = "pca",
    params: dict[str, Any] | None = None,
    seed: int = 0,
    vectors: np.ndarray | None = None,
    report: Report | None = None,
) -> np.ndarray:
    """(N, 2) float32 map of stored embeddings, read from the project when it was computed with
    the same algorithm, parameters and seed; otherwise computed, saved and recorded."""
    from studio.engine.eval import project_2d

    report = report or _noop
    if isinstance(embedding, EmbeddingSet):
        vectors = embedding.vectors if vectors is None else vectors
        embedding = embedding.record
    algorithm = str(algorithm).lower().replace("-", "")
    stored_params = {**(params or {}), "seed": seed}
    key = _params_key(stored_params)
    for rec in reversed(project.embedding_maps(embedding.id)):
        if rec.algorithm == algorithm and _params_key(rec.params) == key and project.abs(rec.path).is_file():
            coords = np.load(project.abs(rec.path))
            if len(coords) == embedding.count:
                return coords.astype(np.float32, copy=False)
    if vectors is None:
        vectors = np.load(project.abs(embedding.path))
    report(f"map: {algorithm}", 0, 1)
    coords = project_2d(vectors, algorithm, seed=seed, **dict(params or {}))
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    path = project.abs(embedding.path).with_name(f"{project.abs(embedding.path).stem}-{algorithm}-{digest}.npy")
    np.save(path, coords)
    project.add_embedding_map(embedding.id, algorithm, stored_params, path)
    report(f"map: {algorithm}", 1, 1)
    return coords


# -- evaluations ----------------------------------------------------------------------------------
def evaluate_run(
    project: Project,
    run_id: int,
    dataset: str | int | None = None,
    checkpoint_step: int | None = None,
    knn: bool = True,
    linear: bool = True,
    finetune: bool = False,
    baseline: bool = False,
    finetune_epochs: int = 3,
    finetune_batch_size: int = 64,
    device: str | torch.device | None = "auto",
    report: Report | None = None,
    cancelled: Callable[[], bool] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint on a labelled dataset; each kind is stored as an evaluation.

    Returns {"run_id", "checkpoint_step", "dataset", "knn_top1", "linear_top1",
    "finetune_top1", "finetune_random_top1", "knn_random_top1", ...} (only the ones asked for).
    `baseline` adds kNN and linear-probe numbers of the same encoder at initialisation;
    fine-tuning always compares against initialisation, since that is what it is for.
    """
    from studio.engine.eval import finetune as finetune_encoder
    from studio.engine.eval import knn_top1, linear_probe, split_indices

    report = report or _noop
    run = project.run(run_id)
    config = TrainConfig.from_dict(run.config)
    ds = _dataset_record(project, run_id, dataset)
    emb = compute_embeddings(project, run_id, ds.id, checkpoint_step, device, report=report, cancelled=cancelled)
    if not emb.has_labels:
        raise EvaluationError(
            f"the dataset {ds.name!r} has no labels; kNN, linear probe and fine-tuning need a labelled dataset "
            "(a folder with one sub-folder per class)."
        )
    step = emb.record.checkpoint_step
    labels = emb.labels
    num_classes = max(len(emb.class_names), int(labels.max()) + 1)
    train_idx, test_idx = split_indices(labels, HOLDOUT_FRACTION, seed=seed)
    split = {"holdout_fraction": HOLDOUT_FRACTION, "seed": seed, "num_train": int(len(train_idx)), "num_test": int(len(test_idx))}
    out: dict[str, Any] = {"run_id": run_id, "checkpoint_step": step, "dataset": ds.name}

    def frozen(vectors: np.ndarray, suffix: str) -> None:
        if knn:
            report("knn", 0, 1)
            top1 = knn_top1(vectors[train_idx], labels[train_idx], vectors[test_idx], labels[test_idx], num_classes,
                            k=config.knn_k, temperature=config.knn_temperature)
            out[f"knn{suffix}_top1"] = top1
            if not suffix:
                project.add_evaluation(run_id, "knn", {"top1": top1, "k": config.knn_k, "temperature": config.knn_temperature, **split},
                                       checkpoint_step=step, dataset_id=ds.id)
        if linear:
            report("linear probe", 0, 1)
            result = linear_probe(vectors[train_idx], labels[train_idx], vectors[test_idx], labels[test_idx])
            out[f"linear{suffix}_top1"] = result["top1"]
            if not suffix:
                project.add_evaluation(run_id, "linear", {**result, **split}, checkpoint_step=step, dataset_id=ds.id)

    frozen(emb.vectors, "")
    if baseline and step != INITIAL_STEP:
        initial = compute_embeddings(project, run_id, ds.id, INITIAL_STEP, device, report=report, cancelled=cancelled)
        frozen(initial.vectors, "_random")
        baseline_metrics = {k: v for k, v in out.items() if k.endswith("_random_top1")}
        project.add_evaluation(run_id, "baseline", baseline_metrics, checkpoint_step=INITIAL_STEP, dataset_id=ds.id)
    if finetune:
        dev = _device(device)
        trained, _, _ = run_encoder(project, run_id, step, dev)
        results = {}
        for name, encoder in (("finetune", trained), ("finetune_random", initial_encoder(config, dev))):
            results[name] = finetune_encoder(
                encoder, emb.images, labels, train_idx, test_idx, num_classes, epochs=finetune_epochs,
                batch_size=finetune_batch_size, image_size=config.image_size, device=dev, seed=seed,
                progress=lambda d, t, n=name: report(n.replace("_", " "), d, t), cancelled=cancelled,
                copy_encoder=False,
            )
            out[f"{name}_top1"] = results[name]["top1"]
        project.add_evaluation(run_id, "finetune", {
            "top1": results["finetune"]["top1"], "random_init_top1": results["finetune_random"]["top1"],
            "epochs": finetune_epochs, "pretrained": results["finetune"], "random_init": results["finetune_random"], **split,
        }, checkpoint_step=step, dataset_id=ds.id)
    return out


def evaluation_summary(project: Project, run_id: int) -> dict[str, float]:
    """The newest result of each kind for a run: {"knn_top1": .., "linear_top1": .., "finetune_top1": ..}."""
    out: dict[str, float] = {}
    for ev in project.evaluations(run_id):
        m = ev.metrics or {}
        if ev.kind in ("knn", "linear", "finetune") and "top1" in m:
            out[f"{ev.kind}_top1"] = float(m["top1"])
        if ev.kind == "finetune" and "random_init_top1" in m:
            out["finetune_random_top1"] = float(m["random_init_top1"])
        if ev.kind == "baseline":
            out.update({k: float(v) for k, v in m.items() if isinstance(v, (int, float))})
    return out


__all__ = [
    "EmbeddingSet",
    "INITIAL_STEP",
    "StudioError",
    "checkpoint_for",
    "compute_embeddings",
    "embedding_map",
    "evaluate_run",
    "evaluation_summary",
    "initial_encoder",
    "load_embedding_set",
    "run_encoder",
]
