"""One store poller for the whole window (DESIGN.md rule 5: the store is the truth).

Pages subscribe a reader (`subscribe(fn, every_ms)`); one precise timer runs them, one reader per
event-loop turn, since each reads the database and several reads in one turn add up to one long
stall while a run trains. `publish_now` runs every reader at once (screenshots, Refresh).
"""

from __future__ import annotations

import time
from typing import Callable

from PySide6.QtCore import QObject, Qt, QTimer, Signal

TURN_MS = 15  # between two readers that fall due together


class StorePoller(QObject):
    ticked = Signal()

    def __init__(self, interval_ms: int = 400, parent: QObject | None = None):
        super().__init__(parent)
        self._readers: list[list] = []  # [fn, every_s, next_due]
        self._queue: list[Callable[[], None]] = []
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self._turn = QTimer(self)
        self._turn.setSingleShot(True)
        self._turn.setInterval(TURN_MS)
        self._turn.timeout.connect(self._next)
        self.enabled = True

    def subscribe(self, fn: Callable[[], None], every_ms: int | None = None) -> None:
        every = (every_ms or self.timer.interval()) / 1000
        self._readers.append([fn, every, 0.0])

    def start(self) -> None:
        self.enabled = True
        self.timer.start()

    def stop(self) -> None:
        self.enabled = False
        self.timer.stop()
        self._turn.stop()
        self._queue.clear()

    def _tick(self) -> None:
        now = time.monotonic()
        for reader in self._readers:
            fn, every, due = reader
            if now >= due - 0.005 and fn not in self._queue:
                reader[2] = now + every
                self._queue.append(fn)
        if self._queue and not self._turn.isActive():
            self._next()
        self.ticked.emit()

    def _next(self) -> None:
        if not self._queue or not self.enabled:
            return
        self._queue.pop(0)()
        if self._queue:
            self._turn.start()

    def soon(self, calls: list[Callable[[], None]]) -> None:
        """Run `calls` one per turn, the first now (after a run changed status, say)."""
        for fn in calls:
            if fn not in self._queue:
                self._queue.append(fn)
        if self._queue and not self._turn.isActive():
            self._next()

    def publish_now(self) -> None:
        self._queue.clear()
        for fn, _every, _due in self._readers:
            fn()
