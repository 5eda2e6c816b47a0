"""Exporting a run's encoder (or a dataset's embeddings) with its model card, recorded in the project."""

from __future__ import annotations

import functools
import inspect

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from studio.engine.errors import CheckpointError, ConfigError
from studio.engine.export import (
    DEFAULT_FILE_NAMES,
    EMBEDDING_FORMATS,
    FORMATS,
    MODEL_FORMATS,
    SUFFIXES,
    ExportCancelled,
    ExportError,
    build_card,
    compute_embeddings,
    export_model,
    load_for_export,
    parquet_available,
    readme,
    write_csv,
    write_npy,
    write_parquet,
)
from studio.engine.files import atomic_path
from studio.engine.export.embeddings import index_path_for
from studio.store import CheckpointRecord, ExportRecord, Project

# (message, done, total): total 0 means "no measurable progress" (a busy indicator).
ExportProgress = Callable[[str, int, int], None]
ShouldStop = Callable[[], bool]

CARD_NAME = "card.json"
README_NAME = "README.md"


@dataclass
class ExportResult:
    run_id: int
    format: str
    checkpoint_step: int | None
    path: Path  # the main file, absolute
    files: list[Path]  # every file written by the export proper (main first), absolute
    card_path: Path
    readme_path: Path
    card: dict[str, Any]
    record: ExportRecord | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, project: Project) -> dict[str, Any]:
        """What `export --json` prints: paths relative to the project when inside it."""
        return {
            "run_id": self.run_id,
            "format": self.format,
            "checkpoint_step": self.checkpoint_step,
            "path": project.rel(self.path),
            "files": [project.rel(p) for p in self.files],
            "card": project.rel(self.card_path),
            "readme": project.rel(self.readme_path),
            "feature_dim": self.card.get("feature_dim"),
            "export_id": self.record.id if self.record else None,
            **self.extra,
        }


def resolve_checkpoint(project: Project, run_id: int, step: int | None = None) -> CheckpointRecord:
    """The run's checkpoint at `step` (None: the newest one on disk)."""
    run = project.run(run_id)
    if step is None:
        ck = project.latest_checkpoint(run.id)
        if ck is None:
            raise CheckpointError(f"run {run.id} has no checkpoint on disk to export; train it first (status: {run.status}).")
        return ck
    found = [c for c in project.checkpoints(run.id) if c.step == int(step) and project.abs(c.path).is_file()]
    if not found:
        have = sorted({c.step for c in project.checkpoints(run.id) if project.abs(c.path).is_file()})
        listed = ", ".join(str(s) for s in have) or "none"
        raise CheckpointError(f"run {run.id} has no checkpoint at step {step} (steps with a checkpoint: {listed}).")
    # Prefer a step-N file over last.ckpt: last.ckpt is rewritten in place by a resumed run.
    found.sort(key=lambda c: (Path(c.path).name == "last.ckpt", -c.id))
    return found[0]


def default_output(project: Project, run_id: int, step: int | None, format: str) -> Path:
    return project.root / "exports" / f"run-{run_id}-step-{step if step is not None else 'last'}-{format}"


def output_for_format(out: str | os.PathLike, old_format: str, new_format: str) -> Path:
    """What a destination chosen for `old_format` becomes when the format changes to `new_format`,
    so that no `...-torchscript` folder or `.onnx` file name outlives its format: a folder named
    `...-<old format>` (the default one) gets `-<new format>`; a file with the old format's default
    name or suffix gets the new format's; any other folder is kept (it receives the new format's
    `encoder.<ext>`)."""
    old_fmt, new_fmt = _check_format(old_format), _check_format(new_format)
    target = Path(out)
    name = target.name
    if old_fmt == new_fmt or not name:
        return target
    if name == DEFAULT_FILE_NAMES[old_fmt]:
        return target.with_name(DEFAULT_FILE_NAMES[new_fmt])
    if name.endswith(f"-{old_fmt}"):
        return target.with_name(name[: -len(old_fmt)] + new_fmt)
    if target.suffix.lower() in SUFFIXES[old_fmt] and not target.is_dir():
        stem = target.stem
        # encoder.torchscript.pt: every part of the name that says the old format goes.
        inner = Path(stem).suffix
        if inner and inner.lower() in SUFFIXES[old_fmt]:
            stem = Path(stem).stem
        return target.with_name(stem + SUFFIXES[new_fmt][0])
    return target


def resolve_output(project: Project, run_id: int, step: int | None, format: str, out: str | os.PathLike | None) -> tuple[Path, Path, Path]:
    """(main file, card JSON, README) for `out`.

    A folder (existing, or a path without suffix) gets `encoder.<ext>` (or `embeddings.<ext>`),
    `card.json` and `README.md`; a file path gets `<stem>.card.json` and `<stem>.README.md` beside it.
    """
    target = Path(out).expanduser() if out else default_output(project, run_id, step, format)
    if not target.is_absolute():
        target = Path.cwd() / target
    if target.is_dir() or not target.suffix:
        return target / DEFAULT_FILE_NAMES[format], target / CARD_NAME, target / README_NAME
    return target, target.with_name(f"{target.stem}.card.json"), target.with_name(f"{target.stem}.README.md")


