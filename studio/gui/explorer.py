"""The embedding explorer: a run's embeddings of a dataset as a 2-D map to look through.

`EmbeddingMapView` draws the map with pyqtgraph, one `ScatterPlotItem` per colour sharing one
brush (per-point brush lists are slow to build and crash pyqtgraph at exit beyond ~10k points;
DESIGN.md field notes), finds the point under the mouse with a k-d tree instead of pyqtgraph's
per-item hit tests, and selects with a drag box (Shift+drag, or drag in "Select" mode).

`ExplorerPage` adds the choices (run, checkpoint, dataset, map, colouring), computes embeddings
and maps in a worker on its own QThread (the event loop never waits on torch), shows the hovered
image's thumbnail, the 16 nearest neighbours (cosine, in embedding space) of a clicked point or of
an image file dropped on the page, and lists and exports selected files.
"""

from __future__ import annotations

import csv
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QRectF, Qt, QThread, Signal, Slot
from PySide6.QtGui import QColor, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGraphicsRectItem,
    QGraphicsItem,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from studio.gui.widgets import PageLayout

NEIGHBOURS = 16
THUMB = 80
GRID_THUMB = 56
POINT_SIZE = 5
HOVER_RADIUS_PX = 8
SYNC_KMEANS_LIMIT = 20_000  # above this, k-means for colouring runs in the worker
LIST_LIMIT = 2000  # rows shown in the selection list; the export always holds every file
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

# Tableau 20, then a few more: distinct on white and dark backgrounds.
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354",
]


# -- worker -------------------------------------------------------------------------------------
class FunctionWorker(QObject):
    """Runs `fn(report, cancelled)` on its QThread; report(stage, done, total) becomes `progress`.

    Progress is emitted only when the percentage or the stage changes (a bounded rate, DESIGN
    rule 4); cancelling sets a flag that `fn` checks between batches.
    """

    progress = Signal(str, int, int)
    finished = Signal(object)
    failed = Signal(str)

    def __init__(self, fn: Callable[[Callable, Callable], Any]):
        super().__init__()
        self._fn = fn
        self._cancel = False
        self._last: tuple[str, int] | None = None

    def cancel(self) -> None:
        self._cancel = True

    def _report(self, stage: str, done: int, total: int) -> None:
        key = (stage, (100 * done) // max(1, total))
        if key != self._last:
            self._last = key
            self.progress.emit(stage, int(done), int(total))

    @Slot()
    def run(self) -> None:
        try:
            result = self._fn(self._report, lambda: self._cancel)
        except Exception as exc:  # noqa: BLE001 - every failure is shown to the user
            self.failed.emit(str(exc) or exc.__class__.__name__)
            return
        self.finished.emit(result)


def start_worker(owner: QObject, fn, on_done, on_failed, on_progress=None) -> tuple[QThread, FunctionWorker]:
    thread = QThread(owner)
    worker = FunctionWorker(fn)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    worker.finished.connect(on_done)
    worker.failed.connect(on_failed)
    if on_progress is not None:
        worker.progress.connect(on_progress)
    worker.finished.connect(thread.quit)
    worker.failed.connect(thread.quit)
    thread.finished.connect(worker.deleteLater)
    thread.start()
    return thread, worker


# -- images -------------------------------------------------------------------------------------
def array_to_pixmap(chw: np.ndarray, size: int) -> QPixmap:
    """uint8 (3, H, W) -> a QPixmap scaled to fit size x size (smooth when shrinking)."""
    hwc = np.ascontiguousarray(np.asarray(chw).transpose(1, 2, 0))
    h, w, _ = hwc.shape
    image = QImage(hwc.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    mode = Qt.TransformationMode.SmoothTransformation if max(h, w) > size else Qt.TransformationMode.FastTransformation
    return QPixmap.fromImage(image).scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, mode)


def file_pixmap(path: str, size: int) -> QPixmap | None:
    try:
        from studio.engine.data.sources import open_image_file

        img = open_image_file(path)
    except Exception:  # noqa: BLE001 - fall back to the decoded cache
        return None
    img.thumbnail((size, size))
    return array_to_pixmap(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1), size)


