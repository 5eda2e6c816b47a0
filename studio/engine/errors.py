"""Typed engine errors whose messages a person can act on (DESIGN.md rule 7)."""

from __future__ import annotations


class StudioError(Exception):
    """Base of every error the studio reports to a person rather than as a traceback."""


class DatasetError(StudioError):
    """An image source cannot be read or holds no usable image."""


class ConfigError(StudioError):
    """A run's configuration is invalid (unknown method, backbone, field, or an unusable pair).

    `setting` names the field at fault, so that a front door can point at its own control for it
    (the CLI names the flag, the form its row); the message itself speaks of settings."""

    def __init__(self, message: str, setting: str | None = None):
        super().__init__(message)
        self.setting = setting


class DivergedError(StudioError):
    """The loss became NaN or infinite; training stopped."""

    def __init__(self, step: int, value: float, checkpoint: str | None = None):
        self.step = step
        self.value = value
        self.checkpoint = checkpoint
        where = f"; the last good checkpoint is {checkpoint}" if checkpoint else ""
        super().__init__(
            f"the loss became {value} at step {step}{where}. "
            "Try a lower learning rate (for example half of it) or a smaller batch."
        )


class OutOfMemoryError(StudioError):
    """The device ran out of memory."""


class CheckpointError(StudioError):
    """A checkpoint is missing, corrupt or not a studio checkpoint."""


class DiskFullError(StudioError):
    """Writing to disk failed for lack of space."""
