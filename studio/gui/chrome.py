"""The main window's desktop conventions: themes, About, notifications, the guide, the remembered
layout and folders dropped on the window (a mixin of MainWindow, which provides `settings`)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox, QSystemTrayIcon

from studio.gui.style import THEMES, app_icon, apply_style


class _MainWindowModule:
    """studio.gui.main_window's helpers, looked up when called (tests replace `settings`)."""

    def __getattr__(self, name):
        from studio.gui import main_window

        return getattr(main_window, name)


mw = _MainWindowModule()


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


class WindowChrome:
    # -- themes -----------------------------------------------------------------------------
    def theme(self) -> str:
        name = mw.settings().value("theme", "system", type=str)
        return name if name in THEMES else "system"

    def set_theme(self, name: str) -> bool:
        """Apply and remember 'system' | 'light' | 'dark'; returns True when the result is dark."""
        mw.settings().setValue("theme", name)
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

    def open_guide(self) -> None:
        """Help ▸ User's guide: the guide shipped in studio/resources, in a window of its own."""
        from importlib import resources

        from PySide6.QtWidgets import QDialog, QTextBrowser, QVBoxLayout

        if getattr(self, "guide_dialog", None) is None:
            text = resources.files("studio").joinpath("resources", "guide.md").read_text(encoding="utf-8")
            dialog = QDialog(self)
            dialog.setWindowTitle("SSL Studio: user's guide")
            browser = QTextBrowser(dialog)
            browser.setObjectName("Guide")
            browser.setOpenExternalLinks(True)
            browser.setMarkdown(text)  # the studio's own text, not a user's
            lay = QVBoxLayout(dialog)
            lay.addWidget(browser)
            dialog.resize(760, 640)
            self.guide_dialog = dialog
        self.guide_dialog.show()
        self.guide_dialog.raise_()

    def quit_app(self) -> None:
        """File ▸ Quit (Ctrl+Q): while runs train, ask first; they stop with a checkpoint."""
        if self.jobs and not self.confirm_quit():
            return
        self._quit_confirmed = True
        self.close()

    def confirm_quit(self) -> bool:
        runs = sorted(self.jobs)
        which = f"run {runs[0]}" if len(runs) == 1 else "runs " + ", ".join(map(str, runs))
        answer = QMessageBox.question(self, "SSL Studio", f"Stop {which} with a checkpoint and quit?")
        return answer == QMessageBox.StandardButton.Yes

    # -- window state -------------------------------------------------------------------------
    def restore_layout(self) -> bool:
        """Geometry, dock/toolbar state and splitters as the user left them; False if none saved."""
        s = mw.settings()
        geometry = s.value("window/geometry")
        ok = bool(geometry) and self.restoreGeometry(geometry)
        state = s.value("window/state")
        if state:
            self.restoreState(state)
        value = s.value("window/splitter")
        if value:
            self.splitter.restoreState(value)
        value = s.value("window/details_splitter")
        if value:
            self.run_details.restore_layout_state(value)
        return ok

    def save_layout(self) -> None:
        s = mw.settings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("window/splitter", self.splitter.saveState())
        s.setValue("window/details_splitter", self.run_details.layout_state())

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
            self.try_(lambda: self.open_project(folder))
        elif self.project is None:
            self.statusBar().showMessage(f"Open or create a project first, then drop {folder.name} on the window "
                                         "to add it as a dataset.", 10000)
        else:
            self.add_dataset_source(str(folder))

