"""Captions of an image source, for image-text training (CLIP).

Read from, in this order: a `captions.jsonl` or `captions.csv` at a folder's root (`file`,
`caption`; a file may have several rows, and a JSON row's caption may be a list), a sidecar
`name.txt` beside `name.png`, or, for a set with classes and no captions, made from the class
names with prompt templates ("a photo of a {class}.") and said to be templated. A caption that
cannot be used (missing, empty, unreadable, over-long) is counted with its reason, like an
unreadable image, and never stops the import.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from studio.engine.data.sources import FolderSource, ImageSource

# CLIP's own prompt (Radford et al. 2021, section 3.1.4) and two of its ensemble's (their
# notebook's 80 ImageNet templates); several per image give the text tower some variety.
DEFAULT_TEMPLATES = ("a photo of a {class}.", "a picture of a {class}.", "an image of the {class}.")
# Far beyond any text tower's context (77 tokens is about 300 characters of English): longer
# captions are cut here, so that one 10 MB "caption" cannot bloat the project database.
MAX_CAPTION_CHARS = 1000
KINDS = ("jsonl", "csv", "sidecar", "template")


@dataclass
class Captions:
    """Captions of a source's images, by image index; `issues` are (image or file, reason)."""

    kind: str  # one of KINDS, or "" when the source has none
    by_image: list[list[str]]
    issues: list[tuple[str, str]] = field(default_factory=list)
    templates: tuple[str, ...] = ()

    @property
    def templated(self) -> bool:
        return self.kind == "template"

    @property
    def count(self) -> int:
        """Images with at least one caption."""
        return sum(1 for c in self.by_image if c)

    def describe(self) -> str:
        """Where the captions come from, in a person's words."""
        if not self.kind:
            return "no captions"
        if self.templated:
            return f"templated from the class names ({', '.join(repr(t) for t in self.templates)}), not real captions"
        return {"jsonl": "from captions.jsonl", "csv": "from captions.csv", "sidecar": "from a .txt file beside each image"}[self.kind]


def fill_template(template: str, class_name: str) -> str:
    """A template with its `{class}` filled (str.format would read other braces as fields)."""
    return template.replace("{class}", class_name.replace("_", " "))


def check_templates(templates: Sequence[str]) -> tuple[str, ...]:
    from studio.engine.errors import ConfigError

    out = tuple(t.strip() for t in templates if t and t.strip())
    if not out or any("{class}" not in t for t in out):
        raise ConfigError("each prompt template needs the words {class} where the class name goes, "
                          "e.g. 'a photo of a {class}.'")
    return out


def clean_caption(text: str, where: str, issues: list[tuple[str, str]]) -> str | None:
    """The caption as stored (whitespace trimmed, cut at MAX_CAPTION_CHARS), or None when empty;
    what was wrong goes to `issues`."""
    text = text.replace("\x00", "").strip()
    if not text:
        issues.append((where, "empty caption"))
        return None
    if len(text) > MAX_CAPTION_CHARS:
        issues.append((where, f"over-long caption ({len(text):,} characters): only its first {MAX_CAPTION_CHARS:,} are kept"))
        text = text[:MAX_CAPTION_CHARS]
    return text


def caption_key(source: ImageSource, index: int) -> str:
    """How captions name an image: its path inside the folder (so the project can move), or the
    source's own id for a built-in set."""
    if isinstance(source, FolderSource):
        return Path(os.path.relpath(source.paths[index], source.root)).as_posix()
    return source.name(index)


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None


def _table_rows(path: Path, issues: list[tuple[str, str]]) -> list[tuple[str, object]]:
    """(file, caption) rows of a captions.csv or captions.jsonl; bad rows become issues."""
    rows: list[tuple[str, object]] = []
    try:
        text = _read_text(path)
    except (OSError, ValueError) as exc:
        issues.append((path.name, f"cannot be read ({exc})"))
        return rows
    if path.suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                rows.append((str(row["file"]), row.get("caption", "")))
            except (ValueError, KeyError, TypeError, AttributeError):
                issues.append((f"{path.name} line {n}", "not a JSON object with 'file' and 'caption'"))
        return rows
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or "file" not in reader.fieldnames or "caption" not in reader.fieldnames:
        issues.append((path.name, "needs the columns 'file' and 'caption'"))
        return rows
    for n, row in enumerate(reader, 2):
        if not row.get("file"):
            issues.append((f"{path.name} line {n}", "no file named"))
            continue
        rows.append((row["file"], row.get("caption") or ""))
    return rows


def _from_table(source: FolderSource, path: Path, issues: list[tuple[str, str]]) -> list[list[str]]:
    keys = [caption_key(source, i) for i in range(len(source))]
    index = {k: i for i, k in enumerate(keys)}
    by_base: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        by_base.setdefault(k.rsplit("/", 1)[-1], []).append(i)
    out: list[list[str]] = [[] for _ in keys]
    for name, caption in _table_rows(path, issues):
        name = name.strip().replace("\\", "/").removeprefix("./")
        i = index.get(name)
        if i is None and len(by_base.get(name, ())) == 1:
            i = by_base[name][0]  # a bare file name, where it names one image only
        if i is None:
            issues.append((name, f"named in {path.name} but not an image of the folder"))
            continue
        texts = caption if isinstance(caption, list) else [caption]
        for text in texts:
            cleaned = clean_caption(str(text), keys[i], issues)
            if cleaned is not None:
                out[i].append(cleaned)
    return out


def _from_sidecars(source: FolderSource, issues: list[tuple[str, str]]) -> list[list[str]] | None:
    out: list[list[str]] = []
    found = False
    for i, path in enumerate(source.paths):
        side = path.with_suffix(".txt")
        key = caption_key(source, i)
        if not side.is_file():
            out.append([])
            continue
        found = True
        try:
            text = _read_text(side)
        except (OSError, ValueError) as exc:
            issues.append((key, f"caption file cannot be read ({exc})"))
            out.append([])
            continue
        cleaned = clean_caption(text, key, issues)
        out.append([cleaned] if cleaned is not None else [])
    return out if found else None


def templated(class_names: Sequence[str], labels: Sequence[int], templates: Sequence[str] = DEFAULT_TEMPLATES) -> list[list[str]]:
    """Each image's captions from its class name, one per template."""
    templates = check_templates(templates)
    per_class = [[fill_template(t, c) for t in templates] for c in class_names]
    return [list(per_class[y]) if 0 <= y < len(per_class) else [] for y in labels]


def read_captions(source: ImageSource, templates: Sequence[str] = DEFAULT_TEMPLATES) -> Captions:
    """The captions of `source`'s images (see the module's docstring for where from)."""
    issues: list[tuple[str, str]] = []
    by_image: list[list[str]] | None = None
    kind = ""
    if isinstance(source, FolderSource):
        for name, what in (("captions.jsonl", "jsonl"), ("captions.csv", "csv")):
            table = source.root / name
            if table.is_file():
                by_image, kind = _from_table(source, table, issues), what
                break
        if by_image is None:
            by_image = _from_sidecars(source, issues)
            kind = "sidecar" if by_image is not None else ""
    if by_image is not None:
        told = {where for where, _ in issues}  # an empty or unreadable caption is reported once, with its cause
        issues += [(key, "no caption") for key, c in ((caption_key(source, i), c) for i, c in enumerate(by_image))
                   if not c and key not in told]
        return Captions(kind, by_image, issues)
    if source.has_labels:
        templates = check_templates(templates)
        return Captions("template", templated(source.class_names, source.labels, templates), [], templates)
    return Captions("", [[] for _ in range(len(source))])
