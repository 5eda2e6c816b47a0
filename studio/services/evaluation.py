"""Evaluating runs and computing embeddings and 2-D maps, recorded in the project database.

* `compute_embeddings`: a checkpoint's embeddings of a dataset, saved as float32 .npy under
  `embeddings/` in the project folder, described by a row of the database; computed once.
* `embedding_map`: a 2-D map (PCA, t-SNE, UMAP) of stored embeddings, saved and cached the same
  way, so the explorer reopens instantly.
* `evaluate_run`: the evaluation suite, any subset of PROTOCOLS (kNN, linear probe, few-shot,
  label-efficient fine-tuning against the same encoder at its random initialisation, retrieval,
  clustering, label-free diagnostics) on a dataset, each stored as an evaluation of the run and
  checkpoint with its settings. PROTOCOLS is the one table the dialog, the CLI, Run details and
  the Evaluation view read their words from.

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
from studio.services.evaluation_text import TEXT_RUNNERS, is_image_text
from studio.store import CheckpointRecord, DatasetRecord, EmbeddingRecord, Project

# report(stage, done, total): what is being done ("embedding", "knn", "map: umap", ...) and how far.
Report = Callable[[str, int, int], None]
from studio.services.protocols import (  # noqa: E402,F401  (the suite's table, part of this module's surface)
    BASELINE, PROTOCOL_KEYS, PROTOCOLS, Column, Protocol, evaluation_summary, labels_missing, protocol,
    resolve_protocols, summarize, summary_columns,
)

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
    captions: list[list[str]] | None = None  # each image's captions (None: the dataset has none)

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
                        list(images.names), list(images.class_names), images.images, ds,
                        captions=getattr(images, "captions", None))


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


# -- the evaluation suite: the protocols' table is services.protocols -------------------------------
# Images whose two augmented views measure alignment: enough for a stable mean, cheap to embed twice.
ALIGNMENT_IMAGES = 512


@dataclass
class _Job:
    """What every protocol of one evaluate_run call shares."""

    project: Project
    run_id: int
    config: TrainConfig
    emb: EmbeddingSet
    step: int
    device: torch.device
    report: Report
    cancelled: Callable[[], bool] | None
    seed: int
    options: dict[str, Any]
    train_idx: np.ndarray | None = None
    test_idx: np.ndarray | None = None
    num_classes: int = 0
    split: dict[str, Any] = field(default_factory=dict)
    _encoder: torch.nn.Module | None = None

    def encoder(self) -> torch.nn.Module:
        if self._encoder is None:
            self._encoder, _, _ = run_encoder(self.project, self.run_id, self.step, self.device)
        return self._encoder

    def parts(self, vectors=None):
        x = self.emb.vectors if vectors is None else vectors
        y = self.emb.labels
        return x[self.train_idx], y[self.train_idx], x[self.test_idx], y[self.test_idx]


def _knn(job: _Job, vectors=None) -> tuple[dict, dict]:
    from studio.engine.eval import knn_sweep

    job.report("knn", 0, 1)
    k, t = job.config.knn_k, job.config.knn_temperature
    ks = tuple(job.options["knn_ks"])
    sweep = knn_sweep(*job.parts(vectors), job.num_classes, ks=(*ks, k), temperature=t)
    by_k = sweep["top1"]
    top1 = by_k[min(k, len(job.train_idx))]
    metrics = {"top1": top1, **{f"top1@{kk}": v for kk, v in by_k.items()},
               "settings": {"k": k, "ks": list(ks), "temperature": t, "similarity": "cosine", **job.split}}
    return metrics, {"knn_top1": top1, "knn": {str(kk): v for kk, v in by_k.items()}}


def _linear(job: _Job, vectors=None) -> tuple[dict, dict]:
    from studio.engine.eval import linear_probe

    job.report("linear probe", 0, 1)
    result = linear_probe(*job.parts(vectors))
    top1 = result.pop("top1")
    return {"top1": top1, **result, "settings": dict(job.split)}, {"linear_top1": top1}


def _fewshot(job: _Job) -> tuple[dict, dict]:
    from studio.engine.eval import few_shot

    shots, draws = tuple(job.options["fewshot_shots"]), int(job.options["fewshot_draws"])
    job.report("few-shot", 0, len(shots))
    result = few_shot(*job.parts(), shots=shots, draws=draws, seed=job.seed)
    metrics = {f"{n}-shot": r["mean"] for n, r in result.items()}
    metrics.update({f"{n}-shot std": r["std"] for n, r in result.items()})
    metrics["settings"] = {"shots": list(shots), "draws": draws, "classifier": "logistic regression",
                           "draw_scores": {str(n): r["draws"] for n, r in result.items()}, **job.split}
    return metrics, {"fewshot": {str(n): r["mean"] for n, r in result.items()},
                     "fewshot_std": {str(n): r["std"] for n, r in result.items()}}


def _finetune(job: _Job) -> tuple[dict, dict]:
    from studio.engine.eval import label_efficiency

    fractions = tuple(float(f) for f in job.options["finetune_fractions"])
    batch = int(job.options["finetune_batch_size"])
    # One budget for every share of the labels, that of `epochs` over all of them: a smaller share
    # is seen more often, as SimCLR fine-tunes 1 % of the labels for longer.
    steps = job.options["finetune_steps"] or int(job.options["finetune_epochs"]) * max(1, len(job.train_idx) // batch)
    result = label_efficiency(
        job.encoder(), lambda: initial_encoder(job.config, job.device), job.emb.images, job.emb.labels,
        job.train_idx, job.test_idx, job.num_classes, fractions=fractions, steps=steps, batch_size=batch,
        image_size=job.config.image_size, device=job.device, seed=job.seed, progress=job.report, cancelled=job.cancelled)
    full = result[max(result, key=lambda name: float(name.rstrip("%")))]
    metrics = {"top1": full["pretrained"], "random_init_top1": full["scratch"]}
    for name, r in result.items():
        metrics[f"{name} pretrained"] = r["pretrained"]
        metrics[f"{name} scratch"] = r["scratch"]
    metrics["settings"] = {"fractions": list(fractions), "steps": steps, "batch_size": batch, "lr": 1e-3,
                           "labels_used": {n: r["num_labels"] for n, r in result.items()},
                           "scratch": "the run's encoder at its random initialisation (step 0)", **job.split}
    out = {"finetune_top1": full["pretrained"], "finetune_random_top1": full["scratch"],
           "finetune": {n: {"pretrained": r["pretrained"], "scratch": r["scratch"]} for n, r in result.items()}}
    return metrics, out


def _retrieval(job: _Job) -> tuple[dict, dict]:
    from studio.engine.eval import RECALL_AT, retrieval_scores

    job.report("retrieval", 0, 1)
    xtr, ytr, xte, yte = job.parts()
    result = retrieval_scores(xte, yte, xtr, ytr, ks=RECALL_AT)
    scores = {k: v for k, v in result.items() if k.startswith("recall@") or k == "map"}
    settings = {k: v for k, v in result.items() if k not in scores}
    return ({**scores, "settings": {"query": "held-out images", "gallery": "training images", "similarity": "cosine",
                                     **settings, **job.split}},
            {"retrieval": scores})


def _clustering(job: _Job) -> tuple[dict, dict]:
    from studio.engine.eval import clustering_scores

    job.report("clustering", 0, 1)
    result = clustering_scores(job.emb.vectors, job.emb.labels, k=job.num_classes, seed=job.seed)
    scores = {"nmi": result["nmi"], "ari": result["ari"]}
    return ({**scores, "settings": {"algorithm": "spherical k-means", "k": result["k"], "num_images": result["num_images"],
                                     "seed": job.seed}},
            {"clustering": scores})


def _rank(job: _Job) -> tuple[dict, dict]:
    from studio.engine.data.cache import DecodedImages
    from studio.engine.eval import health_report
    from studio.engine.eval.health import HEALTH_MAX_POINTS
    from studio.engine.train.monitor import HealthMonitor

    job.report("diagnostics", 0, 2)
    report = health_report(job.emb.vectors, max_points=HEALTH_MAX_POINTS, seed=job.seed)
    job.report("diagnostics", 1, 2)
    decoded = DecodedImages(job.emb.images, job.emb.labels, job.emb.names, job.emb.class_names)
    # The training run's health monitor makes the two views: the same augmentations as the
    # alignment curve of the Run page, so the two numbers mean the same thing.
    views = HealthMonitor(decoded, job.config.image_size, seed=job.seed, max_images=ALIGNMENT_IMAGES)(job.encoder(), job.step)
    job.report("diagnostics", 2, 2)
    scores = {"effective_rank": report["effective_rank"], "alignment": views.get("alignment"),
              "uniformity": report["uniformity"], "std_ratio": report["std_ratio"]}
    scores = {k: (None if v is None else float(v)) for k, v in scores.items()}
    settings = {"points": min(len(job.emb.vectors), HEALTH_MAX_POINTS), "alignment_images": min(len(decoded), ALIGNMENT_IMAGES),
                "views": "the health monitor's augmentations", "collapsed": bool(report["collapsed"]), "seed": job.seed}
    return {**scores, "settings": settings}, {"rank": {k: scores[k] for k in ("effective_rank", "alignment", "uniformity")}}


_RUNNERS: dict[str, Callable[[_Job], tuple[dict, dict]]] = {
    "knn": _knn, "linear": _linear, "fewshot": _fewshot, "finetune": _finetune, "retrieval": _retrieval,
    "clustering": _clustering, "rank": _rank, **TEXT_RUNNERS,
}


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
    protocols=None,
    finetune_steps: int | None = None,
    finetune_fractions=None,
    fewshot_shots=None,
    fewshot_draws: int | None = None,
    knn_ks=None,
    zeroshot_templates=None,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint on a dataset (the run's or any other of the project: transfer);
    each protocol's numbers, with its settings under "settings", are stored as one evaluation.

    `protocols`: keys of PROTOCOLS (see resolve_protocols; "all" leaves the image-text ones out of
    a run without a text tower; `zeroshot_templates` are the zero-shot prompts); without it, the `knn`, `linear` and
    `finetune` flags choose. `baseline` adds kNN and linear-probe numbers of the same encoder at
    initialisation. Returns what the CLI's `eval --json` prints: {"run_id", "checkpoint_step",
    "dataset", "knn_top1", "knn": {k: top1}, "linear_top1", "fewshot": {...}, "finetune": {...},
    "finetune_top1", "finetune_random_top1", "retrieval": {...}, "clustering": {...}, "rank": {...},
    "knn_random_top1", "linear_random_top1"} (only the ones asked for). Cancelling stops between
    protocols or inside a long one; what finished before is stored.
    """
    from studio.engine.eval import FEW_SHOT_DRAWS, FEW_SHOTS, KNN_SWEEP, LABEL_FRACTIONS, split_indices
    from studio.engine.eval.embed import EmbeddingCancelled

    report = report or _noop
    run = project.run(run_id)
    config = TrainConfig.from_dict(run.config)
    if protocols is None:
        chosen = tuple(k for k, on in (("knn", knn), ("linear", linear), ("finetune", finetune)) if on)
    else:
        chosen = resolve_protocols(protocols, image_text=is_image_text(config))
    ds = _dataset_record(project, run_id, dataset)
    emb = compute_embeddings(project, run_id, ds.id, checkpoint_step, device, report=report, cancelled=cancelled)
    missing = labels_missing(chosen, baseline, emb.has_labels, ds.name)
    if missing:
        raise EvaluationError(missing)
    labelled = bool([k for k in chosen if protocol(k).needs_labels]) or baseline
    step = emb.record.checkpoint_step
    options = {"knn_ks": knn_ks or KNN_SWEEP, "fewshot_shots": fewshot_shots or FEW_SHOTS,
               "fewshot_draws": fewshot_draws or FEW_SHOT_DRAWS, "finetune_fractions": finetune_fractions or LABEL_FRACTIONS,
               "finetune_steps": finetune_steps, "finetune_epochs": finetune_epochs, "finetune_batch_size": finetune_batch_size,
               "zeroshot_templates": zeroshot_templates}
    job = _Job(project, run_id, config, emb, step, _device(device), report, cancelled, seed, options)
    if labelled:
        labels = emb.labels
        job.num_classes = max(len(emb.class_names), int(labels.max()) + 1)
        job.train_idx, job.test_idx = split_indices(labels, HOLDOUT_FRACTION, seed=seed)
        job.split = {"holdout_fraction": HOLDOUT_FRACTION, "seed": seed, "num_train": int(len(job.train_idx)),
                     "num_test": int(len(job.test_idx))}
    out: dict[str, Any] = {"run_id": run_id, "checkpoint_step": step, "dataset": ds.name}
    for key in chosen:
        if cancelled is not None and cancelled():
            raise EmbeddingCancelled("evaluation was cancelled")
        metrics, shown = _RUNNERS[key](job)
        project.add_evaluation(run_id, key, metrics, checkpoint_step=step, dataset_id=ds.id)
        out.update(shown)
    if baseline and step != INITIAL_STEP:
        initial = compute_embeddings(project, run_id, ds.id, INITIAL_STEP, device, report=report, cancelled=cancelled)
        baseline_metrics = {"knn_random_top1": _knn(job, initial.vectors)[1]["knn_top1"],
                            "linear_random_top1": _linear(job, initial.vectors)[1]["linear_top1"]}
        out.update(baseline_metrics)
        project.add_evaluation(run_id, "baseline", {**baseline_metrics, "settings": dict(job.split)},
                               checkpoint_step=INITIAL_STEP, dataset_id=ds.id)
    return out


__all__ = [
    "BASELINE",
    "Column",
    "EmbeddingSet",
    "PROTOCOLS",
    "PROTOCOL_KEYS",
    "Protocol",
    "INITIAL_STEP",
    "StudioError",
    "checkpoint_for",
    "compute_embeddings",
    "embedding_map",
    "evaluate_run",
    "evaluation_summary",
    "initial_encoder",
    "labels_missing",
    "load_embedding_set",
    "protocol",
    "resolve_protocols",
    "summarize",
    "summary_columns",
    "run_encoder",
]
