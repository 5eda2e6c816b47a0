"""The captions of a dataset's images (schema 6), for image-text runs: a part of Project."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from sqlalchemy import delete, select

from studio.store import models as m
from studio.store.errors import ProjectError
from studio.store.records import DatasetRecord

CAPTION_BATCH = 5000  # rows per insert: a 100,000-caption set is written in a few statements


def dataset_record(row: m.Dataset) -> DatasetRecord:
    """A dataset row as its record; a row from before schema 6 has no captions."""
    names = DatasetRecord.__dataclass_fields__.keys()
    data = {k: getattr(row, k) for k in names}
    data["captions"] = int(row.captions or 0)
    data["caption_kind"] = row.caption_kind or ""
    data["caption_templates"] = tuple(row.caption_templates or ())
    data["caption_issues"] = tuple(tuple(x) for x in (row.caption_issues or ()))
    return DatasetRecord(**data)


class ImageCaptions:
    """Project's caption queries (it provides `session`)."""

    def set_captions(self, dataset_id: int, kind: str, captions: Iterable[tuple[str, str]],
                     issues: Sequence[tuple[str, str]] = (), templates: Sequence[str] = ()) -> DatasetRecord:
        """Replace a dataset's captions with `captions` ((image, caption) pairs, an image may come
        more than once) and record where they come from and what was wrong."""
        with self.session() as s:
            row = s.get(m.Dataset, int(dataset_id))
            if row is None:
                raise ProjectError(f"no dataset {dataset_id} in this project.")
            s.execute(delete(m.ImageCaption).where(m.ImageCaption.dataset_id == row.id))
            images: set[str] = set()
            batch: list[dict[str, Any]] = []
            for image, caption in captions:
                images.add(image)
                batch.append({"dataset_id": row.id, "image": image, "caption": caption})
                if len(batch) >= CAPTION_BATCH:
                    s.execute(m.ImageCaption.__table__.insert(), batch)
                    batch = []
            if batch:
                s.execute(m.ImageCaption.__table__.insert(), batch)
            row.captions = len(images)
            row.caption_kind = kind
            row.caption_templates = list(templates)
            row.caption_issues = [list(x) for x in issues]
            s.flush()
            return dataset_record(row)

    def captions(self, dataset_id: int) -> dict[str, list[str]]:
        """{image: [caption, ...]} of a dataset, each image's captions in the order they were read."""
        out: dict[str, list[str]] = {}
        with self.session() as s:
            rows = s.execute(select(m.ImageCaption.image, m.ImageCaption.caption)
                             .where(m.ImageCaption.dataset_id == dataset_id).order_by(m.ImageCaption.id))
            for image, caption in rows:
                out.setdefault(image, []).append(caption)
        return out

    def delete_captions(self, dataset_id: int) -> None:
        with self.session() as s:
            s.execute(delete(m.ImageCaption).where(m.ImageCaption.dataset_id == dataset_id))
