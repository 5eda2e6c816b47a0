"""Adding, renaming and removing a project's datasets, loading their decoded images, and what the
Dataset page shows of them (class counts, the indices of a class's images)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from studio.engine.data.captions import caption_key, read_captions
from studio.engine.data import DecodedImages, ImageSource, decode_images, default_dataset_name, open_source, parse_source_spec
from studio.engine.errors import DatasetError
from studio.services.runs import Verdict
from studio.store import DatasetRecord, Project, RunRecord

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
    captions = read_captions(src)
    unreadable = {n for n, _ in info.skipped}
    record = project.add_dataset(
        name=name, kind=kind, source=stored, images=info.images, skipped=len(info.skipped),
        classes=info.classes, class_names=info.class_names, skipped_files=info.skipped,
    )
    if not captions.kind:
        return record
    pairs = ((caption_key(src, i), c) for i, cs in enumerate(captions.by_image) if src.name(i) not in unreadable for c in cs)
    return project.set_captions(record.id, captions.kind, pairs, captions.issues, captions.templates)


def caption_issue_lines(dataset: DatasetRecord, limit: int = 20) -> list[str]:
    """What the front doors say of a dataset's captions: where they come from, then each caption
    that could not be used with its reason (at most `limit`)."""
    if not dataset.caption_kind:
        return []
    from studio.engine.data.captions import Captions

    where = Captions(dataset.caption_kind, [], [], dataset.caption_templates).describe()
    lines = [f"captions: {dataset.captions:,} of {dataset.images:,} images, {where}"]
    issues = list(dataset.caption_issues)
    lines += [f"  caption of {name}: {reason}" for name, reason in issues[:limit]]
    if len(issues) > limit:
        lines.append(f"  ... and {len(issues) - limit:,} more caption issues")
    return lines


def captions_for_names(project: Project, dataset: DatasetRecord, names: list[str],
                       source: ImageSource | None = None) -> list[list[str]]:
    """The stored captions of the images `names` (as the dataset's source names them), in order."""
    if not dataset.captions:
        return [[] for _ in names]
    source = source or open_dataset_source(project, dataset)
    stored = project.captions(dataset.id)
    index = {source.name(i): i for i in range(len(source))}
    return [list(stored.get(caption_key(source, index[n]), ())) if n in index else [] for n in names]


CAPTION_LENGTH_BINS = 8  # bars of the Dataset page's caption-length histogram, at most


@dataclass(frozen=True)
class DatasetCaptions:
    """A dataset's stored captions, for showing them: each image's, and how long they run."""

    by_image: dict[str, list[str]]  # caption_key -> the image's captions, in the order read

    def of(self, source: ImageSource, index: int) -> list[str]:
        return self.by_image.get(caption_key(source, index), [])

    def length_histogram(self, bins: int = CAPTION_LENGTH_BINS) -> list[tuple[int, int, int]]:
        """(shortest, longest, captions) of each bar, in characters, shortest bar first; bars of
        whole characters, at most `bins` of them, none empty at either end."""
        lengths = np.array([len(c) for caps in self.by_image.values() for c in caps], dtype=np.int64)
        if not len(lengths):
            return []
        lo, hi = int(lengths.min()), int(lengths.max())
        edges = np.unique(np.linspace(lo, hi + 1, min(bins, hi - lo + 1) + 1).round().astype(np.int64))
        counts = np.histogram(lengths, bins=edges)[0]
        return [(int(a), int(b) - 1, int(n)) for a, b, n in zip(edges[:-1], edges[1:], counts)]


def dataset_captions(project: Project, dataset: DatasetRecord) -> DatasetCaptions | None:
    """The dataset's captions (None when it has none); a query of the project, off the GUI thread."""
    if not dataset.captions:
        return None
    return DatasetCaptions(project.captions(dataset.id))


def attach_captions(project: Project, dataset: DatasetRecord, data: DecodedImages, source: ImageSource) -> DecodedImages:
    """`data` with each image's stored captions, in its order (left None when the dataset has none)."""
    if dataset.captions:
        data.captions = captions_for_names(project, dataset, data.names, source)
    return data


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
    data = decode_images(source, size, cache_dir=project.cache_dir / "images", progress=progress)
    return attach_captions(project, dataset, data, source)


def ensure_sample_project(path: str | os.PathLike) -> Project:
    """A project holding the built-in sample, created on first use (for `make run`, "Try the sample")."""
    project = Project.create(path, exist_ok=True)
    if not any(d.kind == "sample" for d in project.datasets()):
        add_dataset(project, "sample", name="sample")
    return project


# -- renaming and removing ------------------------------------------------------------------------
def rename_dataset(project: Project, key: int | str, new_name: str) -> DatasetRecord:
    """Rename a dataset (names are unique and not empty; ProjectError says which rule failed).
    Runs, embeddings and tags refer to it by id and follow."""
    from studio.services.runs import writable

    writable(project).check()
    dataset = project.dataset(key)
    return project.rename_dataset(dataset.id, new_name)


@dataclass(frozen=True)
class DatasetRemoval:
    """What removing a dataset takes with it: the front doors show it before they ask, and
    `remove_dataset` returns it once done. Paths are relative to the project folder."""

    dataset: DatasetRecord
    runs: tuple[RunRecord, ...]
    checkpoints: int  # checkpoint files of those runs on disk
    files: tuple[str, ...]  # files and folders deleted, all inside the project folder
    kept: tuple[str, ...]  # files of those runs outside the project folder (exports elsewhere): never deleted
    embeddings: int
    evaluations: int
    tags: int

    @property
    def run_ids(self) -> list[int]:
        return [r.id for r in self.runs]

    def runs_phrase(self) -> str:
        """'run 3' | 'runs 1, 2 and 5' | 'runs 1, 2, 3, … (14 in all)'."""
        ids = [str(i) for i in self.run_ids]
        if len(ids) == 1:
            return f"run {ids[0]}"
        if len(ids) > 8:
            return f"runs {', '.join(ids[:6])}, … ({len(ids)} in all)"
        return f"runs {', '.join(ids[:-1])} and {ids[-1]}"

    def summary(self) -> str:
        """One sentence of what goes, in a person's words (the dataset's images are never touched)."""
        parts = []
        if self.runs:
            ck = f", {self.checkpoints} checkpoint file{'s' if self.checkpoints != 1 else ''}" if self.checkpoints else ""
            parts.append(f"{self.runs_phrase()} with {'its' if len(self.runs) == 1 else 'their'} metrics{ck} and "
                         "exports inside the project folder")
        for n, what in ((self.embeddings, "embedding"), (self.evaluations, "evaluation"), (self.tags, "image tag")):
            if n:
                parts.append(f"{n} {what}{'s' if n != 1 else ''}")
        goes = f" and {'; '.join(parts)}" if parts else " (nothing else uses it)"
        where = "" if self.dataset.kind != "folder" else f" The images in {self.dataset.source} stay where they are."
        return f"Removes the dataset {self.dataset.name!r}{goes}.{where}"


def removal_plan(project: Project, key: int | str) -> DatasetRemoval:
    """What removing dataset `key` (name or id) would delete; nothing is changed. Which files may
    go is the store's one rule (store.run_files), the one a run's own deletion follows."""
    from studio.store.run_files import run_files, split_deletable

    dataset = project.dataset(key)
    runs = tuple(project.run(i) for i in project.dataset_run_ids(dataset.id))
    belongings = project.dataset_belongings(dataset.id)
    checkpoints = sum(1 for run in runs for c in project.checkpoints(run.id) if project.abs(c.path).is_file())
    candidates = run_files(project, [r.id for r in runs])
    candidates += [project.abs(p) for p in belongings["embeddings"] + belongings["maps"]]
    # Never the images themselves: no dataset's folder (this one's or another's) loses a file,
    # even when it lies inside the project folder.
    files, kept = split_deletable(project, candidates)
    embeddings = len(set(belongings["embeddings"]) | {e.path for r in runs for e in project.embeddings(r.id)})
    return DatasetRemoval(dataset, runs, checkpoints, tuple(files), tuple(kept), embeddings,
                          len(belongings["evaluations"]), len(belongings["tags"]))


def can_remove_dataset(project: Project, plan: DatasetRemoval, with_runs: bool = False,
                       busy: Callable[[int], bool] | None = None) -> Verdict:
    """Whether the dataset of `plan` may be removed: never in a read-only project, never while a
    process holds one of its runs; with runs only when the caller removes them too (`with_runs`).
    `busy(run_id)`: this front door trains that run."""
    from studio.services.runs import can_delete, writable

    verdict = writable(project)
    if not verdict:
        return verdict
    name = plan.dataset.name
    if plan.runs and not with_runs:
        return Verdict(False, f"dataset {name!r} is used by {plan.runs_phrase()}: remove {'it' if len(plan.runs) == 1 else 'them'} "
                              "with the dataset, or keep the dataset.", error=DatasetError)
    for run in plan.runs:
        held = can_delete(run, busy=bool(busy and busy(run.id)))
        if not held:
            return Verdict(False, f"dataset {name!r} cannot be removed now: {held.reason}", error=DatasetError)
    return Verdict(True)


def remove_dataset(project: Project, key: int | str, with_runs: bool = False,
                   busy: Callable[[int], bool] | None = None) -> DatasetRemoval:
    """Remove a dataset with its embeddings, maps, evaluations and tags; with `with_runs`, its runs
    too (rows, metrics, checkpoints, and their files inside the project folder). The dataset's own
    images are never deleted. Raises DatasetError when `can_remove_dataset` says no; returns what
    was removed."""
    from studio.store.run_files import delete_files

    plan = removal_plan(project, key)
    can_remove_dataset(project, plan, with_runs, busy).check()
    for run in plan.runs:
        project.delete_run(run.id)  # its rows and its own files
    project.delete_dataset(plan.dataset.id)
    delete_files(project, plan.files)  # what is left of the plan: the dataset's embeddings and maps
    return plan


# -- what the Dataset page shows ------------------------------------------------------------------
@dataclass(frozen=True)
class ClassCount:
    name: str
    images: int


def class_counts(source: ImageSource) -> list[ClassCount]:
    """Images per class of a source, largest first (then by name); images without a label count
    as one row named "" when the source has classes; [] when it has none."""
    if not source.has_labels:
        return []
    labels = np.asarray(source.labels, dtype=np.int64)
    names = list(source.class_names)
    counts = np.bincount(labels[(labels >= 0) & (labels < len(names))], minlength=len(names))
    rows = [ClassCount(n, int(c)) for n, c in zip(names, counts)]
    unlabelled = int(np.count_nonzero((labels < 0) | (labels >= len(names))))
    if unlabelled:
        rows.append(ClassCount("", unlabelled))
    return sorted(rows, key=lambda r: (-r.images, r.name))


def image_indices(source: ImageSource, class_name: str | None = None) -> np.ndarray:
    """The indices of a source's images, all of them or those of one class (in the source's order)."""
    if class_name is None:
        return np.arange(len(source), dtype=np.int64)
    labels = np.asarray(source.labels, dtype=np.int64)
    names = list(source.class_names)
    if class_name == "":
        return np.flatnonzero((labels < 0) | (labels >= len(names)))
    if class_name not in names:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(labels == names.index(class_name))
