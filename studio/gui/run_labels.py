"""The window's run naming, notes, tags and queue (a part of MainWindow, like RunDialogs): Edit ▸
Rename run… / Notes… / Tags…, the New run form's Add to queue, Run ▸ Start the queue, and the
runs list's right-click menu (every run action of the menus, on the run under the pointer)."""

from __future__ import annotations

from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QInputDialog, QLineEdit, QMenu

from studio.services.labels import parse_tags

# The runs list's right-click menu, in order (None: a separator): names of the window's actions.
RUN_MENU = ("rename", "notes", "tags", None, "pause", "resume", "stop", "start_queued", None,
            "evaluate", "export", "branch", None, "duplicate", "delete")


class RunLabelling:
    """Mixed into MainWindow: it provides project, runs (RunController), panel, pages, statusBar."""

    def setup_run_labels(self) -> None:
        self.new_run_page.queue_requested.connect(self.queue_run)
        runs_list = self.panel.runs_list
        runs_list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        runs_list.customContextMenuRequested.connect(self._run_context_menu)

    def run_context_menu(self, run_id: int) -> QMenu:
        """The menu a right click on run `run_id` opens (it is selected, so the actions are its)."""
        self.panel.select_run(run_id)
        self.update_actions()
        menu = QMenu(self)
        for name in RUN_MENU:
            if name is None:
                menu.addSeparator()
            else:
                menu.addAction(getattr(self, f"{name}_action"))
        return menu

    def _run_context_menu(self, pos: QPoint) -> None:
        runs_list = self.panel.runs_list
        item = runs_list.itemAt(pos)
        if item is None:
            return
        from studio.gui.project_panel import RUN_ID_ROLE

        self.run_context_menu(int(item.data(RUN_ID_ROLE))).exec(runs_list.viewport().mapToGlobal(pos))

    # -- labels -------------------------------------------------------------------------------
    def _label(self, run_id: int, **values) -> bool:
        try:
            self.project.label_run(run_id, **values)
        except Exception as exc:  # noqa: BLE001 - the store's refusal, in the status bar
            self.statusBar().showMessage(str(exc), 10_000)
            return False
        self.refresh_now()
        self.update_actions()
        return True

    def rename_run(self, run_id: int | None, name: str | None = None) -> bool:
        """Give a run a name of the person's own (empty: back to its method's)."""
        if self.project is None or run_id is None:
            return False
        run = self.project.run(run_id)
        if name is None:
            name, ok = QInputDialog.getText(self, "Rename run", f"A name for run {run_id} (empty: "
                                            f"“{run.method} · {run.backbone}”):", QLineEdit.EchoMode.Normal, run.name or "")
            if not ok:
                return False
        return self._label(run_id, name=name)

    def edit_run_notes(self, run_id: int | None, notes: str | None = None) -> bool:
        if self.project is None or run_id is None:
            return False
        if notes is None:
            notes, ok = QInputDialog.getMultiLineText(self, "Run notes", f"Notes on run {run_id}: what you tried, "
                                                      "what you saw.", self.project.run(run_id).notes or "")
            if not ok:
                return False
        return self._label(run_id, notes=notes)

    def edit_run_tags(self, run_id: int | None, text: str | None = None) -> bool:
        if self.project is None or run_id is None:
            return False
        if text is None:
            known = ", ".join(self.project.run_tags())
            text, ok = QInputDialog.getText(
                self, "Run tags", f"Tags of run {run_id}, separated by commas" + (f" (in use: {known})" if known else "")
                + ":", QLineEdit.EchoMode.Normal, ", ".join(self.project.run(run_id).tags))
            if not ok:
                return False
        return self._label(run_id, tags=parse_tags(text))

    # -- the queue ------------------------------------------------------------------------------
    def queue_run(self, request) -> int | None:
        """The New run form's Add to queue: the run is stored and waits for the runs before it."""
        if self.project is None:
            return None
        try:
            run_id = self.runs.enqueue(request.dataset, request.config)
        except Exception as exc:  # noqa: BLE001 - a typed refusal, shown under the form
            self.new_run_page.show_error(str(exc))
            return None
        self.new_run_page.started()
        self.refresh_now()
        self.update_actions()
        return run_id

    def start_queued_run(self, run_id: int | None) -> None:
        """Run ▸ Start now: a run waiting in the queue starts at once, beside any that trains."""
        if self.project is not None and run_id is not None and self.runs.start_queued(run_id):
            self.refresh_now()