# The project's own files, which no export may write over, even with `force`: the database (and
# its journal, WAL and backups), the runs' checkpoints and the caches.
PROTECTED_FOLDERS = ("runs", "cache")


def _is_project_file(project: Project, target: Path) -> bool:
    root = project.root.resolve()
    try:
        rel = target.resolve().relative_to(root)
    except ValueError:
        return False
    parts = rel.parts
    if not parts:
        return True  # the project folder itself
    if len(parts) == 1 and parts[0].startswith(project.db_path.name):
        return True  # project.db, project.db-wal, -shm, -journal, .bak-v1 ...
    return parts[0] in PROTECTED_FOLDERS


def planned_outputs(project: Project, run_id: int, format: str, out: str | os.PathLike | None = None,
                    checkpoint_step: int | None = None, with_heads: bool = False) -> list[Path]:
    """Every file an export would write, main file first (what a front door asks about before
    it overwrites anything)."""
    fmt = _check_format(format)
    ck = resolve_checkpoint(project, run_id, checkpoint_step)
    path, card_path, readme_path = resolve_output(project, run_id, ck.step, fmt, out)
    files = [path]
    if fmt == "embeddings-npy":
        files.append(index_path_for(path))
    if with_heads and fmt == "torchvision":
        files.append(path.with_name(f"{path.stem}.heads{path.suffix or '.pth'}"))
    return files + [card_path, readme_path]


def existing_outputs(project: Project, run_id: int, format: str, out: str | os.PathLike | None = None,
                     checkpoint_step: int | None = None, with_heads: bool = False) -> list[Path]:
    """The files an export would replace: a front door asks the person about these, then calls
    `export_run(..., force=True)`. Raises ExportError when the destination is one of the
    project's own files (never allowed)."""
    files = planned_outputs(project, run_id, format, out, checkpoint_step, with_heads)
    check_destination(project, files, force=True)
    return [f for f in files if os.path.lexists(f)]


def check_destination(project: Project, files: list[Path], force: bool = False) -> None:
    """Refuse to write over the project's own files (always) or over an existing file (unless
    `force`)."""
    for f in files:
        if _is_project_file(project, f):
            raise ExportError(f"{f} is one of the project's own files (its database, checkpoints or cache); "
                              "an export never writes there. Choose another destination, e.g. PROJECT/exports/.")
        if os.path.lexists(f) and (f.is_dir() or f.is_symlink()):
            raise ExportError(f"{f} exists and is not a plain file; choose another destination.")
    existing = [f for f in files if os.path.lexists(f)]
    if existing and not force:
        names = ", ".join(str(f) for f in existing[:3]) + (" ..." if len(existing) > 3 else "")
        raise ExportError(f"{names} exists already; choose another destination, or overwrite it with --force.")


def _dataset_summary(dataset) -> dict[str, Any]:
    info = {"name": dataset.name, "kind": dataset.kind, "images": dataset.images, "classes": dataset.classes}
    if dataset.class_names and len(dataset.class_names) <= 100:
        info["class_names"] = list(dataset.class_names)
    return info


def _evaluations(project: Project, run_id: int) -> list[dict[str, Any]]:
    names = {d.id: d.name for d in project.datasets()}
    return [
        {"kind": e.kind, "metrics": e.metrics, "checkpoint_step": e.checkpoint_step,
         "dataset": names.get(e.dataset_id) if e.dataset_id is not None else None}
        for e in project.evaluations(run_id)
    ]


def _check_format(format: str) -> str:
    fmt = (format or "").lower()
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}.")
    return fmt


