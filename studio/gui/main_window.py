"""The main window: project side panel on the left, pages in tabs on the right, menus on top.

Training runs on TrainingJobs (a worker on its own QThread each); every view reads the store.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog, QLabel, QMainWindow, QMessageBox, QSplitter, QStackedWidget, QTabWidget, QWidget,
)

from studio.gui.dataset_page import DatasetPage
from studio.gui.new_run_page import NewRunPage
from studio.gui.project_panel import ProjectPanel
from studio.gui.run_page import RunPage
from studio.gui.welcome_page import WelcomePage
from studio.gui.workers import TrainingJob, start_task, wait_for_tasks

SETTINGS_ORG = "ssl-studio"
SETTINGS_APP = "SSL Studio"


def settings() -> QSettings:
    return QSettings(SETTINGS_ORG, SETTINGS_APP)


def sample_project_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("ssl-studio")) / "Sample project"


class MainWindow(QMainWindow):
    def __init__(self, parent: QWidget | None = None, poll_ms: int = 1000, curve_ms: int = 400):
        super().__init__(parent)
        self.setWindowTitle("SSL Studio")
        self.resize(1280, 800)
        self.project = None
        self.jobs: dict[int, TrainingJob] = {}
        self._pages: dict[str, QWidget] = {}
        self._factories: dict[str, object] = {}

        self.welcome = WelcomePage()
        self.panel = ProjectPanel(interval_ms=poll_ms)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.dataset_page = DatasetPage()
        self.new_run_page = NewRunPage()
        self.run_page = RunPage(interval_ms=curve_ms)
        self.add_page("Dataset", self.dataset_page)
        self.add_page("New run", self.new_run_page)
        self.add_page("Run", self.run_page)

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

        self.device_label = QLabel()
        self.device_label.setObjectName("Muted")
        self.statusBar().addPermanentWidget(self.device_label)
        self._show_device()

        self._build_menus()
        self.welcome.sample_requested.connect(self.open_sample_project)
        self.welcome.new_requested.connect(self.new_project_dialog)
        self.welcome.open_requested.connect(self.open_project_dialog)
        self.welcome.recent_requested.connect(self.open_project)
        self.welcome.set_recent(settings().value("last_project", None, type=str) or None)
        self.panel.dataset_selected.connect(self._on_dataset_selected)
        self.panel.run_selected.connect(self._on_run_selected)
        self.panel.runs_changed.connect(self._update_actions)
        self.dataset_page.new_run_requested.connect(self.show_new_run)
        self.new_run_page.start_requested.connect(self.start_run)
        self.run_page.pause_requested.connect(self.pause_run)
        self.run_page.resume_requested.connect(self.resume_run)
        self.run_page.stop_requested.connect(self.stop_run)

        # Buttons and menu items follow the shown run's status, whoever changes it.
        self._actions_timer = QTimer(self)
        self._actions_timer.setInterval(poll_ms)
        self._actions_timer.timeout.connect(self._update_actions)
        self._actions_timer.start()
        self._update_actions()

    # -- pages ------------------------------------------------------------------------------
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
        self._pages[title] = widget
        return self.tabs.addTab(widget, title)

    def _rebuild_factory_pages(self) -> None:
        for title, factory in self._factories.items():
            old = self._pages[title]
            index = self.tabs.indexOf(old)
            current = self.tabs.currentIndex() == index
            new = factory(self.project)
            self._pages[title] = new
            self.tabs.removeTab(index)
            self.tabs.insertTab(index, new, title)
            if current:
                self.tabs.setCurrentIndex(index)
            old.deleteLater()

    def page(self, title: str) -> QWidget:
        return self._pages[title]

    def show_page(self, title: str) -> None:
        self.tabs.setCurrentWidget(self._pages[title])

    def current_page_title(self) -> str:
        return self.tabs.tabText(self.tabs.currentIndex())

    # -- menus ------------------------------------------------------------------------------
    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.new_project_action = self._action(file_menu, "&New project…", self.new_project_dialog, QKeySequence.StandardKey.New)
        self.open_project_action = self._action(file_menu, "&Open project…", self.open_project_dialog, QKeySequence.StandardKey.Open)
        self.sample_project_action = self._action(file_menu, "Open the &sample project", self.open_sample_project)
        file_menu.addSeparator()
        self.add_folder_action = self._action(file_menu, "Add dataset &folder…", self.add_dataset_folder_dialog)
        self.add_sample_action = self._action(file_menu, "Add s&ample", self.add_sample)
        file_menu.addSeparator()
        self.quit_action = self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        run_menu = self.menuBar().addMenu("&Run")
        self.start_action = self._action(run_menu, "&Start", self._start_from_menu, "Ctrl+Return")
        self.pause_action = self._action(run_menu, "&Pause", lambda: self.pause_run(self.run_page.run_id))
        self.resume_action = self._action(run_menu, "&Resume", lambda: self.resume_run(self.run_page.run_id))
        self.stop_action = self._action(run_menu, "S&top", lambda: self.stop_run(self.run_page.run_id))

        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "&About SSL Studio", self._about)

    def _action(self, menu, text, slot, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _update_actions(self) -> None:
        has_project = self.project is not None
        for a in (self.add_folder_action, self.add_sample_action, self.start_action):
            a.setEnabled(has_project)
        self.run_page.set_live(self.run_page.run_id in self.jobs)
        self.pause_action.setEnabled(self.run_page.pause_button.isEnabled())
        self.resume_action.setEnabled(self.run_page.resume_button.isEnabled())
        self.stop_action.setEnabled(self.run_page.stop_button.isEnabled())

    def _about(self) -> None:
        from studio import __version__

        QMessageBox.about(self, "About SSL Studio", f"<b>SSL Studio {__version__}</b><br>"
                          "Self-supervised pre-training for image encoders, on your own images.")

    def _show_device(self) -> None:
        try:
            from studio.engine.device import available_devices

            best = available_devices()[0]
        except Exception:  # noqa: BLE001
            best = "cpu"
        self.device_label.setText(f"Best device: {best.upper() if best != 'cpu' else 'CPU'}  ")

    # -- projects ---------------------------------------------------------------------------
    def open_project(self, path) -> bool:
        """Open (or switch to) a project folder; errors reach the caller as ProjectError."""
        from studio.store import Project

        if self.jobs and not self._confirm_stop_jobs():
            return False
        project = Project.open(path)
        self._close_project()
        self.project = project
        settings().setValue("last_project", str(project.root))
        self.setWindowTitle(f"{project.root.name} — SSL Studio")
        for title, widget in self._pages.items():
            if title not in self._factories and hasattr(widget, "set_project"):
                widget.set_project(project)
        self._rebuild_factory_pages()
        self.panel.set_project(project)
        self.new_run_page.set_datasets(self.panel.dataset_names())
        self.stack.setCurrentWidget(self.splitter)
        runs = project.runs()
        if runs:
            self.panel.select_run(runs[-1].id)
        elif self.panel.dataset_names():
            self.panel.select_dataset(self.panel.dataset_names()[0])
        self._update_actions()
        return True

    def create_project(self, path) -> bool:
        from studio.store import Project

        Project.create(path).close()
        return self.open_project(path)

    def open_sample_project(self) -> bool:
        from studio.services.datasets import ensure_sample_project

        path = sample_project_path()
        ensure_sample_project(path).close()
        return self.open_project(path)

    def _close_project(self) -> None:
        if self.project is not None:
            self.project.close()
            self.project = None

    def new_project_dialog(self) -> None:
        path = QFileDialog.getSaveFileName(self, "New project folder", str(Path.home() / "SSL project"))[0]
        if path:
            self._try(lambda: self.create_project(path))

    def open_project_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a project folder", str(Path.home()))
        if path:
            self._try(lambda: self.open_project(path))

    def _try(self, fn) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - a typed error whose text the user can act on
            QMessageBox.warning(self, "SSL Studio", str(exc))

    # -- datasets ---------------------------------------------------------------------------
    def add_dataset_source(self, spec: str, name: str | None = None) -> None:
        """Add a dataset (folder | 'sample' | torchvision:NAME) on a worker; it appears when done."""
        from studio.services.datasets import add_dataset
        from studio.store import Project

        if self.project is None:
            return
        root = self.project.root
        self.statusBar().showMessage(f"Reading {spec}…")

        def work():
            with Project.open(root) as p:
                return add_dataset(p, spec, name=name)

        start_task(work, self._on_dataset_added, self._on_dataset_failed)

    def add_sample(self) -> None:
        self.add_dataset_source("sample")

    def add_dataset_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Add a folder of images", str(Path.home()))
        if path:
            self.add_dataset_source(path)

    def _on_dataset_added(self, record) -> None:
        skipped = f", {record.skipped} skipped" if record.skipped else ""
        self.statusBar().showMessage(f"Added dataset {record.name}: {record.images:,} images{skipped}.", 8000)
        self.panel.refresh()
        self.new_run_page.set_datasets(self.panel.dataset_names())
        self.panel.select_dataset(record.name)

    def _on_dataset_failed(self, error: str) -> None:
        self.statusBar().showMessage(f"Could not add the dataset: {error}", 15000)
        if self.isVisible():
            QMessageBox.warning(self, "Add dataset", error)

    def _on_dataset_selected(self, record) -> None:
        self.dataset_page.show_dataset(record)
        self.show_page("Dataset")

    def show_new_run(self, dataset: str | None = None) -> None:
        self.new_run_page.set_datasets(self.panel.dataset_names())
        if dataset:
            self.new_run_page.select_dataset(dataset)
        self.show_page("New run")

    # -- runs -------------------------------------------------------------------------------
    def _on_run_selected(self, run_id: int) -> None:
        self.run_page.show_run(run_id, live=run_id in self.jobs)
        self.show_page("Run")
        self._update_actions()

    def _start_from_menu(self) -> None:
        if self.current_page_title() == "New run":
            self.new_run_page.start_button.click()
        else:
            self.show_new_run(self.panel.selected_dataset_name())

    def start_run(self, dataset: str, config) -> int | None:
        """Create the run in the store and train it on a worker thread; returns its id."""
        from studio.services.training import create_run

        if self.project is None:
            return None
        try:
            run = create_run(self.project, dataset, config)
        except Exception as exc:  # noqa: BLE001 - shown under the form
            self.new_run_page.error_label.setText(str(exc))
            return None
        self._start_job(run.id)
        self.statusBar().showMessage(f"Run {run.id} started: {config.method} on {config.backbone}.", 5000)
        return run.id

    def _start_job(self, run_id: int, resume: bool = False) -> None:
        job = TrainingJob(self.project.root, run_id, resume=resume, parent=self)
        job.progress.connect(self._on_job_progress)
        job.status.connect(self._on_job_status)
        job.finished.connect(self._on_job_finished)
        self.jobs[run_id] = job
        job.start()
        self.panel.select_run(run_id)
        self.run_page.show_run(run_id, live=True)
        self.show_page("Run")
        self._update_actions()

    def pause_run(self, run_id: int | None) -> None:
        if run_id in self.jobs:
            self.jobs[run_id].control.pause()

    def resume_run(self, run_id: int | None) -> None:
        if run_id is None or self.project is None:
            return
        if run_id in self.jobs:
            self.jobs[run_id].control.resume()
            return
        run = self.project.run(run_id)
        if run.status not in ("stopped", "interrupted"):
            return
        if self.project.latest_checkpoint(run_id) is None:
            self.statusBar().showMessage(f"Run {run_id} has no checkpoint on disk to resume from; start a new run.", 10000)
            return
        self._start_job(run_id, resume=True)

    def stop_run(self, run_id: int | None) -> None:
        if run_id in self.jobs:
            self.jobs[run_id].control.stop()
            self.statusBar().showMessage(f"Stopping run {run_id} (saving a checkpoint)…")

    def _on_job_progress(self, run_id: int, step: int, total: int, ips: float) -> None:
        self.run_page.on_progress(run_id, step, total, ips)

    def _on_job_status(self, run_id: int, status: str, reason: str) -> None:
        self.panel.refresh()
        if run_id == self.run_page.run_id:
            self.run_page.refresh()
        self._update_actions()

    def _on_job_finished(self, run_id: int, result: dict) -> None:
        job = self.jobs.pop(run_id, None)
        if job is not None:
            job.deleteLater()
        status, reason = result.get("status"), result.get("reason")
        text = f"Run {run_id} {status}" + (f": {reason}" if reason and status != "stopped" else "") + "."
        self.statusBar().showMessage(text, 15000)
        self.panel.refresh()
        if run_id == self.run_page.run_id:
            self.run_page.set_live(False)
            self.run_page.refresh()
        self._update_actions()

    def _confirm_stop_jobs(self) -> bool:
        answer = QMessageBox.question(self, "SSL Studio", "A run is training. Stop it (its checkpoint is kept) and go on?")
        if answer != QMessageBox.StandardButton.Yes:
            return False
        self.stop_all_jobs()
        return True

    def stop_all_jobs(self, timeout_ms: int = 120_000) -> None:
        """Stop every run this window trains and join their threads: each ends 'stopped' with a checkpoint."""
        for job in list(self.jobs.values()):
            job.control.stop()
        for run_id, job in list(self.jobs.items()):
            job.thread.wait(timeout_ms)
            self.jobs.pop(run_id, None)

    # -- refreshing -------------------------------------------------------------------------
    def refresh_now(self) -> None:
        """Read the store once, now (the timers do this on their own; screenshots need it at once)."""
        self.panel.refresh()
        self.run_page.refresh()
        self._update_actions()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self.jobs:
            self.statusBar().showMessage("Stopping the training run…")
            self.stop_all_jobs()
        for t in (self.panel.timer, self.run_page.timer, self._actions_timer):
            t.stop()
        wait_for_tasks()
        self._close_project()
        super().closeEvent(event)


def _placeholder(title: str) -> QWidget:
    label = QLabel(f"Open a project to use {title}.")
    label.setObjectName("Muted")
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    return label
