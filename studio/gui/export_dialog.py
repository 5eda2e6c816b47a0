"""The export dialog: format, checkpoint, destination; the export runs on a Task (studio.gui.tasks)
and the dialog then shows the model card written beside the files, and opens their folder."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication, QTextDocument
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDialog, QFileDialog, QFormLayout, QHBoxLayout, QLineEdit, QProgressBar,
    QMessageBox, QPushButton, QTextBrowser, QVBoxLayout, QWidget,
)

from studio.engine.export.card import EMBEDDING_FORMATS, FORMAT_HINTS, FORMAT_TITLES, FORMATS, MODEL_FORMATS
from studio.engine.export.embeddings import parquet_available
from studio.gui.widgets import Label
from studio.store import Project


def open_folder(parent: QWidget | None, folder: str | Path) -> QMessageBox | None:
    """Open `folder` in the desktop's file manager. When the desktop cannot (no file manager, as
    on a bare server: "Unable to detect a launcher"), a message shows the path, selectable and with
    a Copy button, instead of silently nothing; it is returned (None when the folder opened)."""
    folder = Path(folder)
    if QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
        return None
    box = QMessageBox(QMessageBox.Icon.Information, "Export folder",
                      f"No file manager could open the folder on this desktop. The files are in:\n\n{folder}",
                      QMessageBox.StandardButton.Close, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                | Qt.TextInteractionFlag.TextSelectableByKeyboard)
    copy = box.addButton("Copy path", QMessageBox.ButtonRole.ActionRole)
    copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(str(folder)))
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()  # window-modal, and the event loop goes on
    return box


def export_work(project_root: str | Path, run_id: int, options: dict[str, Any]):
    """The export task's work: one export with a Project of its own; the JSON the dialog shows."""

    def work(state):
        from studio.services.export import export_run

        with Project.open(Path(project_root)) as project:
            result = export_run(project, run_id, progress=state.report, should_stop=state.cancelled, **options)
            payload = result.to_json(project)
            payload["readme_text"] = result.readme_path.read_text(encoding="utf-8")
            payload["abs_path"] = str(result.path)
        return payload

    return work


