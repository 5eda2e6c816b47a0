"""The Dataset page: counts, images per class, what was skipped, a strip of thumbnails and a paged
browser of every image (by class), all loaded off the GUI thread (studio.gui.dataset_browser); and
the questions asked before a dataset is renamed or removed (DatasetActions: the side panel's menu
and this page ask it)."""

from __future__ import annotations

from PySide6.QtCore import QObject, QSize, Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QHBoxLayout, QInputDialog, QLineEdit, QListView, QListWidget, QListWidgetItem, QMessageBox, QPushButton,
    QSizePolicy, QVBoxLayout, QWidget,
)

from studio.gui.dataset_browser import (  # noqa: F401  (load_thumbnails, to_pixmap: the page's surface)
    THUMB_PX, THUMBNAILS, ClassCountsView, ImageBrowser, counts_summary, elided, image_tip, index_dataset,
    load_thumbnails, to_pixmap,
)
from studio.gui.tasks import start_task
from studio.services.datasets import ClassCount, caption_issue_lines, dataset_captions
from studio.gui.widgets import Label, StatCard, message_box, page_with_empty_state, plain_tip, section_title


class DatasetPage(QWidget):
    new_run_requested = Signal(str)
    rename_requested = Signal(str)  # a dataset's name
    remove_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = None
        self.dataset = None
        self._token = 0
        self._thumb_task = None
        self._index_task = None

        self._stack, lay = page_with_empty_state(self, "Add a dataset: File ▸ Add dataset folder…, or File ▸ Add sample.", 18, 12)

        head = QHBoxLayout()
        titles = QVBoxLayout()
        self.title_label = Label()
        self.title_label.setObjectName("PageTitle")
        # A long name wraps (or is cut) instead of widening the window.
        self.title_label.setWordWrap(True)
        self.title_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.source_label = Label()
        self.source_label.setObjectName("PageSubtitle")
        self.source_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Under the title and the buttons, the page's whole width: a long path wraps, never cut.
        self.source_label.setWordWrap(True)
        titles.addWidget(self.title_label)
        head.addLayout(titles, 1)
        self.rename_button = QPushButton("Rename…")
        self.rename_button.setToolTip("Give this dataset another name (its runs follow it)")
        self.rename_button.clicked.connect(lambda: self.dataset and self.rename_requested.emit(self.dataset.name))
        self.remove_button = QPushButton("Remove…")
        self.remove_button.setObjectName("Danger")
        self.remove_button.setToolTip("Remove this dataset from the project (its images stay where they are)")
        self.remove_button.clicked.connect(lambda: self.dataset and self.remove_requested.emit(self.dataset.name))
        self.train_button = QPushButton("Train on this dataset…")
        self.train_button.setObjectName("Primary")
        self.train_button.clicked.connect(lambda: self.dataset and self.new_run_requested.emit(self.dataset.name))
        for b in (self.rename_button, self.remove_button, self.train_button):
            head.addWidget(b, 0, Qt.AlignmentFlag.AlignTop)
        lay.addLayout(head)
        lay.addWidget(self.source_label)

        cards = QHBoxLayout()
        cards.setSpacing(12)
        self.images_card = StatCard("images")
        self.classes_card = StatCard("classes")
        self.skipped_card = StatCard("skipped (unreadable)")
        for c in (self.images_card, self.classes_card, self.skipped_card):
            cards.addWidget(c)
        cards.addStretch(1)
        lay.addLayout(cards)

        lay.addWidget(section_title("Images per class"))
        self.classes_label = Label()
        self.classes_label.setWordWrap(True)
        lay.addWidget(self.classes_label)
        self.counts_view = ClassCountsView()
        counts_row = QHBoxLayout()
        counts_row.addWidget(self.counts_view, 3)
        counts_row.addStretch(1)
        lay.addLayout(counts_row)

        images_head = QHBoxLayout()
        images_head.addWidget(section_title("Some images"))
        self.loading_label = Label("loading…")
        self.loading_label.setObjectName("Muted")
        images_head.addWidget(self.loading_label)
        images_head.addStretch(1)
        lay.addLayout(images_head)
        self.thumbs = QListWidget()
        self.thumbs.setObjectName("Thumbnails")
        self.thumbs.setViewMode(QListView.ViewMode.IconMode)
        self.thumbs.setIconSize(QSize(THUMB_PX, THUMB_PX))
        self.thumbs.setGridSize(QSize(THUMB_PX + 18, THUMB_PX + 30))
        self.thumbs.setResizeMode(QListView.ResizeMode.Adjust)
        self.thumbs.setMovement(QListView.Movement.Static)
        self.thumbs.setSelectionMode(QListWidget.SelectionMode.NoSelection)
        self.thumbs.setFixedHeight(2 * (THUMB_PX + 30) + 20)
        self.thumbs.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        lay.addWidget(self.thumbs)

        lay.addWidget(section_title("All images"))
        self.browser = ImageBrowser()
        lay.addWidget(self.browser)

        lay.addWidget(section_title("Captions"))
        self.captions_label = Label()  # for image-text runs (CLIP): where they come from, what was wrong
        self.captions_label.setObjectName("Muted")
        self.captions_label.setWordWrap(True)
        self.captions_label.setTextFormat(Qt.TextFormat.PlainText)  # captions and file names are not markup
        self.captions_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.captions_label)
        self.caption_lengths_label = Label("Caption lengths, in characters")
        self.caption_lengths = ClassCountsView()  # the same bars as the classes', one per range of lengths
        lengths_row = QHBoxLayout()
        lengths_row.addWidget(self.caption_lengths, 3)
        lengths_row.addStretch(1)
        lay.addWidget(self.caption_lengths_label)
        lay.addLayout(lengths_row)

        lay.addWidget(section_title("Skipped files"))
        self.skipped_label = Label()
        self.skipped_label.setObjectName("Muted")
        self.skipped_label.setWordWrap(True)
        self.skipped_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.skipped_label)
        lay.addStretch(1)

    def set_project(self, project) -> None:
        self.project = project
        self.show_dataset(None)
        writable = project is None or not getattr(project, "read_only", False)
        for b in (self.rename_button, self.remove_button):
            b.setEnabled(writable)

    def sync(self, datasets) -> bool:
        """The project's datasets changed (renamed or removed, here or by the CLI): follow the shown
        one; whether it was removed."""
        if self.dataset is None:
            return False
        now = next((d for d in datasets if d.id == self.dataset.id), None)
        if now is None:
            self.show_dataset(None)
            return True
        if now.name != self.dataset.name:
            self.dataset = now
            self._show_title(now)
        return False

    def _show_title(self, dataset) -> None:
        self.title_label.setText(dataset.name)
        self.title_label.setToolTip(plain_tip(dataset.name))
        kind = {"folder": "image folder", "sample": "built-in sample (handwritten digits)"}.get(dataset.kind, dataset.kind)
        self.source_label.setText(f"{kind}  ·  {dataset.source}")
        self.source_label.setToolTip(plain_tip(dataset.source))

    def show_dataset(self, dataset) -> None:
        """Show a DatasetRecord (or nothing); counts, thumbnails and the browser's first page
        arrive a moment later from workers."""
        self.dataset = dataset
        self._token += 1
        self.thumbs.clear()
        for task in (self._thumb_task, self._index_task):
            if task is not None:
                task.cancel()  # another dataset's: its images are no longer wanted
        self._thumb_task = self._index_task = None
        self.browser.set_source(None, [])
        self.counts_view.set_counts([])
        self.caption_lengths.set_counts([])
        self.caption_lengths_label.hide()
        if dataset is None:
            self._stack.setCurrentIndex(0)
            return
        self._stack.setCurrentIndex(1)
        self._show_title(dataset)
        self.images_card.set_value(f"{dataset.images:,}")
        self.classes_card.set_value(str(dataset.classes) if dataset.classes > 1 else "none")
        self.skipped_card.set_value(f"{dataset.skipped:,}")
        self.classes_label.setText("counting the images of each class…" if dataset.classes > 1 else self._no_classes_text())
        self.captions_label.setText("\n".join(caption_issue_lines(dataset, limit=8)) or (
            "None. Image-text methods (CLIP) need them: a name.txt beside each image, a captions.csv or "
            "captions.jsonl in the folder (file, caption), or class sub-folders, whose names make templated ones."))
        if dataset.skipped_files:
            lines = [f"{f[0]}: {f[1]}" if len(f) > 1 else str(f[0]) for f in dataset.skipped_files[:8]]
            more = f"\n… and {len(dataset.skipped_files) - 8} more" if len(dataset.skipped_files) > 8 else ""
            self.skipped_label.setText("\n".join(lines) + more)
        else:
            self.skipped_label.setText("None: every image could be read.")
        if self.project is not None:
            self.loading_label.show()
            token, root, project = self._token, self.project.root, self.project
            self._index_task = start_task(
                lambda state: (*index_dataset(root, dataset.kind, dataset.source), dataset_captions(project, dataset)),
                lambda result: self._indexed(token, result),
                lambda error: self._show_thumbnail_error(token, error), name="dataset-index", parent=self)

    @staticmethod
    def _no_classes_text() -> str:
        return "No classes: the images are not in class sub-folders. Training needs none; kNN accuracy needs them."

    def _indexed(self, token: int, result) -> None:
        if token != self._token:
            return  # another dataset was chosen meanwhile
        self._index_task = None
        src, counts, captions = result
        self.counts_view.set_counts(counts)
        self.classes_label.setText(counts_summary(counts) if counts else self._no_classes_text())
        self.browser.set_source(src, counts, captions)
        bars = captions.length_histogram() if captions is not None else []
        self.caption_lengths.set_counts([ClassCount(f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}", n) for lo, hi, n in bars])
        self.caption_lengths_label.setVisible(bool(bars))
        self._thumb_task = start_task(
            lambda state: load_thumbnails(None, "", "", src=src, cancelled=state.cancelled, captions=captions),
            lambda thumbs: self._show_thumbnails(token, thumbs),
            lambda error: self._show_thumbnail_error(token, error), name="thumbnails", parent=self)

    def _show_thumbnails(self, token: int, result) -> None:
        if token != self._token:
            return  # another dataset was chosen meanwhile
        self.loading_label.hide()
        self.thumbs.clear()
        for name, cls, arr, caption in result:
            # Under each image its caption where the dataset has them (else its class), cut to the
            # cell; the tooltip has it whole. List items are plain text: markup shows as typed.
            item = QListWidgetItem(QIcon(to_pixmap(arr, THUMB_PX)), elided(caption or cls, self.thumbs, THUMB_PX + 12))
            item.setToolTip(image_tip(name, cls, caption))
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
            self.thumbs.addItem(item)

    def _show_thumbnail_error(self, token: int, error: str) -> None:
        if token == self._token:
            self.loading_label.hide()
            self.classes_label.setText("")
            self.skipped_label.setText(f"The images could not be opened: {error}")

    def shutdown(self) -> None:
        for task in (self._thumb_task, self._index_task):
            if task is not None:
                task.cancel()
        self.browser.shutdown()

    def thumbnail_count(self) -> int:
        return self.thumbs.count()


class DatasetActions(QObject):
    """Rename and remove a dataset, each after one question: what the side panel's menu and the
    Dataset page's buttons ask for. services.datasets decides what may be done and what goes."""

    changed = Signal()  # a dataset was renamed or removed
    runs_removed = Signal(list)  # the ids of runs removed with a dataset
    message = Signal(str, int)

    def __init__(self, window: QWidget, busy=None):
        super().__init__(window)
        self.window = window  # has .project
        self.busy = busy  # busy(run_id): this window trains that run

    def rename(self, name: str, new_name: str | None = None) -> bool:
        from studio.services.datasets import rename_dataset

        project = self.window.project
        if project is None:
            return False
        if new_name is None:
            new_name, ok = QInputDialog.getText(self.window, "Rename dataset", f"New name for the dataset {name!r}:",
                                                QLineEdit.EchoMode.Normal, name)
            if not ok or new_name.strip() == name:
                return False
        try:
            record = rename_dataset(project, name, new_name)
        except Exception as exc:  # noqa: BLE001 - a typed refusal (name taken, empty, read-only)
            message_box(self.window, "Rename dataset", str(exc))
            return False
        self.changed.emit()
        self.message.emit(f"Dataset {name!r} is now {record.name!r}.", 8000)
        return True

    def removal_question(self, plan) -> str:
        """What the confirmation says: what goes, the files deleted, what is kept."""
        text = [f"Remove the dataset {plan.dataset.name!r}?", "", plan.summary()]
        if plan.files:
            files = list(plan.files)
            shown = "\n".join(f"  {f}" for f in files[:8]) + (f"\n  … and {len(files) - 8} more" if len(files) > 8 else "")
            text += ["", f"Deleted from the project folder ({len(files)}):", shown]
        if plan.kept:
            text += ["", "Kept (outside the project folder):"] + [f"  {f}" for f in plan.kept[:4]]
        text += ["", "This cannot be undone."]
        return "\n".join(text)

    def remove(self, name: str, confirm: bool = True) -> bool:
        from studio.services.datasets import can_remove_dataset, remove_dataset, removal_plan

        project = self.window.project
        if project is None:
            return False
        try:
            plan = removal_plan(project, name)
        except Exception as exc:  # noqa: BLE001 - gone meanwhile (the CLI removed it)
            message_box(self.window, "Remove dataset", str(exc))
            return False
        # The question names the runs that go with it: the answer Yes is the with-runs removal.
        verdict = can_remove_dataset(project, plan, with_runs=True, busy=self.busy)
        if not verdict:
            message_box(self.window, "Remove dataset", verdict.reason)
            return False
        if confirm and message_box(self.window, "Remove dataset", self.removal_question(plan),
                                   question=True) != QMessageBox.StandardButton.Yes:
            return False
        try:
            done = remove_dataset(project, plan.dataset.id, with_runs=True, busy=self.busy)
        except Exception as exc:  # noqa: BLE001 - a run started meanwhile, a read-only file
            message_box(self.window, "Remove dataset", str(exc))
            return False
        if done.runs:
            self.runs_removed.emit(done.run_ids)
        self.changed.emit()
        self.message.emit(f"Removed the dataset {done.dataset.name!r}"
                          + (f" and {done.runs_phrase()}." if done.runs else "."), 8000)
        return True
