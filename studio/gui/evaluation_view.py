"""The Evaluation view: a table of runs × evaluation tasks, the best run of each column marked
(in bold; none where every run scores the same).

Every number is the newest stored evaluation of its kind (services.evaluation.evaluation_summary);
the columns, their titles, whether more is better and the header tooltips all come from the one
protocol table, services.evaluation.PROTOCOLS. Columns no run has a number for are left out.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from studio.gui.evaluate_dialog import wrapped
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
        self.hint = Label("No evaluation yet: Run ▸ Evaluate… adds one; its numbers show here beside the other runs'.")
        self.hint.setObjectName("Hint")
        self.hint.setWordWrap(True)
        layout = PageLayout(self)
        layout.addWidget(self.hint)
        layout.addWidget(self.table, 1)
        self.refresh()

    def refresh(self) -> None:
        from studio.services.evaluation import evaluation_summary, summary_columns

        runs = self.project.runs()
        summaries = {run.id: evaluation_summary(self.project, run.id) for run in runs}
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
            for i, value in enumerate((f"#{run.id}", run.method, run.backbone, run.dataset)):
                t.setItem(r, i, QTableWidgetItem(value))
        for j, (p, c) in enumerate(self.columns):
            values = {run.id: summaries[run.id][c.key] for run in runs if c.key in summaries[run.id]}
            best = (max if c.higher_is_better else min)(values.values()) if values else None
            for r, run in enumerate(runs):
                value = values.get(run.id)
                item = QTableWidgetItem("" if value is None else f"{value:.4g}")
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

    def column_titles(self) -> list[str]:
        return [self.table.horizontalHeaderItem(i).text() for i in range(self.table.columnCount())]

    def best_rows(self, title: str) -> list[int]:
        """The rows marked best in the column titled `title`."""
        col = self.column_titles().index(title)
        return [r for r in range(self.table.rowCount()) if self.table.item(r, col).data(BEST_ROLE)]
