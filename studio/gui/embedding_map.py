"""The embedding map: a run's embeddings as 2-D points, drawn with pyqtgraph.

`EmbeddingMapView` draws one `ScatterPlotItem` per colour sharing one brush (per-point brush
lists are slow to build and crash pyqtgraph at exit beyond ~10k points; DESIGN.md field notes),
finds the point under the mouse with a k-d tree instead of pyqtgraph's per-item hit tests, and
selects with a drag box or a lasso (Shift+drag, or drag in "Select" mode); the selection is drawn
as one ring item over the points. Colours follow the palette's theme (`apply_theme`).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainterPath, QPixmap
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPathItem, QGraphicsRectItem

from studio.gui.style import colour
from studio.gui.widgets import plain_tip

POINT_SIZE = 5
HOVER_RADIUS_PX = 8

# The projections' names as people write them (the engine's keys are lower case).
MAP_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


def map_name(algorithm: str) -> str:
    return MAP_NAMES.get(algorithm, algorithm)


def group_colour(group: int) -> str:
    """The colour of a group (class, cluster, tag) on the map and in its legend."""
    return PALETTE[int(group) % len(PALETTE)]


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """A boolean mask of the (N, 2) points inside the closed (M, 2) polygon (even-odd rule, ray
    casting vectorised over the points, one pass per edge)."""
    points = np.asarray(points, dtype=np.float64)
    poly = np.asarray(polygon, dtype=np.float64)
    inside = np.zeros(len(points), dtype=bool)
    if len(poly) < 3 or not len(points):
        return inside
    x, y = points[:, 0], points[:, 1]
    x0, y0 = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    for ax, ay, bx, by in zip(x0, y0, x1, y1):
        crosses = (ay > y) != (by > y)
        if not crosses.any():
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            xs = ax + (y - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (x < xs)
    return inside

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
    """A ViewBox that pans on drag, but selects on Shift+drag or in select mode: a box, or a
    lasso (a free-hand polygon) when `lasso` is on."""

    sigBoxSelected = Signal(QRectF)
    sigLassoSelected = Signal(object)  # (M, 2) np.ndarray: the polygon in data coordinates

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.select_mode = False
        self.lasso = False
        self._trail: list[tuple[float, float]] = []
        pen = pg.mkPen("#ffaa00", width=1, style=Qt.PenStyle.DashLine)
        self._band = QGraphicsRectItem()
        self._band.setPen(pen)
        self._band.setBrush(pg.mkBrush(255, 170, 0, 40))
        self._band.setZValue(1e9)
        self._band.hide()
        self.addItem(self._band, ignoreBounds=True)
        self._loop = QGraphicsPathItem()
        self._loop.setPen(pen)
        self._loop.setBrush(pg.mkBrush(255, 170, 0, 40))
        self._loop.setZValue(1e9)
        self._loop.hide()
        self.addItem(self._loop, ignoreBounds=True)

    def mouseDragEvent(self, ev, axis=None):
        selecting = self.select_mode or bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        if not selecting or ev.button() != Qt.MouseButton.LeftButton:
            return super().mouseDragEvent(ev, axis)
        ev.accept()
        b = self.mapToView(ev.pos())
        if self.lasso:
            if ev.isStart() or not self._trail:
                a = self.mapToView(ev.buttonDownPos())
                self._trail = [(a.x(), a.y())]
            self._trail.append((b.x(), b.y()))
            if ev.isFinish():
                self._loop.hide()
                polygon, self._trail = np.asarray(self._trail, dtype=np.float64), []
                self.sigLassoSelected.emit(polygon)
            else:
                path = QPainterPath()
                path.moveTo(*self._trail[0])
                for x, y in self._trail[1:]:
                    path.lineTo(x, y)
                path.closeSubpath()
                self._loop.setPath(path)
                self._loop.show()
            return
        a = self.mapToView(ev.buttonDownPos())
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
    boxSelected = Signal(object)  # np.ndarray of indices (from a box or a lasso)

    def __init__(self, parent=None):
        self._vb = _SelectViewBox()
        super().__init__(parent, viewBox=self._vb)
        self.showGrid(x=False, y=False)
        self.hideAxis("left")
        self.hideAxis("bottom")
        self._vb.setAspectLocked(True)
        self.coords = np.zeros((0, 2), np.float32)
        self.groups = np.zeros(0, np.int64)
        self.group_names: list[str] = []
        self.scatter_items: list[pg.ScatterPlotItem] = []
        self.item_groups: list[int] = []  # the group each scatter item draws
        self.isolated: int | None = None  # the one group shown, or None for all
        self.selected = np.zeros(0, np.int64)
        self._item_indices: list[np.ndarray] = []
        self._tree = None
        self._tree_rows: np.ndarray | None = None  # tree row -> point index, while a group is isolated
        self._last_hover = -1
        self._highlight = pg.ScatterPlotItem(size=POINT_SIZE * 3, brush=pg.mkBrush(0, 0, 0, 0))
        self._highlight.setZValue(10)
        self._neighbour_marks = pg.ScatterPlotItem(size=POINT_SIZE * 2, pen=pg.mkPen("#d62728", width=1.5), brush=pg.mkBrush(0, 0, 0, 0))
        self._neighbour_marks.setZValue(9)
        # The selection: one item, one shared pen and brush (DESIGN.md field notes), over the points.
        self.selection_item = pg.ScatterPlotItem(size=POINT_SIZE + 4, pxMode=True, hoverable=False)
        self.selection_item.setZValue(8)
        self.addItem(self._highlight)
        self.addItem(self._neighbour_marks)
        self.addItem(self.selection_item)
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self._vb.sigBoxSelected.connect(self._on_box)
        self._vb.sigLassoSelected.connect(self._on_lasso)
        self.apply_theme()

    def apply_theme(self) -> None:
        """The background and the marks in the current theme (restyle_plots calls this)."""
        self.setBackground(colour("#ffffff"))
        ink = colour("#1d2530")
        self._highlight.setPen(pg.mkPen(ink, width=2))
        self.selection_item.setPen(pg.mkPen(ink, width=1.5))
        self.selection_item.setBrush(pg.mkBrush(255, 170, 0, 170))

    @property
    def select_mode(self) -> bool:
        return self._vb.select_mode

    @select_mode.setter
    def select_mode(self, on: bool) -> None:
        self._vb.select_mode = bool(on)

    @property
    def lasso(self) -> bool:
        return self._vb.lasso

    @lasso.setter
    def lasso(self, on: bool) -> None:
        self._vb.lasso = bool(on)

    def set_points(self, coords: np.ndarray, groups: np.ndarray | None = None, group_names: list[str] | None = None) -> None:
        """Replace the map: one ScatterPlotItem per group, each with one shared brush."""
        coords = np.asarray(coords, dtype=np.float64)
        n = len(coords)
        groups = np.zeros(n, np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
        # A new colouring of the same points keeps the person's zoom and the hover tree.
        recolour = (getattr(self, "coords", None) is not None and self.coords.shape == coords.shape
                    and getattr(self, "isolated", None) is None and np.array_equal(self.coords, coords))
        for item in self.scatter_items:
            self.removeItem(item)
        self.scatter_items, self.item_groups, self._item_indices = [], [], []
        self.coords, self.groups = coords, groups
        self.group_names = list(group_names or [])
        for group in np.unique(groups) if n else []:
            rows = np.flatnonzero(groups == group)
            brush = pg.mkBrush(QColor(group_colour(int(group))))
            item = pg.ScatterPlotItem(x=coords[rows, 0], y=coords[rows, 1], pen=None, brush=brush,
                                      size=POINT_SIZE, pxMode=True, hoverable=False)
            item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
            item.setToolTip(plain_tip(self.group_name(int(group))))
            self.addItem(item)
            self.scatter_items.append(item)
            self.item_groups.append(int(group))
            self._item_indices.append(rows)
        self.isolated = None
        if not recolour:
            self._build_tree()
        self._highlight.setData([], [])
        self._neighbour_marks.setData([], [])
        self.set_selected(np.zeros(0, np.int64))
        self._last_hover = -1
        if n and not recolour:
            self.autoRange()

    def group_name(self, group: int) -> str:
        return self.group_names[group] if 0 <= group < len(self.group_names) else str(group)

    def legend_entries(self) -> list[tuple[int, str, str, int]]:
        """(group, name, colour, count) per group drawn, in group order: what the legend lists."""
        return [(g, self.group_name(g), group_colour(g), len(rows)) for g, rows in zip(self.item_groups, self._item_indices)]

    def isolate(self, group: int | None) -> None:
        """Show only the points of one group (None: every group); hover and clicks follow."""
        self.isolated = None if group is None or group not in self.item_groups else int(group)
        for g, item in zip(self.item_groups, self.scatter_items):
            item.setVisible(self.isolated is None or g == self.isolated)
        self._build_tree()

    def visible_indices(self) -> np.ndarray:
        if self.isolated is None:
            return np.arange(len(self.coords))
        return self._item_indices[self.item_groups.index(self.isolated)]

    def _build_tree(self) -> None:
        from scipy.spatial import cKDTree

        rows = self.visible_indices()
        self._tree_rows = rows
        self._tree = cKDTree(self.coords[rows]) if len(rows) else None

    def point_count(self) -> int:
        return int(sum(len(item.data) for item in self.scatter_items))

    def index_at(self, view_pos) -> int:
        """The point nearest a position in data coordinates, within HOVER_RADIUS_PX pixels; else -1."""
        if self._tree is None:
            return -1
        px = self._vb.viewPixelSize()
        radius = HOVER_RADIUS_PX * max(px[0], px[1])
        dist, idx = self._tree.query([view_pos.x(), view_pos.y()], k=1, distance_upper_bound=radius)
        return int(self._tree_rows[int(idx)]) if np.isfinite(dist) else -1

    def _visible_only(self, mask: np.ndarray) -> np.ndarray:
        if self.isolated is not None:
            mask &= self.groups == self.isolated
        return np.flatnonzero(mask)

    def indices_in_rect(self, rect: QRectF) -> np.ndarray:
        c = self.coords
        if not len(c):
            return np.zeros(0, np.int64)
        inside = (c[:, 0] >= rect.left()) & (c[:, 0] <= rect.right()) & (c[:, 1] >= rect.top()) & (c[:, 1] <= rect.bottom())
        return self._visible_only(inside)

    def indices_in_polygon(self, polygon) -> np.ndarray:
        """The shown points inside a polygon of data coordinates (a lasso)."""
        if not len(self.coords):
            return np.zeros(0, np.int64)
        return self._visible_only(points_in_polygon(self.coords, polygon))

    def set_selected(self, indices) -> None:
        """Ring the selected points (one item, drawn over the rest)."""
        self.selected = np.asarray(indices, dtype=np.int64)
        if len(self.selected):
            pts = self.coords[self.selected]
            self.selection_item.setData(pts[:, 0], pts[:, 1])
        else:
            self.selection_item.setData([], [])

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

    def _on_lasso(self, polygon) -> None:
        self.boxSelected.emit(self.indices_in_polygon(polygon))


# -- the page -----------------------------------------------------------------------------------
