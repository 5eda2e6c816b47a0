"""Image sources: a folder (class sub-folders give labels), the built-in sample, torchvision sets.

A source lists its images cheaply and decodes one at a time into an RGB PIL image. Unreadable
files are skipped and counted with their reason, never fatal.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps

from studio.engine.errors import DatasetError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
# Pillow's own guard against decompression bombs, made an error instead of a warning: a 40,000 x
# 40,000 "photo" would need 4.8 GB decoded. 178 M pixels is Pillow's default for its error.
MAX_IMAGE_PIXELS = 178_956_970
TORCHVISION_DATASETS = {
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
    "stl10": "STL10",
    "mnist": "MNIST",
    "fashionmnist": "FashionMNIST",
    "fashion-mnist": "FashionMNIST",
    "svhn": "SVHN",
}


@dataclass
class SourceInfo:
    images: int
    classes: int
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)


class ImageSource(ABC):
    """A list of images with optional integer labels (-1: none)."""

    kind: str = "?"
    class_names: list[str]

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def load(self, index: int) -> Image.Image:
        """The image as RGB; raises an exception whose text says why it cannot be read."""

    @abstractmethod
    def label(self, index: int) -> int: ...

    @abstractmethod
    def name(self, index: int) -> str:
        """A path (folders) or a stable id ("sample/17") shown to the user and stored in exports."""

    @abstractmethod
    def fingerprint(self) -> str:
        """Changes whenever the images change; keys the decoded-image cache."""

    @property
    def labels(self) -> np.ndarray:
        return np.array([self.label(i) for i in range(len(self))], dtype=np.int64)

    @property
    def has_labels(self) -> bool:
        return len(self.class_names) > 1

    def verify(self, progress: Callable[[int, int], None] | None = None) -> SourceInfo:
        """Decode every image once; count the ones that cannot be read."""
        skipped: list[tuple[str, str]] = []
        n = len(self)
        for i in range(n):
            try:
                self.load(i)
            except Exception as exc:  # noqa: BLE001 - any failure to decode means: skip it
                skipped.append((self.name(i), describe_image_error(exc)))
            if progress is not None and (i % 64 == 0 or i == n - 1):
                progress(i + 1, n)
        return SourceInfo(n - len(skipped), len(self.class_names) if self.has_labels else 0, list(self.class_names), skipped)


def describe_image_error(exc: BaseException) -> str:
    if isinstance(exc, Image.DecompressionBombError):
        return "too large (decompression bomb guard)"
    if isinstance(exc, FileNotFoundError):
        return "missing"
    text = str(exc) or exc.__class__.__name__
    if "cannot identify image file" in text:
        return "not an image"
    if "truncated" in text.lower() or "image file is truncated" in text:
        return "truncated"
    return text.splitlines()[0][:200]


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB: EXIF rotation applied; 16-bit, CMYK, palette, alpha handled."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.size else 1.0
        scale = 255.0 / (65535.0 if hi > 255 else max(hi, 1.0)) if hi > 255 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        img = Image.fromarray(((arr - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels over white, as image viewers show them.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def open_image_file(path: str | os.PathLike) -> Image.Image:
    why = _not_a_regular_file(Path(path))
    if why:
        raise OSError(why)
    if os.path.getsize(path) == 0:
        raise OSError("empty file")  # Pillow would call it "cannot identify", which hides the cause
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
        try:
            with Image.open(path) as img:
                ImageFile.LOAD_TRUNCATED_IMAGES = False
                img.load()
                return to_rgb(img)
        except Image.DecompressionBombWarning as exc:
            raise Image.DecompressionBombError(str(exc)) from exc
        finally:
            Image.MAX_IMAGE_PIXELS = old


def _entries(folder: Path, skipped: list[tuple[str, str]]) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        skipped.append((str(folder), f"cannot be read ({exc.strerror or exc})"))
        return []


def _not_a_regular_file(path: Path) -> str:
    """Why `path` cannot be read as an image file without opening it (a FIFO would block the
    reader), or "" when it can."""
    try:
        mode = os.stat(path).st_mode  # never blocks, unlike open()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        if path.is_symlink():
            return "a broken link"
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return ""
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
    return f"{kind}, not an image file"


class FolderSource(ImageSource):
    """A folder of images. Sub-folders that hold images become classes (labels); images directly
    in the folder, with no sub-folders, make an unlabelled set. Hidden files are ignored."""

    kind = "folder"

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DatasetError(f"{self.root} is not a folder.")
        self.paths, self._labels, self.class_names = self._scan()
        if not self.paths:
            raise DatasetError(
                f"{self.root} holds no images ({', '.join(IMAGE_EXTENSIONS)}), neither directly nor in sub-folders."
            )

    def _scan(self) -> tuple[list[Path], list[int], list[str]]:
        self.scan_skipped: list[tuple[str, str]] = []
        seen: set[str] = {os.path.realpath(self.root)}  # folders entered, by real path
        files: set[str] = set()  # images taken, by real path

        def images_in(folder: Path, recursive: bool) -> list[Path]:
            found: list[Path] = []
            for entry in _entries(folder, self.scan_skipped):
                path = Path(entry.path)
                if entry.name.startswith("."):
                    continue
                try:
                    is_dir = entry.is_dir()  # follows a link
                except OSError:
                    is_dir = False
                if is_dir:
                    if recursive and self._enter(path, seen):
                        found += images_in(path, True)
                    continue
                if path.suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                why = _not_a_regular_file(path)
                if why:
                    self.scan_skipped.append((str(path), why))
                    continue
                real = os.path.realpath(path)
                if real in files:
                    self.scan_skipped.append((str(path), "the same file as another image of the folder (a link)"))
                    continue
                files.add(real)
                found.append(path)
            return sorted(found)

        subdirs = []
        for entry in _entries(self.root, self.scan_skipped):
            try:
                if not entry.name.startswith(".") and entry.is_dir() and self._enter(Path(entry.path), seen):
                    subdirs.append(Path(entry.path))
            except OSError:
                continue
        subdirs.sort()
        by_class = [(d.name, images_in(d, True)) for d in subdirs]
        by_class = [(n, ps) for n, ps in by_class if ps]
        top = images_in(self.root, False)
        if len(by_class) >= 1 and not top:
            names = [n for n, _ in by_class]
            paths = [p for _, ps in by_class for p in ps]
            labels = [i for i, (_, ps) in enumerate(by_class) for _ in ps]
            if len(names) == 1:  # one sub-folder is a container, not a class
                return paths, [-1] * len(paths), []
            return paths, labels, names
        return sorted(top + [p for _, ps in by_class for p in ps]), [-1] * (len(top) + sum(len(ps) for _, ps in by_class)), []

    def _enter(self, folder: Path, seen: set[str]) -> bool:
        """Whether to scan `folder`: each real folder once, so a link to a folder is followed at
        most once and a link back up (`self -> .`) not at all."""
        real = os.path.realpath(folder)
        if real in seen:
            inside = os.path.realpath(folder.parent)
            loop = folder.is_symlink() and (inside == real or inside.startswith(real.rstrip(os.sep) + os.sep))
            what = "a link back into the folder (a loop)" if loop else "a folder scanned already (through a link)"
            self.scan_skipped.append((str(folder), f"skipped: {what}"))
            return False
        seen.add(real)
        return True

    def verify(self, progress: Callable[[int, int], None] | None = None) -> SourceInfo:
        info = super().verify(progress)
        info.skipped[:0] = self.scan_skipped  # what the scan left out, with its reason
        return info

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Image.Image:
        return open_image_file(self.paths[index])

    def label(self, index: int) -> int:
        return self._labels[index]

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self._labels, dtype=np.int64)

    def name(self, index: int) -> str:
        return str(self.paths[index])

    def fingerprint(self) -> str:
        h = hashlib.sha1()
        for p in self.paths:
            try:
                st = p.stat()
                h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{p}|missing\n".encode())
        return h.hexdigest()[:16]


class SampleSource(ImageSource):
    """The built-in sample: scikit-learn's handwritten digits (1,797 images, 8x8, 10 classes),
    shipped inside scikit-learn, so a fresh install trains with no download. The digits come from
    the UCI "Optical Recognition of Handwritten Digits" set (CC BY 4.0)."""

    kind = "sample"

    def __init__(self, limit: int | None = None):
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = digits.images if limit is None else digits.images[:limit]
        self._labels = np.asarray(digits.target[: len(images)], dtype=np.int64)
        # 0..16 ink levels -> white digits on black, 0..255.
        self.pixels = np.clip(np.rint(images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
        self.class_names = [str(i) for i in range(10)]

    def __len__(self) -> int:
        return len(self.pixels)

    def load(self, index: int) -> Image.Image:
        return Image.fromarray(self.pixels[index], "L").convert("RGB")

    def label(self, index: int) -> int:
        return int(self._labels[index])

    @property
    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def name(self, index: int) -> str:
        return f"sample/{index:04d}.png"

    def fingerprint(self) -> str:
        return hashlib.sha1(self.pixels.tobytes()).hexdigest()[:16]


class TorchvisionSource(ImageSource):
    """One of torchvision's datasets, from a local root (or downloaded to it when asked)."""

    kind = "torchvision"

    def __init__(self, name: str, root: str | os.PathLike, download: bool = False, split: str | None = None):
        import torchvision.datasets as tvd

        key = name.lower()
        if key not in TORCHVISION_DATASETS:
            raise DatasetError(f"unknown torchvision dataset {name!r}; choose one of: {', '.join(sorted(set(TORCHVISION_DATASETS)))}.")
        cls = getattr(tvd, TORCHVISION_DATASETS[key])
        self.dataset_name = key
        self.root = Path(root).expanduser()
        kwargs: dict = {"download": download}
        if key in ("stl10",):
            kwargs["split"] = split or "unlabeled+train"  # no test: evaluation uses a held-out split
        elif key == "svhn":
            kwargs["split"] = split or "train"
        else:
            kwargs["train"] = split != "test"
        try:
            self.ds = cls(str(self.root), **kwargs)
        except RuntimeError as exc:
            hint = " Add it with download, or point to a folder that holds it." if not download else ""
            raise DatasetError(f"{TORCHVISION_DATASETS[key]} is not in {self.root}: {exc}{hint}") from exc
        except Exception as exc:
            raise DatasetError(f"could not load {TORCHVISION_DATASETS[key]} from {self.root}: {exc}") from exc
        classes = getattr(self.ds, "classes", None)
        if classes is None:
            classes = [str(i) for i in range(10)]
        self.class_names = [str(c) for c in classes]
        targets = getattr(self.ds, "targets", None)
        if targets is None:
            targets = getattr(self.ds, "labels", None)
        self._labels = np.asarray(targets if targets is not None else [-1] * len(self.ds), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ds)

    def load(self, index: int) -> Image.Image:
        img, _ = self.ds[index]
        return to_rgb(img)

    def label(self, index: int) -> int:
        return int(self._labels[index])

    @property
    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def name(self, index: int) -> str:
        return f"{self.dataset_name}/{index:06d}"

    def fingerprint(self) -> str:
        return hashlib.sha1(f"{self.dataset_name}|{self.root.resolve()}|{len(self)}".encode()).hexdigest()[:16]


