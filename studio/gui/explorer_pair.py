"""Another run's map beside the Explorer's, with linked selection (a mixin of ExplorerPage).

"Beside another run" shows a second map pane with its own run box: its map of the shown map's
images, with the same projection, computed on a Task (studio.services.explore_steps.paired_map)
and aligned onto the shown map. Both maps draw the same colours; a selection drawn on either,
a hovered point and a shown colour are the same images in both.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from studio.gui.embedding_map import EmbeddingMapView, map_name
from studio.gui.style import status_icon
from studio.gui.widgets import Label, plain_tip

PAIR_HINT = "Pick a run and press Compute: its map of these images, beside this one"


def build_pair_pane(page) -> QWidget:
    """The second map's pane (hidden until "Beside another run" is ticked)."""
    page.pair_check = QCheckBox("Beside another run")
    page.pair_check.setToolTip(plain_tip("show another run's map of the same images beside this one; a selection "
                                         "in either shows in both"))
    page.pair_run_box = QComboBox()
    page.pair_run_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    page.pair_run_box.setMinimumContentsLength(4)  # the two maps share the width: the box may elide
    page.pair_run_box.view().setTextElideMode(Qt.TextElideMode.ElideMiddle)
    page.pair_button = QPushButton("Compute")
    page.pair_button.setToolTip(plain_tip("that run's newest checkpoint: its map of the shown images, with the "
                                          "shown map's projection, aligned onto it"))
    page.pair_view = EmbeddingMapView()
    page.pair_title = Label(PAIR_HINT)
    page.pair_title.setWordWrap(True)
    pane = QWidget()
    layout = QVBoxLayout(pane)
    layout.setContentsMargins(0, 0, 0, 0)
    row = QHBoxLayout()
    row.addWidget(page.pair_run_box, 1)
    row.addWidget(page.pair_button)
    layout.addLayout(row)
    layout.addWidget(page.pair_title)
    layout.addWidget(page.pair_view, 1)
    pane.hide()
    page.pair_pane = pane
    page.pair_check.toggled.connect(page.show_pair_pane)
    page.pair_button.clicked.connect(page.compute_pair)
    page.pair_view.boxSelected.connect(page.select_on_map)
    page.pair_view.pointHovered.connect(page.show_hover)
    page.pair_view.pointClicked.connect(page.show_neighbors)
    page.select_check.toggled.connect(lambda on: setattr(page.pair_view, "select_mode", on))
    page.lasso_check.toggled.connect(lambda on: setattr(page.pair_view, "lasso", on))
    page.busyChanged.connect(lambda busy: page.pair_button.setEnabled(not busy and page.pair_run_box.count() > 0))
    return pane


class PairedMapActions:
    pair = None  # services.explore_steps.PairedMap beside the shown map, or None
    shown_algorithm = "pca"  # the projection of the shown map (the pair's is the same)

    def show_pair_pane(self, on: bool) -> None:
        if on:
            self._fill_pair_runs()
        self.pair_pane.setVisible(bool(on))

    def _fill_pair_runs(self) -> None:
        current = self.pair_run_box.currentData()
        self.pair_run_box.clear()
        for run in self.project.runs() if self.project is not None else []:
            text = f"#{run.id} {run.method} · {run.backbone}"
            self.pair_run_box.addItem(status_icon(run.status), text, run.id)
            self.pair_run_box.setItemData(self.pair_run_box.count() - 1, f"{text} ({run.status})",
                                          Qt.ItemDataRole.ToolTipRole)
        self.pair_run_box.view().setMinimumWidth(self.pair_run_box.view().sizeHintForColumn(0) + 24)
        shown = self._source.get("run_id")
        others = [self.pair_run_box.itemData(i) for i in range(self.pair_run_box.count())]
        pick = current if current in others else next((r for r in others if r != shown), shown)
        self.pair_run_box.setCurrentIndex(max(0, self.pair_run_box.findData(pick)))
        self.pair_button.setEnabled(self.pair_run_box.count() > 0 and not self.busy)

    def compute_pair(self, run_id: int | None = None) -> None:
        """Compute (or read back) the other run's map of the shown images on a task."""
        if self.busy:
            return
        run_id = self.pair_run_box.currentData() if run_id in (None, False) else run_id
        if run_id is None or self.project is None:
            self._fail("there is no run to put beside this map.")
            return
        if not len(self.coords) or self.dataset_id is None:
            self._fail("compute a map first; the other run's map is of the same images.")
            return
        project, dataset, algorithm = self.project, self.dataset_id, self.shown_algorithm
        reference, names = self.coords.copy(), list(self.names)

        def job(state):
            from studio.services.explore_steps import paired_map

            return paired_map(project, run_id, dataset, algorithm, reference, names, device="auto",
                              report=state.report, cancelled=state.cancelled)

        self._start(job, self._on_pair_computed)

    def _on_pair_computed(self, pair) -> None:
        self.pair = pair
        self.pair_title.setText(f"Run {pair.run_id}, step {pair.step:,}: {map_name(self.shown_algorithm)}, "
                                "aligned onto the map beside it")
        self._redraw_pair()
        self.status.setText(f"Run {pair.run_id}'s map beside this one: a selection in either shows in both.")

    def _redraw_pair(self) -> None:
        """Draw the pair with the shown map's colours, shown colour and selection."""
        view = self.pair_view
        if self.pair is None or len(self.pair.coords) != len(self.map_view.coords):
            view.set_points(np.zeros((0, 2), np.float32))
            return
        view.set_points(self.pair.coords, self.map_view.groups, self.map_view.group_names)
        view.isolate(self.map_view.isolated)
        view.set_selected(self.selected_indices)

    def _forget_pair(self) -> None:
        """Another map is shown: the pair was of (and aligned onto) the one before."""
        if self.pair is not None:
            self.pair = None
            self.pair_title.setText(PAIR_HINT)
            self._redraw_pair()

    # -- linking: what the shown map does, the pair follows --------------------------------------
    def set_selection(self, indices) -> None:
        super().set_selection(indices)
        if self.pair is not None:
            self.pair_view.set_selected(self.selected_indices)

    def _isolate_pair(self) -> None:
        if self.pair is not None:
            self.pair_view.isolate(self.map_view.isolated)

    def pair_selected(self) -> np.ndarray:
        return np.asarray(self.pair_view.selected, dtype=np.int64)


__all__ = ["PairedMapActions", "build_pair_pane"]
