"""The one way the GUI runs work off its thread (DESIGN.md rule 4), built on superqt's workers.

A `Task` runs `fn(state)` on a worker thread (superqt `create_worker`, on the studio's own thread
pool so long jobs never starve short ones). The function reports through its `TaskState`:
`state.report(stage, done, total)` becomes the task's `progress` signal *only when it moved* (a
new stage or the end at once, a new count at most every `min_interval`: Orange3's rule), `state.post(kind, payload)` passes other news on, and
`state.cancelled()` is the flag cancelling sets (checked between steps; a thread is never killed).

Every task ends with exactly one of `done(result)`, `failed(message)` or `cancelled()`, then
`ended()`; `error_text` is the one way an error becomes a message. Listeners live on the GUI
thread, so every signal reaches them queued.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtCore import QObject, QThreadPool, QTimer, Signal
from superqt.utils import create_worker

MAX_THREADS = 16  # training holds a thread for hours: the pool must not be the machine's core count


_garbage_collector = None


def collect_garbage_on_gui_thread() -> None:
    """Python's cycle collector runs in whichever thread happens to allocate; a Qt widget it
    frees on a worker thread destroys its children there and deadlocks with the GUI thread (seen:
    a closed window's menus freed inside a task decoding images). Before any task runs,
    pyqtgraph's GarbageCollector turns automatic collection off and collects on a GUI-thread
    timer instead."""
    global _garbage_collector
    if _garbage_collector is None:
        from pyqtgraph.util.garbage_collector import GarbageCollector

        _garbage_collector = GarbageCollector(interval=1.0)


@dataclass(frozen=True)
class Progress:
    stage: str
    done: int
    total: int  # 0: busy, no count known
    rate: float = 0.0  # e.g. images/s while training

    @property
    def percent(self) -> int:
        return (100 * self.done) // self.total if self.total > 0 else -1


def error_text(exc: BaseException) -> str:
    """What a person is told when work failed: the typed error's message (DESIGN.md rule 7)."""
    text = str(exc).strip()
    if not text:
        return exc.__class__.__name__
    if not getattr(exc, "__module__", "").startswith("studio"):
        return f"{text} ({exc.__class__.__name__})"
    return text


class TaskCancelled(Exception):
    """Raised by `TaskState.check()` once the task was cancelled (for work without a cancel flag
    of its own: its progress callback checks)."""


class TaskState:
    """What the work function sees: report progress, post news, ask whether it was cancelled."""

    def __init__(self, task: "Task", min_interval: float):
        self._task = task
        self._min_interval = min_interval
        self._cancel = threading.Event()
        self._last: Progress | None = None
        self._last_time = 0.0

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise TaskCancelled("cancelled")

    def moved(self, p: Progress) -> bool:
        """Whether `p` is news: another stage, or the end reached, at once; another count within
        a stage at most every `min_interval`; the same count never."""
        last = self._last
        if last is None or p.stage != last.stage or (p.total and p.done >= p.total > last.done):
            return True
        if (p.done, p.total) == (last.done, last.total):
            return False
        return time.monotonic() - self._last_time >= self._min_interval

    def report(self, stage: str, done: int = 0, total: int = 0, rate: float = 0.0) -> None:
        p = Progress(str(stage), int(done), int(total), float(rate))
        if self.moved(p):
            self._last, self._last_time = p, time.monotonic()
            self._task.progress.emit(p)

    def post(self, kind: str, payload: Any = None) -> None:
        self._task.posted.emit(kind, payload)


_pool: QThreadPool | None = None
_live: set["Task"] = set()


def pool() -> QThreadPool:
    global _pool
    if _pool is None:
        _pool = QThreadPool()
        _pool.setMaxThreadCount(MAX_THREADS)
    return _pool


class Task(QObject):
    progress = Signal(object)  # Progress
    posted = Signal(str, object)  # kind, payload
    done = Signal(object)  # the function's result
    failed = Signal(str)  # error_text of what it raised
    cancelled = Signal()
    ended = Signal()  # after any of the three

    def __init__(self, fn: Callable[[TaskState], Any], name: str = "task", min_interval: float = 0.1,
                 on_cancel: Callable[[], None] | None = None, result_after_cancel: bool = False,
                 own_thread: bool = False, parent: QObject | None = None):
        """`on_cancel` is called (on the GUI thread) when the task is cancelled, e.g. to stop a
        trainer; with `result_after_cancel` a cancelled task still reports its result (a
        stopped run has one); with `own_thread` it runs on a thread of its own that ends with
        it (training lowers its thread's priority, which no later task should inherit)."""
        super().__init__(parent)
        collect_garbage_on_gui_thread()
        self._pool = None
        if own_thread:
            self._pool = QThreadPool(self)
            self._pool.setMaxThreadCount(1)
            self._pool.setExpiryTimeout(0)
        self.name = name
        self.state = TaskState(self, min_interval)
        self._fn = fn
        self._on_cancel = on_cancel
        self._result_after_cancel = result_after_cancel
        self._finished = threading.Event()
        self._outcome: str | None = None
        self._worker = None

    # -- life -----------------------------------------------------------------------------------
    def start(self) -> "Task":
        worker = create_worker(self._work, _start_thread=False, _connect={
            "returned": self._on_returned, "errored": self._on_errored, "finished": self._on_finished})
        self._worker = worker
        _live.add(self)
        (self._pool or pool()).start(worker)
        return self

    def _work(self):
        try:
            return self._fn(self.state)
        finally:
            self._finished.set()

    def cancel(self) -> None:
        """Ask the work to stop at its next check; `cancelled` (or `done`, see above) follows."""
        if self._finished.is_set() or self.state.cancelled():
            return
        self.state.cancel()
        if self._on_cancel is not None:
            self._on_cancel()
        if self._worker is not None and not self._result_after_cancel:
            self._worker.quit()  # superqt then drops the result: this task reports `cancelled`

    def is_running(self) -> bool:
        return self._worker is not None and not self._finished.is_set()

    def wait(self, timeout_ms: int = 120_000) -> bool:
        """Block until the work function has returned (for closing the window only)."""
        return self._worker is None or self._finished.wait(timeout_ms / 1000)

    # -- outcome (GUI thread) ----------------------------------------------------------------------
    def _on_returned(self, result) -> None:
        self._outcome = "done"
        self.done.emit(result)

    def _on_errored(self, exc) -> None:
        if self.state.cancelled():
            return  # the work gave up because it was asked to: reported as cancelled
        self._outcome = "failed"
        self.failed.emit(error_text(exc))

    def _on_finished(self) -> None:
        if self._outcome is None:
            self._outcome = "cancelled"
            self.cancelled.emit()
        self.ended.emit()
        # Dropped after this delivery has returned, never from inside it.
        QTimer.singleShot(0, lambda: _live.discard(self))


def start_task(fn: Callable[[TaskState], Any], on_done: Callable[[Any], None] | None = None,
               on_failed: Callable[[str], None] | None = None, on_progress: Callable[[Progress], None] | None = None,
               name: str = "task", parent: QObject | None = None) -> Task:
    """A Task with its listeners connected, started."""
    task = Task(fn, name=name, parent=parent)
    if on_done is not None:
        task.done.connect(on_done)
    if on_failed is not None:
        task.failed.connect(on_failed)
    if on_progress is not None:
        task.progress.connect(on_progress)
    return task.start()


def wait_for_tasks(timeout_ms: int = 30_000) -> bool:
    """Join every task's thread (at exit, so none outlives the objects it reports to)."""
    return pool().waitForDone(timeout_ms)
