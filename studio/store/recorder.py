"""RunRecorder: the store's side of the engine's callback interface.

The Trainer calls `on_metrics` on its hot path; this only appends to a list. A background thread
writes the points in batches (one transaction every `flush_interval` seconds) and keeps the
run's heartbeat fresh, so a crash loses at most the last batch (DESIGN.md rule 5).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import delete

from studio.store import models as m
from studio.store.project import Project


class RunRecorder:
    def __init__(self, project: Project, run_id: int, flush_interval: float = 0.5, on_write_error=None):
        self.project = project
        # Called once, from whichever thread met it, when a write fails (disk full, I/O error):
        # the caller stops training, since a run whose curve cannot be kept is not worth its cost.
        self.on_write_error = on_write_error
        self.run_id = run_id
        self.flush_interval = flush_interval
        self._lock = threading.Lock()
        self._pending: list[tuple[int, int, float, str, float, float]] = []
        self._progress: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None  # the last write error, for the caller to report

    # -- engine callbacks -------------------------------------------------------------------
    def on_start(self, info: Any) -> None:
        self._guarded(self._start, info)

    def _start(self, info: Any) -> None:
        start_step = int(getattr(info, "start_step", 0))
        if start_step > 0:
            self.project.truncate_metrics(self.run_id, start_step)
        self.project.update_run(
            self.run_id,
            total_steps=int(getattr(info, "total_steps", 0)),
            device=str(getattr(info, "device_name", "") or "") or None,
            steps=start_step,
        )
        self.project.set_run_status(self.run_id, "running")
        self._start_thread()

    def on_metrics(self, step: int, epoch: float, metrics: dict[str, float]) -> None:
        now = time.time()
        with self._lock:
            for name, value in metrics.items():
                self._pending.append((self.run_id, int(step), float(epoch), name, float(value), now))
            self._progress = {"steps": int(step), "epochs": int(epoch)}

    def on_checkpoint(self, path: str, step: int, epoch: float) -> None:
        self._guarded(self.flush)
        self._guarded(self.project.add_checkpoint, self.run_id, step, epoch, path)

    def on_checkpoint_removed(self, path: str) -> None:
        self._guarded(self._forget_checkpoint, path)

    def _forget_checkpoint(self, path: str) -> None:
        # Project has no method for this yet; the row is the store's own, so it is removed here.
        rel = self.project.rel(path)
        with self.project.session() as s:
            s.execute(delete(m.Checkpoint).where(m.Checkpoint.run_id == self.run_id, m.Checkpoint.path == rel))

    def on_status(self, status: str, reason: str | None = None) -> None:
        self._guarded(self.flush)
        self._guarded(self.project.set_run_status, self.run_id, status, reason)

    def on_log(self, message: str, level: str = "info") -> None:
        self._guarded(self.project.log, self.run_id, message, level)

    def on_end(self, result: Any) -> None:
        self._guarded(self.close)
        fields = {
            "steps": int(getattr(result, "steps", 0)),
            "epochs": int(getattr(result, "epochs", 0)),
        }
        for name in ("final_loss", "images_per_s"):
            value = getattr(result, name, None)
            if value is not None:
                fields[name] = float(value)
        self._guarded(self.project.update_run, self.run_id, **fields)

    def _guarded(self, fn, *args: Any, **kwargs: Any) -> None:
        """A write that may fail without taking the training thread down with it."""
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - kept in `error` and reported by the caller
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        first = self.error is None
        self.error = exc
        if first and self.on_write_error is not None:
            self.on_write_error(exc)

    # -- writing ----------------------------------------------------------------------------
    def _start_thread(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=f"run-{self.run_id}-recorder", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_interval):
            try:
                self.flush()
            except Exception as exc:  # a disk error must reach the trainer, not kill this thread silently
                self._failed(exc)

    def flush(self) -> None:
        from studio.store.models import utcnow

        with self._lock:
            rows, self._pending = self._pending, []
            progress, self._progress = self._progress, {}
        if rows:
            try:
                self.project.add_metrics(rows)
            except Exception:
                with self._lock:  # keep them for the next try
                    self._pending[:0] = rows
                raise
        self.project.update_run(self.run_id, heartbeat_at=utcnow(), **progress)

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10)
            self._thread = None
        self.flush()
