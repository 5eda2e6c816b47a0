"""Following a run's embedding map across its checkpoints: the use case behind the Explorer's
Steps slider, without Qt.

`compute_step_maps` embeds a dataset with each of the run's checkpoints and maps each embedding
with the same projection (both stored and cached as every map is, by
studio.services.evaluation), then aligns each map onto the previous step's
(studio.engine.eval.procrustes: rotation or reflection, uniform scale, shift) so that a point
moves only as much as its embedding did. `steps_unavailable` is the one rule of when there is
nothing to follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from studio.store import DatasetRecord, EmbeddingRecord, Project

STEP_MAPS_MIN = 2  # checkpoints needed for a map to follow across them

# The share of one map's progress each stage of studio.services.evaluation takes (start, width):
# embedding is the long part, a map's projection is one step.
_STAGE_SPAN = {"loading images": (0, 10), "embedding": (10, 70), "map": (80, 20)}
_UNITS = 100  # progress units per map


@dataclass
class StepMaps:
    """The maps of one run, dataset and projection, one per checkpoint step, each aligned onto
    the one before (plain data; the images and labels are the dataset's, the same at every step)."""

    run_id: int
    algorithm: str
    steps: list[int]  # ascending
    coords: list[np.ndarray]  # (N, 2) float32 per step, aligned
    vectors: list[np.ndarray]  # (N, D) float32 per step
    records: list[EmbeddingRecord]
    labels: np.ndarray  # (N,) int64, -1 without labels
    names: list[str]
    class_names: list[str]
    images: np.ndarray  # decoded uint8 (N, 3, S, S)
    dataset: DatasetRecord | None = None
    raw: list[np.ndarray] = field(default_factory=list)  # each step's map as projected, before aligning

    def __len__(self) -> int:
        return len(self.steps)

    def index_of(self, step: int) -> int:
        return self.steps.index(int(step))

    def bounds(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) holding every step's points: a view that stays put while stepping."""
        every = np.concatenate(self.coords) if self.coords else np.zeros((1, 2))
        lo, hi = every.min(axis=0), every.max(axis=0)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def checkpoint_steps(project: Project, run_id: int) -> list[int]:
    """The steps of the run's checkpoints whose files are on disk, ascending, each once."""
    return sorted({ck.step for ck in project.checkpoints(run_id) if project.abs(ck.path).is_file()})


def steps_unavailable(steps: list[int]) -> str | None:
    """Why a map cannot be followed across these checkpoint steps (None: it can)."""
    if not steps:
        return "This run has no checkpoint yet: train it first."
    if len(steps) < STEP_MAPS_MIN:
        return (f"This run has one checkpoint (step {steps[0]:,}): there is nothing to step through. "
                "Train with 'checkpoint every' set to keep a checkpoint every so many steps.")
    return None


def step_stage(i: int, n: int, step: int) -> str:
    """"map 3 of 7: step 1,200": what the task is doing, in the words its progress shows."""
    return f"map {i} of {n}: step {step:,}"


def compute_step_maps(
    project: Project,
    run_id: int,
    dataset: str | int | None = None,
    algorithm: str = "pca",
    device: str = "auto",
    report: Callable[[str, int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    steps: list[int] | None = None,
) -> StepMaps:
    """The run's map of `dataset` (default: the run's) at every checkpoint (or at `steps`), each
    aligned onto the previous step's. Embeddings and maps computed before are read back, so a
    second call only aligns. report(stage, done, total) counts _UNITS per map; `cancelled()` is
    checked between batches and maps (studio.engine.eval.EmbeddingCancelled)."""
    from studio.engine.eval import EmbeddingCancelled, EvaluationError, procrustes_align
    from studio.services.evaluation import compute_embeddings, embedding_map

    steps = sorted(set(steps)) if steps is not None else checkpoint_steps(project, run_id)
    if not steps:
        raise EvaluationError(steps_unavailable(steps))
    n = len(steps)
    total = n * _UNITS
    coords: list[np.ndarray] = []
    raw: list[np.ndarray] = []
    vectors: list[np.ndarray] = []
    records: list[EmbeddingRecord] = []
    first = None
    for i, step in enumerate(steps, 1):
        if cancelled is not None and cancelled():
            raise EmbeddingCancelled("computing the maps was cancelled")
        stage = step_stage(i, n, step)

        def inner(name: str, done: int, count: int, _base=(i - 1) * _UNITS, _stage=stage) -> None:
            start, width = _STAGE_SPAN["map"] if name.startswith("map") else _STAGE_SPAN.get(name, (0, 0))
            frac = done / count if count > 0 else 0.0
            if report is not None:
                report(_stage, _base + start + int(width * min(1.0, frac)), total)

        inner("loading images", 0, 1)
        emb = compute_embeddings(project, run_id, dataset, step, device=device, report=inner, cancelled=cancelled)
        m = embedding_map(project, emb, algorithm, report=inner)
        if first is None:
            first = emb
        elif len(emb) != len(first):
            raise EvaluationError("the dataset changed while its maps were computed; compute them again.")
        raw.append(m)
        coords.append(m.copy() if not coords else procrustes_align(m, coords[-1]).astype(np.float32))
        vectors.append(emb.vectors)
        records.append(emb.record)
    if report is not None:
        report(step_stage(n, n, steps[-1]), total, total)
    return StepMaps(int(run_id), str(algorithm), list(steps), coords, vectors, records, first.labels, first.names,
                    first.class_names, first.images, first.dataset, raw)


# -- another run's map beside the shown one ---------------------------------------------------------
@dataclass
class PairedMap:
    """Another run's map of the same images as a shown map, aligned onto it (plain data)."""

    run_id: int
    step: int
    coords: np.ndarray  # (N, 2) float32, aligned onto the reference map
    vectors: np.ndarray  # (N, D) float32
    raw: np.ndarray  # the map as projected


def paired_map(
    project: Project,
    run_id: int,
    dataset: str | int | None,
    algorithm: str,
    reference_coords,
    reference_names,
    checkpoint_step: int | None = None,
    device: str = "auto",
    report: Callable[[str, int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> PairedMap:
    """Run `run_id`'s map (its checkpoint at `checkpoint_step`, default the newest) of `dataset`,
    with the same projection as a shown map of the same images and aligned onto it, so the two can
    be read side by side and a selection means the same images in both (row i is image i in
    each: the images must be the reference's, in its order)."""
    from studio.engine.eval import EvaluationError, procrustes_align
    from studio.services.evaluation import compute_embeddings, embedding_map

    reference = np.asarray(reference_coords, dtype=np.float32)
    emb = compute_embeddings(project, run_id, dataset, checkpoint_step, device=device, report=report,
                             cancelled=cancelled)
    if list(emb.names) != list(reference_names):
        raise EvaluationError("the two maps are not of the same images (another dataset, or it changed): "
                              "compute both on one dataset.")
    m = embedding_map(project, emb, algorithm, report=report)
    return PairedMap(int(run_id), int(emb.record.checkpoint_step), procrustes_align(m, reference).astype(np.float32),
                     emb.vectors, m)
