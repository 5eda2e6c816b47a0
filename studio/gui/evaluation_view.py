"""The Evaluation view: a table of runs × evaluation tasks, the best run of each column marked
(in bold; none where every run scores the same), and below it the charts of evaluation_charts:
runs side by side across the tasks that are ratios, and label-efficiency curves. A right-click on
a row makes that run the project's baseline (services.evaluation_compare): the other rows then
show their difference to it, and the bar chart its level.

Every number is the newest stored evaluation of its kind (services.evaluation.evaluation_summary);
the columns, their titles, whether more is better and the header tooltips all come from the one
protocol table, services.evaluation.PROTOCOLS. Columns no run has a number for are left out.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QHeaderView, QMenu, QSplitter, QTableWidget, QTableWidgetItem,
                               QTabWidget, QWidget)

from studio.gui.evaluate_dialog import wrapped
from studio.gui.evaluation_charts import LabelEfficiencyPlot, TaskBarChart
from studio.gui.widgets import Label, PageLayout

RUN_COLUMNS = ("Run", "Method", "Backbone", "Dataset")
BEST_ROLE = Qt.ItemDataRole.UserRole + 1


class EvaluationView(QWidget):
    def __init__(self, project, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = project
        self.columns: list = []  # (Protocol, Column) of each shown task column
        self.table = QTableWidget(0, 0)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._table_menu)
        self.run_ids: list[int] = []  # of the table's rows
        self.baseline_id: int | None = None
        self.chart = TaskBarChart()
        self.curves = LabelEfficiencyPlot()
        self.charts = QTabWidget()
        self.charts.addTab(self.chart, "Runs across tasks")
        self.charts.addTab(self.curves, "Label efficiency")
        self.chart_note = Label("")
        self.chart_note.setObjectName("Hint")
        self.chart_note.setWordWrap(True)
        lower = QWidget()
        ll = PageLayout(lower)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(self.charts, 1)
        ll.addWidget(self.chart_note)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(lower)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)
        self.hint = Label("No evaluation yet: Run ▸ Evaluate… adds one; its numbers show here beside the other runs'.")
        self.hint.setObjectName("Hint")
        self.hint.setWordWrap(True)
        layout = PageLayout(self)
        layout.addWidget(self.hint)
        layout.addWidget(self.splitter, 1)
        self.refresh()

    def refresh(self) -> None:
        from studio.services.evaluation import evaluation_summary, summary_columns
        from studio.services.evaluation_compare import (
            baseline_run, differences, label_efficiency_curve, ratio_columns, with_difference)
        from studio.services.labels import run_title

        runs = self.project.runs()
        self.run_ids = [run.id for run in runs]
        summaries = {run.id: evaluation_summary(self.project, run.id) for run in runs}
        self.baseline_id = baseline_run(self.project)
        diffs = differences(summaries, self.baseline_id)
        titles = {run.id: run_title(run) for run in runs}
        self.columns = [(p, c) for p, c in summary_columns() if any(c.key in s for s in summaries.values())]
        t = self.table
        t.clear()
        t.setColumnCount(len(RUN_COLUMNS) + len(self.columns))
        t.setRowCount(len(runs))
        for i, title in enumerate(RUN_COLUMNS):
            t.setHorizontalHeaderItem(i, QTableWidgetItem(title))
        for j, (p, c) in enumerate(self.columns):
            header = QTableWidgetItem(c.title)
            direction = "Higher is better." if c.higher_is_better else "Lower is better."
            header.setToolTip(wrapped(f"{p.label}: {p.about} {direction}"))
            t.setHorizontalHeaderItem(len(RUN_COLUMNS) + j, header)
        for r, run in enumerate(runs):
            marker = "  (baseline)" if run.id == self.baseline_id else ""
            for i, value in enumerate((f"#{run.id}{marker}", run.method, run.backbone, run.dataset)):
                item = QTableWidgetItem(value)
                item.setToolTip(titles[run.id] + ("\nThe baseline: the other runs show their difference to it."
                                                  if marker else "\nRight-click: use as baseline."))
                t.setItem(r, i, item)
        for j, (p, c) in enumerate(self.columns):
            values = {run.id: summaries[run.id][c.key] for run in runs if c.key in summaries[run.id]}
            best = (max if c.higher_is_better else min)(values.values()) if values else None
            for r, run in enumerate(runs):
                value = values.get(run.id)
                item = QTableWidgetItem("" if value is None else with_difference(value, diffs[run.id].get(c.key)))
                # A column where every run scores the same has no best run to point at.
                is_best = value is not None and len(set(values.values())) > 1 and value == best
                item.setData(BEST_ROLE, is_best)
                if is_best:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                tip = f"{p.label}: {p.about}" + ("\nThe best of the runs." if is_best else "")
                item.setToolTip(wrapped(tip))
                t.setItem(r, len(RUN_COLUMNS) + j, item)
        self.hint.setVisible(not self.columns)
        shown = ratio_columns(summaries)
        self.chart.set_data(shown, runs, summaries, self.baseline_id, titles)
        curves = {run.id: c for run in runs if (c := label_efficiency_curve(self.project, run.id)) is not None}
        self.curves.set_data(curves, titles)
        self.charts.setTabEnabled(1, bool(curves))
        left_out = [c.title for p, c in self.columns if (p, c) not in shown]
        self.chart_note.setText(
            (f"{', '.join(left_out)}: not ratios, so not on the 0..1 chart; read them in the table. " if left_out else "")
            + ("Right-click a run's row to use it as the baseline." if self.baseline_id is None else
               "On the bar chart, the dashed line is the baseline's level; right-click its row to clear it."))
        self.splitter.widget(1).setVisible(bool(self.columns))
        self._fit_table()

    def _fit_table(self) -> None:
        """Give the table the height of its rows (up to half the view), the charts the rest."""
        t = self.table
        wanted = (t.horizontalHeader().height() + sum(t.rowHeight(r) for r in range(t.rowCount()))
                  + t.horizontalScrollBar().sizeHint().height() + 2 * t.frameWidth() + 2)
        total = max(self.splitter.height(), 400)
        table = min(wanted, total // 2)
        self.splitter.setSizes([table, total - table])

    def showEvent(self, event):  # noqa: N802 - Qt override
        super().showEvent(event)
        self._fit_table()

    def _table_menu(self, pos) -> None:
        row = self.table.rowAt(pos.y())
        if row >= 0:
            self.row_menu(row).exec(self.table.viewport().mapToGlobal(pos))

    def row_menu(self, row: int) -> QMenu:
        """The right-click menu of a row: make its run the baseline, or clear the baseline."""
        run_id = self.run_ids[row]
        menu = QMenu(self)
        if run_id == self.baseline_id:
            menu.addAction("Clear baseline", lambda: self.set_baseline(None))
        else:
            menu.addAction("Use as baseline", lambda: self.set_baseline(run_id))
        return menu

    def set_baseline(self, run_id: int | None) -> None:
        from studio.services.evaluation import StudioError
        from studio.services.evaluation_compare import ProjectError, set_baseline_run

        try:
            set_baseline_run(self.project, run_id)
        except (ProjectError, StudioError) as exc:
            self.chart_note.setText(str(exc))
            return
        self.refresh()

    def column_titles(self) -> list[str]:
        return [self.table.horizontalHeaderItem(i).text() for i in range(self.table.columnCount())]

    def best_rows(self, title: str) -> list[int]:
        """The rows marked best in the column titled `title`."""
        col = self.column_titles().index(title)
        return [r for r in range(self.table.rowCount()) if self.table.item(r, col).data(BEST_ROLE)]
