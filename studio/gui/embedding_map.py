"""The embedding map: a run's embeddings as 2-D points, drawn with pyqtgraph.

`EmbeddingMapView` draws one `ScatterPlotItem` per colour sharing one brush (per-point brush
lists are slow to build and crash pyqtgraph at exit beyond ~10k points; DESIGN.md field notes),
finds the point under the mouse with a k-d tree instead of pyqtgraph's per-item hit tests, and
selects with a drag box (Shift+drag, or drag in "Select" mode).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPixmap
from PySide6.QtWidgets import QGraphicsItem, QGraphicsRectItem

from studio.gui.widgets import plain_tip

POINT_SIZE = 5
HOVER_RADIUS_PX = 8

# Tableau 20, then a few more: distinct on white and dark backgrounds.
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354",
]


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
            item.setToolTip(plain_tip(", ".join(names[g] if g < len(names) else str(g) for g in present[:5])))
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
