"""A person's words for a run (its name, notes and tags) and the project's run queue (schema 5):
a part of Project."""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import func, select, update

from studio.store import models as m
from studio.store.errors import ProjectError

KEEP = object()  # label_run: leave this one as it is
NAME_MAX, TAG_MAX = 200, 64


def clean_tags(tags: Iterable[str]) -> list[str]:
    """Tags as stored: stripped, without empties and repeats, in the order given."""
    out = []
    for tag in tags:
        tag = str(tag).strip()
        if not tag:
            continue
        if len(tag) > TAG_MAX:
            raise ProjectError(f"a tag is at most {TAG_MAX} characters: {tag[:20]!r}… is {len(tag)}.")
        if "," in tag:
            raise ProjectError(f"a tag cannot hold a comma (commas separate tags): {tag!r}.")
        if tag not in out:
            out.append(tag)
    return out


class RunLabels:
    """Project's run naming and queue queries (it provides `session` and `run`)."""

    def label_run(self, run_id: int, *, name=KEEP, notes=KEEP, tags=KEEP) -> None:
        """Set a run's name, notes or tags; an empty name or notes clears it. Any run may be
        labelled, while it trains too (no process writes these columns)."""
        values: dict = {}
        if name is not KEEP:
            name = (name or "").strip()
            if "\n" in name:
                raise ProjectError("a run's name is one line.")
            if len(name) > NAME_MAX:
                raise ProjectError(f"a run's name is at most {NAME_MAX} characters (this one has {len(name)}).")
            values["name"] = name or None
        if notes is not KEEP:
            values["notes"] = (notes or "").strip() or None
        if tags is not KEEP:
            values["tags"] = clean_tags(tags)
        if not values:
            return
        with self.session() as s:
            if s.get(m.Run, run_id) is None:
                raise ProjectError(f"there is no run {run_id} in this project.")
            s.execute(update(m.Run).where(m.Run.id == run_id).values(**values))

    def run_tags(self) -> list[str]:
        """Every tag on the project's runs, sorted."""
        with self.session() as s:
            return sorted({t for tags in s.scalars(select(m.Run.tags)) for t in (tags or ())})

    # -- the queue --------------------------------------------------------------------------
    def put_in_queue(self, run_id: int) -> int:
        """Put a stored run at the end of the queue; its position (1 = next)."""
        with self.session() as s:
            last = s.scalar(select(func.max(m.Run.queue_position))) or 0
            s.execute(update(m.Run).where(m.Run.id == run_id).values(queue_position=last + 1))
        return self.queue_place(run_id)

    def take_from_queue(self, run_id: int) -> None:
        with self.session() as s:
            s.execute(update(m.Run).where(m.Run.id == run_id).values(queue_position=None))

    def queued_run_ids(self) -> list[int]:
        """The runs waiting in the queue, next first."""
        with self.session() as s:
            q = select(m.Run.id).where(m.Run.queue_position.is_not(None)).order_by(m.Run.queue_position, m.Run.id)
            return list(s.scalars(q))

    def queue_place(self, run_id: int) -> int | None:
        """1 for the next run of the queue, 2 for the one after, ...; None when not in it."""
        ids = self.queued_run_ids()
        return ids.index(run_id) + 1 if run_id in ids else None
