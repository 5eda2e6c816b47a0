"""The tags a person puts on a dataset's images in the Explorer (schema 3): a part of Project."""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import delete, select

from studio.store import models as m
from studio.store.errors import ProjectError


class ImageTags:
    """Project's tag queries (it provides `session`)."""

    def tag_images(self, dataset_id: int, images: Iterable[str], tag: str) -> int:
        """Put `tag` on images of a dataset (named as its source names them); returns how many
        were newly tagged (an image keeps a tag once)."""
        tag = tag.strip()
        if not tag:
            raise ProjectError("a tag needs a name.")
        if len(tag) > 64:
            raise ProjectError("a tag is at most 64 characters.")
        images = list(dict.fromkeys(str(i) for i in images))
        with self.session() as s:
            have = set(s.scalars(select(m.ImageTag.image).where(m.ImageTag.dataset_id == dataset_id, m.ImageTag.tag == tag)))
            new = [i for i in images if i not in have]
            s.add_all(m.ImageTag(dataset_id=dataset_id, image=i, tag=tag) for i in new)
            return len(new)

    def untag_images(self, dataset_id: int, images: Iterable[str], tag: str) -> None:
        with self.session() as s:
            s.execute(delete(m.ImageTag).where(m.ImageTag.dataset_id == dataset_id, m.ImageTag.tag == tag,
                                               m.ImageTag.image.in_([str(i) for i in images])))

    def image_tags(self, dataset_id: int) -> dict[str, list[str]]:
        """{tag: [image, ...]} of a dataset, tags in alphabetical order."""
        out: dict[str, list[str]] = {}
        with self.session() as s:
            rows = s.execute(select(m.ImageTag.tag, m.ImageTag.image).where(m.ImageTag.dataset_id == dataset_id)
                             .order_by(m.ImageTag.tag, m.ImageTag.id))
            for tag, image in rows:
                out.setdefault(tag, []).append(image)
        return out
