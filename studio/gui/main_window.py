"""The main window, composed: the project side panel, pages in tabs, menus from the action table
(studio.gui.actions), a run controller owning the jobs (studio.gui.run_controller) and one store
poller (studio.gui.poller) that publishes the store's changes to the pages. Pages are driven
through their intent (`show_run`, `set_config`, `show_dataset`), never through their widgets.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QActionGroup, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QApplication, QMainWindow, QMessageBox, QProgressBar, QSplitter,
    QStackedWidget, QTabWidget, QToolButton, QWidget,
)

from studio.gui.actions import build_actions, update_actions
from studio.gui.chrome import WindowChrome
from studio.gui.window_projects import ProjectHandling
from studio.gui.compare import CompareRunsPage
from studio.gui.dataset_page import DatasetActions, DatasetPage
from studio.gui.explorer import ExplorerPage
from studio.gui.new_run_page import NewRunPage
from studio.gui.poller import StorePoller
from studio.gui.project_panel import ProjectPanel
from studio.gui.app_state import AppState
from studio.gui.run_controller import RunController
from studio.gui.evaluate_dialog import RunDialogs
from studio.gui.run_labels import RunLabelling
from studio.gui.evaluation_view import EvaluationView
from studio.gui.run_details import RunDetailsPage
from studio.gui.run_page import RunPage
from studio.gui.style import THEMES
from studio.gui.tasks import wait_for_tasks
from studio.gui.welcome_page import WelcomePage
from studio.gui.widgets import Label, PageHolder
from studio.status import RunStatus
from studio.services.runs import Verdict, writable

SETTINGS_ORG = "ssl-studio"
SETTINGS_APP = "SSL Studio"
MAX_RECENT = 8
PAGE_SHORTCUTS = ("Ctrl+1", "Ctrl+2", "Ctrl+3", "Ctrl+4", "Ctrl+5", "Ctrl+6")


def settings() -> QSettings:
    return QSettings(SETTINGS_ORG, SETTINGS_APP)


def sample_project_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("ssl-studio")) / "Sample project"


def recent_projects() -> list[str]:
    """Project folders opened lately, newest first, only those still on disk."""
    value = settings().value("recent_projects", [])
    if isinstance(value, str):  # QSettings gives a one-element list back as a string
        value = [value]
    return [p for p in (value or []) if (Path(p) / "project.db").is_file()]


def remember_project(path) -> list[str]:
    path = str(Path(path).resolve())
    recent = [path] + [p for p in recent_projects() if p != path]
    recent = recent[:MAX_RECENT]
    s = settings()
    s.setValue("recent_projects", recent)
    s.setValue("last_project", path)
    return recent


class MainWindow(ProjectHandling, WindowChrome, RunDialogs, RunLabelling, QMainWindow):
    def __init__(self, parent: QWidget | None = None, poll_ms: int = 1000, curve_ms: int = 400):
        super().__init__(parent)
        self.setWindowTitle("SSL Studio")
        self.resize(1280, 800)
        self.project = None
        self._closing = False
        self._pages_warmed = False  # the Run page is laid out and painted once, when the window first shows
        self._pages: dict[str, QWidget] = {}
        self._factories: dict[str, object] = {}
        self._holders: dict[str, QWidget] = {}
        self.runs = RunController(self)
        self.poller = StorePoller(curve_ms, self)

        self.welcome = WelcomePage()
        self.panel = ProjectPanel()
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.dataset_page = DatasetPage()
        self.new_run_page = NewRunPage()
        self.run_page = RunPage()
        self.run_details = RunDetailsPage()
        self.add_page("Dataset", self.dataset_page)
        self.add_page("New run", self.new_run_page)
        self.add_page("Run", self.run_page)
        self.add_page("Run details", self.run_details)
        self.add_page("Explorer", factory=lambda p: ExplorerPage(p))
        self.add_page("Compare", factory=self._compare_page)
        self.add_page("Evaluation", factory=lambda p: EvaluationView(p))
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self.export_dialog = None
        self.about_box = None
        self.last_notification: tuple[str, str] | None = None
        self._tray = None
        self._adding_datasets = 0
        self.setAcceptDrops(True)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.panel)
        self.splitter.addWidget(self.tabs)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([270, 1010])
        self.splitter.setChildrenCollapsible(False)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(self.splitter)
        self.setCentralWidget(self.stack)

        self.dataset_progress_bar = QProgressBar()
        self.dataset_progress_bar.setMaximumWidth(180)
        self.dataset_progress_bar.setMaximumHeight(16)
        self.dataset_progress_bar.hide()
        self.statusBar().addPermanentWidget(self.dataset_progress_bar)
        self.dataset_cancel_button = QToolButton()
        self.dataset_cancel_button.setText("Cancel")
        self.dataset_cancel_button.setToolTip("Stop reading the dataset's images (nothing is stored).")
        self.dataset_cancel_button.clicked.connect(self.cancel_adding_datasets)
        self.dataset_cancel_button.hide()
        self.statusBar().addPermanentWidget(self.dataset_cancel_button)
        self._dataset_tasks: list = []
        self.device_label = Label()
        self.device_label.setObjectName("Muted")
        self.statusBar().addPermanentWidget(self.device_label)
        self._show_device()

        self._build_menus()
        self.welcome.sample_requested.connect(lambda: self.try_(self.try_sample))
        self.welcome.new_requested.connect(self.new_project_dialog)
        self.welcome.open_requested.connect(self.open_project_dialog)
        self.welcome.recent_requested.connect(lambda path: self.try_(lambda: self.open_project(path)))
        self.welcome.set_recent(recent_projects())
        self.panel.dataset_selected.connect(self._on_dataset_selected)
        self.panel.run_selected.connect(self._on_run_selected)
        self.panel.runs_changed.connect(self._on_runs_changed)
        self.dataset_page.new_run_requested.connect(self.show_new_run)
        # Rename and remove a dataset: from the panel's menu or the Dataset page, one question each.
        self.dataset_actions = DatasetActions(self, busy=lambda run_id: self.runs.busy(run_id))
        self.panel.rename_dataset_requested.connect(self.dataset_actions.rename)
        self.panel.remove_dataset_requested.connect(self.dataset_actions.remove)
        self.dataset_page.rename_requested.connect(self.dataset_actions.rename)
        self.dataset_page.remove_requested.connect(self.dataset_actions.remove)
        self.panel.new_run_requested.connect(self.show_new_run)
        self.panel.datasets_changed.connect(self._on_datasets_changed)
        self.dataset_actions.changed.connect(self.panel.refresh)
        self.dataset_actions.runs_removed.connect(self._on_dataset_runs_removed)
        self.dataset_actions.message.connect(lambda text, ms: self.statusBar().showMessage(text, ms))
        self.new_run_page.start_requested.connect(self.start_run)
        self.setup_run_labels()
        self.run_page.pause_requested.connect(self.pause_run)
        self.run_page.resume_requested.connect(self.resume_run)
        self.run_page.stop_requested.connect(self.stop_run)
        self.run_page.export_requested.connect(lambda run_id: self.open_export_dialog(run_id))
        self.run_page.branch_requested.connect(self.branch_run)
        self.run_page.status_shown.connect(lambda _status: self.update_actions())
        self.run_details.duplicate_requested.connect(self.duplicate_run)
        self.run_details.delete_requested.connect(self.delete_run)
        self.run_details.export_requested.connect(self.open_export_dialog)
        self.run_details.evaluate_requested.connect(self.open_evaluate_dialog)
        self.run_details.resume_requested.connect(self.resume_run_from)
        self.run_details.set_verdict_source(self._resume_from_verdict)
        self.runs.started.connect(self._on_job_started)
        self.runs.progress.connect(self.run_page.on_progress)
        self.runs.activity.connect(self.run_page.on_activity)
        self.runs.status_changed.connect(self._on_job_status)
        self.runs.finished.connect(self._on_job_finished)
        self.runs.message.connect(lambda text, ms: self.statusBar().showMessage(text, ms))

        # One poller reads the store for every view, whoever changes it (this window, the CLI).
        self.poller.subscribe(self.run_page.refresh, curve_ms)
        self.poller.subscribe(self.panel.refresh, poll_ms)
        self.poller.subscribe(self.update_actions, poll_ms)
        self.poller.subscribe(lambda: self.current_page_title() == "Run details" and self.run_details.refresh(), poll_ms)
        self.poller.start()
        self.update_actions()
        hints = QGuiApplication.styleHints()
        if hasattr(hints, "colorSchemeChanged"):
            hints.colorSchemeChanged.connect(self._on_system_scheme_changed)

    @property
    def jobs(self) -> dict:
        """The runs this window trains, by id (the run controller's)."""
        return self.runs.jobs

    # -- pages ------------------------------------------------------------------------------
    def _compare_page(self, project) -> CompareRunsPage:
        page = CompareRunsPage(project)
        page.evaluate_requested.connect(self.open_evaluate_dialog)
        return page

    def add_page(self, title: str, widget: QWidget | None = None, factory=None) -> int:
        """Add a page as a tab (the explorer and compare views plug in here); returns its index.

        Give a `widget` with an optional `set_project(project)` method, called whenever a project
        is opened; or a `factory(project) -> QWidget`, called to rebuild the page for each project
        (for pages that take their project in the constructor)."""
        if widget is None and factory is None:
            raise ValueError("add_page needs a widget or a factory")
        if factory is not None:
            self._factories[title] = factory
            widget = factory(self.project) if self.project is not None else _placeholder(title)
        elif self.project is not None and hasattr(widget, "set_project"):
            widget.set_project(self.project)
        # A page larger than the window scrolls rather than forcing the window larger: the window
        # works from 1024 x 640 up (issue 16, item 18), whatever its pages' minimum sizes.
        holder = PageHolder(widget)
        self._holders[title] = holder
        self._pages[title] = widget
        return self.tabs.addTab(self._holders.get(title, widget), title)

    def _rebuild_factory_pages(self) -> None:
        for title, factory in self._factories.items():
            holder = self._holders[title]
            old = holder.takeWidget()
            new = factory(self.project) if self.project is not None else _placeholder(title)
            self._pages[title] = new
            holder.setWidget(new)
            if old is not None:
                if hasattr(old, "shutdown"):
                    old.shutdown()
                old.deleteLater()

    def page(self, title: str) -> QWidget:
        return self._pages[title]

    def show_page(self, title: str) -> None:
        self.tabs.setCurrentWidget(self._holders.get(title, self._pages[title]))

    def current_page_title(self) -> str:
        return self.tabs.tabText(self.tabs.currentIndex())

    def _on_tab_changed(self, index: int) -> None:
        page = self._pages.get(self.tabs.tabText(index))
        if self.project is not None and page is not None and hasattr(page, "refresh"):
            page.refresh()
        self.update_actions()

    # -- menus ------------------------------------------------------------------------------
    def _build_menus(self) -> None:
        self.actions_by_name = build_actions(self)
        self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        self.about_action.setMenuRole(QAction.MenuRole.AboutRole)
        self.menus["&Help"].addAction("About &Qt", QApplication.aboutQt)
        file_menu = self.menus["&File"]
        self.recent_menu = file_menu.addMenu("Open &recent")
        file_menu.insertMenu(self.sample_project_action, self.recent_menu)
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._fill_recent_menu()
        # Delete is the text fields' key too: only when the runs list has the focus.
        self.delete_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.panel.add_list_action(self.delete_action)
        run_menu = self.menus["&Run"]
        run_menu.addAction(self.duplicate_action)
        run_menu.addAction(self.delete_action)
        view_menu = self.menuBar().addMenu("&View")
        self.menuBar().insertMenu(self.menus["&Run"].menuAction(), view_menu)
        self.page_actions = []
        for i, title in enumerate(self._pages):
            a = view_menu.addAction(title)
            if i < len(PAGE_SHORTCUTS):
                a.setShortcut(PAGE_SHORTCUTS[i])
            a.triggered.connect(lambda _=False, t=title: self.show_page(t))
            self.page_actions.append(a)
        view_menu.addSeparator()
        theme_menu = view_menu.addMenu("&Theme")
        self.theme_group = QActionGroup(self)
        self.theme_actions: dict[str, QAction] = {}
        for name in THEMES:
            a = QAction(name.capitalize() if name != "system" else "Follow the system", self, checkable=True)
            a.triggered.connect(lambda _=False, n=name: self.set_theme(n))
            self.theme_group.addAction(a)
            theme_menu.addAction(a)
            self.theme_actions[name] = a
        self.theme_actions[self.theme()].setChecked(True)
        self.fullscreen_action = view_menu.addAction("&Full screen", self._toggle_fullscreen)
        self.fullscreen_action.setShortcut(QKeySequence(QKeySequence.StandardKey.FullScreen))
        self.fullscreen_action.setCheckable(True)

    def app_state(self) -> AppState:
        run = self.run_page.run if self.project is not None else None
        return AppState(has_project=self.project is not None, run=run, page=self.current_page_title(),
                        verdicts=self.runs.verdicts(run),
                        writable=writable(self.project) if self.project is not None else Verdict(True))

    def update_actions(self) -> None:
        """Menus and the pages' buttons follow the shown run's verdicts (services.runs decides)."""
        state = self.app_state()
        update_actions(self.actions_by_name, state)
        for a in self.page_actions:
            a.setEnabled(state.has_project)
        self.run_page.set_verdicts(state.verdicts, live=state.run is not None and self.runs.busy(state.run.id))
        self.run_details.set_verdicts(state.verdicts)

    def _on_datasets_changed(self, datasets) -> None:
        """A dataset was added, renamed or removed (here or by the CLI): the pages that list them follow."""
        self.new_run_page.set_datasets([d.name for d in datasets])
        if self.dataset_page.sync(datasets) and datasets and self.current_page_title() == "Dataset":
            self.panel.select_dataset(datasets[0].name)  # the one shown was removed: show another

    def _on_dataset_runs_removed(self, run_ids: list) -> None:
        if self.run_page.run_id in run_ids:
            self.run_page.show_run(None)
            self.run_details.show_run(None)
        self.update_actions()

    def _on_runs_changed(self) -> None:
        self.run_details.refresh()
        self.update_actions()

    # -- the menu's slots ---------------------------------------------------------------------
    def shown_run_id(self) -> int | None:
        return self.run_page.run_id

    def start_from_menu(self) -> None:
        if self.current_page_title() == "New run":
            self.new_run_page.request_start()
        else:
            self.show_new_run(self.panel.selected_dataset_name())

    def estimate_from_menu(self) -> None:
        self.show_page("New run")
        self.new_run_page.estimate()

    # -- runs -------------------------------------------------------------------------------
    def _on_run_selected(self, run_id: int) -> None:
        self.run_page.show_run(run_id, live=self.runs.busy(run_id))
        self.run_details.show_run(run_id)
        if self.current_page_title() != "Run details":
            self.show_page("Run")
        self.update_actions()

    def duplicate_run(self, run_id: int | None) -> None:
        """The New run form filled with a run's config and dataset: change one thing and start."""
        if self.project is None or run_id is None:
            return
        run = self.project.run(run_id)
        self.new_run_page.set_datasets(self.panel.dataset_names())
        self.new_run_page.set_config(run.config, dataset=run.dataset, parent_run_id=run_id)
        self.show_page("New run")
        self.statusBar().showMessage(f"The form holds run {run_id}'s config: change what you want to try, then Start.", 10000)

    def delete_run(self, run_id: int | None, confirm: bool = True) -> bool:
        """Delete a run with its metrics and files, after one question."""
        if self.project is None or run_id is None:
            return False
        verdict = self.runs.delete_verdict(run_id)
        if not verdict:
            self.statusBar().showMessage(verdict.reason, 8000)
            return False
        run = self.project.run(run_id)
        if confirm:
            answer = QMessageBox.question(
                self, "Delete run", f"Delete run {run_id} ({run.method} on {run.backbone}, {run.steps:,} steps) "
                f"with its metrics, checkpoints and exports? This cannot be undone.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Cancel)
            if answer != QMessageBox.StandardButton.Yes:
                return False
        if not self.runs.delete(run_id):
            return False
        if self.run_page.run_id == run_id:
            self.run_page.show_run(None)
            self.run_details.show_run(None)
        self.panel.refresh()
        runs = self.project.runs()
        if runs:
            self.panel.select_run(runs[-1].id)
        self.update_actions()
        return True

    def _resume_from_verdict(self, run, step):
        return self.runs.resume_from_verdict(run, step)

    def resume_run_from(self, run_id: int, step: int) -> None:
        """Continue a run from one of its checkpoints (the metrics after it are replaced)."""
        if self.project is not None:
            self.runs.resume(run_id, step)

    def branch_run(self, run_id: int | None, confirm: bool = True) -> int | None:
        """Continue a collapsed run from its last healthy checkpoint with the health monitor's
        suggested change, as a new run (services.branch), after one question; the new run's id."""
        from studio.services.branch import branch_point, suggested_branch

        if self.project is None or run_id is None:
            return None
        try:
            suggestion = suggested_branch(self.project, run_id)
            if suggestion is None:
                raise ValueError(f"run {run_id} did not collapse: there is no suggested change.")
            changes, text = suggestion
            point = branch_point(self.project, self.project.run(run_id))
        except Exception as exc:  # noqa: BLE001 - a typed refusal, said in the status bar
            self.statusBar().showMessage(str(exc), 10_000)
            return None
        if confirm:
            answer = QMessageBox.question(
                self, "Continue with the suggested change",
                f"A new run continues run {run_id} from {point.why}, with {text}. Run {run_id} stays as it is, "
                "for comparison.\n\nStart the new run now?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Yes)
            if answer != QMessageBox.StandardButton.Yes:
                return None
        return self.runs.branch(run_id, changes, f"the health monitor's suggestion: {text}")

    def start_run(self, request, config=None) -> int | None:
        """Store the New run form's run (services.training.prepare_run) and train it; its id.
        `request` is the form's StartRequest, or a dataset name with a `config`."""
        from studio.gui.new_run_page import StartRequest

        if self.project is None:
            return None
        if not isinstance(request, StartRequest):
            request = StartRequest(request, config)
        try:
            run_id = self.runs.start_new(request.dataset, request.config, request.processes, request.parent_run_id)
        except Exception as exc:  # noqa: BLE001 - a typed refusal, shown under the form
            self.new_run_page.show_error(str(exc))
            return None
        self.new_run_page.started()
        where = f" on {request.processes} GPUs" if request.processes > 1 else ""
        self.statusBar().showMessage(f"Run {run_id} started{where}: {request.config.method} on "
                                     f"{request.config.backbone}.", 8000)
        return run_id

    def _on_job_started(self, run_id: int) -> None:
        self.panel.select_run(run_id)
        self.run_page.show_run(run_id, live=True)
        self.run_details.show_run(run_id)
        self.show_page("Run")
        self.update_actions()

    def pause_run(self, run_id: int | None) -> None:
        self.runs.pause(run_id)

    def resume_run(self, run_id: int | None) -> None:
        if run_id is not None:
            self.runs.resume(run_id)

    def stop_run(self, run_id: int | None) -> None:
        self.runs.stop(run_id)

    def _on_job_status(self, run_id: int, status: str, reason: str) -> None:
        # The shown run first: it is what the user watches.
        calls = [self.run_page.refresh] if run_id == self.run_page.run_id else []
        if not self._closing:
            self.poller.soon(calls + [self.panel.refresh, self.update_actions])

    def _on_job_finished(self, run_id: int, result: dict) -> None:
        status, reason = result.get("status"), result.get("reason")
        # A reason may end in a child process's last output lines: the Run page shows them all.
        reason = reason.splitlines()[0].rstrip(":;") if reason else reason
        text = f"Run {run_id} {status}" + (f": {reason}" if reason and status != RunStatus.STOPPED else "") + "."
        if result.get("refused"):
            text = f"Run {run_id} was not started, and is left as it was: {result['refused']}"
        self.statusBar().showMessage(text, 15000)
        if result.get("refused"):
            pass
        elif status == RunStatus.FINISHED:
            loss = result.get("final_loss")
            self.notify(f"Run {run_id} finished", f"{result.get('steps', 0):,} steps"
                        + (f", final loss {loss:.4g}" if isinstance(loss, float) else "") + ".")
        elif status is not None and RunStatus.of(status).is_error:
            self.notify(f"Run {run_id} {status}", reason or "see the run's log.", failed=True)
        if self._closing:
            return
        calls = [self.panel.refresh]
        if run_id == self.run_page.run_id:
            # The shown run's buttons follow at once: it can be resumed the moment its job is gone.
            self.run_page.show_run(run_id, live=False)
            self.run_page.refresh()
            self.update_actions()
            calls.insert(0, self.run_details.refresh)
        self.poller.soon(calls + [self.update_actions])

    def _confirm_stop_jobs(self) -> bool:
        answer = QMessageBox.question(self, "SSL Studio", "A run is training. Stop it (its checkpoint is kept) and go on?")
        if answer != QMessageBox.StandardButton.Yes:
            return False
        self.stop_all_jobs()
        return True

    def stop_all_jobs(self, timeout_ms: int = 120_000) -> None:
        """Stop every run this window trains and wait for each: each ends 'stopped' with a checkpoint."""
        self.runs.stop_all(timeout_ms)

    # -- refreshing -------------------------------------------------------------------------
    def refresh_now(self) -> None:
        """Read the store once, now (the poller does this on its own; screenshots need it at once)."""
        self.poller.publish_now()
        self.run_details.refresh()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if not self._pages_warmed:
            self._pages_warmed = True
            from PySide6.QtCore import QTimer

            QTimer.singleShot(0, self._warm_run_page)

    def _warm_run_page(self) -> None:
        """Lay out and paint the Run page once, off screen, while nothing trains: its plots' first
        layout and paint (pyqtgraph builds its axes then) would otherwise fall on the moment Start
        switches to it, while the new run's thread builds its model."""
        holder, run_holder = self.tabs.currentWidget(), self._holders.get("Run")
        if holder is None or run_holder is None or holder is run_holder:
            return
        self.run_page.warm_up(holder.size())

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self.jobs and event.spontaneous() and not getattr(self, "_quit_confirmed", False) and not self.confirm_quit():
            event.ignore()  # the window's close button while training: asked, and the person said no
            return
        self._closing = True
        self.save_layout()
        if self.jobs:
            self.statusBar().showMessage("Stopping the training run…")
            self.stop_all_jobs()
        self.poller.stop()
        for page in self._pages.values():
            if hasattr(page, "shutdown"):
                page.shutdown()
        wait_for_tasks()
        self._close_project()
        if self._tray is not None:
            self._tray.hide()
        super().closeEvent(event)


def _placeholder(title: str) -> QWidget:
    label = Label(f"Open a project to use {title}.")
    label.setObjectName("Muted")
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    return label
