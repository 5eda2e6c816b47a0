"""What the Explorer does with a selection and with the dataset's problems (a mixin of
ExplorerPage, which owns the widgets): select by box or lasso, show the selection as thumbnails,
tag it, export it as a list or as a new dataset of the project, and list near duplicates and
outliers, each row linked to the map."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PySide6.QtCore import QRectF, Qt, Slot
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QFileDialog, QListWidgetItem

from studio.gui.explorer_layout import GRID_THUMB
from studio.gui.widgets import plain_tip

TAB_NEAREST, TAB_SELECTED, TAB_DUPLICATES, TAB_OUTLIERS = range(4)  # the side panel's tabs
PROBLEM_ROWS = 500  # rows of the outlier list (the most alone first)
SELECTION_GRID = 200  # thumbnails shown for a selection (each is decoded); the export holds every file


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class SelectionActions:
    # -- selection ------------------------------------------------------------------------
    def select_rect(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Select the points inside a box of map coordinates (what a drag box does)."""
        idx = self.map_view.indices_in_rect(QRectF(min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0)))
        self.select_on_map(idx)
        return idx

    def select_polygon(self, polygon) -> np.ndarray:
        """Select the points inside a polygon of map coordinates (what a lasso does)."""
        idx = self.map_view.indices_in_polygon(np.asarray(polygon, dtype=np.float64))
        self.select_on_map(idx)
        return idx

    @Slot(object)
    def select_on_map(self, indices) -> None:
        """A selection drawn on the map (box or lasso): selected, and its thumbnails shown."""
        self.set_selection(indices)
        self.side_tabs.setCurrentIndex(TAB_SELECTED)

    @Slot(object)
    def set_selection(self, indices) -> None:
        """Select points: ringed on the map, shown as a grid of thumbnails (the first
        SELECTION_GRID of them; the export holds every one)."""
        self.selected_indices = np.asarray(indices, dtype=np.int64)
        self.map_view.set_selected(self.selected_indices)
        self.selection_list.clear()
        shown = self.selected_indices[:SELECTION_GRID]
        for i in (int(i) for i in shown):
            item = QListWidgetItem(QIcon(self.thumbnail(i, GRID_THUMB, from_file=False)), Path(self.names[i]).name)
            item.setData(Qt.ItemDataRole.UserRole, i)
            item.setToolTip(plain_tip(self.names[i]))
            self.selection_list.addItem(item)
        more = len(self.selected_indices) - len(shown)
        self.selection_title.setText(
            f"{len(self.selected_indices)} selected" + (f" (first {SELECTION_GRID} shown)" if more > 0 else "")
            if len(self.selected_indices) else "No selection (Shift+drag a box or a lasso)")
        self.export_button.setEnabled(len(self.selected_indices) > 0)
        self.export_dataset_button.setEnabled(len(self.selected_indices) > 0 and self.project is not None)
        self.tag_button.setEnabled(len(self.selected_indices) > 0 and self.can_tag())

    def selected_paths(self) -> list[str]:
        return [self.names[int(i)] for i in self.selected_indices]

    def export_selection(self, path: str | os.PathLike) -> Path:
        """Write the selected files: .csv with index, file, label, class, x, y; else one file a line."""
        from studio.services.explore import write_selection

        path = write_selection(path, self.selected_indices, self.names, self.labels, self.class_names, self.coords)
        self.status.setText(f"Exported {len(self.selected_indices)} files to {path}.")
        return path

    # -- tags -----------------------------------------------------------------------------
    def can_tag(self) -> bool:
        return self.project is not None and self.dataset_id is not None and len(self.names) > 0

    def _fill_tags(self) -> None:
        current = self.tag_box.currentText()
        self.tag_box.clear()
        if self.can_tag():
            self.tag_box.addItems(sorted(self.project.image_tags(self.dataset_id)))
        self.tag_box.setEditText(current)

    def tag_selected(self, tag: str) -> int:
        """Tag the selected images (stored in the project); the map recolours when it shows tags."""
        from studio.services.explore import tag_selection
        from studio.store import ProjectError

        if not self.can_tag() or not len(self.selected_indices):
            return 0
        try:
            added = tag_selection(self.project, self.dataset_id, self.names, self.selected_indices, tag)
        except ProjectError as exc:
            self.status.setText(f"Error: {exc}")
            return 0
        self.status.setText(f"Tagged {added} more images \"{tag.strip()}\" ({len(self.selected_indices)} selected).")
        self._fill_tags()
        self.tag_box.setEditText(tag.strip())
        if self.colour_box.currentData() == "tag":
            self._recolour()
        return added

    # -- a selection as a dataset ---------------------------------------------------------
    def export_dataset(self, name: str) -> None:
        """Copy the selected images into a new dataset of the project, in a worker; emits
        datasetExported(record) when it is added."""
        if self.project is None or not len(self.selected_indices) or self.busy:
            return
        from studio.services.explore import export_selection_dataset

        project, indices, names = self.project, self.selected_indices.copy(), list(self.names)
        labels, class_names, images = self.labels.copy(), list(self.class_names), self.images

        def job(state):
            return export_selection_dataset(project, name, indices, names, labels, class_names, images,
                                            report=state.report)

        self._start(job, self._on_dataset_exported)

    def _on_dataset_exported(self, record) -> None:
        self.refresh()
        self.status.setText(f"Added the dataset {record.name!r}: {record.images} images in {record.source}.")
        self.datasetExported.emit(record)

    def _export_dataset_dialog(self) -> None:
        from PySide6.QtWidgets import QInputDialog

        name, ok = QInputDialog.getText(self, "A new dataset from the selection",
                                        f"Name of the dataset ({len(self.selected_indices)} images):")
        if ok and name.strip():
            self.export_dataset(name.strip())

    # -- problems -------------------------------------------------------------------------
    def find_problems(self, kind: str) -> None:
        """Look for near duplicates (kind "duplicates") or outliers ("outliers") in a worker;
        the list fills and problemsFound(kind) is emitted."""
        from studio.services.explore import find_duplicates, find_outliers

        if self.busy or len(self.vectors) < 2:
            return
        vectors = self.vectors
        if kind == "duplicates":
            threshold = self.dup_slider.value() / 1000

            def job(state):
                state.report("looking for near duplicates", 0, 1)
                return find_duplicates(vectors, threshold, cancelled=state.cancelled)
        else:
            k = self.outlier_k.value()

            def job(state):
                state.report("looking for outliers", 0, 1)
                return find_outliers(vectors, k, cancelled=state.cancelled)

        self._start(job, lambda result: self._show_problems(kind, result))

    def _show_problems(self, kind: str, result) -> None:
        from studio.gui.compare import sortable_cell

        table = self.dup_table if kind == "duplicates" else self.outlier_table
        table.setSortingEnabled(False)
        if kind == "duplicates":
            self.duplicate_groups = list(result)
            rows = [(g + 1, len(group.indices), round(group.similarity, 4), self.names[int(group.indices[0])])
                    for g, group in enumerate(self.duplicate_groups)]
            self.status.setText(f"{len(rows)} groups of near duplicates "
                                f"({sum(len(g.indices) for g in self.duplicate_groups)} images).")
            keys = [group.indices for group in self.duplicate_groups]
        else:
            self.outliers = result
            shown = min(len(result.indices), PROBLEM_ROWS)
            rows = [(r + 1, round(float(result.distances[r]), 4), self.names[int(result.indices[r])]) for r in range(shown)]
            self.status.setText(f"The {shown} images farthest from their {ordinal(result.k)} nearest neighbour.")
            keys = [np.array([int(i)]) for i in result.indices[:shown]]
        table.setRowCount(len(rows))
        for r, (values, key) in enumerate(zip(rows, keys)):
            for c, value in enumerate(values):
                last = c == len(values) - 1  # the file: its name shown, its path in the tip
                cell = sortable_cell(Path(value).name if last else value)
                cell.setData(Qt.ItemDataRole.UserRole + 1, key)  # the points this row stands for
                if last:
                    cell.setToolTip(plain_tip(str(value)))
                table.setItem(r, c, cell)
        table.setSortingEnabled(True)
        self.side_tabs.setCurrentIndex(TAB_DUPLICATES if kind == "duplicates" else TAB_OUTLIERS)
        self.problemsFound.emit(kind)

    def _on_problem_row(self, table, row: int) -> None:
        """A row of a problem list: its points selected and the first one ringed and shown."""
        item = table.item(row, 0)
        if item is None:
            return
        indices = np.asarray(item.data(Qt.ItemDataRole.UserRole + 1), dtype=np.int64)
        self.map_view.highlight(int(indices[0]))
        self.show_hover(int(indices[0]))
        self.set_selection(indices)

    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the selected files", "selection.csv",
                                              "CSV (*.csv);;Text, one file a line (*.txt)")
        if path:
            self.export_selection(path)