def _os_errors_as_export_errors(fn):
    """An OSError while writing (a read-only or full destination) becomes an ExportError that
    names the file and says what to do."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            out = inspect.signature(fn).bind(*args, **kwargs).arguments.get("out")
            where = exc.filename or out or "the destination"
            raise ExportError(f"could not write {where}: {exc.strerror or exc}. Choose another destination.") from exc

    return wrapper


@_os_errors_as_export_errors
def export_run(
    project: Project,
    run_id: int,
    format: str,
    out: str | os.PathLike | None = None,
    checkpoint_step: int | None = None,
    with_heads: bool = False,
    dataset: str | int | None = None,
    batch_size: int = 128,
    device: str = "cpu",
    progress: ExportProgress | None = None,
    should_stop: ShouldStop | None = None,
    record: bool = True,
    force: bool = False,
) -> ExportResult:
    """Export run `run_id`'s checkpoint (newest, or at `checkpoint_step`) in `format`, write its
    card beside it and record it in the project; raises ExportCancelled if `should_stop` says so.

    `out` is a folder or a file (see `resolve_output`); embeddings formats embed `dataset`
    (default: the run's own) on `device`, `batch_size` images at a time. An existing file is
    replaced only with `force`; the project's own files never are (see `check_destination`).
    """
    fmt = _check_format(format)
    say = progress or (lambda message, done, total: None)

    def check_stop() -> None:
        if should_stop is not None and should_stop():
            raise ExportCancelled("the export was cancelled.")

    run = project.run(run_id)
    ck = resolve_checkpoint(project, run.id, checkpoint_step)
    path, card_path, readme_path = resolve_output(project, run.id, ck.step, fmt, out)
    if fmt in EMBEDDING_FORMATS and with_heads:
        raise ConfigError("embeddings are the encoder's features; --with-heads applies to model formats only.")
    if fmt == "embeddings-parquet" and not parquet_available():
        # Said before minutes of embedding, not after.
        raise ExportError("Parquet export needs pyarrow: pip install 'ssl-studio[parquet]', or export CSV or NPY.")
    check_destination(project, planned_outputs(project, run.id, fmt, out, checkpoint_step, with_heads), force=force)

    say("loading the checkpoint", 0, 0)
    from studio.services.runs import verify_checkpoint

    loaded = load_for_export(project.abs(ck.path), state=verify_checkpoint(project, run, ck))
    check_stop()
    config = loaded.config
    from studio.engine.data.views import IMAGENET_MEAN, IMAGENET_STD

    card_args: dict[str, Any] = dict(
        run_id=run.id, checkpoint_step=loaded.step if loaded.step is not None else ck.step,
        method=config.method, method_config=config.method_config, backbone=config.backbone,
        backbone_kind=loaded.backbone.kind, arch=loaded.arch, image_size=config.image_size,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, feature_dim=loaded.backbone.feature_dim,
        dataset=_dataset_summary(project.dataset(run.dataset_id)), steps=loaded.step, epochs=loaded.epoch,
        evaluations=_evaluations(project, run.id),
    )
    extra_json: dict[str, Any] = {}
    if fmt in MODEL_FORMATS:
        say(f"writing {fmt}", 0, 0)
        metadata = {"format": "pt", "backbone": config.backbone, "method": config.method,
                    "image_size": str(config.image_size), "mean": json.dumps(list(IMAGENET_MEAN)),
                    "std": json.dumps(list(IMAGENET_STD)), "feature_dim": str(loaded.backbone.feature_dim)}
        files = export_model(loaded, fmt, path, with_heads=with_heads, metadata=metadata)
        extra: dict[str, Any] = {}
        if with_heads and fmt == "torchvision" and len(files) > 1:
            extra["heads_file"] = files[1].name
        from studio.engine.export import text_tower

        image_text = fmt in ("torchscript", "onnx", "safetensors") and text_tower.is_image_text(config)
        if image_text:
            extra.update(text_tower.card_extra(loaded, files))
        card = build_card(format=fmt, file=path.name, heads_included=with_heads or image_text, extra=extra, **card_args)
        if image_text:
            card["snippet"] = text_tower.snippet(card)
    else:
        from studio.engine.device import resolve_device
        from studio.services.datasets import load_images

        ds = project.dataset(dataset) if dataset is not None else project.dataset(run.dataset_id)
        say(f"reading {ds.name}", 0, ds.images)
        images = load_images(project, ds, config.image_size, progress=lambda d, t: say(f"reading {ds.name}", d, t))
        check_stop()
        dev = resolve_device(device, amp=False).device
        features = compute_embeddings(
            loaded.backbone, images.images, batch_size=batch_size, device=dev,
            progress=lambda d, t: say("embedding", d, t), should_stop=should_stop,
        )
        loaded.backbone.cpu()
        labels = [int(v) for v in images.labels]
        say(f"writing {fmt}", 0, 0)
        if fmt == "embeddings-csv":
            files = [write_csv(path, features, images.names, labels, images.class_names)]
        elif fmt == "embeddings-npy":
            files = write_npy(path, features, images.names, labels, images.class_names)
        else:
            files = [write_parquet(path, features, images.names, labels, images.class_names)]
        emb = {"dataset": ds.name, "count": int(features.shape[0]), "dim": int(features.shape[1]),
               "view": "resize to the image size, pixel / 255, normalised (no augmentation)"}
        extra = {"embeddings": emb}
        if fmt == "embeddings-npy":
            extra["index_file"] = index_path_for(path).name
        card = build_card(format=fmt, file=path.name, extra=extra, **card_args)
        extra_json = {"dataset": ds.name, "rows": emb["count"], "dim": emb["dim"]}

    say("writing the model card", 0, 0)
    with atomic_path(card_path) as tmp:
        tmp.write_text(json.dumps(card, indent=2, default=str) + "\n", encoding="utf-8")
    with atomic_path(readme_path) as tmp:
        tmp.write_text(readme(card), encoding="utf-8")
    rec = project.add_export(run.id, fmt, path, card, checkpoint_step=card_args["checkpoint_step"]) if record else None
    say("done", 1, 1)
    return ExportResult(run.id, fmt, card_args["checkpoint_step"], path, files, card_path, readme_path, card, rec, extra_json)


__all__ = ["ExportError", "ExportCancelled", "ExportResult", "ExportProgress", "check_destination", "existing_outputs", "export_run", "output_for_format", "planned_outputs", "resolve_checkpoint", "resolve_output"]
