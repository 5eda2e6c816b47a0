"""Compare runs: overlay their curves and tabulate what they are and how well they did.

Everything shown is read from the project database (DESIGN rule 5): the metric series of each
checked run, and the newest stored evaluation of each kind (kNN, linear probe, fine-tuning).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.gui.embedding_map import group_colour
from studio.gui.plots import metric_label, theme_plot
from studio.gui.widgets import Label, PageLayout, format_duration

COLUMNS = ("Run", "Method", "Backbone", "Dataset", "Status", "Steps", "Duration", "Final loss",
           "kNN top-1", "Linear top-1", "Fine-tune top-1", "Fine-tune (random init)")
_EVAL_COLUMNS = {"kNN top-1": "knn_top1", "Linear top-1": "linear_top1", "Fine-tune top-1": "finetune_top1",
                 "Fine-tune (random init)": "finetune_random_top1"}


def _sort_arrows() -> str:
    """Fusion draws a downward arrow for ascending order, where people read an arrow pointing up
    as "small values on top" (the screenshot of issue 16: "Run ▲" over rows 2, 1). In a style
    sheet the ascending indicator is the ::up-arrow element; it gets the upward chevron."""
    from importlib import resources
    from pathlib import Path

    icons = Path(str(resources.files("studio").joinpath("resources", "icons"))).as_posix()
    return (f"QHeaderView::up-arrow {{ image: url({icons}/chevron-up.svg); width: 9px; height: 9px; }}"
            f"QHeaderView::down-arrow {{ image: url({icons}/chevron-down.svg); width: 9px; height: 9px; }}")


SORT_ARROWS = _sort_arrows()


class _Cell(QTableWidgetItem):
    """A cell that may show text (\"18 min\") while sorting by a number (1079.8 s)."""

    def __lt__(self, other):
        for role in (Qt.ItemDataRole.UserRole, Qt.ItemDataRole.DisplayRole):
            mine, theirs = self.data(role), other.data(role)
            if mine is None or theirs is None:
                continue
            numbers = all(isinstance(v, (int, float)) for v in (mine, theirs))
            return mine < theirs if numbers else str(mine) < str(theirs)
        return False  # (QTableWidgetItem.__lt__ would call back into this override)


def sortable_cell(value: Any, text: str | None = None) -> QTableWidgetItem:
    """A cell that sorts by number when it holds one (Qt sorts by the DisplayRole's type)."""
    item = _Cell()
    if value is None:
        item.setData(Qt.ItemDataRole.DisplayRole, "")
    elif text is not None:
        item.setData(Qt.ItemDataRole.DisplayRole, text)
        item.setData(Qt.ItemDataRole.UserRole, value)
    elif isinstance(value, float):
        item.setData(Qt.ItemDataRole.DisplayRole, round(value, 4))
    else:
        item.setData(Qt.ItemDataRole.DisplayRole, value)
    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
    return item


class ComparePlot(pg.PlotWidget):
    """The overlaid curves: ratios and counts shown as they are (no SI prefix: "0.55", never
    "550 (x0.001)"), in the palette's colours."""

    def __init__(self, parent=None):
        super().__init__(parent)
        item = self.getPlotItem()
        item.showGrid(x=True, y=True, alpha=0.3)
        item.setLabel("bottom", "step")
        for side in ("left", "bottom"):
            item.getAxis(side).enableAutoSIPrefix(False)
        self.apply_theme()

    def apply_theme(self) -> None:
        theme_plot(self)


def run_colour(run_id: int) -> str:
    """A run's curve colour, the same in every view and whichever runs are checked."""
    return group_colour(run_id - 1)


class CompareRunsPage(QWidget):
    """Pick runs (check them), overlay a metric's curves, read the sortable table."""

    runsChanged = Signal(list)
    evaluate_requested = Signal(int, object)  # run id, checkpoint step (None: newest)

    def __init__(self, project, parent=None):
        super().__init__(parent)
        from studio.store import Project

        self._owns_project = not isinstance(project, Project)
        self.project = Project.open(project) if self._owns_project else project
        self.curve_items: dict[int, pg.PlotDataItem] = {}

        self.run_list = QListWidget()
        self.run_list.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.metric_box = QComboBox()
        self.refresh_button = QPushButton("Refresh")
        self.plot = ComparePlot()
        # The legend sits above the plot, never over a curve.
        self.legend_label = Label("")
        self.legend_label.setTextFormat(Qt.TextFormat.RichText)
        self.legend_label.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSortingEnabled(True)
        self.table.sortItems(0, Qt.SortOrder.AscendingOrder)
        self.table.horizontalHeader().setStyleSheet(SORT_ARROWS)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._table_menu)

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(Label("Runs"))
        ll.addWidget(self.run_list, 1)
        row = QHBoxLayout()
        row.addWidget(Label("Curve"))
        row.addWidget(self.metric_box, 1)
        ll.addLayout(row)
        ll.addWidget(self.refresh_button)

        right = QSplitter(Qt.Orientation.Vertical)
        plot_box = QWidget()
        pl = QVBoxLayout(plot_box)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addWidget(self.legend_label)
        pl.addWidget(self.plot, 1)
        right.addWidget(plot_box)
        right.addWidget(self.table)
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 4)
        layout = PageLayout(self)
        layout.addWidget(splitter)

        self.run_list.itemChanged.connect(lambda _item: self._on_checked())
        self.metric_box.currentIndexChanged.connect(lambda _i: self.redraw())
        self.refresh_button.clicked.connect(self.refresh)
        self.refresh()

    # -- data -----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Reload runs, metric names and evaluations from the project."""
        checked = set(self.checked_runs())
        runs = self.project.runs()
        self.run_list.blockSignals(True)
        self.run_list.clear()
        for run in runs:
            item = QListWidgetItem(f"#{run.id} {run.method} · {run.backbone} · {run.dataset}")
            item.setData(Qt.ItemDataRole.UserRole, run.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if run.id in checked else Qt.CheckState.Unchecked)
            self.run_list.addItem(item)
        self.run_list.blockSignals(False)
        self._fill_table(runs)
        self._fill_metrics()
        self.redraw()

    def run_at_row(self, row: int) -> int | None:
        item = self.table.item(row, 0)
        return None if item is None else int(item.data(Qt.ItemDataRole.DisplayRole))

    def table_menu_for(self, row: int):
        """The table's context menu for a row: Evaluate that run (its empty columns fill after)."""
        from PySide6.QtWidgets import QMenu

        run_id = self.run_at_row(row)
        menu = QMenu(self)
        if run_id is not None:
            menu.addAction(f"Evaluate run {run_id}…", lambda: self.evaluate_requested.emit(run_id, None))
        return menu

    def _table_menu(self, pos) -> None:
        row = self.table.rowAt(pos.y())
        if row >= 0:
            self.table_menu_for(row).exec(self.table.viewport().mapToGlobal(pos))

    def _fill_table(self, runs) -> None:
        from studio.services.evaluation import evaluation_summary

        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(runs))
        for r, run in enumerate(runs):
            summary = evaluation_summary(self.project, run.id)
            values = [run.id, run.method, run.backbone, run.dataset, run.status, run.steps,
                      None if run.duration_s is None else float(run.duration_s),
                      None if run.final_loss is None else float(run.final_loss)]
            values += [summary.get(key) for key in _EVAL_COLUMNS.values()]
            for c, value in enumerate(values):
                text = format_duration(value) if COLUMNS[c] == "Duration" and value is not None else None
                self.table.setItem(r, c, sortable_cell(value, text))
        self.table.setSortingEnabled(True)

    def _fill_metrics(self) -> None:
        names: set[str] = set()
        for run_id in self.checked_runs() or [r.id for r in self.project.runs()]:
            names.update(self.project.metric_names(run_id))
        current = self.current_metric() or "loss"
        self.metric_box.blockSignals(True)
        self.metric_box.clear()
        for name in sorted(names, key=lambda n: (n != "loss", metric_label(n))) or ["loss"]:
            self.metric_box.addItem(metric_label(name), name)
        idx = self.metric_box.findData(current)
        self.metric_box.setCurrentIndex(max(0, idx))
        self.metric_box.blockSignals(False)

    def current_metric(self) -> str:
        """The stored name of the metric drawn (the box shows its label)."""
        return self.metric_box.currentData() or ""

    def set_metric(self, name: str) -> None:
        self.metric_box.setCurrentIndex(self.metric_box.findData(name))

    # -- runs -----------------------------------------------------------------------------
    def checked_runs(self) -> list[int]:
        out = []
        for i in range(self.run_list.count()):
            item = self.run_list.item(i)
            if item.checkState() == Qt.CheckState.Checked:
                out.append(int(item.data(Qt.ItemDataRole.UserRole)))
        return out

    def run_texts(self) -> list[str]:
        """The runs as listed, top to bottom."""
        return [self.run_list.item(i).text() for i in range(self.run_list.count())]

    def check_all(self) -> None:
        self.set_checked(int(self.run_list.item(i).data(Qt.ItemDataRole.UserRole)) for i in range(self.run_list.count()))

    def set_checked(self, run_ids) -> None:
        wanted = {int(r) for r in run_ids}
        self.run_list.blockSignals(True)
        for i in range(self.run_list.count()):
            item = self.run_list.item(i)
            on = int(item.data(Qt.ItemDataRole.UserRole)) in wanted
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
        self.run_list.blockSignals(False)
        self._on_checked()

    def _on_checked(self) -> None:
        self._fill_metrics()
        self.redraw()
        self.runsChanged.emit(self.checked_runs())

    def redraw(self) -> None:
        """One curve per checked run for the chosen metric, colours stable per run id."""
        self.plot.clear()
        self.curve_items = {}
        metric = self.current_metric() or "loss"
        self.plot.setLabel("left", metric_label(metric))
        theme_plot(self.plot)
        shown = []
        for run_id in self.checked_runs():
            series = self.project.metric_series(run_id, [metric])
            steps = series.steps.get(metric, [])
            if not steps:
                continue
            colour = QColor(run_colour(run_id))
            item = self.plot.plot(np.asarray(steps, dtype=float), np.asarray(series.values[metric], dtype=float),
                                  pen=pg.mkPen(colour, width=2))
            item.setDownsampling(auto=True, method="peak")
            item.setClipToView(True)
            self.curve_items[run_id] = item
            shown.append(run_id)
        self.legend_label.setText("&nbsp;&nbsp;&nbsp;".join(
            f"<span style='color:{run_colour(r)}'>&#9644;</span>&nbsp;run {r}" for r in shown))

    def legend_entries(self) -> list[str]:
        """The legend's entries, as read: "run 1", "run 3"."""
        return [f"run {r}" for r in self.curve_items]

    def table_rows(self) -> list[list[str]]:
        """The table as shown (after sorting), as text: for tests and copying."""
        out = []
        for r in range(self.table.rowCount()):
            out.append([self.table.item(r, c).text() if self.table.item(r, c) else "" for c in range(self.table.columnCount())])
        return out

    def shutdown(self) -> None:
        if self._owns_project:
            self.project.close()
            self._owns_project = False

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)


__all__ = ["COLUMNS", "CompareRunsPage"]
