"""SQLAlchemy 2.0 models of a project database. No torch, no Qt (DESIGN.md rule 1)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Key/value facts about the project file itself (schema version, creator)."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))  # folder | sample | torchvision
    source: Mapped[str] = mapped_column(Text)  # folder path (relative when inside the project) or spec
    images: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    classes: Mapped[int] = mapped_column(Integer, default=0)
    class_names: Mapped[list[str]] = mapped_column(JSON, default=list)
    skipped_files: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [[name, reason], ...]
    # Its captions (schema 6): how many images have one, where they come from ("" none | jsonl |
    # csv | sidecar | template), the templates of templated ones, and what was wrong [[name, reason], ...].
    captions: Mapped[int | None] = mapped_column(Integer, nullable=True, default=0)
    caption_kind: Mapped[str | None] = mapped_column(String(16), nullable=True, default="")
    caption_templates: Mapped[list[str] | None] = mapped_column(JSON, nullable=True, default=list)
    caption_issues: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    method: Mapped[str] = mapped_column(String(64))
    backbone: Mapped[str] = mapped_column(String(128))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    device: Mapped[str | None] = mapped_column(String(128), nullable=True)
    steps: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    epochs: Mapped[int] = mapped_column(Integer, default=0)
    final_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    images_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    parent_run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The parent's checkpoint step this run continues from (schema 4); None: a duplicate, which
    # starts from scratch with the parent's settings.
    parent_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)  # the user's own words (schema 2)
    # A person's name and tags for the run (schema 5); None / []: unnamed, untagged.
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The run's place in the project's queue (schema 5): set while it waits to be started when the
    # run before it ends; None for every other run (a queued run without it is being started).
    queue_position: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(nullable=True)


class MetricPoint(Base):
    __tablename__ = "metric_points"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[float] = mapped_column(Float)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    time: Mapped[float] = mapped_column(Float)  # unix seconds

    __table_args__ = (Index("ix_metric_run_name_step", "run_id", "name", "step"),)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[float] = mapped_column(Float, default=0.0)
    path: Mapped[str] = mapped_column(Text)  # relative to the project folder
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RunEvent(Base):
    """The run's log: status changes, warnings and errors, as a person would read them."""

    __tablename__ = "run_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    time: Mapped[datetime] = mapped_column(default=utcnow)
    level: Mapped[str] = mapped_column(String(16), default="info")
    message: Mapped[str] = mapped_column(Text)


class Evaluation(Base):
    __tablename__ = "evaluations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    checkpoint_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(32))  # knn | linear | finetune | ...
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Embedding(Base):
    __tablename__ = "embeddings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), nullable=True)
    checkpoint_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    path: Mapped[str] = mapped_column(Text)  # .npy of float32 vectors, relative
    count: Mapped[int] = mapped_column(Integer)
    dim: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EmbeddingMap(Base):
    __tablename__ = "embedding_maps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    embedding_id: Mapped[int] = mapped_column(ForeignKey("embeddings.id", ondelete="CASCADE"))
    algorithm: Mapped[str] = mapped_column(String(16))  # pca | tsne | umap
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    path: Mapped[str] = mapped_column(Text)  # .npy of float32 (N, 2), relative
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Export(Base):
    __tablename__ = "exports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    checkpoint_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    format: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(Text)
    card: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImageTag(Base):
    """A person's tag on one image of a dataset (schema 3). `image` is the image as the dataset's
    source names it (its file path for a folder, its index for a built-in set)."""

    __tablename__ = "image_tags"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    image: Mapped[str] = mapped_column(Text)
    tag: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("dataset_id", "image", "tag", name="uq_image_tag"),
                      Index("ix_image_tags_dataset_tag", "dataset_id", "tag"))


class ImageCaption(Base):
    """One caption of one image of a dataset (schema 6); an image may have several. `image` names
    it as captions do (its path inside the dataset's folder, or the built-in set's id)."""

    __tablename__ = "image_captions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    image: Mapped[str] = mapped_column(Text)
    caption: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_image_captions_dataset", "dataset_id", "id"),)
