"""The Explorer's Steps slider: follow the embedding map across a run's checkpoints (a mixin of
ExplorerPage, which owns the other widgets).

"Compute the maps of every checkpoint" runs studio.services.explore_steps on one Task ("Map 3 of
7: step 1,200"): each checkpoint's embeddings and map, stored like every map, each aligned onto the
previous step's so points do not jump. Moving the slider then only redraws: the selection (by
image index), the colouring, the legend's shown colour, the hovered image and the view's zoom stay.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QSlider

from studio.gui.embedding_map import map_name
from studio.gui.explorer_layout import NEIGHBOUR_HINT
from studio.gui.widgets import Label, plain_tip

STEPS_BUTTON = "Compute the maps of every checkpoint"
NOT_YET_TIP = "Press “Compute the maps of every checkpoint” first; then move this to follow the map as training went."


def build_steps_row(page) -> QHBoxLayout:
    """The Steps row under the map: label, slider, "step 1,200 of 4,000", compute button."""
    page.steps_slider = QSlider(Qt.Orientation.Horizontal)
    page.steps_slider.setRange(0, 0)
    page.steps_slider.setPageStep(1)
    page.steps_slider.setTickPosition(QSlider.TickPosition.TicksBelow)
    page.steps_slider.setTickInterval(1)
    page.steps_slider.setMinimumWidth(100)
    page.steps_slider.setEnabled(False)
    page.steps_value = Label("")
    page.steps_button = QPushButton(STEPS_BUTTON)
    row = QHBoxLayout()
    row.addWidget(Label("Steps"))
    row.addWidget(page.steps_slider, 1)
    row.addWidget(page.steps_value)
    row.addWidget(page.steps_button)
    page.steps_slider.valueChanged.connect(page.show_step)
    page.steps_button.clicked.connect(page.compute_steps)
    page.dataset_box.currentIndexChanged.connect(page._update_steps_row)
    page.map_box.currentIndexChanged.connect(page._update_steps_row)
    page.busyChanged.connect(lambda busy: page._update_steps_row(busy=busy))  # sent before the task is kept
    return row


class StepMapActions:
    step_maps = None  # services.explore_steps.StepMaps of the shown map, or None
    step_index = -1  # the step shown, an index into step_maps.steps
    _steps_key = None  # (run, dataset, algorithm) the step maps are of
    _step_clusters: dict[tuple[int, int], np.ndarray] = {}  # (step index, k) -> k-means clusters

    # -- the row's state ------------------------------------------------------------------
    def _steps_choice(self) -> tuple:
        return self.run_box.currentData(), self.dataset_box.currentData(), self.map_box.currentData()

    def _update_steps_row(self, *_args, busy: bool | None = None) -> None:
        """What the row offers: the slider over the loaded maps; the button when the choices'
        maps are not the ones loaded; a tip saying why when the run has too few checkpoints."""
        from studio.services.explore_steps import checkpoint_steps, steps_unavailable

        run_id = self.run_box.currentData()
        steps = checkpoint_steps(self.project, run_id) if run_id is not None and self.project is not None else []
        reason = steps_unavailable(steps)
        loaded = self.step_maps is not None
        self.steps_slider.setEnabled(loaded and len(self.step_maps) > 1)
        self.steps_slider.setToolTip(plain_tip(
            "the checkpoint whose map is shown; ← and → step through them" if loaded else reason or NOT_YET_TIP))
        self.steps_button.setVisible(not loaded or self._steps_key != self._steps_choice())
        self.steps_button.setEnabled(reason is None and not (self.busy if busy is None else busy))
        self.steps_button.setToolTip(plain_tip(reason or (
            f"embed the dataset with each of the run's {len(steps)} checkpoints and draw each map aligned onto "
            "the previous step's, so points move only as much as their embeddings did (stored: computed once)")))
        if loaded:
            self.steps_value.setText(self._step_words())
        elif len(steps) == 1:
            self.steps_value.setText(f"one checkpoint (step {steps[0]:,})")
        else:
            self.steps_value.setText(f"{len(steps)} checkpoints" if steps else "no checkpoints")

    def _step_words(self) -> str:
        steps = self.step_maps.steps
        return f"step {steps[self.step_index]:,} of {steps[-1]:,}"

    def _forget_steps(self) -> None:
        """Another map is shown (set_data): the step maps are no longer what the slider moves."""
        self.step_maps, self.step_index, self._steps_key, self._step_clusters = None, -1, None, {}
        self.steps_slider.blockSignals(True)
        self.steps_slider.setRange(0, 0)
        self.steps_slider.blockSignals(False)
        self._update_steps_row()

    # -- computing ------------------------------------------------------------------------
    def compute_steps(self, run_id: int | None = None, dataset: int | str | None = -1, algorithm: str | None = None) -> None:
        """Compute (or read back) the aligned map of every checkpoint on a task; arguments
        override the boxes."""
        chosen = self.map_request(run_id, dataset, algorithm)
        if chosen is None:
            return
        run_id, dataset, algorithm, k, want_clusters = chosen
        project = self.project

        def job(state):
            from studio.engine.eval import kmeans_labels, match_clusters
            from studio.services.explore_steps import compute_step_maps

            maps = compute_step_maps(project, run_id, dataset, algorithm, device="auto", report=state.report,
                                     cancelled=state.cancelled)
            labelled = len(maps.class_names) > 1 and bool((maps.labels >= 0).all())
            clusters = {}
            if want_clusters or not labelled:
                for i, v in enumerate(maps.vectors):
                    state.report("k-means", i, len(maps.vectors))
                    found = kmeans_labels(v, k)
                    # A cluster keeps its colour from step to step: ids matched to the step before.
                    clusters[(i, k)] = match_clusters(found, clusters[(i - 1, k)]) if i else found
            return {"maps": maps, "clusters": clusters, "key": (run_id, dataset, algorithm)}

        self._start(job, self._on_steps_computed, on_progress=self._on_steps_progress)

    def _on_steps_progress(self, p) -> None:
        from studio.gui.explorer import progress_text

        self.progress.setRange(0, max(1, p.total))
        self.progress.setValue(p.done)
        self.progress.setFormat("%p%")
        if p.stage.startswith("map "):
            self.status.setText(p.stage[:1].upper() + p.stage[1:] + "…")
        else:
            self.status.setText(progress_text(p.stage, p.done, p.total))

    def _on_steps_computed(self, result: dict) -> None:
        maps = result["maps"]
        last = len(maps) - 1
        dataset_id = maps.dataset.id if maps.dataset is not None else maps.records[last].dataset_id
        self.set_data(maps.vectors[last], maps.coords[last], maps.labels, maps.names, maps.images, maps.class_names,
                      clusters=result["clusters"].get((last, self.k_spin.value())), dataset_id=dataset_id)  # forgets any step maps
        self.step_maps, self.step_index, self._steps_key = maps, last, result["key"]
        self.shown_algorithm = maps.algorithm
        self._step_clusters = dict(result["clusters"])
        self._source = {"run_id": maps.run_id, "step": maps.steps[last]}
        self._embedder = None
        self.steps_slider.blockSignals(True)
        self.steps_slider.setRange(0, last)
        self.steps_slider.setValue(last)
        self.steps_slider.blockSignals(False)
        x0, y0, x1, y1 = maps.bounds()  # one view holding every step: the axes stay put while stepping
        self.map_view.getViewBox().setRange(QRectF(x0, y0, x1 - x0, y1 - y0), padding=0.05)
        self._update_steps_row()
        self.status.setText(f"{len(maps.names)} images, {map_name(maps.algorithm)} maps of {len(maps)} checkpoints, "
                            f"each aligned onto the one before (run {maps.run_id}); move the Steps slider to follow them.")

    # -- stepping -------------------------------------------------------------------------
    def show_step(self, index: int) -> None:
        """Show step `index`'s map: its points, its embeddings (neighbours, drops, problems), its
        clusters; the selection stays the same images, the view and the shown colour stay."""
        maps = self.step_maps
        index = int(index)
        if maps is None or not 0 <= index < len(maps) or index == self.step_index:
            return
        k = self.k_spin.value()
        if self.clusters is not None:
            self._step_clusters[(self.step_index, k)] = self.clusters
        self.step_index = index
        self.vectors, self.coords = maps.vectors[index], maps.coords[index]
        self.clusters = self._step_clusters.get((index, k))
        from studio.gui.explorer import SYNC_KMEANS_LIMIT

        if self.clusters is None and self.colours_by_cluster() and len(self.vectors) <= SYNC_KMEANS_LIMIT:
            self.clusters = self._matched_clusters(index, k)
        self._source = {"run_id": maps.run_id, "step": maps.steps[index]}
        self._embedder = None  # a dropped image is embedded by the shown step's checkpoint
        # What was found in the other step's embeddings is not this step's.
        self.neighbor_indices = np.zeros(0, np.int64)
        self.neighbour_title.setText(NEIGHBOUR_HINT)
        for lab in self.neighbour_labels:
            lab.clear()
            lab.setToolTip("")
        self.duplicate_groups, self.outliers = [], None
        for table in (self.dup_table, self.outlier_table):
            table.setRowCount(0)
        isolated = self.map_view.isolated
        view = self.map_view.getViewBox().viewRect()
        self._recolour()  # draws the points, the selection (same indices) and the legend
        if self.clusters is not None:
            self._step_clusters[(index, k)] = self.clusters
        if isolated is not None:
            self.isolate_group(isolated)
        self.map_view.getViewBox().setRange(view, padding=0)
        if self.hovered_index >= 0:
            self.show_hover(self.hovered_index)
        self.steps_value.setText(self._step_words())
        how = "aligned onto the one before" if index else "the one the later maps are aligned onto"
        self.status.setText(f"Step {maps.steps[index]:,}: {map_name(maps.algorithm)} map of checkpoint "
                            f"{index + 1} of {len(maps)}, {how}.")

    def _matched_clusters(self, index: int, k: int) -> np.ndarray:
        """k-means of step `index`, its ids matched to a neighbour step's clusters when known (what
        _recolour does for one map, for a small set; a large one's k-means stays on a task)."""
        from studio.engine.eval import kmeans_labels, match_clusters

        found = kmeans_labels(self.vectors, k)
        near = self._step_clusters.get((index - 1, k))
        near = self._step_clusters.get((index + 1, k)) if near is None else near
        return found if near is None else match_clusters(found, near)

    @property
    def shown_step(self) -> int | None:
        """The checkpoint step whose map is shown by the slider (None: no step maps)."""
        return None if self.step_maps is None else self.step_maps.steps[self.step_index]
