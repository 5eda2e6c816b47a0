"""Every metric point of every run: a part of Project (it provides `session` and `engine`)."""

from __future__ import annotations

from typing import Iterable, Sequence

from sqlalchemy import delete, literal, select, text

from studio.store import models as m
from studio.store.records import MetricSeries


class Metrics:
    """Project's metric queries."""

    def add_metrics(self, rows: Iterable[tuple[int, int, float, str, float, float]]) -> int:
        """Insert (run_id, step, epoch, name, value, time) rows in one transaction."""
        payload = [
            {"run_id": r, "step": st, "epoch": ep, "name": n, "value": float(v), "time": t}
            for (r, st, ep, n, v, t) in rows
        ]
        if not payload:
            return 0
        with self.session() as s:
            s.execute(m.MetricPoint.__table__.insert(), payload)
        return len(payload)

    def copy_metrics(self, from_run: int, to_run: int, up_to_step: int) -> int:
        """Copy a run's points up to a step to another run (one that continues it from there)."""
        t = m.MetricPoint.__table__
        cols = [t.c.step, t.c.epoch, t.c.name, t.c.value, t.c.time]
        chosen = select(literal(to_run), *cols).where(t.c.run_id == from_run, t.c.step <= up_to_step).order_by(t.c.id)
        with self.session() as s:
            return s.execute(t.insert().from_select([t.c.run_id, *cols], chosen)).rowcount

    def truncate_metrics(self, run_id: int, after_step: int) -> None:
        """Drop points after a step: a resumed run redoes those steps and must not draw them twice."""
        with self.session() as s:
            s.execute(delete(m.MetricPoint).where(m.MetricPoint.run_id == run_id, m.MetricPoint.step > after_step))

    def metric_series(self, run_id: int, names: Sequence[str] | None = None, after_id: int = 0) -> MetricSeries:
        """Points added after `after_id` (0: all); pass the returned `last_id` next time to poll."""
        t = m.MetricPoint.__table__
        q = select(t.c.id, t.c.name, t.c.step, t.c.value, t.c.time).where(t.c.run_id == run_id, t.c.id > after_id)
        if names:
            q = q.where(t.c.name.in_(list(names)))
        out = MetricSeries(last_id=after_id)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(t.c.id)).all()
        for pid, name, step, value, time in rows:
            out.steps.setdefault(name, []).append(step)
            out.values.setdefault(name, []).append(value)
            out.times.setdefault(name, []).append(time)
            out.last_id = pid
        return out

    def metric_curve(self, run_id: int, name: str, max_points: int = 4000) -> tuple[list[int], list[float]]:
        """One metric's (steps, values) for drawing: all of it when short, else `max_points` points
        spread evenly over its steps, found by index seeks (a million-point curve reads in
        milliseconds instead of the second a full scan takes)."""
        t = m.MetricPoint.__table__
        where = (t.c.run_id == run_id, t.c.name == name)
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.step, t.c.value).where(*where).order_by(t.c.step).limit(max_points + 1)).all()
            if len(rows) <= max_points:
                return [r[0] for r in rows], [r[1] for r in rows]
            # min() and max() together defeat SQLite's index shortcut; two ordered seeks do not.
            lo = rows[0][0]
            last = conn.execute(select(t.c.step, t.c.value).where(*where).order_by(t.c.step.desc()).limit(1)).one()
            hi = last[0]
            sql = text(
                "WITH RECURSIVE b(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM b WHERE i + 1 < :n), "
                "s(pid) AS (SELECT (SELECT id FROM metric_points WHERE run_id = :run AND name = :name "
                "  AND step >= :lo + (b.i * (:hi - :lo)) / :n ORDER BY step LIMIT 1) FROM b) "
                "SELECT DISTINCT p.step, p.value FROM s CROSS JOIN metric_points p ON p.id = s.pid ORDER BY p.step"
            )
            rows = conn.execute(sql, {"n": max_points, "run": run_id, "name": name, "lo": lo, "hi": hi}).all()
        steps, values = [r[0] for r in rows], [r[1] for r in rows]
        if not steps or steps[-1] != last[0]:
            steps.append(last[0])
            values.append(last[1])
        return steps, values

    def metric_names(self, run_id: int) -> list[str]:
        t = m.MetricPoint.__table__
        with self.engine.connect() as conn:
            return sorted(conn.execute(select(t.c.name).where(t.c.run_id == run_id).distinct()).scalars())

    # -- checkpoints ------------------------------------------------------------------------
