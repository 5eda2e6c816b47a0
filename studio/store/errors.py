"""The store's errors (the front doors show their messages as they are)."""

from __future__ import annotations


class ProjectError(Exception):
    """A project folder cannot be created, opened or upgraded; the message says why."""


class RunHeldError(ProjectError):
    """Another trainer holds the run (its lease is taken); nothing was changed."""
