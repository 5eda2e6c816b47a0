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

from studio.gui.embedding_map import PALETTE
from studio.gui.widgets import Label, PageLayout, format_duration

COLUMNS = ("Run", "Method", "Backbone", "Dataset", "Status", "Steps", "Duration", "Final loss",
           "kNN top-1", "Linear top-1", "Fine-tune top-1", "Fine-tune (random init)")
_EVAL_COLUMNS = {"kNN top-1": "knn_top1", "Linear top-1": "linear_top1", "Fine-tune top-1": "finetune_top1",
                 "Fine-tune (random init)": "finetune_random_top1"}


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


def _sortable(value: Any, text: str | None = None) -> QTableWidgetItem:
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
        self.plot = pg.PlotWidget()
        self.plot.setBackground("w")
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        self.plot.setLabel("bottom", "step")
        self.plot.addLegend(offset=(-10, 10))
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSortingEnabled(True)
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
        right.addWidget(self.plot)
        right.addWidget(self.table)
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 4)
        layout = PageLayout(self)
        layout.addWidget(splitter)

        self.run_list.itemChanged.connect(lambda _item: self._on_checked())
        self.metric_box.currentTextChanged.connect(lambda _t: self.redraw())
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
                self.table.setItem(r, c, _sortable(value, text))
        self.table.setSortingEnabled(True)

    def _fill_metrics(self) -> None:
        names: set[str] = set()
        for run_id in self.checked_runs() or [r.id for r in self.project.runs()]:
            names.update(self.project.metric_names(run_id))
        current = self.metric_box.currentText() or "loss"
        self.metric_box.blockSignals(True)
        self.metric_box.clear()
        ordered = sorted(names, key=lambda n: (n != "loss", n))
        self.metric_box.addItems(ordered or ["loss"])
        idx = self.metric_box.findText(current)
        self.metric_box.setCurrentIndex(max(0, idx))
        self.metric_box.blockSignals(False)

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
        metric = self.metric_box.currentText() or "loss"
        self.plot.setLabel("left", metric)
        for run_id in self.checked_runs():
            series = self.project.metric_series(run_id, [metric])
            steps = series.steps.get(metric, [])
            if not steps:
                continue
            colour = QColor(PALETTE[(run_id - 1) % len(PALETTE)])
            item = self.plot.plot(np.asarray(steps, dtype=float), np.asarray(series.values[metric], dtype=float),
                                  pen=pg.mkPen(colour, width=2), name=f"run {run_id}")
            item.setDownsampling(auto=True, method="peak")
            item.setClipToView(True)
            self.curve_items[run_id] = item

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
