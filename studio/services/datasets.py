"""Adding datasets to a project and loading their decoded images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from studio.engine.data import DecodedImages, ImageSource, decode_images, default_dataset_name, open_source, parse_source_spec
from studio.engine.errors import DatasetError
from studio.store import DatasetRecord, Project

Progress = Callable[[int, int], None]


def _stored_source(project: Project, kind: str, source: str) -> str:
    if kind == "folder":
        path = Path(source).expanduser().resolve()
        if not path.is_dir():
            raise DatasetError(f"{source} is not a folder.")
        return project.rel(path)
    if kind == "torchvision":
        body = source.split(":", 1)[1]
        name, sep, root = body.partition("@")
        if root:
            root = project.rel(Path(root).expanduser().resolve())
        return f"torchvision:{name.lower()}{sep}{root}"
    return source


def add_dataset(
    project: Project,
    spec: str,
    name: str | None = None,
    download: bool = False,
    progress: Progress | None = None,
) -> DatasetRecord:
    """Open a source (folder path | 'sample' | 'torchvision:NAME[@ROOT]'), decode every image once
    to count the unreadable ones, and record it in the project."""
    kind, source = parse_source_spec(spec)
    stored = _stored_source(project, kind, source)
    src = open_source(kind, stored, base=project.root, download=download)
    info = src.verify(progress)
    if info.images == 0:
        first = f" (first: {info.skipped[0][0]}: {info.skipped[0][1]})" if info.skipped else ""
        raise DatasetError(f"none of the {len(src)} images in {source} could be read{first}.")
    taken = [d.name for d in project.datasets()]
    name = name or default_dataset_name(spec, taken)
    return project.add_dataset(
        name=name, kind=kind, source=stored, images=info.images, skipped=len(info.skipped),
        classes=info.classes, class_names=info.class_names, skipped_files=info.skipped,
    )


def same_source(project: Project, spec: str) -> DatasetRecord | None:
    """The project's dataset that already reads the images of `spec`, if one does (adding the
    same folder twice is most often a slip: the front doors say so)."""
    kind, source = parse_source_spec(spec)
    stored = _stored_source(project, kind, source)
    return next((d for d in project.datasets() if d.kind == kind and d.source == stored), None)


def open_dataset_source(project: Project, dataset: DatasetRecord) -> ImageSource:
    return open_source(dataset.kind, dataset.source, base=project.root)


def load_images(project: Project, dataset: DatasetRecord, size: int, progress: Progress | None = None) -> DecodedImages:
    """The dataset's images decoded at `size`, from the project's cache when it is current."""
    source = open_dataset_source(project, dataset)
    return decode_images(source, size, cache_dir=project.cache_dir / "images", progress=progress)


def ensure_sample_project(path: str | os.PathLike) -> Project:
    """A project holding the built-in sample, created on first use (for `make run`, "Try the sample")."""
    project = Project.create(path, exist_ok=True)
    if not any(d.kind == "sample" for d in project.datasets()):
        add_dataset(project, "sample", name="sample")
    return project
