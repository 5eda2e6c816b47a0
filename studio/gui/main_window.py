"""The main window: project side panel on the left, pages in tabs on the right, menus on top.

Training runs on TrainingJobs (a worker on its own QThread each); every view reads the store.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QApplication, QFileDialog, QLabel, QMainWindow, QMessageBox, QProgressBar, QSplitter, QStackedWidget,
    QScrollArea, QSystemTrayIcon, QTabWidget, QWidget,
)

from studio.gui.compare import CompareRunsPage
from studio.gui.dataset_page import DatasetPage
from studio.gui.explorer import ExplorerPage
from studio.gui.new_run_page import NewRunPage
from studio.gui.project_panel import ProjectPanel
from studio.gui.run_details import RunDetailsPage
from studio.gui.run_page import RunPage
from studio.gui.style import THEMES, app_icon, apply_style
from studio.gui.welcome_page import WelcomePage
from studio.gui.workers import DistributedTrainingJob, TrainingJob, start_task, wait_for_tasks

SETTINGS_ORG = "ssl-studio"
SETTINGS_APP = "SSL Studio"
MAX_RECENT = 8
POLL_TURN_MS = 15  # between two store reads that a status change asks for
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


def device_summary() -> str:
    """The device training uses by default, for the status bar: GPU name and memory, or the CPU."""
    import os

    try:
        from studio.engine.device import resolve_device

        info = resolve_device("auto")
    except Exception:  # noqa: BLE001 - a broken driver still leaves the CPU
        info = None
    if info is None or info.type == "cpu":
        return f"CPU ({os.cpu_count() or 1} cores)"
    if info.total_memory:
        return f"{info.name} ({info.total_memory / 2**30:.1f} GiB)"
    return info.name


def versions() -> dict[str, str]:
    """What the About dialog lists: the studio and the libraries it stands on."""
    import platform

    import PySide6
    from PySide6.QtCore import qVersion

    from studio import __version__

    out = {"SSL Studio": __version__}
    try:
        import torch

        out["PyTorch"] = torch.__version__
        out["CUDA"] = (torch.version.cuda or "not built with CUDA") + (
            "" if torch.cuda.is_available() or not torch.version.cuda else " (no GPU found)")
        try:
            import torchvision

            out["torchvision"] = torchvision.__version__
        except ImportError:
            pass
    except ImportError:
        out["PyTorch"] = "not installed"
    out["Qt"] = qVersion()
    out["PySide6"] = PySide6.__version__
    for name in ("lightly", "pyqtgraph"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001
            pass
    out["Python"] = platform.python_version()
    return out


class _DatasetProgress(QObject):
    """Lives on the GUI thread; a worker's emit reaches it queued."""

    progress = Signal(int, int)


