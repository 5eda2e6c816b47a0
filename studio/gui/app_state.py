"""What the menus and buttons depend on, without Qt: the `AppState` the action table's
enabled-when predicates read (studio.gui.actions), built by the window from the run
controller's verdicts (services.runs decides each)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from studio.services.runs import Verdict
from studio.store import RunRecord

NO_PROJECT = Verdict(False, "Open a project first.")
NO_RUN = Verdict(False, "Select a run in the side panel first.")


@dataclass(frozen=True)
class AppState:
    has_project: bool = False
    writable: Verdict = field(default_factory=lambda: Verdict(True))  # services.runs.writable
    run: RunRecord | None = None
    page: str = ""
    verdicts: dict[str, Verdict] = field(default_factory=dict)

    def verdict(self, action: str) -> Verdict:
        if not self.has_project:
            return NO_PROJECT
        return self.verdicts.get(action, NO_RUN)


def needs_project(state: AppState) -> Verdict:
    return Verdict(True) if state.has_project else NO_PROJECT


def needs_writable_project(state: AppState) -> Verdict:
    """Adding datasets, starting or estimating a run: a project that can be written."""
    return state.writable if state.has_project else NO_PROJECT


def run_verdict(action: str) -> Callable[[AppState], Verdict]:
    """The predicate of a run action: the shown run's verdict for `action`."""
    return lambda state: state.verdict(action)
