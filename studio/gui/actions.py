"""The main window's menus as a table: each action's menu, text, shortcut, what it calls and when
it is enabled, as a predicate over the Qt-free `AppState` (studio.gui.app_state).

A predicate answers a `Verdict` (or a bool); a disabled action shows the verdict's reason as its
tooltip and status tip, so the menus explain themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from PySide6.QtGui import QAction, QKeySequence

from studio.gui.app_state import AppState, needs_project, needs_writable_project, run_verdict
from studio.services.runs import Verdict

SK = QKeySequence.StandardKey


_project, _writable, _run = needs_project, needs_writable_project, run_verdict


@dataclass(frozen=True)
class ActionSpec:
    name: str  # the window's attribute is `<name>_action`
    menu: str
    text: str
    slot: str  # a method of the window, called without arguments (with the shown run's id: `of_run`)
    shortcut: object = None
    enabled: Callable[[AppState], Verdict | bool] | None = None  # None: always
    separator_before: bool = False
    tip: str = ""
    of_run: bool = False


ACTIONS = (
    ActionSpec("new_project", "&File", "&New project…", "new_project_dialog", SK.New),
    ActionSpec("open_project", "&File", "&Open project…", "open_project_dialog", SK.Open),
    ActionSpec("sample_project", "&File", "Open the &sample project", "open_sample_project"),
    ActionSpec("add_folder", "&File", "Add dataset &folder…", "add_dataset_folder_dialog", "Ctrl+Shift+O", _writable,
               separator_before=True),
    ActionSpec("add_sample", "&File", "Add s&ample", "add_sample", None, _writable),
    ActionSpec("close_project", "&File", "&Close project", "close_project", SK.Close, _project, separator_before=True),
    ActionSpec("quit", "&File", "&Quit", "quit_app", SK.Quit),
    ActionSpec("duplicate", "&Edit", "&Duplicate run…", "duplicate_run", "Ctrl+D", _run("duplicate"), of_run=True),
    ActionSpec("delete", "&Edit", "De&lete run…", "delete_run", SK.Delete, _run("delete"), of_run=True),
    ActionSpec("rename", "&Edit", "Re&name run…", "rename_run", "F2", _run("label"), separator_before=True,
               of_run=True, tip="A name of your own for the run, shown in the side panel, the Run page and Compare"),
    ActionSpec("notes", "&Edit", "Run n&otes…", "edit_run_notes", None, _run("label"), of_run=True,
               tip="What you tried and what you saw, kept with the run"),
    ActionSpec("tags", "&Edit", "Run &tags…", "edit_run_tags", None, _run("label"), of_run=True,
               tip="Words to find runs by: the side panel's filter matches them"),
    ActionSpec("refresh", "&Edit", "&Refresh", "refresh_now", SK.Refresh, separator_before=True),
    ActionSpec("start", "&Run", "&Start", "start_from_menu", "Ctrl+Return", _writable),
    ActionSpec("estimate", "&Run", "Estimate &cost", "estimate_from_menu", "Ctrl+Shift+E", _writable),
    ActionSpec("start_queued", "&Run", "Start &now (from the queue)", "start_queued_run", None, _run("start_queued"),
               of_run=True, tip="A run waiting in the queue starts at once, without waiting for the runs before it"),
    ActionSpec("pause", "&Run", "&Pause", "pause_run", None, _run("pause"), of_run=True),
    ActionSpec("resume", "&Run", "&Resume", "resume_run", None, _run("resume"), of_run=True),
    ActionSpec("stop", "&Run", "S&top", "stop_run", "Ctrl+.", _run("stop"), of_run=True),
    ActionSpec("evaluate", "&Run", "E&valuate…", "open_evaluate_dialog", "Ctrl+Shift+V", _run("evaluate"),
               separator_before=True, of_run=True),
    ActionSpec("export", "&Run", "&Export…", "open_export_dialog", "Ctrl+E", _run("export"), of_run=True),
    ActionSpec("branch", "&Run", "Continue with the suggested &change…", "branch_run", None, _run("branch"),
               separator_before=True, of_run=True,
               tip="After a collapse: a new run from the last healthy checkpoint, with the health monitor's change"),
    ActionSpec("guide", "&Help", "&User's guide", "open_guide", SK.HelpContents),
    ActionSpec("about", "&Help", "&About SSL Studio", "show_about"),
)


def build_actions(window, specs=ACTIONS) -> dict[str, QAction]:
    """Create every action of `specs` in the window's menu bar; returns them by name (each is
    also set as `window.<name>_action`)."""
    menus = {}
    out = {}
    for spec in specs:
        menu = menus.get(spec.menu)
        if menu is None:
            menu = menus[spec.menu] = window.menuBar().addMenu(spec.menu)
        if spec.separator_before:
            menu.addSeparator()
        action = QAction(spec.text, window)
        if spec.shortcut is not None:
            action.setShortcut(QKeySequence(spec.shortcut))
        if spec.of_run:
            action.triggered.connect(lambda _=False, s=spec.slot: getattr(window, s)(window.shown_run_id()))
        else:
            action.triggered.connect(lambda _=False, s=spec.slot: getattr(window, s)())
        menu.addAction(action)
        out[spec.name] = action
        setattr(window, f"{spec.name}_action", action)
    window.menus = menus
    return out


def update_actions(actions: dict[str, QAction], state: AppState, specs=ACTIONS) -> None:
    for spec in specs:
        if spec.enabled is None:
            continue
        verdict = spec.enabled(state)
        ok = bool(verdict)
        action = actions[spec.name]
        action.setEnabled(ok)
        reason = "" if ok else getattr(verdict, "reason", "")
        action.setToolTip(reason or spec.tip or action.text().replace("&", ""))
        action.setStatusTip(reason)
