"""The project database. Knows nothing of torch or Qt (DESIGN.md rule 1)."""

from studio.store.migrations import SchemaVersionError
from studio.store.project import (
    ACTIVE_STATUSES,
    RUN_STATUSES,
    CheckpointRecord,
    DatasetRecord,
    EmbeddingMapRecord,
    EmbeddingRecord,
    EvaluationRecord,
    EventRecord,
    ExportRecord,
    MetricSeries,
    Project,
    ProjectError,
    RunHeldError,
    RunLease,
    RunRecord,
)
from studio.store.recorder import RunRecorder

__all__ = [
    "ACTIVE_STATUSES",
    "RUN_STATUSES",
    "CheckpointRecord",
    "DatasetRecord",
    "EmbeddingMapRecord",
    "EmbeddingRecord",
    "EvaluationRecord",
    "EventRecord",
    "ExportRecord",
    "MetricSeries",
    "Project",
    "ProjectError",
    "RunHeldError",
    "RunLease",
    "RunRecord",
    "RunRecorder",
    "SchemaVersionError",
]
