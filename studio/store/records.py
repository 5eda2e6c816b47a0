"""The plain, frozen records a Project returns: no ORM object leaves the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from studio.status import RunStatus


@dataclass(frozen=True)
class DatasetRecord:
    id: int
    name: str
    kind: str
    source: str
    images: int
    skipped: int
    classes: int
    class_names: list[str]
    skipped_files: list[Any]
    created_at: datetime
    captions: int = 0  # images with at least one caption
    caption_kind: str = ""  # "" (none) | jsonl | csv | sidecar | template
    caption_templates: tuple[str, ...] = ()
    caption_issues: tuple[Any, ...] = ()  # (name, reason) of each caption that could not be used

    @property
    def templated_captions(self) -> bool:
        return self.caption_kind == "template"


@dataclass(frozen=True)
class RunRecord:
    id: int
    dataset_id: int
    dataset: str
    method: str
    backbone: str
    config: dict[str, Any]
    status: RunStatus
    reason: str | None
    device: str | None
    steps: int
    total_steps: int
    epochs: int
    final_loss: float | None
    images_per_s: float | None
    pid: int | None
    host: str | None
    parent_run_id: int | None
    parent_step: int | None  # set when the run continues the parent from its checkpoint at this step
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    name: str | None = None  # the person's name for it (None: unnamed)
    notes: str | None = None
    tags: tuple[str, ...] = ()
    queue_position: int | None = None  # waiting in the project's run queue

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or self.heartbeat_at or self.started_at
        return max(0.0, (end - self.started_at).total_seconds())


@dataclass(frozen=True)
class CheckpointRecord:
    id: int
    run_id: int
    step: int
    epoch: float
    path: str
    created_at: datetime


@dataclass(frozen=True)
class EventRecord:
    id: int
    run_id: int
    time: datetime
    level: str
    message: str


@dataclass(frozen=True)
class EvaluationRecord:
    id: int
    run_id: int
    checkpoint_step: int | None
    dataset_id: int | None
    kind: str
    metrics: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class EmbeddingRecord:
    id: int
    run_id: int | None
    checkpoint_step: int | None
    dataset_id: int
    path: str
    count: int
    dim: int
    created_at: datetime


@dataclass(frozen=True)
class EmbeddingMapRecord:
    id: int
    embedding_id: int
    algorithm: str
    params: dict[str, Any]
    path: str
    created_at: datetime


@dataclass(frozen=True)
class ExportRecord:
    id: int
    run_id: int
    checkpoint_step: int | None
    format: str
    path: str
    card: dict[str, Any]
    created_at: datetime


@dataclass
class MetricSeries:
    """Points of one run, by metric name: steps and values as parallel lists."""

    steps: dict[str, list[int]] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)  # unix seconds of each point
    last_id: int = 0

    def names(self) -> list[str]:
        return sorted(self.steps)
