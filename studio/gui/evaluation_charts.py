"""The Evaluation view's charts: runs side by side across tasks (grouped bars on one 0..1 axis, the
baseline run's level drawn as a line) and label-efficiency curves (fine-tuning accuracy against the
share of labels, pretrained solid, the same backbone from scratch dashed).

What is a ratio, the baseline and the curves' points come from services.evaluation_compare; these
widgets only draw them, in the theme's colours (plots.theme_plot) and each run's colour (compare.run_colour).
"""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont

from studio.gui.compare import run_colour
from studio.gui.plots import plot_title, theme_plot
from studio.gui.style import colour

BAR_SPAN = 0.8  # of each group's width, shared by its bars


class _Chart(pg.PlotWidget):
    def __init__(self, title: str, x_label: str, y_label: str):
        super().__init__()
        self.setMinimumHeight(180)
        item = self.getPlotItem()
        item.setMenuEnabled(False)
        item.setMouseEnabled(x=False, y=False)
        item.hideButtons()
        item.showGrid(x=False, y=True, alpha=0.2)
        if x_label:
            item.setLabel("bottom", x_label)
        item.setLabel("left", y_label)
        for side in ("left", "bottom"):
            item.getAxis(side).enableAutoSIPrefix(False)
        self.title_text = title
        self.legend = item.addLegend(offset=(10, 4), labelTextColor=colour("#3a4350"))
        self.apply_theme()

    def apply_theme(self) -> None:
        theme_plot(self)
        self.getPlotItem().setTitle(plot_title(self.title_text))

    def fit_legend(self) -> None:
        """Lay the legend in as many columns as the width holds and raise the top of the view just
        enough that its rows sit above the axis' 1 and hide no bar or point."""
        n = len(self.legend.items)
        cols = max(1, min(n, int(self.width() // 250)))
        self.legend.setColumnCount(cols)
        share = min(0.5, (math.ceil(n / cols) * 21 + 14) / max(120, self.height() - 80))
        self.getPlotItem().setYRange(-0.02, (1 + 0.02 * share) / (1 - share), padding=0)

    def resizeEvent(self, event):  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if "legend" in self.__dict__:  # pyqtgraph resizes once before __init__ has made it
            self.fit_legend()

    def _reset(self) -> None:
        self.getPlotItem().clear()
        self.legend.clear()


def _two_lines(title: str) -> str:
    head, _, tail = title.rpartition(" ")
    return f"{head}\n{tail}" if head else title


class TaskBarChart(_Chart):
    """One group of bars per task column, one bar per run, on a common 0..1 axis."""

    def __init__(self):
        super().__init__("Runs across tasks", "", "score (a ratio, 0 to 1)")
        bottom = self.getPlotItem().getAxis("bottom")
        bottom.setHeight(40)
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1.5))  # a dozen groups' titles fit side by side at 1024 px
        bottom.setStyle(tickFont=font)
        self.bars: dict[int, pg.BarGraphItem] = {}  # run id -> its bars
        self.baseline_line: pg.PlotDataItem | None = None

    def set_data(self, columns, runs, summaries, baseline_id=None, titles=None) -> None:
        """columns: [(Protocol, Column)] drawn left to right; runs: RunRecords, one bar each;
        summaries: {run_id: {column key: value}}; titles: {run_id: legend words}."""
        self._reset()
        self.bars, self.baseline_line = {}, None
        item = self.getPlotItem()
        shown = [r for r in runs if any(c.key in summaries.get(r.id, {}) for _, c in columns)]
        width = BAR_SPAN / max(1, len(shown))
        for i, run in enumerate(shown):
            xs, heights = [], []
            for g, (_, c) in enumerate(columns):
                if c.key in summaries[run.id]:
                    xs.append(g - BAR_SPAN / 2 + width * (i + 0.5))
                    heights.append(summaries[run.id][c.key])
            bars = pg.BarGraphItem(x=xs, height=heights, width=width * 0.9, brush=pg.mkBrush(run_colour(run.id)),
                                   pen=pg.mkPen(None))
            item.addItem(bars)
            self.legend.addItem(bars, (titles or {}).get(run.id, f"Run {run.id}"))
            self.bars[run.id] = bars
        base = summaries.get(baseline_id) if baseline_id is not None else None
        if base:
            xs, ys = [], []
            for g, (_, c) in enumerate(columns):
                if c.key in base:
                    xs += [g - BAR_SPAN / 2 - 0.05, g + BAR_SPAN / 2 + 0.05]
                    ys += [base[c.key]] * 2
            self.baseline_line = pg.PlotDataItem(xs, ys, connect="pairs", pen=pg.mkPen(
                colour("#1d2530"), width=2, style=Qt.PenStyle.DashLine))
            item.addItem(self.baseline_line)
            self.legend.addItem(self.baseline_line, f"baseline: {(titles or {}).get(baseline_id, baseline_id)}")
        # Two lines a title ("Fine-tune" over "10%"), so neighbouring groups' titles do not overlap.
        item.getAxis("bottom").setTicks([[(g, _two_lines(c.title)) for g, (_, c) in enumerate(columns)]])
        item.setXRange(-0.6, max(0, len(columns) - 1) + 0.6, padding=0)
        # The legend sits above 1 (fit_legend), so the axis is labelled 0..1 only.
        self.fit_legend()
        item.getAxis("left").setTicks([[(v / 5, f"{v / 5:g}") for v in range(6)]])

    def heights(self, run_id: int) -> list[float]:
        bars = self.bars.get(run_id)
        return [] if bars is None else [float(h) for h in bars.opts["height"]]


class LabelEfficiencyPlot(_Chart):
    """Fine-tuning top-1 against the share of labels (log x): what pretraining buys over the same
    backbone trained from scratch on the same labels."""

    def __init__(self):
        super().__init__("Label efficiency: fine-tuning, pretrained vs from scratch", "share of the labels (log scale)",
                         "top-1 (a ratio, 0 to 1)")
        self.getPlotItem().setLogMode(x=True, y=False)
        self.curves: dict[tuple[int, str], pg.PlotDataItem] = {}  # (run id, "pretrained" | "scratch")

    def set_data(self, curves, titles=None) -> None:
        """curves: {run_id: LabelCurve}."""
        self._reset()
        self.curves = {}
        item = self.getPlotItem()
        fractions = sorted({f for c in curves.values() for f in c.fractions})
        for run_id, curve in curves.items():
            name = (titles or {}).get(run_id, f"Run {run_id}")
            col = run_colour(run_id)
            for kind, ys, style in (("pretrained", curve.pretrained, Qt.PenStyle.SolidLine),
                                    ("scratch", curve.scratch, Qt.PenStyle.DashLine)):
                line = pg.PlotDataItem(list(curve.fractions), list(ys), pen=pg.mkPen(col, width=2, style=style),
                                       symbol="o" if kind == "pretrained" else "t", symbolSize=7,
                                       symbolBrush=pg.mkBrush(col), symbolPen=pg.mkPen(None))
                item.addItem(line)
                if kind == "pretrained":
                    self.legend.addItem(line, name)
                self.curves[(run_id, kind)] = line
        if curves:  # one legend entry says what dashed means, for every run
            self.scratch_key = pg.PlotDataItem([], [], pen=pg.mkPen(colour("#3a4350"), width=2, style=Qt.PenStyle.DashLine),
                                               symbol="t", symbolSize=7, symbolBrush=pg.mkBrush(colour("#3a4350")),
                                               symbolPen=pg.mkPen(None))
            item.addItem(self.scratch_key)
            self.legend.addItem(self.scratch_key, "dashed: same backbone from scratch")
        if fractions:
            item.getAxis("bottom").setTicks([[(math.log10(f), f"{f * 100:g} %") for f in fractions]])
            item.setXRange(math.log10(fractions[0]) - 0.2, math.log10(fractions[-1]) + 0.2, padding=0)
        self.fit_legend()
        item.getAxis("left").setTicks([[(v / 5, f"{v / 5:g}") for v in range(6)]])

    def points(self, run_id: int, kind: str) -> tuple[list[float], list[float]]:
        """The stored points of a curve as given (fractions, top-1)."""
        line = self.curves[(run_id, kind)]
        xs, ys = line.xData, line.yData  # the data as given, before the log view
        return [float(x) for x in xs], [float(y) for y in ys]