def parse_source_spec(spec: str) -> tuple[str, str]:
    """'sample' | 'torchvision:NAME[@ROOT]' | a folder path -> (kind, source)."""
    if spec == "sample":
        return "sample", "sample"
    if spec.startswith("torchvision:"):
        return "torchvision", spec
    return "folder", spec


def open_source(kind: str, source: str, base: str | os.PathLike | None = None, download: bool = False) -> ImageSource:
    """Open a stored source. Folder paths may be relative to `base` (the project folder)."""
    if kind == "sample":
        return SampleSource()
    if kind == "torchvision":
        body = source.split(":", 1)[1]
        name, _, root = body.partition("@")
        from platformdirs import user_cache_dir

        root = root or os.path.join(user_cache_dir("ssl-studio"), "torchvision")
        if base is not None and not os.path.isabs(root):
            root = os.path.join(base, root)
        return TorchvisionSource(name, root, download=download)
    if kind == "folder":
        path = Path(source).expanduser()
        if base is not None and not path.is_absolute():
            path = Path(base) / path
        return FolderSource(path)
    raise DatasetError(f"unknown dataset kind {kind!r}.")


def default_dataset_name(spec: str, taken: Sequence[str] = ()) -> str:
    kind, source = parse_source_spec(spec)
    if kind == "sample":
        base = "sample"
    elif kind == "torchvision":
        base = source.split(":", 1)[1].split("@", 1)[0].lower()
    else:
        base = Path(source).expanduser().resolve().name or "images"
    name, i = base, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    return name
