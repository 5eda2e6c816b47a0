"""The menus' enabled-when rules are predicates over a Qt-free AppState: they can be asked
without a window, and a disabled action carries the verdict's reason."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("pytestqt")


def test_the_app_state_needs_no_qt():
    code = ("import sys; sys.modules['PySide6'] = None\n"
            "from studio.gui.app_state import AppState, needs_project, run_verdict\n"
            "from studio.services.runs import Verdict\n"
            "s = AppState(has_project=True, verdicts={'delete': Verdict(False, 'run 1 is running; stop it first.')})\n"
            "assert needs_project(s) and not run_verdict('delete')(s)\n"
            "print(run_verdict('delete')(s).reason, '|', needs_project(AppState()).reason)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "run 1 is running; stop it first. | Open a project first."


def test_actions_follow_the_state_and_say_why_not(qtbot):
    from PySide6.QtWidgets import QMainWindow

    from studio.gui.actions import ACTIONS, build_actions, update_actions
    from studio.gui.app_state import AppState
    from studio.services.runs import Verdict

    class Host(QMainWindow):
        def __getattr__(self, name):  # every slot of the table, as a no-op
            if name.startswith("_") or name in ("menus", "shown_run_id"):
                raise AttributeError(name)
            return lambda: None

    host = Host()
    qtbot.addWidget(host)
    actions = build_actions(host)
    assert set(actions) == {spec.name for spec in ACTIONS}
    assert actions["stop"].shortcut().toString() == "Ctrl+."
    update_actions(actions, AppState())
    assert not actions["start"].isEnabled() and actions["start"].toolTip() == "Open a project first."
    assert actions["new_project"].isEnabled()  # always
    stopped = {"resume": Verdict(True), "pause": Verdict(False, "run 3 is stopped."), "delete": Verdict(True)}
    update_actions(actions, AppState(has_project=True, verdicts=stopped))
    assert actions["start"].isEnabled() and actions["resume"].isEnabled() and actions["delete"].isEnabled()
    assert not actions["pause"].isEnabled() and actions["pause"].toolTip() == "run 3 is stopped."
    assert not actions["export"].isEnabled() and "Select a run" in actions["export"].toolTip()
