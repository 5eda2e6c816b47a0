"""The New run page's "Preview the views": a few images of the chosen dataset, each row the image
and the views the chosen method trains on (services.preview makes them with the Trainer's own
view code, on a task). It redraws, debounced, when the form's method, image size, dataset or
method settings change, and draws other images with New draw."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QFrame, QGridLayout, QHBoxLayout, QPushButton, QScrollArea, QSizePolicy, QVBoxLayout, QWidget,
)
from superqt import QCollapsible

from studio.gui.tasks import start_task
from studio.gui.widgets import Label, plain_tip

DEBOUNCE_MS = 400  # a spin box's arrows held down make one preview, not one a step
CELL_PX = 96  # a global view's side on screen: tiny images scaled up by a whole factor


def display_side(size: int) -> int:
    """On-screen side of a `size` px image: a whole multiple near CELL_PX (so each pixel stays a
    square of screen pixels), at most CELL_PX for larger images (scaled down smoothly)."""
    if size >= CELL_PX:
        return CELL_PX
    return size * max(1, round(CELL_PX / size))


def to_pixmap(arr: np.ndarray, side: int) -> QPixmap:
    """uint8 (H, W, 3) -> a pixmap `side` px square; nearest neighbour when scaling up."""
    arr = np.ascontiguousarray(arr)
    h, w, _ = arr.shape
    img = QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    mode = Qt.TransformationMode.FastTransformation if side >= max(h, w) else Qt.TransformationMode.SmoothTransformation
    return QPixmap.fromImage(img).scaled(side, side, Qt.AspectRatioMode.IgnoreAspectRatio, mode)


def header_text(label: str) -> str:
    """'view 3 (local, 8 px)' -> two short lines, 'view 3' over 'local, 8 px'."""
    head, _, rest = label.partition(" (")
    return f"{head}\n{rest.rstrip(')')}" if rest else head


class ViewPreviewSection(QCollapsible):
    """Folded at first; computes only while open. `form` is the New run page: its `project`,
    `dataset()` and `config()` say what to preview."""

    def __init__(self, form, parent: QWidget | None = None):
        super().__init__("Preview the views", parent, expandedIcon="▾", collapsedIcon="▸")
        self.setObjectName("ViewPreview")
        self.setDuration(0)
        self.form = form
        self.seed = 0
        self.preview = None  # the services.preview.ViewPreview shown
        self._shown_key = None
        self._task = None
        self._task_key = None
        self._token = 0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.update_preview)

        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.setSpacing(8)
        top = QHBoxLayout()
        self.note = Label("")
        self.note.setObjectName("Hint")
        self.note.setWordWrap(True)
        self.draw_button = QPushButton("New draw")
        self.draw_button.setToolTip("Other images of the dataset, and other random views of them.")
        self.draw_button.clicked.connect(self.new_draw)
        # The button first: a window narrower than the form still shows it.
        top.addWidget(self.draw_button, 0, Qt.AlignmentFlag.AlignTop)
        top.addWidget(self.note, 1)
        lay.addLayout(top)
        self.scroll = QScrollArea()
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setWidgetResizable(True)
        self.scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.scroll.hide()
        lay.addWidget(self.scroll)
        self.addWidget(body)
        self.toggled.connect(lambda _open: self.refresh_soon())

    # -- when ----------------------------------------------------------------------------------
    def refresh_soon(self) -> None:
        """The form changed: redraw after a pause, if open (closed, it redraws when opened)."""
        if self.isExpanded():
            self._timer.start()

    def new_draw(self) -> None:
        self.seed += 1
        self.update_preview()

    def busy(self) -> bool:
        """A redraw is due or under way."""
        return self._task is not None or self._timer.isActive()

    # -- what ------------------------------------------------------------------------------------
    def _request(self):
        """(project root, dataset, config) to preview, or a sentence saying why there is none."""
        form = self.form
        if form.project is None or not form.dataset():
            return "Add a dataset to see the views a method trains on."
        try:
            config = form.config()
        except Exception as exc:  # noqa: BLE001 - a field that is not a value yet: its own message shows
            return f"No preview while a setting is not valid: {exc}"
        return form.project.root, form.dataset(), config

    def update_preview(self) -> None:
        """Draw the views now (on a task) unless what is shown is already of these settings."""
        from studio.services.preview import DEFAULT_IMAGES, preview_for_dataset, preview_key

        self._timer.stop()
        request = self._request()
        if isinstance(request, str):
            self._cancel()
            self._shown_key = None
            self.note.setText(request)
            self.scroll.hide()
            self._fit()
            return
        root, dataset, config = request
        key = (str(root), dataset, preview_key(config), self.seed)
        if key == self._shown_key or (self._task is not None and key == self._task_key):
            return
        self._cancel()
        self._token += 1
        token = self._token
        seed = self.seed
        self._task_key = key
        self.note.setText(f"Drawing {config.method} views of {DEFAULT_IMAGES} images of {dataset}…")
        self._task = start_task(
            lambda state: preview_for_dataset(root, dataset, config, DEFAULT_IMAGES, seed, cancelled=state.cancelled),
            lambda result: self._show(token, key, dataset, result),
            lambda error: self._failed(token, error), name="view-preview", parent=self)

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()  # its result no longer applies
            self._task = None
        self._task_key = None

    def _fit(self) -> None:
        """QCollapsible holds its content to the height it had when opened: let it take the new grid's."""
        if self.isExpanded():
            self.content().setMaximumHeight(self.content().sizeHint().height() + 10)

    def _failed(self, token: int, error: str) -> None:
        if token != self._token:
            return
        self._task, self._task_key, self._shown_key = None, None, None
        self.note.setText(f"No preview: {error[:1].upper()}{error[1:]}")
        self.scroll.hide()
        self._fit()

    def _show(self, token: int, key, dataset: str, preview) -> None:
        if token != self._token:
            return  # superseded by a newer request
        self._task, self._task_key = None, None
        self._shown_key, self.preview = key, preview
        self.note.setText(f"Each row: an image of {dataset} and what {preview.method} trains on at {preview.image_size} px, "
                          "drawn by the run's own augmentations. New draw: other images, other views.")
        self.scroll.setWidget(self._grid(preview))
        self.scroll.show()
        inner = self.scroll.widget().sizeHint().height()
        self.scroll.setFixedHeight(inner + self.scroll.horizontalScrollBar().sizeHint().height() + 2)
        self._fit()

    def _grid(self, preview) -> QWidget:
        grid_widget = QWidget()
        # A frame, so that a black crop still shows where it is on a dark theme.
        grid_widget.setStyleSheet("QLabel#PreviewCell { border: 1px solid palette(mid); }")
        grid = QGridLayout(grid_widget)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(6)
        scale = display_side(preview.image_size) / preview.image_size
        for col, label in enumerate(preview.columns, 1):
            head = Label(header_text(label))
            head.setObjectName("Hint")
            head.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom)
            head.setToolTip(plain_tip(label))
            grid.addWidget(head, 0, col)
        for r, row in enumerate(preview.rows, 1):
            caption = Label(row.caption)
            caption.setObjectName("Hint")
            caption.setToolTip(plain_tip(row.name))
            grid.addWidget(caption, r, 0, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            for col, (label, image) in enumerate(zip(preview.columns, [row.original, *row.views]), 1):
                cell = Label()
                cell.setObjectName("PreviewCell")
                cell.setPixmap(to_pixmap(image, max(1, round(image.shape[0] * scale))))
                cell.setToolTip(plain_tip(f"{label}\n{row.name}"))
                cell.setAccessibleName(f"{row.caption}, {label}")
                grid.addWidget(cell, r, col, Qt.AlignmentFlag.AlignCenter)
        grid.setColumnStretch(len(preview.columns) + 1, 1)
        return grid_widget

    # -- what the tests and the screenshots read ---------------------------------------------------
    def column_labels(self) -> list[str]:
        return self.preview.columns if self.preview is not None and not self.scroll.isHidden() else []

    def row_count(self) -> int:
        return len(self.preview.rows) if self.preview is not None and not self.scroll.isHidden() else 0

    def shutdown(self) -> None:
        self._timer.stop()
        self._cancel()
