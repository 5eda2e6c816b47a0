"""The Dataset page: counts, classes, what was skipped, and a strip of thumbnails loaded off the
GUI thread."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout, QListView, QListWidget, QListWidgetItem, QPushButton, QSizePolicy, QVBoxLayout, QWidget,
)

from studio.gui.widgets import Label, StatCard, page_with_empty_state, plain_tip, section_title
from studio.gui.tasks import start_task

THUMBNAILS = 16
THUMB_PX = 84


def load_thumbnails(root, kind: str, source: str, count: int = THUMBNAILS,
                    cancelled=None) -> list[tuple[str, str, np.ndarray]]:
    """(name, class, HxWx3 uint8) for `count` images spread over the dataset (so classes show)."""
    from studio.engine.data import open_source

    src = open_source(kind, source, base=root)
    n = len(src)
    out = []
    for i in sorted(set(np.linspace(0, max(0, n - 1), min(count, n)).astype(int).tolist())):
        if cancelled is not None and cancelled():
            break
        try:
            img = src.load(i)
        except Exception:  # noqa: BLE001 - an unreadable image was counted as skipped already
            continue
        img.thumbnail((256, 256))
        label = src.label(i)
        cls = src.class_names[label] if 0 <= label < len(src.class_names) else ""
        out.append((src.name(i), cls, np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))))
    return out


def to_pixmap(arr: np.ndarray, size: int) -> QPixmap:
    h, w, _ = arr.shape
    img = QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    # Tiny images (the 8x8 sample) stay crisp pixels; photos are smoothed.
    mode = Qt.TransformationMode.FastTransformation if max(h, w) < size // 2 else Qt.TransformationMode.SmoothTransformation
    return QPixmap.fromImage(img).scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, mode)


class DatasetPage(QWidget):
    new_run_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = None
        self.dataset = None
        self._token = 0
        self._thumb_task = None

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
        titles.addWidget(self.title_label)
        titles.addWidget(self.source_label)
        head.addLayout(titles, 1)
        self.train_button = QPushButton("Train on this dataset…")
        self.train_button.setObjectName("Primary")
        self.train_button.clicked.connect(lambda: self.dataset and self.new_run_requested.emit(self.dataset.name))
        head.addWidget(self.train_button, 0, Qt.AlignmentFlag.AlignTop)
        lay.addLayout(head)

        cards = QHBoxLayout()
        cards.setSpacing(12)
        self.images_card = StatCard("images")
        self.classes_card = StatCard("classes")
        self.skipped_card = StatCard("skipped (unreadable)")
        for c in (self.images_card, self.classes_card, self.skipped_card):
            cards.addWidget(c)
        cards.addStretch(1)
        lay.addLayout(cards)

        lay.addWidget(section_title("Classes"))
        self.classes_label = Label()
        self.classes_label.setWordWrap(True)
        lay.addWidget(self.classes_label)

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

    def show_dataset(self, dataset) -> None:
        """Show a DatasetRecord (or nothing); thumbnails arrive a moment later from a worker."""
        self.dataset = dataset
        self._token += 1
        self.thumbs.clear()
        if dataset is None:
            self._stack.setCurrentIndex(0)
            return
        self._stack.setCurrentIndex(1)
        self.title_label.setText(dataset.name)
        self.title_label.setToolTip(plain_tip(dataset.name))
        kind = {"folder": "image folder", "sample": "built-in sample (handwritten digits)"}.get(dataset.kind, dataset.kind)
        self.source_label.setText(f"{kind}  ·  {dataset.source}")
        self.images_card.set_value(f"{dataset.images:,}")
        self.classes_card.set_value(str(dataset.classes) if dataset.classes > 1 else "none")
        self.skipped_card.set_value(f"{dataset.skipped:,}")
        names = dataset.class_names
        if len(names) > 1:
            shown = ", ".join(names[:40]) + (f", … ({len(names) - 40} more)" if len(names) > 40 else "")
            self.classes_label.setText(shown)
        else:
            self.classes_label.setText("No labels: the images are not in class sub-folders. "
                                       "Training needs none; kNN accuracy needs them.")
        if dataset.skipped_files:
            lines = [f"{f[0]}: {f[1]}" if len(f) > 1 else str(f[0]) for f in dataset.skipped_files[:8]]
            more = f"\n… and {len(dataset.skipped_files) - 8} more" if len(dataset.skipped_files) > 8 else ""
            self.skipped_label.setText("\n".join(lines) + more)
        else:
            self.skipped_label.setText("None: every image could be read.")
        if self.project is not None:
            self.loading_label.show()
            token, root = self._token, self.project.root
            if self._thumb_task is not None:
                self._thumb_task.cancel()  # another dataset's: its images are no longer wanted
            self._thumb_task = start_task(
                lambda state: load_thumbnails(root, dataset.kind, dataset.source, cancelled=state.cancelled),
                lambda result: self._show_thumbnails(token, result),
                lambda error: self._show_thumbnail_error(token, error), name="thumbnails", parent=self)

    def _show_thumbnails(self, token: int, result) -> None:
        if token != self._token:
            return  # another dataset was chosen meanwhile
        self.loading_label.hide()
        self.thumbs.clear()
        for name, cls, arr in result:
            item = QListWidgetItem(QIcon(to_pixmap(arr, THUMB_PX)), cls)
            item.setToolTip(plain_tip(name))
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
            self.thumbs.addItem(item)

    def _show_thumbnail_error(self, token: int, error: str) -> None:
        if token == self._token:
            self.loading_label.hide()
            self.skipped_label.setText(f"The images could not be opened: {error}")

    def shutdown(self) -> None:
        if self._thumb_task is not None:
            self._thumb_task.cancel()

    def thumbnail_count(self) -> int:
        return self.thumbs.count()
