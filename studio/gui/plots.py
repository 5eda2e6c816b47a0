"""A plot of step-indexed metric series, readable in either theme, that moves its view as seldom
as it can (so its cached axes are reused while a run trains)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QGraphicsItem

from studio.gui.style import CURVE_COLOURS, colour

Y_SHRINK = 0.4  # the y range is refitted when the values span less than this fraction of it
Y_PAD = 0.1  # of the values' span, above and below
Y_TRAVEL = 0.5  # of the values' span, on the side the values left the view by


# Metric names as people read them (the store keeps the engine's keys); other names are shown
# with their underscores as spaces. The one table of these words: plots, combo boxes, axes.
METRIC_LABELS = {
    "loss": "loss", "lr": "learning rate", "images_per_s": "images/s", "epoch": "epoch",
    "knn_top1": "kNN top-1", "linear_top1": "linear top-1", "finetune_top1": "fine-tune top-1",
    "finetune_random_top1": "fine-tune top-1 (random init)",
    "embedding_std": "embedding std", "embedding_std_ratio": "embedding std ratio",
    "effective_rank": "effective rank", "uniformity": "uniformity", "alignment": "alignment",
    "collapse": "collapse (1 = collapsing)", "eta_s": "time left (s)",
}


def metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name.replace("_", " "))


def smooth_ema(values, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average with weight `weight` (0 keeps the
    values) whose start is debiased (divided by 1 - weight^n), so the first points are not pulled
    towards zero; non-finite values are passed over (the average keeps its last value)."""
    y = np.asarray(values, dtype=float)
    if weight <= 0 or y.size == 0:
        return y
    out = np.empty_like(y)
    last, n = 0.0, 0
    for i, v in enumerate(y):
        if np.isfinite(v):
            last = last * weight + (1.0 - weight) * v
            n += 1
        out[i] = last / (1.0 - weight ** n) if n else v
    return out


def positive(values) -> bool:
    """Whether a series can be drawn on a log scale (every finite value above zero)."""
    y = np.asarray(values, dtype=float)
    y = y[np.isfinite(y)]
    return bool(y.size) and bool((y > 0).all())


def theme_plot(widget: pg.PlotWidget) -> None:
    """A plot's background, axes, tick labels and legend in the current theme's colours: the one
    place plots take their colours from the palette (called again on theme changes)."""
    widget.setBackground(colour("#ffffff"))
    item = widget.getPlotItem()
    for side in ("left", "bottom"):
        axis = item.getAxis(side)
        axis.setPen(pg.mkPen(colour("#9aa3ae")))
        axis.setTextPen(pg.mkPen(colour("#3a4350")))
        axis.setLabel(axis.labelText, units=axis.labelUnits, color=colour("#3a4350"))
    legend = item.legend
    if legend is not None:
        legend.setBrush(pg.mkBrush(colour("#ffffff")))
        legend.setPen(pg.mkPen(colour("#c5ccd6")))
        legend.setLabelTextColor(colour("#3a4350"))


def plot_title(text: str) -> str:
    return f"<span style='color:{colour('#1d2530')};font-size:10pt;font-weight:600'>{text}</span>"


class ValueAxis(pg.AxisItem):
    """A y axis whose log scale labels 1, 2 and 5 of each decade first and the other multiples
    only where they have room (pyqtgraph labels all nine at one level: below 1 they overlap)."""

    def logTickValues(self, minVal, maxVal, size, stdTicks):  # noqa: N802,N803 - pyqtgraph override
        levels = super().logTickValues(minVal, maxVal, size, stdTicks)
        if not levels or levels[-1][0] is not None:
            return levels
        minor = levels[-1][1]
        first = [v for v in minor if round(10 ** (v - np.floor(v + 1e-9))) in (1, 2, 5)]
        rest = [v for v in minor if v not in first]
        return [*levels[:-1], (None, first), (None, rest)]


