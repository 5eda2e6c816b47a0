"""The states a training run can be in: one type, used by engine, store, services, GUI and CLI.

This module imports nothing of the studio (nor anything else), so every layer may use it.
A `RunStatus` is a `str`, so it compares equal to the text stored in the project database and
prints as that text.
"""

from __future__ import annotations

from enum import Enum


class RunStatus(str, Enum):
    QUEUED = "queued"  # created, not started yet
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"  # reached its planned steps
    STOPPED = "stopped"  # by the user, with a checkpoint
    INTERRUPTED = "interrupted"  # the process died; found when the project was next opened
    DIVERGED = "diverged"  # the loss stopped being finite
    FAILED = "failed"  # an error; the message is stored as the reason

    def __str__(self) -> str:
        return self.value

    @property
    def is_active(self) -> bool:
        """A process holds (or is about to hold) the run: it cannot be resumed, deleted or changed."""
        return self in ACTIVE

    @property
    def has_ended(self) -> bool:
        return not self.is_active

    @property
    def is_error(self) -> bool:
        """Ended by something that went wrong: the reason is shown as an error."""
        return self in ERRORS

    @classmethod
    def of(cls, value: "str | RunStatus") -> "RunStatus":
        """The status named by stored text; a clear error for text that is none."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown run status {value!r}; one of {', '.join(s.value for s in cls)}") from None


ACTIVE = frozenset({RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED})
# The process of these is alive (a queued run has none yet).
LIVE = frozenset({RunStatus.RUNNING, RunStatus.PAUSED})
ERRORS = frozenset({RunStatus.FAILED, RunStatus.DIVERGED, RunStatus.INTERRUPTED})
# Ended, not at the planned end, with the work so far in a checkpoint: can be continued.
RESUMABLE = frozenset({RunStatus.STOPPED, RunStatus.INTERRUPTED, RunStatus.FAILED, RunStatus.DIVERGED})
ALL = tuple(RunStatus)
