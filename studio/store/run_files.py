"""Which files go when runs (or a dataset) leave a project: the files their rows refer to, kept
when they lie outside the project folder or touch a dataset's images. The one rule of deleting a
project's files, asked by `Project.delete_run` and `services.datasets.remove_dataset` alike.

Paths in and out are as stored (relative to the project folder when inside it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable, Sequence

from sqlalchemy import select

from studio.store import models as m

# What the exporters write beside an export saved as a file, `<stem><suffix>` (services.export's
# card and README, engine.export.embeddings' index of an embeddings file; a test checks they agree).
EXPORT_COMPANIONS = (".card.json", ".README.md", ".index.csv")


def inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


def export_files(project, stored: str, run_id: int) -> list[Path]:
    """An export's files: its folder when it is the default one (PROJECT/exports/run-ID-...),
    else its main file and what the exporter wrote beside it."""
    path = project.abs(stored)
    exports = project.root / "exports"
    if path.parent.parent.resolve() == exports.resolve() and path.parent.name.startswith(f"run-{run_id}-"):
        return [path.parent]
    return [path, *(path.with_name(path.stem + suffix) for suffix in EXPORT_COMPANIONS)]


def run_files(project, run_ids: Iterable[int]) -> list[Path]:
    """Every file and folder the runs' rows refer to: runs/<id>/, their embeddings and maps, their
    exports (whether they exist, and wherever they are: `split_deletable` sorts them)."""
    found: list[Path] = []
    for run_id in run_ids:
        found.append(project.root / "runs" / str(run_id))
        for e in project.embeddings(run_id):
            found.append(project.abs(e.path))
            found += [project.abs(mp.path) for mp in project.embedding_maps(e.id)]
        for x in project.exports(run_id):
            found += export_files(project, x.path, run_id)
    return found


def split_deletable(project, candidates: Iterable[Path]) -> tuple[list[str], list[str]]:
    """(files and folders that may be deleted, ones that must be kept), of those that exist. Kept:
    anything outside the project folder (a person's own export elsewhere), the project folder
    itself, and anything inside or holding a dataset's image folder, even inside the project."""
    image_folders = [project.abs(d.source) for d in project.datasets() if d.kind == "folder"]
    root = project.root.resolve()
    files: list[str] = []
    kept: list[str] = []
    for p in dict.fromkeys(candidates):
        if not os.path.lexists(p):
            continue
        if not inside(p, root) or p.resolve() == root or any(inside(p, f) or inside(f, p) for f in image_folders):
            kept.append(project.rel(p))
        else:
            files.append(project.rel(p))
    return files, kept


def _still_referred(project) -> list[Path]:
    """Every file the project's rows refer to now (checkpoints, embeddings, maps, exports)."""
    with project.session() as s:
        paths = [*s.scalars(select(m.Checkpoint.path)), *s.scalars(select(m.Embedding.path)),
                 *s.scalars(select(m.EmbeddingMap.path)), *s.scalars(select(m.Export.path))]
    return [project.abs(p).resolve() for p in paths]


def delete_files(project, files: Sequence[str]) -> list[str]:
    """Delete files and folders `split_deletable` allowed, once their rows are gone; the ones
    deleted. One still referred to by a row that stays (a file another run's export wrote over)
    is left, and so is anything that is not inside the project folder."""
    if not files:
        return []
    root = project.root.resolve()
    referred = _still_referred(project)
    done: list[str] = []
    for rel in files:
        path = project.abs(rel)
        if not os.path.lexists(path) or not inside(path, root) or path.resolve() == root:
            continue
        resolved = path.resolve()
        if any(r == resolved or inside(r, resolved) for r in referred):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
        done.append(rel)
    return done