class MetricPlot(pg.PlotWidget):
    """A plot of one or more step-indexed series, readable on a white page."""

    resized = None  # a callback after each resize (to place overlay widgets)

    def __init__(self, title: str, y_label: str, y_units: str | None = None, legend: bool = False,
                 empty_text: str = "waiting for the first step…"):
        super().__init__(background=colour("#ffffff"), axisItems={"left": ValueAxis("left")})
        self.setMinimumHeight(150)
        self.title_text = title
        item = self.getPlotItem()
        item.setLabel("bottom", "step")
        item.setLabel("left", y_label, units=y_units)
        item.getAxis("left").enableAutoSIPrefix(False)
        item.getAxis("bottom").enableAutoSIPrefix(False)
        item.showGrid(x=True, y=True, alpha=0.15)
        item.setMenuEnabled(False)
        self.legend = item.addLegend(offset=(-10, 10), labelTextColor=colour("#3a4350")) if legend else None
        self.curves: dict[str, pg.PlotDataItem] = {}
        # With smoothing on, each curve is drawn smoothed over its raw values, drawn faint (as
        # TensorBoard does): a spike stays visible while the trend reads clearly.
        self.smoothing = 0.0
        self.log_y = False
        self.raw_curves: dict[str, pg.PlotDataItem] = {}
        self._series: dict[str, tuple[np.ndarray, np.ndarray, dict]] = {}
        # The axes and their grid are kept as pixmaps, reused while the view stands still (see
        # fit_view): a repaint then costs about 1 ms of the GUI thread instead of 10-30 ms.
        for side in ("left", "bottom"):
            item.getAxis(side).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.following = True  # fit_view moves the view; off once the user pans or zooms
        self._x_span: float | None = None
        self._x_total: int | None = None
        self._y_span: tuple[float, float] | None = None
        item.getViewBox().sigRangeChangedManually.connect(self._on_manual_range)
        item.autoBtn.clicked.connect(lambda *_: self.reset_view(self._x_total))
        # Shown while the plot has no point yet, on an empty 0..1 view (not the last run's axes).
        self.waiting = pg.TextItem(empty_text, anchor=(0.5, 0.5))
        self.waiting.setPos(0.5, 0.5)
        item.addItem(self.waiting, ignoreBounds=True)
        self.apply_theme()

    def set_title(self, text: str) -> None:
        self.title_text = text
        self.getPlotItem().setTitle(plot_title(text) if text.strip() else " ")

    def apply_theme(self) -> None:
        """Background, axes and title in the current theme's colours (called on theme changes)."""
        theme_plot(self)
        self.waiting.setColor(colour("#6b7480"))
        self.set_title(self.title_text)

    def resizeEvent(self, event):  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if self.resized is not None:
            self.resized()

    def curve(self, name: str) -> pg.PlotDataItem:
        if name not in self.curves:
            colour = CURVE_COLOURS[len(self.curves) % len(CURVE_COLOURS)]
            c = self.plot(pen=pg.mkPen(colour, width=2), name=name)
            c.setDownsampling(auto=True, method="peak")
            c.setClipToView(True)
            self.curves[name] = c
        return self.curves[name]

    def set_series(self, name: str, x, y, **style) -> None:
        """Draw `name`'s raw values (x, y), smoothed and on the y scale this plot is set to."""
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        self._series[name] = (x, y, style)
        self.curve(name).setData(x, smooth_ema(y, self.smoothing), **style)
        raw = self.raw_curves.get(name)
        if self.smoothing > 0:
            if raw is None:
                faint = pg.mkColor(self.curve(name).opts["pen"].color())
                faint.setAlpha(70)
                raw = self.raw_curves[name] = self.plot(pen=pg.mkPen(faint, width=1))
                raw.setZValue(-1)
                raw.setDownsampling(auto=True, method="peak")
                raw.setClipToView(True)
            raw.setData(x, y)
        elif raw is not None:
            self.getPlotItem().removeItem(self.raw_curves.pop(name))

    def set_view_options(self, smoothing: float | None = None, log_y: bool | None = None, refit: bool = True) -> None:
        """Smoothing weight (0..1) and a log y axis; the curves drawn so far are redrawn (and the
        view refitted to them, unless the caller redraws them anew)."""
        changed = False
        if smoothing is not None and smoothing != self.smoothing:
            self.smoothing, changed = float(smoothing), True
        if log_y is not None and bool(log_y) != self.log_y:
            self.log_y, changed = bool(log_y), True
            self.getPlotItem().setLogMode(False, self.log_y)

        if changed:
            for name, (x, y, style) in list(self._series.items()):
                self.set_series(name, x, y, **style)
            self._y_span = None
            if refit:
                self.fit_view(self._x_total)

    def remove_curve(self, name: str) -> None:
        for curves in (self.curves, self.raw_curves):
            if name in curves:
                self.getPlotItem().removeItem(curves.pop(name))
        self._series.pop(name, None)

    def drawn(self) -> list[pg.PlotDataItem]:
        return [*self.curves.values(), *self.raw_curves.values()]

    def reset_view(self, total_steps: int | None = None) -> None:
        """Follow the data again (a new run, or the plot's "A" button after a pan or zoom)."""
        self.following = True
        self._x_span = self._y_span = None
        self.enableAutoRange()
        self.fit_view(total_steps)

    def _on_manual_range(self, *_) -> None:
        self.following = False

    def fit_view(self, total_steps: int | None = None) -> None:
        """Keep every point in view while moving the view as seldom as possible, so the cached
        axes are reused: x spans `total_steps` (growing by half past the data when it is not
        known); y is refitted only when a value leaves it, or when the values have
        shrunk to under Y_SHRINK of it (a loss that settles)."""
        self._x_total = total_steps
        if not self.following:
            return
        xs = [c.xData for c in self.drawn() if c.xData is not None and len(c.xData)]
        self.waiting.setVisible(not xs)
        if not xs:
            if self._x_span is None:  # an empty plot: a plain 0..1 view, not the previous run's
                item = self.getPlotItem()
                item.getViewBox().disableAutoRange()
                item.setXRange(0, 1, padding=0)
                item.setYRange(0, 1, padding=0)
            return
        ys = np.concatenate([np.asarray(c.yData, dtype=float) for c in self.drawn() if c.yData is not None])
        ys = ys[np.isfinite(ys)]
        if self.log_y:  # the view of a log axis is in decades
            ys = np.log10(ys[ys > 0])
        item = self.getPlotItem()
        item.getViewBox().disableAutoRange()
        x_max = max(float(np.nanmax(x)) for x in xs)
        if total_steps and total_steps >= x_max:
            x_span = float(total_steps)
        elif self._x_span is None or x_max > self._x_span:
            x_span = max(1.0, x_max * 1.5)
        else:
            x_span = self._x_span
        if x_span != self._x_span:
            self._x_span = x_span
            item.setXRange(0, x_span, padding=0.02)
        if ys.size == 0:
            return
        lo, hi = float(ys.min()), float(ys.max())
        old = self._y_span
        if old is None or lo < old[0] or hi > old[1] or (hi - lo) < Y_SHRINK * (old[1] - old[0]):
            span = (hi - lo) or max(abs(hi) * 0.05, 1e-6)
            # Room ahead on the side the values left by (a falling loss keeps falling); values
            # that are all >= 0 (losses, rates, throughput) keep the axis at or above zero.
            below = (Y_TRAVEL if old is not None and lo < old[0] else Y_PAD) * span
            above = (Y_TRAVEL if old is not None and hi > old[1] else Y_PAD) * span
            bottom = lo - below if self.log_y or lo < 0 or lo - below >= 0 else 0.0
            self._y_span = (bottom, hi + above)
            item.setYRange(*self._y_span, padding=0)

    def clear_curves(self) -> None:
        for c in self.curves.values():
            self.getPlotItem().removeItem(c)
            if self.legend is not None:
                self.legend.removeItem(c)
        for c in self.raw_curves.values():
            self.getPlotItem().removeItem(c)
        self.curves, self.raw_curves, self._series = {}, {}, {}