class ExportDialog(QDialog):
    """Export one run. `exported(dict)` is emitted with the export's JSON once it is written."""

    exported = Signal(dict)
    export_failed = Signal(str)

    def __init__(self, project: Project | str | Path, run_id: int, parent: QWidget | None = None):
        super().__init__(parent)
        if isinstance(project, Project):
            self.project, self._owns_project = project, False
        else:
            self.project, self._owns_project = Project.open(project), True
        self.run_id = int(run_id)
        self.run = self.project.run(self.run_id)
        self._task = None
        self._destination_edited = False
        self._format: str | None = None  # the format the destination was chosen for
        self.folder_message: QMessageBox | None = None
        self.result: dict[str, Any] | None = None
        self.setWindowTitle(f"Export run {self.run_id}")
        self.setMinimumWidth(620)
        self._build()
        self._fill()

    # -- building ------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        esc = html.escape
        head = Label(f"<b>Run {self.run.id}</b>: {esc(self.run.method)} on {esc(self.run.backbone)}, "
                      f"dataset {esc(self.run.dataset)}, {self.run.steps} steps ({esc(str(self.run.status))})")
        head.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(head)

        form = QFormLayout()
        self.format_combo = QComboBox()
        for fmt in FORMATS:
            self.format_combo.addItem(f"{FORMAT_TITLES[fmt]} — {FORMAT_HINTS[fmt]}", fmt)
        if not parquet_available():
            i = self.format_combo.findData("embeddings-parquet")
            item = self.format_combo.model().item(i)
            item.setEnabled(False)
            item.setToolTip("needs pyarrow: pip install 'ssl-studio[parquet]'")
        form.addRow("Format", self.format_combo)

        self.checkpoint_combo = QComboBox()
        form.addRow("Checkpoint", self.checkpoint_combo)

        self.dataset_combo = QComboBox()
        self.dataset_label = Label("Dataset")
        form.addRow(self.dataset_label, self.dataset_combo)

        self.heads_check = QCheckBox("Include the method's heads (projection etc.)")
        form.addRow("", self.heads_check)

        dest = QHBoxLayout()
        self.destination_edit = QLineEdit()
        self.destination_edit.setPlaceholderText("a folder, or a file name")
        self.browse_button = QPushButton("Browse…")
        dest.addWidget(self.destination_edit, 1)
        dest.addWidget(self.browse_button)
        form.addRow("Destination", dest)
        layout.addLayout(form)

        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setVisible(False)  # no "0 %" before anything has started
        self.status_label = Label("")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)

        self.card_view = QTextBrowser()
        self.card_view.setOpenExternalLinks(False)
        self.card_view.setPlaceholderText("The model card appears here once the export is written.")
        self.card_view.setMinimumHeight(260)
        layout.addWidget(self.card_view, 1)

        buttons = QHBoxLayout()
        self.open_folder_button = QPushButton("Open export folder")
        self.open_folder_button.setEnabled(False)
        self.open_folder_button.setToolTip("Open the folder of the files just written (enabled once an export is written).")
        buttons.addWidget(self.open_folder_button)
        buttons.addStretch(1)
        self.export_button = QPushButton("Export")
        self.export_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.close_button = QPushButton("Close")
        for b in (self.export_button, self.cancel_button, self.close_button):
            buttons.addWidget(b)
        layout.addLayout(buttons)

        self.format_combo.currentIndexChanged.connect(self._on_options_changed)
        self.checkpoint_combo.currentIndexChanged.connect(self._on_options_changed)
        self.destination_edit.textEdited.connect(self._on_destination_edited)
        self.browse_button.clicked.connect(self._browse)
        self.export_button.clicked.connect(self.start_export)
        self.cancel_button.clicked.connect(self.cancel_export)
        self.close_button.clicked.connect(self.reject)
        self.open_folder_button.clicked.connect(self.open_export_folder)

    def _fill(self) -> None:
        # Newest first; one entry per step (last.ckpt and step-N.ckpt of the same step are one).
        seen: set[int] = set()
        for ck in sorted(self.project.checkpoints(self.run_id), key=lambda c: c.step, reverse=True):
            if ck.step in seen or not self.project.abs(ck.path).is_file():
                continue
            seen.add(ck.step)
            label = f"step {ck.step}" + (" (newest)" if not self.checkpoint_combo.count() else "")
            self.checkpoint_combo.addItem(f"{label} — {ck.path}", ck.step)
        if not seen:
            self.checkpoint_combo.addItem("no checkpoint on disk", None)
            self.export_button.setEnabled(False)
            self.status_label.setText("This run has no checkpoint to export yet; train it first.")
        for d in self.project.datasets():
            self.dataset_combo.addItem(f"{d.name} ({d.images} images)", d.name)
        i = self.dataset_combo.findData(self.run.dataset)
        self.dataset_combo.setCurrentIndex(max(0, i))
        self._on_options_changed()

    # -- options -------------------------------------------------------------------------------
    def selected_format(self) -> str:
        return str(self.format_combo.currentData())

    def set_format(self, fmt: str) -> None:
        self.format_combo.setCurrentIndex(self.format_combo.findData(fmt))

    def select_checkpoint(self, step: int) -> bool:
        """Pick the checkpoint saved at `step` (False when the run has none there)."""
        i = self.checkpoint_combo.findData(step)
        if i >= 0:
            self.checkpoint_combo.setCurrentIndex(i)
        return i >= 0

    def selected_step(self) -> int | None:
        return self.checkpoint_combo.currentData()

    def set_destination(self, path: str | Path) -> None:
        self.destination_edit.setText(str(path))
        self._destination_edited = True

    def _default_destination(self) -> Path:
        from studio.services.export import default_output

        return default_output(self.project, self.run_id, self.selected_step(), self.selected_format())

    @Slot()
    def _on_options_changed(self) -> None:
        fmt = self.selected_format()
        embeddings = fmt in EMBEDDING_FORMATS
        self.dataset_combo.setVisible(embeddings)
        self.dataset_label.setVisible(embeddings)
        self.heads_check.setEnabled(fmt in MODEL_FORMATS)
        if not self._destination_edited:
            self.destination_edit.setText(str(self._default_destination()))
        elif self._format is not None and self._format != fmt and self.destination_edit.text().strip():
            # A chosen destination keeps its folder; what in its name says the old format changes.
            from studio.services.export import output_for_format

            self.destination_edit.setText(str(output_for_format(self.destination_edit.text().strip(), self._format, fmt)))
        self._format = fmt

    @Slot(str)
    def _on_destination_edited(self, _text: str) -> None:
        self._destination_edited = True

    @Slot()
    def _browse(self) -> None:
        start = self.destination_edit.text() or str(self.project.root)
        path = QFileDialog.getExistingDirectory(self, "Export to folder", start)
        if path:
            self.set_destination(path)

    # -- running -------------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self._task is not None and self._task.is_running()

    @Slot()
    def start_export(self) -> None:
        if self.is_running():
            return
        fmt = self.selected_format()
        options = {
            "format": fmt,
            "out": self.destination_edit.text().strip() or None,
            "checkpoint_step": self.selected_step(),
            "with_heads": self.heads_check.isChecked() and fmt in MODEL_FORMATS,
        }
        if fmt in EMBEDDING_FORMATS:
            options["dataset"] = self.dataset_combo.currentData()
        if not self._may_write(options):
            return
        self.result = None
        self.open_folder_button.setEnabled(False)
        self.card_view.clear()
        self.status_label.setText("starting…")
        self.progress_bar.setRange(0, 0)
        self.progress_bar.setVisible(True)
        self._set_running(True)

        from studio.gui.tasks import Task

        self._task = Task(export_work(self.project.root, self.run_id, options), name=f"export-run-{self.run_id}",
                          parent=self)
        self._task.progress.connect(self._on_progress)
        self._task.done.connect(self._on_finished)
        self._task.failed.connect(self._on_failed)
        self._task.cancelled.connect(self._on_cancelled)
        self._task.start()

    def _may_write(self, options: dict[str, Any]) -> bool:
        """Ask before an export replaces files that exist (services.export decides which; the
        project's own files are never allowed); True to go on, with `force` set if asked."""
        from studio.services.export import existing_outputs
        from studio.gui.widgets import message_box

        try:
            existing = existing_outputs(self.project, self.run_id, options["format"], options["out"],
                                        options["checkpoint_step"], options["with_heads"])
        except Exception as exc:  # noqa: BLE001 - the typed refusal, said where the result would be
            self._on_failed(str(exc))
            return False
        if existing:
            names = "\n".join(str(p) for p in existing[:6]) + ("\n…" if len(existing) > 6 else "")
            answer = message_box(self, "Replace the existing files?",
                                 f"This export would replace {len(existing)} file(s):\n{names}", question=True)
            if answer != QMessageBox.StandardButton.Yes:
                self.status_label.setText("Not exported: the existing files are kept.")
                return False
            options["force"] = True
        return True

    @Slot()
    def cancel_export(self) -> None:
        if self.is_running():
            self._task.cancel()
            self.status_label.setText("cancelling…")

    def _set_running(self, running: bool) -> None:
        for w in (self.format_combo, self.checkpoint_combo, self.dataset_combo, self.heads_check,
                  self.destination_edit, self.browse_button, self.export_button):
            w.setEnabled(not running)
        if not running:
            self.heads_check.setEnabled(self.selected_format() in MODEL_FORMATS)
        self.cancel_button.setEnabled(running)

    def _on_progress(self, p) -> None:
        message, done, total = p.stage, p.done, p.total
        if total > 0:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(done)
            self.status_label.setText(f"{message} ({done}/{total})")
        else:
            self.progress_bar.setRange(0, 0)
            self.status_label.setText(f"{message}…")

    def _join(self) -> None:
        self._task = None

    def _on_cancelled(self) -> None:
        self._on_failed("the export was cancelled.")

    @Slot(dict)
    def _on_finished(self, payload: dict) -> None:
        self._join()
        self._set_running(False)
        self.result = payload
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1)
        self.status_label.setText(f"Exported to {payload['abs_path']} (card: {payload['card']}).")
        self.open_folder_button.setEnabled(True)
        self.open_folder_button.setToolTip(f"Open {Path(payload['abs_path']).parent}")
        # The card names the dataset and its files: markdown, never the HTML someone put in a name.
        features = QTextDocument.MarkdownFeature
        self.card_view.document().setMarkdown(payload.get("readme_text", ""),
                                              features.MarkdownDialectGitHub | features.MarkdownNoHTML)
        self.exported.emit(payload)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._join()
        self._set_running(False)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status_label.setText(f"Export failed: {message}")
        self.export_failed.emit(message)

    def export_folder(self) -> Path | None:
        """The folder of the last export's files (None before one is written)."""
        return Path(self.result["abs_path"]).parent if self.result else None

    @Slot()
    def open_export_folder(self) -> None:
        folder = self.export_folder()
        if folder is not None:
            self.folder_message = open_folder(self, folder)

    # -- closing -------------------------------------------------------------------------------
    def done(self, code: int) -> None:  # noqa: D401 - Qt override: every way of closing comes here
        if self.is_running():
            self._task.cancel()
            self._task.wait()
        if self._owns_project:
            self.project.close()
            self._owns_project = False
        super().done(code)
