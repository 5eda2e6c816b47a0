"""A project: one folder, one SQLite database (`project.db`) and the big files beside it.

Every read returns plain dataclasses, never ORM objects, so that callers on any thread (GUI
timers, workers, the CLI) hold no session and no lazy attribute.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from studio.store import models as m
from studio.store.errors import ProjectError, RunHeldError  # noqa: F401  (part of the store's surface)
from studio.store.database import TEMP_MARKER, make_engine  # noqa: F401  (TEMP_MARKER: for the writers)
from studio.store.lease import RunLease, pid_alive
from studio.store.metrics import Metrics
from studio.store.tags import ImageTags
from studio.store.captions import ImageCaptions, dataset_record
from studio.store.run_labels import RunLabels
from studio.store.records import (  # noqa: F401  (the records a Project returns)
    CheckpointRecord, DatasetRecord, EmbeddingMapRecord, EmbeddingRecord, EvaluationRecord, EventRecord, ExportRecord,
    MetricSeries, RunRecord,
)

DB_NAME = "project.db"
DATASET_NAME_MAX = 200  # the column's width
from studio.store.migrations import SCHEMA_VERSION  # noqa: E402  (one number, kept with the migrations)
from studio.status import ACTIVE, LIVE, RunStatus  # noqa: E402

# Kept for callers that iterate them; the rules themselves are RunStatus's.
RUN_STATUSES = tuple(s.value for s in RunStatus)
ACTIVE_STATUSES = tuple(s.value for s in RunStatus if s in ACTIVE)


def _record(cls, row, **extra):
    names = cls.__dataclass_fields__.keys()
    data = {k: getattr(row, k) for k in names if k not in extra}
    data.update(extra)
    return cls(**data)


class Project(ImageTags, ImageCaptions, Metrics, RunLabels):
    """Open with `Project.open(path)` or `Project.create(path)`; close with `close()`."""

    def __init__(self, root: Path, engine: Engine, read_only: bool = False):
        self.root = Path(root).resolve()
        self.engine = engine
        # Opened for viewing only (a read-only folder or file system): every write is refused
        # with a ProjectError that says so.
        self.read_only = read_only
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # -- life cycle -------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, exist_ok: bool = False) -> "Project":
        root = Path(path).expanduser()
        db = root / DB_NAME
        if db.exists():
            if exist_ok:
                return cls.open(root)
            raise ProjectError(f"{root} already holds a project.")
        if root.exists() and not root.is_dir():
            raise ProjectError(f"{root} exists and is not a folder.")
        root.mkdir(parents=True, exist_ok=True)
        engine = make_engine(db)
        from studio.store.migrations import create_schema

        create_schema(engine)
        return cls(root, engine)

    @classmethod
    def open(cls, path: str | os.PathLike, read_only: bool | None = None) -> "Project":
        """Open a project; a file that is not a whole studio database is refused untouched
        (ProjectError saying what to do). A project that cannot be written (read-only folder,
        file or file system; or `read_only=True`) opens for viewing."""
        from studio.store.database import DatabaseFileError, check_file, mark_as_ours, writable
        from studio.store.migrations import SCHEMA_VERSION, schema_version, upgrade_if_needed

        root = Path(path).expanduser()
        db = root / DB_NAME
        if not db.is_file():
            raise ProjectError(f"{root} is not a project folder (no {DB_NAME}); create one with 'ssl-studio init'.")
        read_only = (not writable(db)) if read_only is None else read_only
        try:
            needs_id = check_file(db, read_only)
        except DatabaseFileError as exc:
            raise ProjectError(str(exc)) from None
        engine = make_engine(db, read_only)
        if read_only:
            if schema_version(engine) != SCHEMA_VERSION:
                engine.dispose()
                raise ProjectError(f"{root} is read-only and was made by another version of SSL Studio; copy it to a "
                                   "writable folder to open it.")
            return cls(root, engine, read_only=True)
        if needs_id:
            with engine.begin() as conn:
                mark_as_ours(conn.connection.driver_connection)
        upgrade_if_needed(engine, db)
        project = cls(root, engine)
        project.mark_interrupted_runs()
        project.remove_stale_temp_files()
        return project

    @staticmethod
    def repair(path: str | os.PathLike):
        """Copy what SQLite can still read of a damaged project database into a new one in its
        place (the damaged file is kept beside it); returns a `RepairReport`."""
        from studio.store.database import repair
        from studio.store.migrations import create_schema

        db = Path(path).expanduser() / DB_NAME
        if not db.is_file() or db.stat().st_size == 0:
            raise ProjectError(f"{db} is missing or empty: there is nothing to repair. Restore it from a backup "
                               f"({DB_NAME}.bak-v*), or create a new project with 'ssl-studio init'.")

        def fresh(target: Path) -> None:
            engine = make_engine(target)
            try:
                create_schema(engine)
            finally:
                engine.dispose()

        from studio.store.database import DatabaseFileError

        try:
            return repair(db, fresh)
        except (DatabaseFileError, OSError) as exc:
            raise ProjectError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - sqlite3 errors of a file past saving
            raise ProjectError(f"{db} could not be read at all ({exc}); restore it from a backup.") from None

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        try:
            with self._sessions() as s:
                with s.begin():
                    yield s
        except OperationalError as exc:
            if "readonly database" in str(exc) or (self.read_only and "attempt to write" in str(exc)):
                raise ProjectError(f"{self.root} is read-only: it was opened for viewing, and nothing can be "
                                   "changed in it. Copy it to a writable folder to train, evaluate or export.") from None
            raise

    # -- paths ------------------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    def rel(self, path: str | os.PathLike) -> str:
        """A path as stored: relative to the project folder when inside it, with '/' separators."""
        p = Path(path)
        if not p.is_absolute():
            return p.as_posix()
        try:
            return p.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(p.resolve())

    def abs(self, stored: str) -> Path:
        p = Path(stored)
        return p if p.is_absolute() else self.root / p

    def run_dir(self, run_id: int) -> Path:
        d = self.root / "runs" / str(run_id)
        d.mkdir(parents=True, exist_ok=True)
        return d

    @property
    def cache_dir(self) -> Path:
        d = self.root / "cache"
        d.mkdir(parents=True, exist_ok=True)
        return d

    # -- meta -------------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        with self.session() as s:
            row = s.get(m.Meta, key)
            return row.value if row else None

    # -- datasets ---------------------------------------------------------------------------
    def add_dataset(
        self,
        name: str,
        kind: str,
        source: str,
        images: int,
        skipped: int = 0,
        classes: int = 0,
        class_names: Sequence[str] = (),
        skipped_files: Sequence[Any] = (),
    ) -> DatasetRecord:
        with self.session() as s:
            if s.scalar(select(m.Dataset).where(m.Dataset.name == name)) is not None:
                raise ProjectError(f"a dataset named {name!r} exists already; choose another --name.")
            row = m.Dataset(
                name=name,
                kind=kind,
                source=source,
                images=images,
                skipped=skipped,
                classes=classes,
                class_names=list(class_names),
                skipped_files=[list(x) for x in skipped_files],
            )
            s.add(row)
            s.flush()
            return dataset_record(row)

    def datasets(self) -> list[DatasetRecord]:
        with self.session() as s:
            return [dataset_record(r) for r in s.scalars(select(m.Dataset).order_by(m.Dataset.id))]

    def dataset(self, key: int | str) -> DatasetRecord:
        with self.session() as s:
            if isinstance(key, int) or (isinstance(key, str) and key.isdigit() and not self._has_dataset_name(s, key)):
                row = s.get(m.Dataset, int(key))
            else:
                row = s.scalar(select(m.Dataset).where(m.Dataset.name == key))
            if row is None:
                names = ", ".join(d.name for d in s.scalars(select(m.Dataset))) or "none yet"
                raise ProjectError(f"no dataset {key!r} in this project (datasets: {names}).")
            return dataset_record(row)

    @staticmethod
    def _has_dataset_name(s: Session, name: str) -> bool:
        return s.scalar(select(m.Dataset.id).where(m.Dataset.name == name)) is not None

    def rename_dataset(self, dataset_id: int, name: str) -> DatasetRecord:
        """Give a dataset another name (unique, not empty); its runs, embeddings and tags follow
        it, since they refer to it by id."""
        name = (name or "").strip()
        if not name:
            raise ProjectError("a dataset needs a name.")
        if len(name) > DATASET_NAME_MAX:
            raise ProjectError(f"a dataset name is at most {DATASET_NAME_MAX} characters.")
        with self.session() as s:
            row = s.get(m.Dataset, int(dataset_id))
            if row is None:
                raise ProjectError(f"no dataset {dataset_id} in this project.")
            other = s.scalar(select(m.Dataset.id).where(m.Dataset.name == name))
            if other is not None and other != row.id:
                raise ProjectError(f"a dataset named {name!r} exists already; choose another name.")
            row.name = name
            s.flush()
            return dataset_record(row)

    def dataset_run_ids(self, dataset_id: int) -> list[int]:
        """The runs trained on a dataset, oldest first."""
        with self.session() as s:
            return list(s.scalars(select(m.Run.id).where(m.Run.dataset_id == dataset_id).order_by(m.Run.id)))

    def dataset_belongings(self, dataset_id: int) -> dict[str, list]:
        """What else refers to a dataset besides its runs: {"embeddings": [path, ...], "maps":
        [path, ...], "evaluations": [id, ...], "tags": [id, ...]} (paths as stored)."""
        with self.session() as s:
            emb = s.execute(select(m.Embedding.id, m.Embedding.path).where(m.Embedding.dataset_id == dataset_id)).all()
            emb_ids = [e for e, _ in emb]
            maps = list(s.scalars(select(m.EmbeddingMap.path).where(m.EmbeddingMap.embedding_id.in_(emb_ids)))) if emb_ids else []
            return {
                "embeddings": [p for _, p in emb], "maps": maps,
                "evaluations": list(s.scalars(select(m.Evaluation.id).where(m.Evaluation.dataset_id == dataset_id))),
                "tags": list(s.scalars(select(m.ImageTag.id).where(m.ImageTag.dataset_id == dataset_id))),
            }

    def delete_dataset(self, dataset_id: int) -> None:
        """Delete a dataset's row with its embeddings, maps, evaluations and tags (rows only: which
        files go is services.datasets' to decide). A dataset with runs is refused: delete them first."""
        with self.session() as s:
            if s.scalar(select(func.count()).select_from(m.Run).where(m.Run.dataset_id == dataset_id)):
                raise ProjectError("this dataset has runs; delete them first.")
            emb_ids = list(s.scalars(select(m.Embedding.id).where(m.Embedding.dataset_id == dataset_id)))
            if emb_ids:
                s.execute(delete(m.EmbeddingMap).where(m.EmbeddingMap.embedding_id.in_(emb_ids)))
                s.execute(delete(m.Embedding).where(m.Embedding.id.in_(emb_ids)))
            s.execute(delete(m.Evaluation).where(m.Evaluation.dataset_id == dataset_id))
            s.execute(delete(m.ImageTag).where(m.ImageTag.dataset_id == dataset_id))
            s.execute(delete(m.ImageCaption).where(m.ImageCaption.dataset_id == dataset_id))
            s.execute(delete(m.Dataset).where(m.Dataset.id == dataset_id))

    # -- runs -------------------------------------------------------------------------------
    def _run_record(self, s: Session, row: m.Run) -> RunRecord:
        ds = s.get(m.Dataset, row.dataset_id)
        return _record(RunRecord, row, dataset=ds.name if ds else "?", config=dict(row.config or {}),
                       status=RunStatus.of(row.status), tags=tuple(row.tags or ()))

    def create_run(
        self,
        dataset_id: int,
        method: str,
        backbone: str,
        config: dict[str, Any],
        total_steps: int = 0,
        parent_run_id: int | None = None,
        parent_step: int | None = None,
    ) -> RunRecord:
        with self.session() as s:
            row = m.Run(
                dataset_id=dataset_id,
                method=method,
                backbone=backbone,
                config=config,
                status=RunStatus.QUEUED.value,
                total_steps=total_steps,
                parent_run_id=parent_run_id,
                parent_step=parent_step,
            )
            s.add(row)
            s.flush()
            s.add(m.RunEvent(run_id=row.id, message=f"created: {method} on {backbone}"))
            return self._run_record(s, row)

    def runs(self) -> list[RunRecord]:
        with self.session() as s:
            return [self._run_record(s, r) for r in s.scalars(select(m.Run).order_by(m.Run.id))]

    def run(self, run_id: int) -> RunRecord:
        with self.session() as s:
            row = s.get(m.Run, int(run_id))
            if row is None:
                raise ProjectError(f"no run {run_id} in this project.")
            return self._run_record(s, row)

    def update_run(self, run_id: int, **fields: Any) -> None:
        with self.session() as s:
            s.execute(update(m.Run).where(m.Run.id == run_id).values(**fields))

    def set_run_status(self, run_id: int, status: str, reason: str | None = None, **fields: Any) -> None:
        status = RunStatus.of(status)
        now = m.utcnow()
        values: dict[str, Any] = {"status": status, "reason": reason, "heartbeat_at": now, **fields}
        values["status"] = status.value
        if status is RunStatus.RUNNING:
            values.setdefault("pid", os.getpid())
            values.setdefault("host", socket.gethostname())
            values["finished_at"] = None
        elif status.has_ended:
            values["finished_at"] = now
        with self.session() as s:
            row = s.get(m.Run, run_id)
            if row is None:
                raise ProjectError(f"no run {run_id} in this project.")
            if status is RunStatus.RUNNING and row.started_at is None:
                values["started_at"] = now
            s.execute(update(m.Run).where(m.Run.id == run_id).values(**values))
            msg = f"status: {status}" + (f" ({reason})" if reason else "")
            level = "error" if status in (RunStatus.FAILED, RunStatus.DIVERGED) else "info"
            s.add(m.RunEvent(run_id=run_id, level=level, message=msg))

    def _lease_path(self, run_id: int) -> Path:
        # Beside the runs, not in their folders: a run's folder holds only its checkpoints.
        return self.root / ".locks" / f"run-{int(run_id)}.lease"

    def lease_run(self, run_id: int) -> RunLease:
        """Hold run `run_id` while training it: `with project.lease_run(id): ...`; raises
        RunHeldError when another trainer holds it."""
        return RunLease(self._lease_path(run_id), int(run_id)).acquire()

    def run_is_held(self, run_id: int) -> bool:
        """Whether a trainer (in any process) holds the run now."""
        path = self._lease_path(run_id)
        if not path.is_file():
            return False
        try:
            RunLease(path, int(run_id)).acquire().release()
        except RunHeldError:
            return True
        except OSError:
            return False
        return False

    def delete_run(self, run_id: int) -> list[str]:
        """Delete a run's rows and the files they refer to inside the project folder: runs/<id>/,
        its embeddings and maps, its exports (run_files decides which may go: never a file
        outside the project folder, never a dataset's images). The files and folders deleted."""
        from studio.store.run_files import delete_files, run_files, split_deletable

        files, _kept = split_deletable(self, run_files(self, [run_id]))
        with self.session() as s:
            for model in (m.MetricPoint, m.Checkpoint, m.RunEvent, m.Evaluation, m.Export):
                s.execute(delete(model).where(model.run_id == run_id))
            emb_ids = list(s.scalars(select(m.Embedding.id).where(m.Embedding.run_id == run_id)))
            if emb_ids:
                s.execute(delete(m.EmbeddingMap).where(m.EmbeddingMap.embedding_id.in_(emb_ids)))
                s.execute(delete(m.Embedding).where(m.Embedding.id.in_(emb_ids)))
            s.execute(delete(m.Run).where(m.Run.id == run_id))
        return delete_files(self, files)

    def mark_interrupted_runs(self, stale_after_s: float = 120.0) -> list[int]:
        """Runs left 'running' by a process that is gone become 'interrupted'.

        A run is alive when its process exists on this host, or, from another host, when its
        heartbeat is recent.
        """
        host = socket.gethostname()
        found = []
        with self.session() as s:
            rows = s.scalars(select(m.Run).where(m.Run.status.in_([st.value for st in LIVE]))).all()
            for row in rows:
                alive = False
                fresh = row.heartbeat_at is not None and (m.utcnow() - row.heartbeat_at).total_seconds() < stale_after_s
                if self.run_is_held(row.id):
                    alive = True  # its trainer holds the lease: alive, however old its heartbeat
                elif row.host == host and row.pid:
                    # A live pid with a stale heartbeat is a reused pid, not our run.
                    alive = pid_alive(row.pid) and fresh
                elif row.heartbeat_at is not None:
                    alive = (m.utcnow() - row.heartbeat_at).total_seconds() < stale_after_s
                if not alive:
                    found.append(row.id)
        for run_id in found:
            self.set_run_status(run_id, RunStatus.INTERRUPTED, "the process running it stopped unexpectedly")
        return found

    def remove_stale_temp_files(self) -> list[Path]:
        """Remove the temporary files a process killed while writing left (database.py decides)."""
        from studio.store.database import remove_stale_temp_files

        return remove_stale_temp_files(self.root)

    # -- log --------------------------------------------------------------------------------
    def log(self, run_id: int, message: str, level: str = "info") -> None:
        with self.session() as s:
            s.add(m.RunEvent(run_id=run_id, level=level, message=message))

    def events(self, run_id: int, after_id: int = 0) -> list[EventRecord]:
        with self.session() as s:
            q = select(m.RunEvent).where(m.RunEvent.run_id == run_id, m.RunEvent.id > after_id).order_by(m.RunEvent.id)
            return [_record(EventRecord, r) for r in s.scalars(q)]

    def add_checkpoint(self, run_id: int, step: int, epoch: float, path: str | os.PathLike) -> CheckpointRecord:
        rel = self.rel(path)
        with self.session() as s:
            old = s.scalar(select(m.Checkpoint).where(m.Checkpoint.run_id == run_id, m.Checkpoint.path == rel))
            if old is not None:  # last.ckpt is rewritten in place: one row, newest step
                old.step, old.epoch, old.created_at = step, epoch, m.utcnow()
                row = old
            else:
                row = m.Checkpoint(run_id=run_id, step=step, epoch=epoch, path=rel)
                s.add(row)
            s.flush()
            return _record(CheckpointRecord, row)

    def checkpoints(self, run_id: int) -> list[CheckpointRecord]:
        with self.session() as s:
            q = select(m.Checkpoint).where(m.Checkpoint.run_id == run_id).order_by(m.Checkpoint.step, m.Checkpoint.id)
            return [_record(CheckpointRecord, r) for r in s.scalars(q)]

    def latest_checkpoint(self, run_id: int) -> CheckpointRecord | None:
        """The newest checkpoint whose file is on disk."""
        for ck in sorted(self.checkpoints(run_id), key=lambda c: (c.step, c.id), reverse=True):
            if self.abs(ck.path).is_file():
                return ck
        return None

    # -- evaluations, embeddings, maps, exports ---------------------------------------------
    def add_evaluation(
        self, run_id: int, kind: str, metrics: dict[str, Any], checkpoint_step: int | None = None, dataset_id: int | None = None
    ) -> EvaluationRecord:
        with self.session() as s:
            row = m.Evaluation(run_id=run_id, kind=kind, metrics=metrics, checkpoint_step=checkpoint_step, dataset_id=dataset_id)
            s.add(row)
            s.flush()
            return _record(EvaluationRecord, row)

    def evaluations(self, run_id: int | None = None) -> list[EvaluationRecord]:
        with self.session() as s:
            q = select(m.Evaluation).order_by(m.Evaluation.id)
            if run_id is not None:
                q = q.where(m.Evaluation.run_id == run_id)
            return [_record(EvaluationRecord, r) for r in s.scalars(q)]

    def add_embedding(
        self, dataset_id: int, path: str | os.PathLike, count: int, dim: int, run_id: int | None = None, checkpoint_step: int | None = None
    ) -> EmbeddingRecord:
        with self.session() as s:
            row = m.Embedding(run_id=run_id, checkpoint_step=checkpoint_step, dataset_id=dataset_id, path=self.rel(path), count=count, dim=dim)
            s.add(row)
            s.flush()
            return _record(EmbeddingRecord, row)

    def embeddings(self, run_id: int | None = None) -> list[EmbeddingRecord]:
        with self.session() as s:
            q = select(m.Embedding).order_by(m.Embedding.id)
            if run_id is not None:
                q = q.where(m.Embedding.run_id == run_id)
            return [_record(EmbeddingRecord, r) for r in s.scalars(q)]

    def find_embedding(self, run_id: int | None, checkpoint_step: int | None, dataset_id: int) -> EmbeddingRecord | None:
        for e in reversed(self.embeddings(run_id)):
            if e.checkpoint_step == checkpoint_step and e.dataset_id == dataset_id and self.abs(e.path).is_file():
                return e
        return None

    def add_embedding_map(self, embedding_id: int, algorithm: str, params: dict[str, Any], path: str | os.PathLike) -> EmbeddingMapRecord:
        with self.session() as s:
            row = m.EmbeddingMap(embedding_id=embedding_id, algorithm=algorithm, params=params, path=self.rel(path))
            s.add(row)
            s.flush()
            return _record(EmbeddingMapRecord, row)

    def embedding_maps(self, embedding_id: int) -> list[EmbeddingMapRecord]:
        with self.session() as s:
            q = select(m.EmbeddingMap).where(m.EmbeddingMap.embedding_id == embedding_id).order_by(m.EmbeddingMap.id)
            return [_record(EmbeddingMapRecord, r) for r in s.scalars(q)]

    def add_export(
        self, run_id: int, format: str, path: str | os.PathLike, card: dict[str, Any], checkpoint_step: int | None = None
    ) -> ExportRecord:
        with self.session() as s:
            row = m.Export(run_id=run_id, format=format, path=self.rel(path), card=card, checkpoint_step=checkpoint_step)
            s.add(row)
            s.flush()
            return _record(ExportRecord, row)

    def exports(self, run_id: int | None = None) -> list[ExportRecord]:
        with self.session() as s:
            q = select(m.Export).order_by(m.Export.id)
            if run_id is not None:
                q = q.where(m.Export.run_id == run_id)
            return [_record(ExportRecord, r) for r in s.scalars(q)]
