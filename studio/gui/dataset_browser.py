"""What the Dataset page shows of a dataset's images, loaded off the GUI thread: thumbnails of
chosen images (with their first caption, where the dataset has captions), the images per class
as bars, and a paged browser of every image by class."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QFontMetrics, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox, QGridLayout, QHBoxLayout, QListView, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget,
)

from studio.gui.tasks import start_task
from studio.gui.widgets import Label, plain_tip

THUMBNAILS = 16
THUMB_PX = 84
BROWSER_PAGE = 48  # images per page of the browser: a page loads in well under a second
BROWSER_PX = 64
COUNT_ROWS = 12  # class rows shown in full; more classes show the largest and the smallest


def thumbnails_of(src, indices, cancelled=None, max_px: int = 256) -> list[tuple[int, str, str, np.ndarray]]:
    """(index, name, class, HxWx3 uint8) of the images of an opened source at `indices`, each at
    most `max_px` on its longer side (call off the GUI thread: it decodes images)."""
    out = []
    for i in indices:
        if cancelled is not None and cancelled():
            break
        i = int(i)
        try:
            img = src.load(i)
        except Exception:  # noqa: BLE001 - an unreadable image was counted as skipped already
            continue
        img.thumbnail((max_px, max_px))
        label = src.label(i)
        cls = src.class_names[label] if 0 <= label < len(src.class_names) else ""
        out.append((i, src.name(i), cls, np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))))
    return out


def load_thumbnails(root, kind: str, source: str, count: int = THUMBNAILS, cancelled=None,
                    indices=None, src=None, captions=None) -> list[tuple[str, str, np.ndarray, str]]:
    """(name, class, HxWx3 uint8, first caption or "") for `count` images spread over the dataset
    (so classes show), or for the images at `indices`; `src`: the source opened already;
    `captions`: the dataset's services.datasets.DatasetCaptions, if it has any."""
    if src is None:
        from studio.engine.data import open_source

        src = open_source(kind, source, base=root)
    if indices is None:
        n = len(src)
        indices = sorted(set(np.linspace(0, max(0, n - 1), min(count, n)).astype(int).tolist()))
    return [(name, cls, arr, first_caption(captions, src, i)) for i, name, cls, arr in thumbnails_of(src, indices, cancelled)]


def first_caption(captions, src, index: int) -> str:
    """An image's first caption on one line ("" without one)."""
    caps = captions.of(src, index) if captions is not None else []
    return " ".join(caps[0].split()) if caps else ""


def elided(text: str, widget: QWidget, width: int) -> str:
    """`text` cut to `width` pixels of `widget`'s font, ending in "…" (list items are plain text)."""
    return QFontMetrics(widget.font()).elidedText(text, Qt.TextElideMode.ElideRight, width)


def index_dataset(root, kind: str, source: str):
    """(opened source, class counts largest first): what the Dataset page's counts and browser
    read (call off the GUI thread: a folder is listed, a torchvision set loaded)."""
    from studio.engine.data import open_source
    from studio.services.datasets import class_counts

    src = open_source(kind, source, base=root)
    return src, class_counts(src)


def to_pixmap(arr: np.ndarray, size: int) -> QPixmap:
    h, w, _ = arr.shape
    img = QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    # Tiny images (the 8x8 sample) stay crisp pixels; photos are smoothed.
    mode = Qt.TransformationMode.FastTransformation if max(h, w) < size // 2 else Qt.TransformationMode.SmoothTransformation
    return QPixmap.fromImage(img).scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, mode)


def class_text(name: str) -> str:
    return name if name else "(no class)"


