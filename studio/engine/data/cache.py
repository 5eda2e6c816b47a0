"""The decoded-image cache: every image decoded once, resized to the training size, kept as one
uint8 array (N, 3, S, S) memory-mapped from the project's cache folder.

The cache key holds the source's fingerprint (paths, sizes, modification times), so adding,
removing or editing an image makes a new cache; epochs after the first read no image file.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from studio.engine.data.sources import ImageSource, describe_image_error
from studio.engine.errors import DatasetError

CACHE_FORMAT = 1


@dataclass
class DecodedImages:
    """Images ready for training: uint8 (N, 3, S, S), labels (-1: none), names, what was skipped,
    and the captions a service attaches where the dataset has them."""

    images: np.ndarray
    labels: np.ndarray
    names: list[str]
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    cache_path: Path | None = None
    # Each image's captions, in the order of `names` (image-text methods); None: the set has none.
    captions: list[list[str]] | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def has_labels(self) -> bool:
        return len(self.class_names) > 1 and bool((self.labels >= 0).all())


def resize_square(img: Image.Image, size: int) -> np.ndarray:
    """Shorter side to `size`, centre crop to a square; (3, S, S) uint8."""
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    resample = Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS
    img = img.resize((nw, nh), resample)
    left, top = (nw - size) // 2, (nh - size) // 2
    img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def _decode_all(source: ImageSource, size: int, progress: Callable[[int, int], None] | None):
    n = len(source)
    out = np.zeros((n, 3, size, size), dtype=np.uint8)
    ok = np.zeros(n, dtype=bool)
    skipped: list[tuple[str, str]] = []

    def work(i: int):
        try:
            out[i] = resize_square(source.load(i), size)
            ok[i] = True
        except Exception as exc:  # noqa: BLE001 - an unreadable image is skipped and counted
            return (source.name(i), describe_image_error(exc))
        return None

    workers = min(8, os.cpu_count() or 1)
    done = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for bad in pool.map(work, range(n), chunksize=32):
            done += 1
            if bad is not None:
                skipped.append(bad)
            if progress is not None and (done % 256 == 0 or done == n):
                progress(done, n)
    return out, ok, skipped


def decode_images(
    source: ImageSource,
    size: int,
    cache_dir: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DecodedImages:
    """Decode (or load from the cache) every image of `source` at `size` x `size`."""
    key = f"{source.kind}-{source.fingerprint()}-{size}-v{CACHE_FORMAT}"
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        data_path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
        if data_path.is_file() and meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
                images = np.load(data_path, mmap_mode="r")
                if images.shape == (meta["count"], 3, size, size):
                    if progress is not None:
                        progress(len(images), len(images))
                    return DecodedImages(
                        images, np.asarray(meta["labels"], dtype=np.int64), meta["names"], meta["class_names"],
                        [tuple(x) for x in meta["skipped"]], data_path,
                    )
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache is rebuilt below

    images, ok, skipped = _decode_all(source, size, progress)
    if not ok.any():
        raise DatasetError(f"none of the {len(source)} images could be read (first: {skipped[0][0]}: {skipped[0][1]}).")
    keep = np.flatnonzero(ok)
    labels = source.labels[keep]
    names = [source.name(int(i)) for i in keep]
    if not ok.all():
        images = images[keep]
    class_names = list(source.class_names) if source.has_labels else []
    if cache_dir is None:
        return DecodedImages(images, labels, names, class_names, skipped, None)

    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_path.with_suffix(".npy.tmp")
    with open(tmp, "wb") as f:
        np.save(f, images)
    os.replace(tmp, data_path)
    meta = {"count": len(keep), "labels": labels.tolist(), "names": names, "class_names": class_names, "skipped": skipped}
    tmp_meta = meta_path.with_suffix(".json.tmp")
    tmp_meta.write_text(json.dumps(meta))
    os.replace(tmp_meta, meta_path)
    return DecodedImages(np.load(data_path, mmap_mode="r"), labels, names, class_names, skipped, data_path)