class MainWindow(QMainWindow):
    def __init__(self, parent: QWidget | None = None, poll_ms: int = 1000, curve_ms: int = 400):
        super().__init__(parent)
        self.setWindowTitle("SSL Studio")
        self.resize(1280, 800)
        self.project = None
        self.jobs: dict[int, TrainingJob] = {}
        self._closing = False  # set by closeEvent: staggered poll timers must not start after it
        self._pages_warmed = False  # the Run page is laid out and painted once, when the window first shows
        self._pages: dict[str, QWidget] = {}
        self._factories: dict[str, object] = {}
        self._holders: dict[str, QWidget] = {}

        self.welcome = WelcomePage()
        self.panel = ProjectPanel(interval_ms=poll_ms)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.dataset_page = DatasetPage()
        self.new_run_page = NewRunPage()
        self.run_page = RunPage(interval_ms=curve_ms)
        self.run_details = RunDetailsPage()
        self.add_page("Dataset", self.dataset_page)
        self.add_page("New run", self.new_run_page)
        self.add_page("Run", self.run_page)
        self.add_page("Run details", self.run_details)
        self.add_page("Explorer", factory=lambda p: ExplorerPage(p))
        self.add_page("Compare", factory=lambda p: CompareRunsPage(p))
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self.export_dialog = None
        self.about_box = None
        self.last_notification: tuple[str, str] | None = None
        self._tray: QSystemTrayIcon | None = None
        self._dataset_progress = _DatasetProgress(self)
        self._dataset_progress.progress.connect(self._on_dataset_progress)
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
        self.device_label = QLabel()
        self.device_label.setObjectName("Muted")
        self.statusBar().addPermanentWidget(self.device_label)
        self._show_device()

        self._build_menus()
        self.welcome.sample_requested.connect(lambda: self._try(self.try_sample))
        self.welcome.new_requested.connect(self.new_project_dialog)
        self.welcome.open_requested.connect(self.open_project_dialog)
        self.welcome.recent_requested.connect(lambda path: self._try(lambda: self.open_project(path)))
        self.welcome.set_recent(recent_projects())
        self.panel.dataset_selected.connect(self._on_dataset_selected)
        self.panel.run_selected.connect(self._on_run_selected)
        self.panel.runs_changed.connect(self._update_actions)
        self.dataset_page.new_run_requested.connect(self.show_new_run)
        self.new_run_page.start_requested.connect(self.start_run)
        self.new_run_page.distributed_start_requested.connect(self.start_distributed_run)
        self.run_page.pause_requested.connect(self.pause_run)
        self.run_page.resume_requested.connect(self.resume_run)
        self.run_page.stop_requested.connect(self.stop_run)
        self.run_page.export_requested.connect(lambda run_id: self.open_export_dialog(run_id))
        self.run_details.duplicate_requested.connect(self.duplicate_run)
        self.run_details.delete_requested.connect(self.delete_run)
        self.run_details.export_requested.connect(self.open_export_dialog)
        self.run_details.resume_requested.connect(self.resume_run_from)
        self.panel.runs_changed.connect(self._on_runs_changed)

        # Buttons and menu items follow the shown run's status, whoever changes it.
        self._actions_timer = QTimer(self)
        self._actions_timer.setInterval(poll_ms)
        self._actions_timer.timeout.connect(self._update_actions)
        self._actions_timer.start()
        self._update_actions()
        self._stagger_polls(curve_ms)
        hints = QGuiApplication.styleHints()
        if hasattr(hints, "colorSchemeChanged"):
            hints.colorSchemeChanged.connect(self._on_system_scheme_changed)

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
            # A plugged-in page may be wider than the window allows: it scrolls rather than
            # forcing the window (and its screenshots) wider.
            holder = QScrollArea()
            holder.setWidgetResizable(True)
            holder.setFrameShape(QScrollArea.Shape.NoFrame)
            holder.setWidget(widget)
            self._holders[title] = holder
        elif self.project is not None and hasattr(widget, "set_project"):
            widget.set_project(self.project)
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
                old.deleteLater()

    def page(self, title: str) -> QWidget:
        return self._pages[title]

    def show_page(self, title: str) -> None:
        self.tabs.setCurrentWidget(self._holders.get(title, self._pages[title]))

    def current_page_title(self) -> str:
        return self.tabs.tabText(self.tabs.currentIndex())

    # -- menus ------------------------------------------------------------------------------
    def _build_menus(self) -> None:
        SK = QKeySequence.StandardKey
        file_menu = self.menuBar().addMenu("&File")
        self.new_project_action = self._action(file_menu, "&New project…", self.new_project_dialog, SK.New)
        self.open_project_action = self._action(file_menu, "&Open project…", self.open_project_dialog, SK.Open)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._fill_recent_menu()
        self.sample_project_action = self._action(file_menu, "Open the &sample project", self.open_sample_project)
        file_menu.addSeparator()
        self.add_folder_action = self._action(file_menu, "Add dataset &folder…", self.add_dataset_folder_dialog, "Ctrl+Shift+O")
        self.add_sample_action = self._action(file_menu, "Add s&ample", self.add_sample)
        file_menu.addSeparator()
        self.close_project_action = self._action(file_menu, "&Close project", self.close_project, SK.Close)
        self.quit_action = self._action(file_menu, "&Quit", self.close, SK.Quit)
        self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)

        edit_menu = self.menuBar().addMenu("&Edit")
        self.duplicate_action = self._action(edit_menu, "&Duplicate run…", lambda: self.duplicate_run(self.run_page.run_id), "Ctrl+D")
        self.delete_action = self._action(edit_menu, "De&lete run…", lambda: self.delete_run(self.run_page.run_id), SK.Delete)
        # Delete is the text fields' key too: only when the runs list has the focus.
        self.delete_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.panel.runs_list.addAction(self.delete_action)
        edit_menu.addSeparator()
        self.refresh_action = self._action(edit_menu, "&Refresh", self.refresh_now, SK.Refresh)

        view_menu = self.menuBar().addMenu("&View")
        self.page_actions = []
        for i, title in enumerate(self._pages):
            shortcut = PAGE_SHORTCUTS[i] if i < len(PAGE_SHORTCUTS) else None
            self.page_actions.append(self._action(view_menu, title, lambda _=False, t=title: self.show_page(t), shortcut))
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
        self.fullscreen_action = self._action(view_menu, "&Full screen", self._toggle_fullscreen, SK.FullScreen)
        self.fullscreen_action.setCheckable(True)

        run_menu = self.menuBar().addMenu("&Run")
        self.start_action = self._action(run_menu, "&Start", self._start_from_menu, "Ctrl+Return")
        self.estimate_action = self._action(run_menu, "Estimate &cost", self._estimate_from_menu, "Ctrl+Shift+E")
        self.pause_action = self._action(run_menu, "&Pause", lambda: self.pause_run(self.run_page.run_id))
        self.resume_action = self._action(run_menu, "&Resume", lambda: self.resume_run(self.run_page.run_id))
        self.stop_action = self._action(run_menu, "S&top", lambda: self.stop_run(self.run_page.run_id), "Ctrl+.")
        run_menu.addSeparator()
        self.export_action = self._action(run_menu, "&Export…", lambda: self.open_export_dialog(self.run_page.run_id), "Ctrl+E")
        run_menu.addAction(self.duplicate_action)
        run_menu.addAction(self.delete_action)

        help_menu = self.menuBar().addMenu("&Help")
        self.guide_action = self._action(help_menu, "&User's guide", self._open_guide, SK.HelpContents)
        self.about_action = self._action(help_menu, "&About SSL Studio", self.show_about)
        self.about_action.setMenuRole(QAction.MenuRole.AboutRole)
        self._action(help_menu, "About &Qt", QApplication.aboutQt)

    def _action(self, menu, text, slot, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = recent_projects()
        for path in recent:
            a = self.recent_menu.addAction(Path(path).name)
            a.setToolTip(path)
            a.setStatusTip(path)
            a.triggered.connect(lambda _=False, p=path: self._try(lambda: self.open_project(p)))
        if recent:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear the list", self._clear_recent)
        self.recent_menu.setEnabled(bool(recent))

    def _clear_recent(self) -> None:
        settings().setValue("recent_projects", [])
        self._fill_recent_menu()
        self.welcome.set_recent([])

    def _update_actions(self) -> None:
        has_project = self.project is not None
        for a in (self.add_folder_action, self.add_sample_action, self.start_action, self.close_project_action,
                  self.estimate_action, *self.page_actions):
            a.setEnabled(has_project)
        run_id = self.run_page.run_id
        run = self.run_page.run
        has_run = has_project and run_id is not None and run is not None
        busy = has_run and (run_id in self.jobs or run.status in ("queued", "running", "paused"))
        self.export_action.setEnabled(has_run)
        self.duplicate_action.setEnabled(has_run)
        self.delete_action.setEnabled(has_run and not busy)
        self.run_page.export_button.setEnabled(has_run and bool(self.project.checkpoints(run_id)))
        job = self.jobs.get(run_id)
        self.run_page.set_live(job is not None, job is None or job.can_pause)
        self.pause_action.setEnabled(self.run_page.pause_button.isEnabled())
        self.resume_action.setEnabled(self.run_page.resume_button.isEnabled())
        self.stop_action.setEnabled(self.run_page.stop_button.isEnabled())

    def _on_tab_changed(self, index: int) -> None:
        page = self._pages.get(self.tabs.tabText(index))
        if self.project is not None and page is not None and hasattr(page, "refresh"):
            page.refresh()

    def _on_runs_changed(self) -> None:
        self.run_details.refresh()

    # -- themes -----------------------------------------------------------------------------
    def theme(self) -> str:
        name = settings().value("theme", "system", type=str)
        return name if name in THEMES else "system"

    def set_theme(self, name: str) -> bool:
        """Apply and remember 'system' | 'light' | 'dark'; returns True when the result is dark."""
        settings().setValue("theme", name)
        if name in self.theme_actions:
            self.theme_actions[name].setChecked(True)
        app = QApplication.instance()
        dark = apply_style(app, name)
        self.welcome.apply_theme()
        return dark

    def _on_system_scheme_changed(self, *_args) -> None:
        if self.theme() == "system":
            self.set_theme("system")

    def _toggle_fullscreen(self) -> None:
        self.showNormal() if self.isFullScreen() else self.showFullScreen()

    # -- about, device, notifications -------------------------------------------------------
    def about_text(self) -> str:
        rows = "".join(f"<tr><td>{k}</td><td>&nbsp;&nbsp;<b>{v}</b></td></tr>" for k, v in versions().items())
        return (f"<h3>SSL Studio</h3><p>Train self-supervised image encoders on your own images, watch them "
                f"learn, export them.</p><table>{rows}</table>"
                f"<p>Training device: {device_summary()}</p><p>MIT licence. The built-in sample is scikit-learn's "
                f"handwritten digits (UCI, CC BY 4.0).</p>")

    def show_about(self) -> QMessageBox:
        box = QMessageBox(self)
        box.setWindowTitle("About SSL Studio")
        box.setIconPixmap(app_icon().pixmap(64, 64))
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setText(self.about_text())
        box.setStandardButtons(QMessageBox.StandardButton.Close)
        self.about_box = box
        box.open()  # not exec(): the event loop keeps drawing running curves
        return box

    def _show_device(self) -> None:
        text = device_summary()
        self.device_label.setText(f"Device: {text}  ")
        self.device_label.setToolTip("Training uses this device when the run's device is 'auto'.")

    def notify(self, title: str, message: str, failed: bool = False) -> None:
        """A desktop notification where the system has a tray, and the status bar always."""
        self.last_notification = (title, message)
        self.statusBar().showMessage(f"{title}: {message}", 15000)
        if not QSystemTrayIcon.isSystemTrayAvailable():
            return
        if self._tray is None:
            self._tray = QSystemTrayIcon(app_icon(), self)
            self._tray.setToolTip("SSL Studio")
            self._tray.messageClicked.connect(self._raise)
            self._tray.show()
        icon = QSystemTrayIcon.MessageIcon.Warning if failed else QSystemTrayIcon.MessageIcon.Information
        self._tray.showMessage(title, message, icon, 10_000)

    def _raise(self) -> None:
        self.showNormal()
        self.raise_()
        self.activateWindow()

    def _open_guide(self) -> None:
        from PySide6.QtGui import QDesktopServices
        from PySide6.QtCore import QUrl

        readme = Path(__file__).resolve().parents[2] / "README.md"
        if readme.is_file():
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(readme)))
        else:
            self.statusBar().showMessage("The user's guide is the README of the SSL Studio sources.", 8000)

    # -- window state -------------------------------------------------------------------------
    def restore_layout(self) -> bool:
        """Geometry, dock/toolbar state and splitters as the user left them; False if none saved."""
        s = settings()
        geometry = s.value("window/geometry")
        ok = bool(geometry) and self.restoreGeometry(geometry)
        state = s.value("window/state")
        if state:
            self.restoreState(state)
        for key, splitter in (("window/splitter", self.splitter), ("window/details_splitter", self.run_details.splitter)):
            value = s.value(key)
            if value:
                splitter.restoreState(value)
        return ok

    def save_layout(self) -> None:
        s = settings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("window/splitter", self.splitter.saveState())
        s.setValue("window/details_splitter", self.run_details.splitter.saveState())

    # -- drag and drop: a folder becomes a dataset ------------------------------------------
    @staticmethod
    def _dropped_folders(mime) -> list[Path]:
        if not mime.hasUrls():
            return []
        return [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile() and Path(u.toLocalFile()).is_dir()]

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self._dropped_folders(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt override
        folders = self._dropped_folders(event.mimeData())
        if not folders:
            event.ignore()
            return
        event.acceptProposedAction()
        for folder in folders:
            self.handle_dropped_folder(folder)

    def handle_dropped_folder(self, folder: Path) -> None:
        """A project folder is opened; any other folder is added to the open project as a dataset."""
        if (folder / "project.db").is_file():
            self._try(lambda: self.open_project(folder))
        elif self.project is None:
            self.statusBar().showMessage(f"Open or create a project first, then drop {folder.name} on the window "
                                         "to add it as a dataset.", 10000)
        else:
            self.add_dataset_source(str(folder))

    # -- projects ---------------------------------------------------------------------------
    def open_project(self, path) -> bool:
        """Open (or switch to) a project folder; errors reach the caller as ProjectError."""
        from studio.store import Project

        if self.jobs and not self._confirm_stop_jobs():
            return False
        project = Project.open(path)
        self._close_project()
        self.project = project
        self.welcome.set_recent(remember_project(project.root))
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

    def try_sample(self) -> bool:
        """"Try the sample": the sample project, and the New run form ready with SimCLR on it."""
        if not self.open_sample_project():
            return False
        self.show_new_run("sample")
        page = self.new_run_page
        page.method_combo.setCurrentIndex(max(0, page.method_combo.findData("simclr")))
        page.backbone_combo.setCurrentIndex(max(0, page.backbone_combo.findData("resnet18")))
        # The digits are 8 px: 32 px views and 20 epochs learn something in minutes on a CPU.
        page.image_size_spin.setValue(32)
        page.length_unit.setCurrentIndex(page.length_unit.findData("epochs"))
        page.length_spin.setValue(20)
        page.batch_spin.setValue(128)
        page.validate()
        return True

    def _close_project(self) -> None:
        if self.export_dialog is not None:
            self.export_dialog.close()
            self.export_dialog = None
        if self.project is not None:
            self.project.close()
            self.project = None

    def close_project(self) -> bool:
        """Back to the welcome page (stopping this window's runs, if the user agrees)."""
        if self.project is None:
            return True
        if self.jobs and not self._confirm_stop_jobs():
            return False
        self._close_project()
        for title, widget in self._pages.items():
            if title not in self._factories and hasattr(widget, "set_project"):
                widget.set_project(None)
        self._rebuild_factory_pages()
        self.panel.set_project(None)
        self.setWindowTitle("SSL Studio")
        self.welcome.set_recent(recent_projects())
        self.stack.setCurrentWidget(self.welcome)
        self._update_actions()
        return True

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
        self._adding_datasets += 1
        self.dataset_progress_bar.setRange(0, 0)  # busy until the first count arrives
        self.dataset_progress_bar.setFormat("reading images %p%")
        self.dataset_progress_bar.show()
        progress = self._dataset_progress.progress

        def work():
            with Project.open(root) as p:
                return add_dataset(p, spec, name=name, progress=lambda done, total: progress.emit(int(done), int(total)))

        start_task(work, self._on_dataset_added, self._on_dataset_failed)

    def _on_dataset_progress(self, done: int, total: int) -> None:
        if total > 0:
            self.dataset_progress_bar.setRange(0, total)
            self.dataset_progress_bar.setValue(done)

    def _dataset_task_ended(self) -> None:
        self._adding_datasets = max(0, self._adding_datasets - 1)
        if not self._adding_datasets:
            self.dataset_progress_bar.hide()

    def add_sample(self) -> None:
        self.add_dataset_source("sample")

    def add_dataset_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Add a folder of images", str(Path.home()))
        if path:
            self.add_dataset_source(path)

    def _on_dataset_added(self, record) -> None:
        self._dataset_task_ended()
        if self.project is None:
            return
        skipped = f", {record.skipped} skipped" if record.skipped else ""
        self.statusBar().showMessage(f"Added dataset {record.name}: {record.images:,} images{skipped}.", 8000)
        self.panel.refresh()
        self.new_run_page.set_datasets(self.panel.dataset_names())
        self.panel.select_dataset(record.name)

    def _on_dataset_failed(self, error: str) -> None:
        self._dataset_task_ended()
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
        self.run_details.show_run(run_id)
        if self.current_page_title() != "Run details":
            self.show_page("Run")
        self._update_actions()

    def _estimate_from_menu(self) -> None:
        self.show_page("New run")
        self.new_run_page.estimate()

    def open_export_dialog(self, run_id: int | None = None, checkpoint_step: int | None = None):
        """Run ▸ Export…: the export dialog for a run (the shown one by default), at a checkpoint."""
        from studio.gui.export_dialog import ExportDialog

        run_id = run_id if run_id is not None else self.run_page.run_id
        if self.project is None or run_id is None:
            self.statusBar().showMessage("Select a run to export first.", 6000)
            return None
        if self.export_dialog is not None:
            self.export_dialog.close()
        dialog = ExportDialog(self.project, run_id, self)
        if checkpoint_step is not None:
            i = dialog.checkpoint_combo.findData(checkpoint_step)
            if i >= 0:
                dialog.checkpoint_combo.setCurrentIndex(i)
        dialog.exported.connect(lambda info: self.statusBar().showMessage(
            f"Run {run_id} exported to {info.get('path', '')}.", 15000))
        dialog.export_failed.connect(lambda msg: self.statusBar().showMessage(f"Export failed: {msg}", 15000))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
        self.export_dialog = dialog
        dialog.open()
        return dialog

    def duplicate_run(self, run_id: int | None) -> None:
        """The New run form filled with a run's config and dataset: change one thing and start."""
        if self.project is None or run_id is None:
            return
        run = self.project.run(run_id)
        self.new_run_page.set_datasets(self.panel.dataset_names())
        self.new_run_page.set_config(run.config, dataset=run.dataset)
        self._duplicate_of = run_id
        self.show_page("New run")
        self.statusBar().showMessage(f"The form holds run {run_id}'s config: change what you want to try, then Start.", 10000)

    def delete_run(self, run_id: int | None, confirm: bool = True) -> bool:
        """Delete a run with its metrics and files, after one question."""
        if self.project is None or run_id is None:
            return False
        run = self.project.run(run_id)
        if run_id in self.jobs or run.status in ("queued", "running", "paused"):
            self.statusBar().showMessage(f"Run {run_id} is {run.status}: stop it before deleting it.", 8000)
            return False
        if confirm:
            answer = QMessageBox.question(
                self, "Delete run", f"Delete run {run_id} ({run.method} on {run.backbone}, {run.steps:,} steps) "
                f"with its metrics, checkpoints and exports? This cannot be undone.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Cancel)
            if answer != QMessageBox.StandardButton.Yes:
                return False
        self.project.delete_run(run_id)
        if self.run_page.run_id == run_id:
            self.run_page.show_run(None)
            self.run_details.show_run(None)
        self.panel.refresh()
        runs = self.project.runs()
        if runs:
            self.panel.select_run(runs[-1].id)
        self.statusBar().showMessage(f"Run {run_id} deleted.", 8000)
        self._update_actions()
        return True

    def resume_run_from(self, run_id: int, step: int) -> None:
        """Continue a run from one of its checkpoints (the metrics after it are replaced)."""
        if self.project is None or run_id in self.jobs:
            return
        run = self.project.run(run_id)
        if run.status in ("queued", "running", "paused"):
            self.statusBar().showMessage(f"Run {run_id} is {run.status} in another process.", 8000)
            return
        if step >= (run.total_steps or 0):
            self.statusBar().showMessage(f"The checkpoint at step {step:,} is the end of the run: nothing to resume. "
                                         "Duplicate the run to train longer.", 10000)
            return
        self._start_job(run_id, resume=True, checkpoint_step=step)

    def _start_from_menu(self) -> None:
        if self.current_page_title() == "New run":
            self.new_run_page.start_button.click()
        else:
            self.show_new_run(self.panel.selected_dataset_name())

    def start_run(self, dataset: str, config) -> int | None:
        """Create the run in the store and train it on a worker thread; returns its id."""
        run = self._create_run(dataset, config)
        if run is None:
            return None
        self._start_job(run.id)
        self.statusBar().showMessage(f"Run {run.id} started: {config.method} on {config.backbone}.", 5000)
        return run.id

    def start_distributed_run(self, dataset: str, config, processes: int) -> int | None:
        """Create the run in the store and train it with `processes` processes (one per GPU):
        torchrun in a child process, watched through the store; returns the run's id."""
        run = self._create_run(dataset, config)
        if run is None:
            return None
        job = DistributedTrainingJob(self.project, run.id, processes, parent=self)
        self._track_job(job)
        self.statusBar().showMessage(f"Run {run.id} starting on {processes} GPUs: {config.method} on {config.backbone}.", 8000)
        return run.id

    def _create_run(self, dataset: str, config):
        from studio.services.training import create_run

        if self.project is None:
            return None
        parent_id = getattr(self, "_duplicate_of", None)
        try:
            run = create_run(self.project, dataset, config, parent_run_id=parent_id)
        except Exception as exc:  # noqa: BLE001 - shown under the form
            self.new_run_page.error_label.setText(str(exc))
            return None
        self._duplicate_of = None
        return run

    def _start_job(self, run_id: int, resume: bool = False, checkpoint_step: int | None = None) -> None:
        self._track_job(TrainingJob(self.project.root, run_id, resume=resume, parent=self, checkpoint_step=checkpoint_step))

    def _track_job(self, job) -> None:
        run_id = job.run_id
        job.progress.connect(self._on_job_progress)
        job.status.connect(self._on_job_status)
        job.finished.connect(self._on_job_finished)
        self.jobs[run_id] = job
        job.start()
        self.panel.select_run(run_id)
        self.run_page.show_run(run_id, live=True)
        self.run_details.show_run(run_id)
        self.show_page("Run")
        self._update_actions()

    def pause_run(self, run_id: int | None) -> None:
        job = self.jobs.get(run_id)
        if job is None:
            return
        if not job.can_pause:
            self.statusBar().showMessage(f"Run {run_id} trains on several processes, which cannot pause together: "
                                         "Stop saves a checkpoint, and Resume continues from it.", 10000)
            return
        job.pause()

    def resume_run(self, run_id: int | None) -> None:
        if run_id is None or self.project is None:
            return
        if run_id in self.jobs:
            self.jobs[run_id].resume()
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
            self.jobs[run_id].stop()
            self.statusBar().showMessage(f"Stopping run {run_id} (saving a checkpoint)…")

    def _on_job_progress(self, run_id: int, step: int, total: int, ips: float) -> None:
        self.run_page.on_progress(run_id, step, total, ips)

    def _on_job_status(self, run_id: int, status: str, reason: str) -> None:
        # The shown run first: it is what the user watches.
        calls = [self.run_page.refresh] if run_id == self.run_page.run_id else []
        self._one_per_turn(calls + [self.panel.refresh, self._update_actions])

    def _one_per_turn(self, calls: list) -> None:
        """Call the first of `calls` now and each next one on a later event-loop turn: each reads
        the store, and while a run trains several reads in one turn make one long stall."""
        if not calls or self._closing:
            return
        calls[0]()
        if calls[1:]:
            QTimer.singleShot(POLL_TURN_MS, self, lambda: self._one_per_turn(calls[1:]))

    def _on_job_finished(self, run_id: int, result: dict) -> None:
        job = self.jobs.pop(run_id, None)
        if job is not None:
            job.deleteLater()
        status, reason = result.get("status"), result.get("reason")
        # A reason may end in a child process's last output lines: the Run page shows them all.
        reason = reason.splitlines()[0].rstrip(":;") if reason else reason
        text = f"Run {run_id} {status}" + (f": {reason}" if reason and status != "stopped" else "") + "."
        self.statusBar().showMessage(text, 15000)
        if status == "finished":
            loss = result.get("final_loss")
            self.notify(f"Run {run_id} finished", f"{result.get('steps', 0):,} steps"
                        + (f", final loss {loss:.4g}" if isinstance(loss, float) else "") + ".")
        elif status in ("failed", "diverged"):
            self.notify(f"Run {run_id} {status}", reason or "see the run's log.", failed=True)
        calls = []
        if run_id == self.run_page.run_id:
            self.run_page.set_live(False)
            calls = [self.run_page.refresh, self.run_details.refresh]
        self._one_per_turn(calls + [self.panel.refresh, self._update_actions])

    def _confirm_stop_jobs(self) -> bool:
        answer = QMessageBox.question(self, "SSL Studio", "A run is training. Stop it (its checkpoint is kept) and go on?")
        if answer != QMessageBox.StandardButton.Yes:
            return False
        self.stop_all_jobs()
        return True

    def stop_all_jobs(self, timeout_ms: int = 120_000) -> None:
        """Stop every run this window trains and join their threads: each ends 'stopped' with a checkpoint."""
        for job in list(self.jobs.values()):
            job.stop()
        for run_id, job in list(self.jobs.items()):
            job.wait(timeout_ms)
            self.jobs.pop(run_id, None)

    # -- refreshing -------------------------------------------------------------------------
    def refresh_now(self) -> None:
        """Read the store once, now (the timers do this on their own; screenshots need it at once)."""
        self.panel.refresh()
        self.run_page.refresh()
        self.run_details.refresh()
        self._update_actions()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if not self._pages_warmed:
            self._pages_warmed = True
            QTimer.singleShot(0, self._warm_run_page)

    def _warm_run_page(self) -> None:
        """Lay out and paint the Run page once, off screen, while nothing trains: its plots' first
        layout and paint (pyqtgraph builds its axes then) would otherwise fall on the moment Start
        switches to it, while the new run's thread builds its model."""
        holder = self.tabs.currentWidget()
        if holder is None or self.tabs.indexOf(self.run_page) < 0 or holder is self.run_page:
            return
        self.run_page.warm_up(holder.size())

    def _stagger_polls(self, curve_ms: int) -> None:
        """The Run page, the side panel and the actions each poll the store on a timer. Started
        together they fire in the same event-loop pass, and their reads add up to one long
        stall while a run trains; started a third of the curves' interval apart, on precise
        timers (coarse ones may be aligned by Qt), each pass does one of them."""
        timers = (self.run_page.timer, self.panel.timer, self._actions_timer)
        for phase, timer in enumerate(timers):
            timer.setTimerType(Qt.TimerType.PreciseTimer)
            if phase:
                timer.stop()
                QTimer.singleShot(phase * curve_ms // len(timers), timer, lambda t=timer: self._closing or t.start())

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self._closing = True
        self.save_layout()
        if self.jobs:
            self.statusBar().showMessage("Stopping the training run…")
            self.stop_all_jobs()
        for t in (self.panel.timer, self.run_page.timer, self._actions_timer):
            t.stop()
        wait_for_tasks()
        self._close_project()
        if self._tray is not None:
            self._tray.hide()
        super().closeEvent(event)


def _placeholder(title: str) -> QWidget:
    label = QLabel(f"Open a project to use {title}.")
    label.setObjectName("Muted")
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    return label