def image_tip(name: str, cls: str, caption: str = "") -> str:
    """An image's tooltip: its file name, its class, where it is, then its caption in full (as
    plain text: a caption with markup shows its tags)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    lines = [base, f"class: {class_text(cls)}" if cls else "no class"]
    if base != name:
        lines.append(name)
    if caption:
        lines.append(f"caption: {caption}")
    return plain_tip("\n".join(lines))


class _Bar(QWidget):
    """A horizontal bar: `value` of `top`, in the palette's highlight colour."""

    def __init__(self, value: int, top: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.value, self.top = value, max(1, top)
        self.setMinimumWidth(60)
        self.setFixedHeight(12)

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt override
        from PySide6.QtGui import QPainter

        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(Qt.PenStyle.NoPen)
        track = self.palette().color(self.palette().ColorRole.WindowText)  # faint in either theme
        track.setAlpha(28)
        p.setBrush(track)
        p.drawRoundedRect(self.rect(), 4, 4)
        w = max(3, round(self.width() * self.value / self.top)) if self.value else 0
        p.setBrush(self.palette().color(self.palette().ColorRole.Highlight))
        p.drawRoundedRect(0, 0, w, self.height(), 4, 4)


class ClassCountsView(QWidget):
    """Images per class as bars, largest first; with many classes the largest and the smallest,
    and how many lie between (every class is in the browser's filter)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.rows: list = []
        self._shown: list[tuple[str, int]] = []
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setHorizontalSpacing(10)
        self._grid.setVerticalSpacing(3)
        self._grid.setColumnStretch(1, 1)
        self.setMaximumWidth(720)  # bars longer than this say no more and are harder to compare

    def set_counts(self, rows) -> None:
        """`rows`: ClassCount largest first."""
        self.rows = list(rows)
        while self._grid.count():
            w = self._grid.takeAt(0).widget()
            if w is not None:
                w.deleteLater()
        shown: list = self.rows
        between = 0
        if len(self.rows) > COUNT_ROWS:
            head, tail = COUNT_ROWS // 2, COUNT_ROWS // 2 - 1
            shown = self.rows[:head] + [None] + self.rows[-tail:]
            between = len(self.rows) - head - tail
        self._shown: list[tuple[str, int]] = []
        top = self.rows[0].images if self.rows else 1
        for r, row in enumerate(shown):
            if row is None:
                more = Label(f"… {between:,} more classes between (each is in the browser's class filter)")
                more.setObjectName("Muted")
                self._grid.addWidget(more, r, 0, 1, 3)
                continue
            name = Label(class_text(row.name))
            name.setToolTip(plain_tip(class_text(row.name)))
            name.setMaximumWidth(220)
            name.setMinimumWidth(40)
            self._shown.append((name.text(), row.images))
            count = Label(f"{row.images:,}")
            count.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self._grid.addWidget(name, r, 0)
            self._grid.addWidget(_Bar(row.images, top), r, 1, Qt.AlignmentFlag.AlignVCenter)
            self._grid.addWidget(count, r, 2)

    def shown(self) -> list[tuple[str, int]]:
        """(class, images) of the rows on screen, in order (the elided middle left out)."""
        return list(self._shown)


def counts_summary(rows) -> str:
    """'10 classes · largest: 3 (183 images) · smallest: 8 (174 images)'."""
    if not rows:
        return ""
    big, small = rows[0], rows[-1]
    if len(rows) == 1 or big.images == small.images:
        return f"{len(rows)} classes of {big.images:,} images each" if len(rows) > 1 else f"one class: {big.images:,} images"
    return (f"{len(rows)} classes · largest: {class_text(big.name)} ({big.images:,} images) · "
            f"smallest: {class_text(small.name)} ({small.images:,} images)")


class ImageBrowser(QWidget):
    """Every image of a dataset, a page at a time, filtered by class: pages load on a task, and a
    page no longer wanted (another page, filter or dataset) is cancelled."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.src = None
        self.captions = None  # services.datasets.DatasetCaptions of the source, if it has any
        self.indices = np.zeros(0, dtype=np.int64)
        self.page = 0
        self._token = 0
        self._task = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(6)
        bar = QHBoxLayout()
        self.class_combo = QComboBox()
        self.class_combo.setToolTip("Show the images of one class")
        self.class_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.class_combo.setMaximumWidth(280)  # a long class name is cut in the box, shown whole in its list
        self.class_combo.currentIndexChanged.connect(self._filter_changed)
        self.prev_button = QPushButton("‹ Previous")
        self.next_button = QPushButton("Next ›")
        self.prev_button.clicked.connect(lambda: self.show_page(self.page - 1))
        self.next_button.clicked.connect(lambda: self.show_page(self.page + 1))
        self.page_label = Label()
        self.page_label.setObjectName("Muted")
        self.loading_label = Label("loading…")
        self.loading_label.setObjectName("Muted")
        self.loading_label.hide()
        bar.addWidget(self.class_combo)
        bar.addSpacing(8)
        bar.addWidget(self.prev_button)
        bar.addWidget(self.next_button)
        bar.addWidget(self.page_label)
        bar.addWidget(self.loading_label)
        bar.addStretch(1)
        lay.addLayout(bar)
        self.grid = QListWidget()
        self.grid.setObjectName("Thumbnails")
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setIconSize(QSize(BROWSER_PX, BROWSER_PX))
        self.grid.setGridSize(QSize(BROWSER_PX + 10, BROWSER_PX + 10))
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setSelectionMode(QListWidget.SelectionMode.NoSelection)
        self.grid.setUniformItemSizes(True)
        lay.addWidget(self.grid)
        self._fit_height()

    # -- what is shown ----------------------------------------------------------------------------
    def set_source(self, src, counts, captions=None) -> None:
        """A dataset's opened source and its class counts (None: nothing to browse), and its
        captions (shown under the thumbnails)."""
        self.src, self.captions = src, captions
        self.grid.setGridSize(QSize(BROWSER_PX + 10, BROWSER_PX + (28 if captions is not None else 10)))
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        if src is not None:
            self.class_combo.addItem(f"All classes ({len(src):,})" if counts else f"All images ({len(src):,})", None)
            for row in sorted(counts, key=lambda r: r.name):
                self.class_combo.addItem(f"{class_text(row.name)} ({row.images:,})", row.name)
        self.class_combo.setEnabled(len(counts) > 0)
        self.class_combo.blockSignals(False)
        self._filter_changed()

    def set_class(self, name: str | None) -> None:
        idx = self.class_combo.findData(name)
        if idx >= 0:
            self.class_combo.setCurrentIndex(idx)

    def _filter_changed(self, *_args) -> None:
        from studio.services.datasets import image_indices

        self.indices = image_indices(self.src, self.class_combo.currentData()) if self.src is not None else np.zeros(0, np.int64)
        self.show_page(0)

    @property
    def pages(self) -> int:
        return max(1, -(-len(self.indices) // BROWSER_PAGE))

    def show_page(self, page: int) -> None:
        self.page = min(max(0, page), self.pages - 1)
        self._token += 1
        if self._task is not None:
            self._task.cancel()  # a page no longer wanted
            self._task = None
        self.grid.clear()
        first = self.page * BROWSER_PAGE
        wanted = self.indices[first:first + BROWSER_PAGE]
        n = len(self.indices)
        self.page_label.setText(f"page {self.page + 1:,} of {self.pages:,}  ·  images {first + 1:,}–{first + len(wanted):,} "
                                f"of {n:,}" if n else "no images")
        self.prev_button.setEnabled(self.page > 0)
        self.next_button.setEnabled(self.page < self.pages - 1)
        if self.src is None or not len(wanted):
            self.loading_label.hide()
            return
        token, src, captions = self._token, self.src, self.captions
        self.loading_label.show()
        self._task = start_task(
            lambda state: [(*t, first_caption(captions, src, t[0]))
                           for t in thumbnails_of(src, wanted.tolist(), state.cancelled, max_px=2 * BROWSER_PX)],
            lambda result: self._show(token, result),
            lambda error: self._failed(token, error), name="browse-images", parent=self)

    def _show(self, token: int, result) -> None:
        if token != self._token:
            return  # another page or filter was chosen meanwhile
        self._task = None
        self.loading_label.hide()
        for _i, name, cls, arr, caption in result:
            item = QListWidgetItem(QIcon(to_pixmap(arr, BROWSER_PX)), elided(caption, self.grid, BROWSER_PX + 6))
            item.setToolTip(image_tip(name, cls, caption))
            item.setData(Qt.ItemDataRole.UserRole, (name, cls))
            self.grid.addItem(item)
        self._fit_height()

    def _failed(self, token: int, error: str) -> None:
        if token == self._token:
            self._task = None
            self.loading_label.setText(f"the images could not be read: {error}")

    def shown(self) -> list[tuple[str, str]]:
        """(name, class) of the images on the page, in order."""
        return [self.grid.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.grid.count())]

    def is_loading(self) -> bool:
        return self._task is not None

    def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()

    # -- size -------------------------------------------------------------------------------------
    def _fit_height(self) -> None:
        """As tall as a whole page's rows at this width: the page scrolls, not the grid."""
        cell = self.grid.gridSize()  # taller with a caption line under each image
        per_row = max(1, (self.grid.viewport().width() or 600) // cell.width())
        rows = max(1, -(-max(self.grid.count(), 1) // per_row))
        frame = self.grid.height() - self.grid.viewport().height()
        self.grid.setFixedHeight(rows * cell.height() + max(frame, 2) + 4)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit_height()
