"""The project database file itself: is it ours, is it whole, can it be written; and `repair`.

Checked with the sqlite3 module before SQLAlchemy opens the file, so that a file that is not a
studio project (someone else's SQLite file, an empty file, garbage) is refused untouched.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from studio.store.lease import pid_alive

# `PRAGMA application_id` of a studio project: "SSLS". Files made before it was set carry 0 and a
# `meta` table with a schema version; they are adopted (the id is written) on their next open.
APPLICATION_ID = 0x53534C53
TEMP_MARKER = ".tmp-"  # `.NAME.tmp-PID`: a file being written, renamed to NAME when whole
SQLITE_MAGIC = b"SQLite format 3\x00"


class DatabaseFileError(Exception):
    """The file is not a (whole) studio database; the message says what to do."""


def _advice(db: Path) -> str:
    backups = sorted(db.parent.glob(f"{db.name}.bak-v*"))
    keep = f" A copy made before the last upgrade is {backups[-1].name}." if backups else ""
    return (f"Run 'ssl-studio repair {db.parent}' to copy out what can still be read (the damaged file is kept "
            f"beside it).{keep}")


def header(db: Path) -> tuple[bytes, int]:
    """(the first 16 bytes, the application id) of a database file: for tests and tools only, never
    while this process has the file open in SQLite (closing this descriptor drops its locks)."""
    with open(db, "rb") as f:
        head = f.read(100)
    app_id = int.from_bytes(head[68:72], "big") if len(head) >= 72 else 0
    return head[:16], app_id


def writable(db: Path) -> bool:
    """Whether the database (and its folder, for the WAL and journal files) can be written."""
    return os.access(db, os.W_OK) and os.access(db.parent, os.W_OK)


def connect(db: Path, read_only: bool) -> sqlite3.Connection:
    if not read_only:
        return sqlite3.connect(str(db))
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.Error:
        # A read-only file system: SQLite cannot make the WAL's shared-memory file there.
        return sqlite3.connect(f"file:{db}?immutable=1", uri=True)


def check_file(db: Path, read_only: bool = False, integrity: bool = True) -> bool:
    """Refuse a file that is not a whole studio database (DatabaseFileError); returns whether it
    still needs its application id written (a studio file from before the id)."""
    size = db.stat().st_size
    if size == 0:
        raise DatabaseFileError(f"{db} is empty (0 bytes): it is not a project database, and was left as it is. "
                                + _advice(db))
    # The file is read through SQLite only, never with open(): closing any other descriptor of the
    # file drops every POSIX lock this process holds on it, so a live connection of this process
    # (the GUI's) would lose its locks, another process would then delete the WAL under it, and it
    # would read a stale snapshot for ever (seen: a run finished by torchrun read as 'queued').
    try:
        conn = connect(db, read_only)
    except sqlite3.Error as exc:
        raise DatabaseFileError(f"{db} cannot be opened ({exc}). " + _advice(db)) from None
    try:
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]  # the WAL's newest, not the file header's
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc):
                raise DatabaseFileError(f"{db} is not a SQLite database (it is damaged, or another kind of file); it "
                                        "was left as it is. " + _advice(db)) from None
            raise
        if app_id not in (0, APPLICATION_ID):
            raise DatabaseFileError(f"{db} is a SQLite database of another program (application id {app_id:#x}), not "
                                    "an SSL Studio project; it was left untouched.")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if app_id == 0:
            ours = "meta" in tables and conn.execute(
                "SELECT count(*) FROM meta WHERE key='schema_version'").fetchone()[0] == 1
            if not ours:
                raise DatabaseFileError(f"{db} is a SQLite database but not an SSL Studio project (no studio tables); "
                                        "it was left untouched.")
        if integrity:
            problems = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                raise DatabaseFileError(f"the project database {db} is damaged ({'; '.join(problems)[:200]}). "
                                        + _advice(db))
    except sqlite3.DatabaseError as exc:
        raise DatabaseFileError(f"the project database {db} is damaged ({exc}). " + _advice(db)) from None
    finally:
        conn.close()
    return app_id == 0


def mark_as_ours(conn) -> None:
    """Write the studio's application id (a DB-API connection)."""
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")


@dataclass
class RepairReport:
    damaged: Path  # where the damaged file was moved
    database: Path  # the new database, in its place
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows copied
    lost: dict[str, int] = field(default_factory=dict)  # table -> rows that could not be read


