"""Schema creation and upgrades of the project database."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from studio.store import models as m

SCHEMA_VERSION = 1


class SchemaVersionError(Exception):
    """The project was written by a newer studio, or its database cannot be upgraded."""


def create_schema(engine: Engine) -> None:
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
        return int(row.value) if row else 0


def upgrade_if_needed(engine: Engine, db_path: Path) -> None:
    version = schema_version(engine)
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{db_path} was written by a newer SSL Studio (schema {version}, this one knows {SCHEMA_VERSION}); "
            "update SSL Studio to open it."
        )
    if version < SCHEMA_VERSION:
        create_schema(engine)
