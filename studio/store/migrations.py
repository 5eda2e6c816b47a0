"""Schema creation and upgrades of the project database.

A project file carries its schema version in the `meta` table. Opening an older file first
copies it aside (`project.db.bak-v<old>`, through SQLite's online backup, so a WAL file's
pages are included), then applies each step below in its own transaction with alembic's
operations; a file from a newer studio is refused, never changed.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Callable

from sqlalchemy import JSON, Column, Integer, String, Text, inspect, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from studio.store import models as m

SCHEMA_VERSION = 6


class SchemaVersionError(Exception):
    """The project was written by a newer studio, or its database cannot be upgraded."""


def _v2_run_notes(conn: Connection) -> None:
    """Schema 2: runs get a free-text `notes` column."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    if "notes" not in {c["name"] for c in inspect(conn).get_columns("runs")}:
        Operations(MigrationContext.configure(conn)).add_column("runs", Column("notes", Text, nullable=True))


def _v3_image_tags(conn: Connection) -> None:
    """Schema 3: the `image_tags` table (tags a person puts on a dataset's images in the Explorer)."""
    if not inspect(conn).has_table("image_tags"):
        m.ImageTag.__table__.create(conn)


def _v4_run_parent_step(conn: Connection) -> None:
    """Schema 4: runs get `parent_step`, the parent's checkpoint a continued run starts from."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    if "parent_step" not in {c["name"] for c in inspect(conn).get_columns("runs")}:
        Operations(MigrationContext.configure(conn)).add_column("runs", Column("parent_step", Integer, nullable=True))


def _v5_run_labels_and_queue(conn: Connection) -> None:
    """Schema 5: runs get a `name`, `tags` and a `queue_position` (the run queue)."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    have = {c["name"] for c in inspect(conn).get_columns("runs")}
    ops = Operations(MigrationContext.configure(conn))
    for column in (Column("name", String(200), nullable=True), Column("tags", JSON, nullable=True),
                   Column("queue_position", Integer, nullable=True)):
        if column.name not in have:
            ops.add_column("runs", column)


def _v6_captions(conn: Connection) -> None:
    """Schema 6: datasets get their caption counts and issues; the `image_captions` table."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    have = {c["name"] for c in inspect(conn).get_columns("datasets")}
    ops = Operations(MigrationContext.configure(conn))
    for column in (Column("captions", Integer, nullable=True), Column("caption_kind", String(16), nullable=True),
                   Column("caption_templates", JSON, nullable=True), Column("caption_issues", JSON, nullable=True)):
        if column.name not in have:
            ops.add_column("datasets", column)
    if not inspect(conn).has_table("image_captions"):
        m.ImageCaption.__table__.create(conn)


# version reached -> the step that reaches it from the one before
MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    2: _v2_run_notes,
    3: _v3_image_tags,
    4: _v4_run_parent_step,
    5: _v5_run_labels_and_queue,
    6: _v6_captions,
}


def _set_version(conn: Connection, version: int) -> None:
    with Session(bind=conn) as s:
        s.merge(m.Meta(key="schema_version", value=str(version)))
        s.flush()


def create_schema(engine: Engine) -> None:
    from studio.store.database import mark_as_ours

    with engine.begin() as conn:
        mark_as_ours(conn.connection.driver_connection)
    m.Base.metadata.create_all(engine)
    from studio import __version__

    with Session(engine) as s, s.begin():
        s.merge(m.Meta(key="schema_version", value=str(SCHEMA_VERSION)))
        s.merge(m.Meta(key="created_by", value=f"ssl-studio {__version__}"))


def schema_version(engine: Engine) -> int:
    with Session(engine) as s:
        try:
            row = s.scalar(select(m.Meta).where(m.Meta.key == "schema_version"))
        except Exception:
            return 0
        if row is None:
            return 0
        try:
            return int(row.value)
        except (TypeError, ValueError):
            raise SchemaVersionError(
                f"the project database is damaged: its schema version is {row.value!r}, not a number. "
                "Run 'ssl-studio repair PROJECT' to copy its contents into a new database.") from None


def backup_database(db_path: Path, version: int) -> Path:
    """A consistent copy of the database beside it, before anything changes it."""
    target = db_path.with_name(f"{db_path.name}.bak-v{version}")
    n = 2
    while target.exists():
        target = db_path.with_name(f"{db_path.name}.bak-v{version}-{n}")
        n += 1
    src = sqlite3.connect(str(db_path))
    dst = sqlite3.connect(str(target))
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    return target


def upgrade_if_needed(engine: Engine, db_path: Path) -> Path | None:
    """Bring the file to SCHEMA_VERSION; returns the backup's path when it was upgraded."""
    version = schema_version(engine)
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{db_path} was written by a newer SSL Studio (schema {version}, this one knows {SCHEMA_VERSION}); "
            "update SSL Studio to open it."
        )
    if version == SCHEMA_VERSION:
        return None
    if version == 0:  # a studio file that never finished being created (foreign files are refused before)
        create_schema(engine)
        return None
    backup = backup_database(db_path, version)
    try:
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with engine.begin() as conn:
                MIGRATIONS[target](conn)
                _set_version(conn, target)
        m.Base.metadata.create_all(engine)  # tables that are new in this version
    except Exception as exc:
        raise SchemaVersionError(
            f"could not upgrade {db_path} from schema {version} to {SCHEMA_VERSION} ({exc}); "
            f"the original is kept as {backup.name}."
        ) from exc
    return backup
