"""Exploring a run's embedding space: the use cases behind the Explorer page, without Qt.

`search_by_image` finds a dataset's images nearest to an image file, `search_by_text` (CLIP runs,
through a `TextSearcher`) those nearest to a sentence, and `inspect_dataset` lists its near
duplicates and outliers (the `search` and `inspect` commands).
`write_selection` writes the files a person selected on the map; `export_selection_dataset`
makes them a dataset of the project; `tag_selection` and `tag_groups` store and read tags on a
dataset's images; `find_duplicates` and `find_outliers` look for problems in a dataset (the math is
studio.engine.eval.problems; the defaults and bounds are here). `FileEmbedder` embeds an image file that is not in the dataset (dropped on the map) with the
encoder of a run's checkpoint: open the image, resize it as the dataset's images were, encode,
embed. The encoder is loaded once per (run, checkpoint) and kept for the next file.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from studio.store import DatasetRecord, Project, ProjectError

# Near duplicates: the cosine similarity from which two images count as copies, and the range a
# person may set (below ~0.8 "duplicates" are merely alike, and the groups swallow the dataset).
DUPLICATE_THRESHOLD = 0.97
DUPLICATE_THRESHOLD_RANGE = (0.80, 1.0)
OUTLIER_K = 5  # outliers: the distance to the k-th nearest other image
OUTLIER_K_RANGE = (1, 50)
SUBSET_FOLDER = "datasets"  # exported selections are folders here, inside the project
UNTAGGED = "untagged"


# -- problems -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outliers:
    indices: np.ndarray  # (N,) int64, the most alone first
    distances: np.ndarray  # (N,) cosine distance to the k-th neighbour, in that order
    k: int


def find_duplicates(vectors, threshold: float = DUPLICATE_THRESHOLD, cancelled: Callable[[], bool] | None = None):
    """Groups of near-copies (studio.engine.eval.problems.DuplicateGroup), largest first."""
    from studio.engine.eval.problems import near_duplicate_groups

    lo, hi = DUPLICATE_THRESHOLD_RANGE
    if not lo <= threshold <= hi:
        raise ValueError(f"the duplicate threshold is a cosine similarity between {lo} and {hi}, not {threshold}.")
    return near_duplicate_groups(vectors, threshold, cancelled=cancelled)


def find_outliers(vectors, k: int = OUTLIER_K, cancelled: Callable[[], bool] | None = None) -> Outliers:
    """Every image ranked by its distance to its k-th nearest neighbour, the most alone first."""
    from studio.engine.eval.problems import outlier_ranking

    lo, hi = OUTLIER_K_RANGE
    if not lo <= int(k) <= hi:
        raise ValueError(f"k for outliers is between {lo} and {hi}, not {k}.")
    order, dist = outlier_ranking(vectors, int(k), cancelled=cancelled)
    return Outliers(order, dist, int(k))


def _named(emb, i: int, **extra) -> dict:
    label = int(emb.labels[i]) if len(emb.labels) else -1
    return {"image": emb.names[i], **extra,
            "label": emb.class_names[label] if 0 <= label < len(emb.class_names) else None}


def search_by_image(project: Project, run_id: int, image: str | os.PathLike, dataset: str | int | None = None,
                    checkpoint_step: int | None = None, k: int = 16, device: str = "auto",
                    report: Callable[[str, int, int], None] | None = None) -> dict:
    """The k images of `dataset` (default: the run's) nearest to an image file, by the run's
    encoder: {"results": [{"image", "similarity", "label"}, ...], "search": how it searched}."""
    from studio.engine.eval import NeighbourIndex
    from studio.services.evaluation import compute_embeddings

    if not Path(image).is_file():
        raise ProjectError(f"{image} is not an image file.")
    emb = compute_embeddings(project, run_id, dataset, checkpoint_step, device=device, report=report)
    query = FileEmbedder(project, run_id, emb.record.checkpoint_step, device).embed(image)
    index = NeighbourIndex(emb.vectors, report=report)
    idx, sims = index.search(query, k)
    return {"run_id": int(run_id), "checkpoint_step": emb.record.checkpoint_step, "search": index.describe(),
            "results": [_named(emb, int(i), similarity=round(float(s), 4)) for i, s in zip(idx, sims)]}


class TextSearcher:
    """Text search with a CLIP run (call off the GUI thread: it runs torch).

    A sentence and the images are compared in the run's shared image-text space: the text tower's
    output against the image tower's projection, both normalised. The embeddings
    `compute_embeddings` stores (and the Explorer maps) are the image encoder's features before
    that projection, a space the text tower never embeds into, so the searcher embeds a dataset's
    images through the projection once (`CLIP.encode_image`) and keeps them, with their index,
    for the next sentence. The model is loaded once per (run, checkpoint)."""

    def __init__(self, project: Project, run_id: int, checkpoint_step: int | None = None, device: str = "auto"):
        from studio.engine.train import TrainConfig
        from studio.services.evaluation import _resolve_step
        from studio.services.evaluation_text import is_image_text

        config = TrainConfig.from_dict(project.run(run_id).config)
        if not is_image_text(config):
            raise ProjectError(f"run {run_id} is a {config.method} run, which has no text tower: search by text needs "
                               "a CLIP run (search by image works with any run).")
        self.project, self.run_id, self.config, self.device = project, int(run_id), config, device
        self.checkpoint_step = _resolve_step(project, run_id, checkpoint_step)
        self._model = None
        self._spaces: dict[int, tuple] = {}  # dataset id -> (DecodedImages, NeighbourIndex)

    def model(self):
        from studio.services.evaluation import _device
        from studio.services.evaluation_text import run_model

        if self._model is None:
            self._model = run_model(self.project, self.run_id, self.checkpoint_step, _device(self.device))
        return self._model

    def images(self, dataset: str | int | None = None, report: Callable[[str, int, int], None] | None = None):
        """(the dataset's DecodedImages, a NeighbourIndex of their shared-space embeddings)."""
        from studio.engine.eval import NeighbourIndex, embed_images
        from studio.engine.eval.zeroshot import ImageTower
        from studio.services.datasets import load_images

        report = report or (lambda *_: None)
        ds = self.project.dataset(dataset if dataset is not None else self.project.run(self.run_id).dataset_id)
        if ds.id not in self._spaces:
            data = load_images(self.project, ds, self.config.image_size, lambda d, t: report("loading images", d, t))
            vectors = embed_images(ImageTower(self.model()), data.images, image_size=self.config.image_size,
                                   progress=lambda d, t: report("embedding the images in the image-text space", d, t))
            self._spaces[ds.id] = (data, NeighbourIndex(vectors, report=report))
        return self._spaces[ds.id]

    def embed(self, text: str) -> np.ndarray:
        """The sentence's embedding (D,) in the shared space."""
        from studio.engine.eval.zeroshot import embed_texts

        if not str(text).strip():
            raise ProjectError("type a sentence to search for, e.g. \"a photo of a dog.\"")
        return embed_texts(self.model(), [str(text)])[0]

    def search(self, text: str, dataset: str | int | None = None, k: int = 16,
               report: Callable[[str, int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray, object]:
        """(indices, cosine similarities, the dataset's DecodedImages) of the k images nearest to `text`."""
        query = self.embed(text)
        data, index = self.images(dataset, report)
        idx, sims = index.search(query, k)
        return idx, sims, data


def search_by_text(project: Project, run_id: int, text: str, dataset: str | int | None = None,
                   checkpoint_step: int | None = None, k: int = 16, device: str = "auto",
                   report: Callable[[str, int, int], None] | None = None) -> dict:
    """The k images of `dataset` (default: the run's) nearest to a sentence, by a CLIP run's two
    towers, in the same shape as `search_by_image`'s answer."""
    searcher = TextSearcher(project, run_id, checkpoint_step, device)
    idx, sims, data = searcher.search(text, dataset, k, report)
    _, index = searcher.images(dataset)
    return {"run_id": int(run_id), "checkpoint_step": searcher.checkpoint_step, "text": str(text),
            "space": "the run's shared image-text space (image tower with its projection, text tower)",
            "search": index.describe(),
            "results": [_named(data, int(i), similarity=round(float(s), 4)) for i, s in zip(idx, sims)]}


def inspect_dataset(project: Project, run_id: int, dataset: str | int | None = None, checkpoint_step: int | None = None,
                    duplicates: bool = True, threshold: float = DUPLICATE_THRESHOLD, outliers: int = 0,
                    k: int = OUTLIER_K, device: str = "auto", report: Callable[[str, int, int], None] | None = None) -> dict:
    """Near-duplicate groups (each a list of image names) and the `outliers` most alone images
    (with their k-th neighbour distance) of a dataset, seen through the run's encoder."""
    from studio.services.evaluation import compute_embeddings

    emb = compute_embeddings(project, run_id, dataset, checkpoint_step, device=device, report=report)
    out: dict = {"run_id": int(run_id), "checkpoint_step": emb.record.checkpoint_step, "images": len(emb)}
    if duplicates:
        if report is not None:
            report("duplicates", 0, 1)
        groups = find_duplicates(emb.vectors, threshold)
        out["threshold"] = threshold
        out["duplicates"] = [[emb.names[int(i)] for i in g.indices] for g in groups]
    if outliers:
        if report is not None:
            report("outliers", 0, 1)
        found = find_outliers(emb.vectors, k)
        out["k"] = found.k
        out["outliers"] = [_named(emb, int(i), score=round(float(d), 4))
                           for i, d in zip(found.indices[:outliers], found.distances[:outliers])]
    return out


# -- tags -----------------------------------------------------------------------------------------
def tag_selection(project: Project, dataset_id: int, names: Sequence[str], indices, tag: str) -> int:
    """Tag the selected images of a dataset; returns how many were newly tagged."""
    return project.tag_images(dataset_id, (names[int(i)] for i in indices), tag)


def tag_groups(project: Project, dataset_id: int, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(group per image, group names) for colouring by tag: an image's first tag in alphabetical
    order, UNTAGGED (the last group) for images without one."""
    tags = project.image_tags(dataset_id)
    order = sorted(tags)
    group_names = order + [UNTAGGED]
    first: dict[str, int] = {}
    for g, tag in enumerate(order):
        for image in tags[tag]:
            first.setdefault(image, g)
    groups = np.array([first.get(n, len(order)) for n in names], dtype=np.int64)
    return groups, group_names


# -- a selection as a dataset ---------------------------------------------------------------------
def _folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "selection"


def export_selection_dataset(project: Project, name: str, indices, names: Sequence[str], labels,
                             class_names: Sequence[str], images: np.ndarray | None = None,
                             report: Callable[[str, int, int], None] | None = None) -> DatasetRecord:
    """Copy the selected images into a folder of the project (`datasets/<name>/<class>/...`,
    keeping their classes) and add it as a dataset named `name`. An image that is not a file
    (a built-in set's) is written from its decoded pixels as a PNG."""
    from studio.services.datasets import add_dataset

    name = name.strip()
    if not name:
        raise ProjectError("the new dataset needs a name.")
    if any(d.name == name for d in project.datasets()):
        raise ProjectError(f"a dataset named {name!r} exists already; choose another name.")
    indices = [int(i) for i in indices]
    if not indices:
        raise ProjectError("select some images first.")
    folder = project.root / SUBSET_FOLDER / _folder_name(name)
    if folder.exists():
        raise ProjectError(f"{folder} exists already; choose another name.")
    labels = np.asarray(labels)
    labelled = len(class_names) > 1 and bool((labels[indices] >= 0).all())
    used: set[Path] = set()
    try:
        for n, i in enumerate(indices):
            if report is not None:
                report("copying images", n, len(indices))
            sub = folder / _folder_name(class_names[int(labels[i])]) if labelled else folder
            sub.mkdir(parents=True, exist_ok=True)
            src = Path(names[i])
            stem, suffix = (src.stem, src.suffix) if src.is_file() else (f"image_{i:06d}", ".png")
            target = sub / f"{stem}{suffix}"
            if target in used:  # two folders' files of one name
                target = sub / f"{stem}_{i}{suffix}"
            used.add(target)
            if src.is_file():
                shutil.copy2(src, target)
            elif images is not None:
                from PIL import Image

                Image.fromarray(np.ascontiguousarray(np.asarray(images[i]).transpose(1, 2, 0))).save(target)
            else:
                raise ProjectError(f"{names[i]} is not a file and its pixels are not at hand.")
        if report is not None:
            report("adding the dataset", 0, 1)
        return add_dataset(project, str(folder), name=name)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # no half-copied folder left behind
        raise


class FileEmbedder:
    def __init__(self, project: Project, run_id: int, checkpoint_step: int | None = None, device: str = "cpu"):
        self.project = project
        self.run_id = int(run_id)
        self.checkpoint_step = checkpoint_step
        self.device = device
        self._encoder = None

    def _load(self):
        from studio.services.evaluation import run_encoder

        if self._encoder is None:
            self._encoder = run_encoder(self.project, self.run_id, self.checkpoint_step, self.device)
        return self._encoder

    def embed(self, path: str | os.PathLike) -> np.ndarray:
        """The embedding (D,) of the image file at `path` (call off the GUI thread: it runs torch)."""
        from studio.engine.data.cache import resize_square
        from studio.engine.data.sources import open_image_file
        from studio.engine.eval import embed_images

        encoder, config, _ = self._load()
        pixels = resize_square(open_image_file(str(path)), config.image_size)[None]
        return embed_images(encoder, pixels, 1, config.image_size)[0]


def write_selection(path: str | os.PathLike, indices, names: Sequence[str], labels, class_names: Sequence[str],
                    coords) -> Path:
    """The selected points' files: a .csv with index, file, label, class, x, y; any other
    suffix, one file a line."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["index", "file", "label", "class", "x", "y"])
            for i in (int(i) for i in indices):
                lab = int(labels[i])
                cls = class_names[lab] if 0 <= lab < len(class_names) else ""
                w.writerow([i, names[i], lab, cls, float(coords[i, 0]), float(coords[i, 1])])
    else:
        path.write_text("".join(f"{names[int(i)]}\n" for i in indices), encoding="utf-8")
    return path