def _rows(src: sqlite3.Connection, table: str, lost: dict[str, int]):
    """Every row SQLite can still read, by rowid ranges; unreadable ranges are narrowed down to
    single rows and those skipped."""
    try:
        top = src.execute(f'SELECT max(rowid) FROM "{table}"').fetchone()[0] or 0
    except sqlite3.DatabaseError:
        # The last page is unreadable: no table holds more rows than the file has bytes / 16.
        pages, page_size = (src.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "page_size"))
        top = pages * page_size // 16
    chunks = [(lo, min(top, lo + 4999)) for lo in range(1, top + 1, 5000)]
    for lo, hi in chunks:
        pending = [(lo, hi)]
        while pending:
            a, b = pending.pop(0)
            try:
                yield from src.execute(f'SELECT * FROM "{table}" WHERE rowid BETWEEN ? AND ? ORDER BY rowid',
                                       (a, b)).fetchall()
            except sqlite3.DatabaseError:
                if a == b:
                    lost[table] = lost.get(table, 0) + 1
                else:
                    mid = (a + b) // 2
                    pending[:0] = [(a, mid), (mid + 1, b)]


def repair(db: Path, create_schema) -> RepairReport:
    """Copy what SQLite can still read of `db` into a new studio database in its place; the
    damaged file (with its WAL) is moved aside as `project.db.damaged-<time>`.

    `create_schema(path)` makes the empty studio database to copy into."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    new = db.with_name(f"{db.name}.repaired-{stamp}")
    create_schema(new)
    src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    dst = sqlite3.connect(str(new))
    report = RepairReport(db.with_name(f"{db.name}.damaged-{stamp}"), db)
    try:
        tables = [r[0] for r in dst.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        dst.execute("PRAGMA foreign_keys=OFF")
        for table in tables:
            cols = [r[1] for r in dst.execute(f'PRAGMA table_info("{table}")')]
            try:
                have = [r[1] for r in src.execute(f'PRAGMA table_info("{table}")')]
            except sqlite3.DatabaseError:
                have = []
            shared = [c for c in cols if c in have]
            if not shared:
                continue
            if table == "meta":
                dst.execute("DELETE FROM meta WHERE key != 'schema_version'")
            count = 0
            col_list = ", ".join(f'"{c}"' for c in shared)
            marks = ", ".join("?" for _ in shared)
            index = [have.index(c) for c in shared]
            for row in _rows(src, table, report.lost):
                values = [row[i] for i in index]
                if table == "meta" and row[have.index("key")] == "schema_version":
                    continue
                try:
                    dst.execute(f'INSERT OR IGNORE INTO "{table}" ({col_list}) VALUES ({marks})', values)
                    count += 1
                except sqlite3.Error:
                    report.lost[table] = report.lost.get(table, 0) + 1
            report.rows[table] = count
        dst.commit()
        problems = [r[0] for r in dst.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise DatabaseFileError(f"the repaired copy is not sound either ({problems[0]}); the damaged file is kept.")
    finally:
        src.close()
        dst.close()
    for suffix in ("", "-wal", "-shm"):
        part = Path(str(db) + suffix)
        if part.exists():
            shutil.move(str(part), str(report.damaged) + suffix)
    os.replace(new, db)
    return report


def _configure_sqlite(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers (the GUI) read while a writer (a training run) commits; busy_timeout makes a
    # second writer wait instead of failing with "database is locked".
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _configure_read_only(dbapi_conn, _record) -> None:
    dbapi_conn.execute("PRAGMA busy_timeout=60000")


def make_engine(db_path: Path, read_only: bool = False) -> Engine:
    if read_only:
        engine = create_engine("sqlite://", creator=lambda: connect(db_path, True))
        event.listen(engine, "connect", _configure_read_only)
        return engine
    engine = create_engine(
        f"sqlite:///{db_path}",
        connect_args={"timeout": 60, "check_same_thread": False},
    )
    event.listen(engine, "connect", _configure_sqlite)
    return engine


def remove_stale_temp_files(root: Path) -> list[Path]:
    """Remove the temporary files (`.NAME.tmp-PID`, a checkpoint or export being written) that a
    process killed while writing left under a project folder; a live process's (this one's too)
    are kept."""
    removed = []
    for folder in (root / "runs", root / "exports", root / "cache"):
        if not folder.is_dir():
            continue
        for p in folder.rglob(f".*{TEMP_MARKER}*"):
            pid = p.name.rsplit(TEMP_MARKER, 1)[-1]
            if not pid.isdigit() or not p.is_file() or p.is_symlink():
                continue
            if int(pid) == os.getpid() or pid_alive(int(pid)):
                continue  # being written now
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass  # a read-only project: left for a writable open
    return removed