class _SelectViewBox(pg.ViewBox):
    """A ViewBox that pans on drag, but draws a selection box on Shift+drag or in select mode."""

    sigBoxSelected = Signal(QRectF)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.select_mode = False
        self._band = QGraphicsRectItem()
        self._band.setPen(pg.mkPen("#ffaa00", width=1, style=Qt.PenStyle.DashLine))
        self._band.setBrush(pg.mkBrush(255, 170, 0, 40))
        self._band.setZValue(1e9)
        self._band.hide()
        self.addItem(self._band, ignoreBounds=True)

    def mouseDragEvent(self, ev, axis=None):
        selecting = self.select_mode or bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        if not selecting or ev.button() != Qt.MouseButton.LeftButton:
            return super().mouseDragEvent(ev, axis)
        ev.accept()
        a = self.mapToView(ev.buttonDownPos())
        b = self.mapToView(ev.pos())
        rect = QRectF(a, b).normalized()
        if ev.isFinish():
            self._band.hide()
            self.sigBoxSelected.emit(rect)
        else:
            self._band.setRect(rect)
            self._band.show()


# -- the map ------------------------------------------------------------------------------------
class EmbeddingMapView(pg.PlotWidget):
    """A scatter of (N, 2) coordinates coloured by integer groups; emits point indices."""

    pointHovered = Signal(int)  # -1 when the mouse leaves every point
    pointClicked = Signal(int)
    boxSelected = Signal(object)  # np.ndarray of indices

    def __init__(self, parent=None):
        self._vb = _SelectViewBox()
        super().__init__(parent, viewBox=self._vb)
        self.setBackground("w")
        self.showGrid(x=False, y=False)
        self.hideAxis("left")
        self.hideAxis("bottom")
        self._vb.setAspectLocked(True)
        self.coords = np.zeros((0, 2), np.float32)
        self.groups = np.zeros(0, np.int64)
        self.scatter_items: list[pg.ScatterPlotItem] = []
        self._tree = None
        self._last_hover = -1
        self._highlight = pg.ScatterPlotItem(size=POINT_SIZE * 3, pen=pg.mkPen("k", width=2), brush=pg.mkBrush(0, 0, 0, 0))
        self._highlight.setZValue(10)
        self._neighbour_marks = pg.ScatterPlotItem(size=POINT_SIZE * 2, pen=pg.mkPen("#d62728", width=1.5), brush=pg.mkBrush(0, 0, 0, 0))
        self._neighbour_marks.setZValue(9)
        self.addItem(self._highlight)
        self.addItem(self._neighbour_marks)
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self._vb.sigBoxSelected.connect(self._on_box)

    @property
    def select_mode(self) -> bool:
        return self._vb.select_mode

    @select_mode.setter
    def select_mode(self, on: bool) -> None:
        self._vb.select_mode = bool(on)

    def set_points(self, coords: np.ndarray, groups: np.ndarray | None = None, group_names: list[str] | None = None) -> None:
        """Replace the map: one ScatterPlotItem per colour, each with one shared brush."""
        from scipy.spatial import cKDTree

        coords = np.asarray(coords, dtype=np.float64)
        n = len(coords)
        groups = np.zeros(n, np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
        for item in self.scatter_items:
            self.removeItem(item)
        self.scatter_items = []
        self.coords, self.groups = coords, groups
        self._item_indices: list[np.ndarray] = []
        colours = np.mod(groups, len(PALETTE)) if n else groups
        for colour in np.unique(colours):
            rows = np.flatnonzero(colours == colour)
            brush = pg.mkBrush(QColor(PALETTE[int(colour)]))
            item = pg.ScatterPlotItem(x=coords[rows, 0], y=coords[rows, 1], pen=None, brush=brush,
                                      size=POINT_SIZE, pxMode=True, hoverable=False)
            item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
            names = group_names or []
            present = sorted({int(g) for g in np.unique(groups[rows])})
            item.setToolTip(", ".join(names[g] if g < len(names) else str(g) for g in present[:5]))
            self.addItem(item)
            self.scatter_items.append(item)
            self._item_indices.append(rows)
        self._tree = cKDTree(coords) if n else None
        self._highlight.setData([], [])
        self._neighbour_marks.setData([], [])
        self._last_hover = -1
        if n:
            self.autoRange()

    def point_count(self) -> int:
        return int(sum(len(item.data) for item in self.scatter_items))

    def index_at(self, view_pos) -> int:
        """The point nearest a position in data coordinates, within HOVER_RADIUS_PX pixels; else -1."""
        if self._tree is None:
            return -1
        px = self._vb.viewPixelSize()
        radius = HOVER_RADIUS_PX * max(px[0], px[1])
        dist, idx = self._tree.query([view_pos.x(), view_pos.y()], k=1, distance_upper_bound=radius)
        return int(idx) if np.isfinite(dist) else -1

    def indices_in_rect(self, rect: QRectF) -> np.ndarray:
        c = self.coords
        if not len(c):
            return np.zeros(0, np.int64)
        inside = (c[:, 0] >= rect.left()) & (c[:, 0] <= rect.right()) & (c[:, 1] >= rect.top()) & (c[:, 1] <= rect.bottom())
        return np.flatnonzero(inside)

    def highlight(self, index: int, neighbours: np.ndarray | None = None) -> None:
        if 0 <= index < len(self.coords):
            self._highlight.setData([self.coords[index, 0]], [self.coords[index, 1]])
        else:
            self._highlight.setData([], [])
        if neighbours is not None and len(neighbours):
            pts = self.coords[np.asarray(neighbours)]
            self._neighbour_marks.setData(pts[:, 0], pts[:, 1])
        else:
            self._neighbour_marks.setData([], [])

    def _on_mouse_moved(self, scene_pos) -> None:
        if not self._vb.sceneBoundingRect().contains(scene_pos):
            return
        idx = self.index_at(self._vb.mapSceneToView(scene_pos))
        if idx != self._last_hover:
            self._last_hover = idx
            self.pointHovered.emit(idx)

    def _on_mouse_clicked(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton or ev.double():
            return
        idx = self.index_at(self._vb.mapSceneToView(ev.scenePos()))
        if idx >= 0:
            self.pointClicked.emit(idx)

    def _on_box(self, rect: QRectF) -> None:
        self.boxSelected.emit(self.indices_in_rect(rect))


# -- the page -----------------------------------------------------------------------------------
class ExplorerPage(QWidget):
    """Choose a run, checkpoint, dataset and map; look through the embeddings."""

    busyChanged = Signal(bool)
    dataLoaded = Signal(int)  # number of points shown
    failed = Signal(str)
    neighboursShown = Signal(object)  # np.ndarray of indices

    def __init__(self, project=None, parent=None):
        """`project`: a Project, a project folder (opened and closed by the page), or None to
        only show data handed to `set_data` (benchmarks, previews)."""
        super().__init__(parent)
        from studio.store import Project

        self._owns_project = project is not None and not isinstance(project, Project)
        self.project = Project.open(project) if self._owns_project else project
        self.vectors = np.zeros((0, 0), np.float32)
        self.coords = np.zeros((0, 2), np.float32)
        self.labels = np.zeros(0, np.int64)
        self.clusters: np.ndarray | None = None
        self.names: list[str] = []
        self.class_names: list[str] = []
        self.images: np.ndarray | None = None
        self.image_size = 32
        self.neighbor_indices = np.zeros(0, np.int64)
        self.selected_indices = np.zeros(0, np.int64)
        self.hovered_index = -1
        self._thumbs: OrderedDict[tuple[int, int], QPixmap] = OrderedDict()
        self._thread: QThread | None = None
        self._worker: FunctionWorker | None = None
        self._source: dict[str, Any] = {}
        self._encoder = None
        self._on_done = None
        self._build()
        self.setAcceptDrops(True)
        self.refresh()

    # -- layout ---------------------------------------------------------------------------
    def _build(self) -> None:
        self.run_box = QComboBox()
        self.step_box = QComboBox()
        self.dataset_box = QComboBox()
        self.map_box = QComboBox()
        self.map_box.addItems(["pca", "tsne", "umap"])
        self.colour_box = QComboBox()
        self.colour_box.addItems(["label", "k-means cluster"])
        self.k_spin = QSpinBox()
        self.k_spin.setRange(2, 100)
        self.k_spin.setValue(10)
        self.k_spin.setToolTip("clusters for k-means colouring")
        self.compute_button = QPushButton("Compute")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        self.progress.setFixedWidth(220)
        self.progress.hide()  # shown while a job runs
        self.status = QLabel("Pick a run and press Compute.")
        self.status.setWordWrap(True)

        # Two rows, and combo boxes that may shrink below their longest entry, so the page fits a
        # 1024 px window: what to embed on the first row, how to draw it on the second.
        for box in (self.run_box, self.step_box, self.dataset_box):
            box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(14)
        controls = QVBoxLayout()
        rows = (((("Run", self.run_box), ("Checkpoint", self.step_box), ("Dataset", self.dataset_box)), ()),
                ((("Map", self.map_box), ("Colour by", self.colour_box)), (self.k_spin, self.compute_button,
                                                                          self.cancel_button)))
        for labelled, plain in rows:
            row = QHBoxLayout()
            for label, w in labelled:
                row.addWidget(QLabel(label))
                row.addWidget(w, 1 if w in (self.run_box, self.dataset_box) else 0)
            for w in plain:
                row.addWidget(w)
            if plain:  # the first row's run and dataset boxes take its spare width
                row.addStretch(1)
            controls.addLayout(row)

        self.map_view = EmbeddingMapView()
        self.select_check = QCheckBox("Select (or Shift+drag)")

        # Right panel: hover thumbnail, neighbour grid, selection.
        self.thumb_label = QLabel()
        self.thumb_label.setFixedSize(THUMB, THUMB)
        self.thumb_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb_label.setStyleSheet("border: 1px solid #bbb;")
        self.thumb_caption = QLabel("Hover a point")
        self.thumb_caption.setWordWrap(True)
        self.neighbour_title = QLabel("Click a point (or drop an image file) for its 16 nearest neighbours")
        self.neighbour_title.setWordWrap(True)
        grid_widget = QWidget()
        grid = QGridLayout(grid_widget)
        grid.setSpacing(2)
        self.neighbour_labels: list[QLabel] = []
        for i in range(NEIGHBOURS):
            lab = QLabel()
            lab.setFixedSize(GRID_THUMB, GRID_THUMB)
            lab.setAlignment(Qt.AlignmentFlag.AlignCenter)
            lab.setStyleSheet("border: 1px solid #ddd;")
            grid.addWidget(lab, i // 4, i % 4)
            self.neighbour_labels.append(lab)
        self.selection_title = QLabel("No selection")
        self.selection_list = QListWidget()
        self.selection_list.setMinimumHeight(48)
        self.export_button = QPushButton("Export list...")
        self.export_button.setEnabled(False)

        side = QWidget()
        side_layout = QVBoxLayout(side)
        top = QHBoxLayout()
        top.addWidget(self.thumb_label)
        top.addWidget(self.thumb_caption, 1)
        side_layout.addLayout(top)
        side_layout.addWidget(self.neighbour_title)
        side_layout.addWidget(grid_widget)
        side_layout.addWidget(self.selection_title)
        side_layout.addWidget(self.selection_list, 1)
        side_layout.addWidget(self.export_button)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.map_view, 1)
        left_layout.addWidget(self.select_check)

        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(side)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)

        layout = PageLayout(self)
        layout.addLayout(controls)
        status_row = QHBoxLayout()
        status_row.addWidget(self.status, 1)
        status_row.addWidget(self.progress)
        layout.addLayout(status_row)
        layout.addWidget(splitter, 1)

        self.run_box.currentIndexChanged.connect(self._fill_steps)
        self.compute_button.clicked.connect(self.compute)
        self.cancel_button.clicked.connect(self.cancel)
        self.colour_box.currentIndexChanged.connect(self._recolour)
        self.k_spin.editingFinished.connect(self._on_k_changed)
        self.select_check.toggled.connect(lambda on: setattr(self.map_view, "select_mode", on))
        self.export_button.clicked.connect(self._export_dialog)
        self.map_view.pointHovered.connect(self.show_hover)
        self.map_view.pointClicked.connect(self.show_neighbors)
        self.map_view.boxSelected.connect(self.set_selection)

    # -- choices --------------------------------------------------------------------------
    def refresh(self) -> None:
        """Reload the runs and datasets from the project (after a run finishes, say)."""
        current_run = self.run_box.currentData()
        self.run_box.blockSignals(True)
        self.run_box.clear()
        runs = self.project.runs() if self.project is not None else []
        for run in runs:
            self.run_box.addItem(f"#{run.id} {run.method} · {run.backbone} · {run.dataset} ({run.status})", run.id)
        idx = self.run_box.findData(current_run)
        self.run_box.setCurrentIndex(idx if idx >= 0 else self.run_box.count() - 1)
        self.run_box.blockSignals(False)
        current_ds = self.dataset_box.currentData()
        self.dataset_box.clear()
        self.dataset_box.addItem("the run's dataset", None)
        for ds in self.project.datasets() if self.project is not None else []:
            self.dataset_box.addItem(f"{ds.name} ({ds.images} images)", ds.id)
        idx = self.dataset_box.findData(current_ds)
        self.dataset_box.setCurrentIndex(max(0, idx))
        self._fill_steps()
        self.compute_button.setEnabled(self.run_box.count() > 0)

    def _fill_steps(self) -> None:
        self.step_box.clear()
        run_id = self.run_box.currentData()
        if run_id is None or self.project is None:
            return
        self.step_box.addItem("newest checkpoint", None)
        for ck in reversed(self.project.checkpoints(run_id)):
            self.step_box.addItem(f"step {ck.step} ({Path(ck.path).name})", ck.step)
        self.step_box.addItem("initial weights (step 0)", 0)

    # -- computing ------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._thread is not None

    def compute(self, run_id: int | None = None, checkpoint_step: int | None = -1, dataset: int | str | None = -1,
                algorithm: str | None = None) -> None:
        """Compute (or read back) embeddings and the map in a worker; arguments override the boxes."""
        if self.busy:
            return
        run_id = self.run_box.currentData() if run_id in (None, False) else run_id
        if run_id is None or self.project is None:
            self._fail("there is no run to explore yet; train one first.")
            return
        step = self.step_box.currentData() if checkpoint_step == -1 else checkpoint_step
        dataset = self.dataset_box.currentData() if dataset == -1 else dataset
        algorithm = algorithm or self.map_box.currentText()
        k = self.k_spin.value()
        want_clusters = self.colour_box.currentIndex() == 1
        project = self.project

        def job(report, cancelled):
            from studio.engine.eval import kmeans_labels
            from studio.services.evaluation import compute_embeddings, embedding_map

            emb = compute_embeddings(project, run_id, dataset, step, device="auto", report=report, cancelled=cancelled)
            coords = embedding_map(project, emb, algorithm, report=report)
            clusters = None
            if want_clusters or not emb.has_labels:
                report("k-means", 0, 1)
                clusters = kmeans_labels(emb.vectors, k)
            return {"emb": emb, "coords": coords, "clusters": clusters, "run_id": run_id, "algorithm": algorithm}

        self._source = {"run_id": run_id, "step": step}
        self._encoder = None
        self._start(job, self._on_computed)

    def _start(self, job, on_done) -> None:
        self.compute_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)
        self.progress.setFormat("")
        self.progress.show()
        self.busyChanged.emit(True)
        self._on_done = on_done
        # Bound slots of this widget (not lambdas) so Qt queues them onto the GUI thread.
        self._thread, self._worker = start_worker(self, job, self._finish, self._fail, self._on_progress)

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self.status.setText("Cancelling...")

    @Slot(str, int, int)
    def _on_progress(self, stage: str, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self.progress.setFormat(f"{stage} %p%")
        self.status.setText(f"{stage}: {done}/{total}")

    def _end_job(self) -> None:
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait(5000)
        self._thread, self._worker = None, None
        self.compute_button.setEnabled(self.run_box.count() > 0)
        self.cancel_button.setEnabled(False)
        self.progress.hide()
        self.busyChanged.emit(False)

    @Slot(object)
    def _finish(self, result) -> None:
        on_done, self._on_done = self._on_done, None
        self._end_job()
        if on_done is not None:
            on_done(result)

    @Slot(str)
    def _fail(self, message: str) -> None:
        self._end_job()
        self.status.setText(f"Error: {message}")
        self.failed.emit(message)

    def _on_computed(self, result: dict) -> None:
        emb = result["emb"]
        self.set_data(emb.vectors, result["coords"], emb.labels, emb.names, emb.images, emb.class_names,
                      clusters=result["clusters"])
        self.status.setText(f"{len(emb)} images, {emb.vectors.shape[1]}-dim embeddings, {result['algorithm']} map "
                            f"(run {result['run_id']}, step {emb.record.checkpoint_step}).")

    # -- showing --------------------------------------------------------------------------
    def set_data(self, vectors, coords, labels=None, names=None, images=None, class_names=None, clusters=None) -> None:
        """Show embeddings (N, D) at map coordinates (N, 2); labels, names and images per point."""
        vectors = np.asarray(vectors, dtype=np.float32)
        n = len(vectors)
        self.vectors = vectors
        self.coords = np.asarray(coords, dtype=np.float32)
        self.labels = np.full(n, -1, np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
        self.names = list(names) if names is not None else [str(i) for i in range(n)]
        self.images = images
        if images is not None and len(images):
            self.image_size = int(images.shape[-1])
        self.class_names = list(class_names or [])
        self.clusters = None if clusters is None else np.asarray(clusters, dtype=np.int64)
        self._thumbs.clear()
        self.neighbor_indices = np.zeros(0, np.int64)
        self.set_selection(np.zeros(0, np.int64))
        for lab in self.neighbour_labels:
            lab.clear()
            lab.setToolTip("")
        self._recolour()
        self.dataLoaded.emit(n)

    def _recolour(self) -> None:
        if not len(self.coords):
            self.map_view.set_points(self.coords)
            return
        by_cluster = self.colour_box.currentIndex() == 1
        has_labels = len(self.class_names) > 1 and bool((self.labels >= 0).all())
        if (by_cluster or not has_labels) and self.clusters is None and len(self.vectors) >= 2:
            from studio.engine.eval import kmeans_labels

            if len(self.vectors) > SYNC_KMEANS_LIMIT and not self.busy:
                # Seconds of k-means on a large set belong in the worker, not the event loop.
                vectors, k = self.vectors, self.k_spin.value()
                self._start(lambda report, cancelled: kmeans_labels(vectors, k), self._on_clusters)
            elif len(self.vectors) <= SYNC_KMEANS_LIMIT:
                self.clusters = kmeans_labels(self.vectors, self.k_spin.value())
        if (by_cluster or not has_labels) and self.clusters is not None:
            groups, names = self.clusters, [f"cluster {i}" for i in range(int(self.clusters.max()) + 1)]
        else:
            groups, names = np.maximum(self.labels, 0), self.class_names
        self.map_view.set_points(self.coords, groups, names)

    def _on_clusters(self, clusters) -> None:
        self.clusters = np.asarray(clusters, dtype=np.int64)
        self._recolour()

    def _on_k_changed(self) -> None:
        if self.colour_box.currentIndex() == 1 or self.clusters is not None:
            self.clusters = None
            self._recolour()

    def thumbnail(self, index: int, size: int = THUMB) -> QPixmap:
        """The image of a point: from its file when it is one, else from the decoded cache."""
        key = (int(index), size)
        pix = self._thumbs.get(key)
        if pix is not None:
            self._thumbs.move_to_end(key)
            return pix
        pix = None
        name = self.names[index] if 0 <= index < len(self.names) else ""
        if name and os.path.isfile(name):
            pix = file_pixmap(name, size)
        if pix is None and self.images is not None:
            pix = array_to_pixmap(self.images[index], size)
        pix = pix or QPixmap()
        self._thumbs[key] = pix
        if len(self._thumbs) > 512:
            self._thumbs.popitem(last=False)
        return pix

    def _caption(self, index: int) -> str:
        text = self.names[index]
        lab = int(self.labels[index]) if len(self.labels) else -1
        if 0 <= lab < len(self.class_names):
            text += f"\nclass: {self.class_names[lab]}"
        if self.clusters is not None:
            text += f"\ncluster: {int(self.clusters[index])}"
        return text

    @Slot(int)
    def show_hover(self, index: int) -> None:
        """Show the hovered point's thumbnail and name (index -1: nothing hovered)."""
        self.hovered_index = int(index)
        if not 0 <= index < len(self.names):
            return
        self.thumb_label.setPixmap(self.thumbnail(index))
        self.thumb_caption.setText(self._caption(index))

    @Slot(int)
    def show_neighbors(self, index: int) -> None:
        """Fill the grid with the 16 images nearest (cosine) to point `index` in embedding space."""
        from studio.engine.eval import nearest_neighbors

        if not 0 <= index < len(self.vectors):
            return
        idx, sims = nearest_neighbors(self.vectors, index, NEIGHBOURS)
        self.neighbour_title.setText(f"Nearest to {Path(self.names[index]).name}")
        self.show_hover(index)
        self._show_grid(idx, sims)
        self.map_view.highlight(index, idx)

    def _show_grid(self, idx: np.ndarray, sims: np.ndarray) -> None:
        self.neighbor_indices = np.asarray(idx, dtype=np.int64)
        for i, lab in enumerate(self.neighbour_labels):
            if i < len(idx):
                j = int(idx[i])
                lab.setPixmap(self.thumbnail(j, GRID_THUMB))
                lab.setToolTip(f"{self.names[j]}\ncosine {float(sims[i]):.3f}")
            else:
                lab.clear()
                lab.setToolTip("")
        self.neighboursShown.emit(self.neighbor_indices)

    # -- selection ------------------------------------------------------------------------
    def select_rect(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Select the points inside a box of map coordinates (what a drag box does)."""
        idx = self.map_view.indices_in_rect(QRectF(min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0)))
        self.set_selection(idx)
        return idx

    @Slot(object)
    def set_selection(self, indices) -> None:
        self.selected_indices = np.asarray(indices, dtype=np.int64)
        self.selection_list.clear()
        shown = self.selected_indices[:LIST_LIMIT]
        self.selection_list.addItems([self.names[int(i)] for i in shown])
        more = len(self.selected_indices) - len(shown)
        self.selection_title.setText(
            f"{len(self.selected_indices)} selected" + (f" (first {LIST_LIMIT} listed)" if more > 0 else "")
            if len(self.selected_indices) else "No selection (Shift+drag a box)")
        self.export_button.setEnabled(len(self.selected_indices) > 0)

    def selected_paths(self) -> list[str]:
        return [self.names[int(i)] for i in self.selected_indices]

    def export_selection(self, path: str | os.PathLike) -> Path:
        """Write the selected files: .csv with index, file, label, class, x, y; else one file a line."""
        path = Path(path)
        if path.suffix.lower() == ".csv":
            with open(path, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["index", "file", "label", "class", "x", "y"])
                for i in self.selected_indices:
                    i = int(i)
                    lab = int(self.labels[i])
                    cls = self.class_names[lab] if 0 <= lab < len(self.class_names) else ""
                    w.writerow([i, self.names[i], lab, cls, float(self.coords[i, 0]), float(self.coords[i, 1])])
        else:
            path.write_text("".join(f"{name}\n" for name in self.selected_paths()), encoding="utf-8")
        self.status.setText(f"Exported {len(self.selected_indices)} files to {path}.")
        return path

    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the selected files", "selection.csv",
                                              "CSV (*.csv);;Text, one file a line (*.txt)")
        if path:
            self.export_selection(path)

    # -- dropping an image ----------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
        if any(u.isLocalFile() and u.toLocalFile().lower().endswith(IMAGE_SUFFIXES) for u in urls):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile() and url.toLocalFile().lower().endswith(IMAGE_SUFFIXES):
                event.acceptProposedAction()
                self.find_neighbors_of_file(url.toLocalFile())
                return

    def embed_file(self, path: str) -> np.ndarray:
        """The embedding (D,) of an image file by the shown run's encoder (call off the GUI thread)."""
        from studio.engine.data.cache import resize_square
        from studio.engine.data.sources import open_image_file
        from studio.engine.eval import embed_images
        from studio.services.evaluation import run_encoder

        if self._encoder is None:
            if not self._source:
                raise RuntimeError("compute a map first: the dropped image is compared with its embeddings.")
            self._encoder = run_encoder(self.project, self._source["run_id"], self._source["step"], "cpu")
        encoder, config, _ = self._encoder
        pixels = resize_square(open_image_file(path), config.image_size)[None]
        return embed_images(encoder, pixels, 1, config.image_size)[0]

    def find_neighbors_of_file(self, path: str, wait: bool = False) -> None:
        """Embed a dropped image in a worker, then show its 16 nearest neighbours."""
        if self.busy or not len(self.vectors):
            self.status.setText("Compute a map first, then drop an image on it.")
            return
        path = str(path)

        def job(report, cancelled):
            report("embedding the dropped image", 0, 1)
            return self.embed_file(path)

        self._start(job, lambda vec: self.show_neighbors_of_vector(vec, Path(path).name))

    def show_neighbors_of_vector(self, vector, title: str = "the image") -> np.ndarray:
        from studio.engine.eval import nearest_to_vector

        idx, sims = nearest_to_vector(self.vectors, vector, NEIGHBOURS)
        self.neighbour_title.setText(f"Nearest to {title}")
        self._show_grid(idx, sims)
        self.map_view.highlight(-1, idx)
        return idx

    # -- life cycle -----------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop a running job and close the project if this page opened it."""
        if self._worker is not None:
            self._worker.cancel()
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait(30000)
            self._thread, self._worker = None, None
        if self._owns_project:
            self.project.close()
            self._owns_project = False

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)


__all__ = ["EmbeddingMapView", "ExplorerPage", "FunctionWorker", "start_worker"]
