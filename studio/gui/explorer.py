"""The embedding explorer: a run's embeddings of a dataset as a 2-D map to look through.

`ExplorerPage` shows the map (studio.gui.embedding_map) with its choices (run, checkpoint,
dataset, map, colouring) and a legend (a click shows one colour only), computes embeddings and
maps on a Task (studio.gui.tasks: the event loop never waits on torch), shows the hovered image's
thumbnail and, in the side panel's tabs: the 16 nearest neighbours (cosine, in embedding space)
of a clicked point or of an image file dropped on the page; the selection (box or lasso) as
thumbnails, to tag (tags live in the project) or export as a list or as a new dataset; and the
dataset's near duplicates and outliers (studio.services.explore), each row linked to the map; and
a Steps slider over the run's checkpoints, each one's map aligned onto the one before
(studio.gui.explorer_steps); and another run's map beside it, its selection linked
(studio.gui.explorer_pair).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import QListWidgetItem, QWidget

from studio.gui.embedding_map import EmbeddingMapView, array_to_pixmap, file_pixmap, map_name
from studio.gui.explorer_layout import GRID_THUMB, HOVER_HINT, NEIGHBOUR_HINT, NEIGHBOURS, THUMB
from studio.gui.explorer_selection import TAB_NEAREST, SelectionActions
from studio.gui.explorer_pair import PairedMapActions
from studio.gui.explorer_steps import StepMapActions
from studio.gui.explorer_text import TextSearchActions
from studio.gui.style import status_icon
from studio.gui.tasks import Task
from studio.gui.widgets import plain_tip

HOVER_CAPTION = 200  # characters of a caption the hover panel shows (a caption may run to thousands)
SYNC_KMEANS_LIMIT = 20_000  # above this, k-means for colouring runs on the task

# A worker's stages in words (studio.services.evaluation reports "map: tsne", "k-means", ...).
STAGE_WORDS = {"loading images": "Loading the images", "embedding": "Embedding the images",
               "k-means": "Finding clusters", "embedding the dropped image": "Embedding the dropped image"}


def stage_words(stage: str) -> str:
    if stage.startswith("map: "):
        return f"Drawing the {map_name(stage[5:])} map"
    return STAGE_WORDS.get(stage, stage[:1].upper() + stage[1:])


def progress_text(stage: str, done: int, total: int) -> str:
    """"Embedding the images: 120 of 300", or "Drawing the t-SNE map..." for a one-step stage."""
    words = stage_words(stage)
    return f"{words}: {done} of {total}" if total > 1 else f"{words}…"


def swatch_icon(col: str, size: int = 12) -> QIcon:
    pix = QPixmap(size, size)
    pix.fill(QColor(col))
    return QIcon(pix)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class ExplorerPage(TextSearchActions, StepMapActions, PairedMapActions, SelectionActions, QWidget):
    """Choose a run, checkpoint, dataset and map; look through the embeddings."""

    busyChanged = Signal(bool)
    dataLoaded = Signal(int)  # number of points shown
    failed = Signal(str)
    neighboursShown = Signal(object)  # np.ndarray of indices
    problemsFound = Signal(str)  # "duplicates" | "outliers", once its list is filled
    datasetExported = Signal(object)  # the new DatasetRecord

    def __init__(self, project=None, parent=None):
        """`project`: a Project, a project folder (opened and closed by the page), or None to
        only show data handed to `set_data` (benchmarks, previews)."""
        super().__init__(parent)
        from studio.store import Project

        self._owns_project = project is not None and not isinstance(project, Project)
        self.project = Project.open(project) if self._owns_project else project
        self.vectors = np.zeros((0, 0), np.float32)
        self._index = None  # engine.eval.NeighbourIndex of self.vectors, made on first search
        self.coords = np.zeros((0, 2), np.float32)
        self.labels = np.zeros(0, np.int64)
        self.clusters: np.ndarray | None = None
        self.names: list[str] = []
        self.class_names: list[str] = []
        self.captions: list[list[str]] | None = None
        self.images: np.ndarray | None = None
        self.image_size = 32
        self.neighbor_indices = np.zeros(0, np.int64)
        self.selected_indices = np.zeros(0, np.int64)
        self.hovered_index = -1
        self.dataset_id: int | None = None  # the shown map's dataset (tags are per dataset image)
        self.duplicate_groups: list = []
        self.outliers = None  # services.explore.Outliers of the shown map
        self._thumbs: OrderedDict[tuple[int, int, bool], QPixmap] = OrderedDict()
        self._task: Task | None = None
        self._source: dict[str, Any] = {}
        self._embedder = None  # services.explore.FileEmbedder of the shown map's run and checkpoint
        self._on_done = None
        self._build()
        self._recolour()  # an empty map: no legend, no clusters box
        self.setAcceptDrops(True)
        self.refresh()

    def _build(self) -> None:
        from studio.gui.explorer_layout import build_explorer

        build_explorer(self)

    # -- choices --------------------------------------------------------------------------
    def refresh(self) -> None:
        """Reload the runs and datasets from the project (after a run finishes, say)."""
        current_run = self.run_box.currentData()
        self.run_box.blockSignals(True)
        self.run_box.clear()
        runs = self.project.runs() if self.project is not None else []
        for run in runs:
            text = f"#{run.id} {run.method} · {run.backbone} · {run.dataset}"
            self.run_box.addItem(status_icon(run.status), text, run.id)
            self.run_box.setItemData(self.run_box.count() - 1, f"{text} ({run.status})", Qt.ItemDataRole.ToolTipRole)
        self.run_box.view().setMinimumWidth(self.run_box.view().sizeHintForColumn(0) + 24)
        idx = self.run_box.findData(current_run)
        self.run_box.setCurrentIndex(idx if idx >= 0 else self.run_box.count() - 1)
        self.run_box.blockSignals(False)
        current_ds = self.dataset_box.currentData()
        self.dataset_box.clear()
        self.dataset_box.addItem("the run's dataset", None)
        for ds in self.project.datasets() if self.project is not None else []:
            self.dataset_box.addItem(f"{ds.name} ({ds.images} images)", ds.id)
        idx = self.dataset_box.findData(current_ds)
        self.dataset_box.setCurrentIndex(max(0, idx))
        self._fill_steps()
        self.compute_button.setEnabled(self.run_box.count() > 0)

    def has_runs(self) -> bool:
        return self.run_box.count() > 0

    def run_ids(self) -> list[int]:
        """The runs offered, in the order listed."""
        return [self.run_box.itemData(i) for i in range(self.run_box.count())]

    def _fill_steps(self) -> None:
        self.step_box.clear()
        self._update_steps_row()  # the Steps slider's checkpoints are the run's too
        run_id = self.run_box.currentData()
        if run_id is None or self.project is None:
            return
        self.step_box.addItem("newest checkpoint", None)
        for ck in reversed(self.project.checkpoints(run_id)):
            self.step_box.addItem(f"step {ck.step} ({Path(ck.path).name})", ck.step)
        self.step_box.addItem("initial weights (step 0)", 0)

    # -- computing ------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._task is not None

    def map_request(self, run_id, dataset, algorithm):
        """What a map computation works on: the arguments, else the boxes' choices, with the
        clusters' k and whether they are wanted; None (said) when busy or there is no run."""
        if self.busy:
            return None
        run_id = self.run_box.currentData() if run_id in (None, False) else run_id
        if run_id is None or self.project is None:
            self._fail("there is no run to explore yet; train one first.")
            return None
        dataset = self.dataset_box.currentData() if dataset == -1 else dataset
        return (run_id, dataset, algorithm or self.map_box.currentData(), self.k_spin.value(),
                self.colour_box.currentData() == "cluster")

    def compute(self, run_id: int | None = None, checkpoint_step: int | None = -1, dataset: int | str | None = -1,
                algorithm: str | None = None) -> None:
        """Compute (or read back) embeddings and the map in a worker; arguments override the boxes."""
        chosen = self.map_request(run_id, dataset, algorithm)
        if chosen is None:
            return
        run_id, dataset, algorithm, k, want_clusters = chosen
        step = self.step_box.currentData() if checkpoint_step == -1 else checkpoint_step
        project = self.project

        def job(state):
            from studio.engine.eval import NeighbourIndex, kmeans_labels
            from studio.services.evaluation import compute_embeddings, embedding_map

            emb = compute_embeddings(project, run_id, dataset, step, device="auto", report=state.report,
                                     cancelled=state.cancelled)
            coords = embedding_map(project, emb, algorithm, report=state.report)
            clusters = None
            if want_clusters or not emb.has_labels:
                state.report("k-means", 0, 1)
                clusters = kmeans_labels(emb.vectors, k)
            # Above EXACT_UP_TO embeddings the search index is built here, off the GUI thread.
            index = NeighbourIndex(emb.vectors, report=state.report, cancelled=state.cancelled)
            return {"emb": emb, "coords": coords, "clusters": clusters, "run_id": run_id, "algorithm": algorithm,
                    "index": index}

        self._source = {"run_id": run_id, "step": step}
        self._embedder = None
        self._start(job, self._on_computed)

    def _start(self, job, on_done, on_progress=None) -> None:
        self.compute_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)
        self.progress.setFormat("")
        self.progress.show()
        self.busyChanged.emit(True)
        self._on_done = on_done
        self._task = Task(job, name="explorer", parent=self)
        self._task.progress.connect(on_progress or self._on_progress)
        self._task.done.connect(self._finish)
        self._task.failed.connect(self._fail)
        self._task.cancelled.connect(self._on_cancelled)
        self._task.start()

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self.status.setText("Cancelling...")

    def _on_progress(self, p) -> None:
        stage, done, total = p.stage, p.done, p.total
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self.progress.setFormat(f"{stage_words(stage)} %p%")
        self.status.setText(progress_text(stage, done, total))

    def _end_job(self) -> None:
        self._task = None
        self.compute_button.setEnabled(self.run_box.count() > 0)
        self.cancel_button.setEnabled(False)
        self.progress.hide()
        self.busyChanged.emit(False)

    @Slot(object)
    def _finish(self, result) -> None:
        on_done, self._on_done = self._on_done, None
        self._end_job()
        if on_done is not None:
            on_done(result)

    def _on_cancelled(self) -> None:
        self._on_done = None
        self._end_job()
        self.status.setText("Cancelled.")

    @Slot(str)
    def _fail(self, message: str) -> None:
        self._end_job()
        self.status.setText(f"Error: {message}")
        self.failed.emit(message)

    def _on_computed(self, result: dict) -> None:
        emb = result["emb"]
        self.shown_algorithm = result["algorithm"]
        dataset_id = emb.dataset.id if emb.dataset is not None else emb.record.dataset_id
        self.set_data(emb.vectors, result["coords"], emb.labels, emb.names, emb.images, emb.class_names,
                      clusters=result["clusters"], index=result.get("index"), dataset_id=dataset_id, captions=emb.captions)
        self._offer_text_search(result["run_id"], emb.record.checkpoint_step, dataset_id)
        index = result.get("index")
        search = f" Search: {index.describe()}." if index is not None and index.kind == "ivf" else ""
        self.status.setText(f"{len(emb)} images, {emb.vectors.shape[1]}-dim embeddings, {map_name(result['algorithm'])} map "
                            f"(run {result['run_id']}, step {emb.record.checkpoint_step}).{search}")

    # -- showing --------------------------------------------------------------------------
    def set_data(self, vectors, coords, labels=None, names=None, images=None, class_names=None, clusters=None,
                 dataset_id: int | None = None, index=None, captions=None) -> None:
        """Show embeddings (N, D) at map coordinates (N, 2); labels, names and images per point;
        `dataset_id`: the project's dataset they are of (for tags), None for data of no dataset;
        `index`: an engine.eval.NeighbourIndex of `vectors` built off the GUI thread (else searches
        are exact); `captions`: each point's captions (hover shows the first)."""
        self._forget_steps()
        self._forget_pair()
        self.dataset_id = dataset_id
        vectors = np.asarray(vectors, dtype=np.float32)
        n = len(vectors)
        self.vectors = vectors
        self._index = None
        if index is not None and (index.n, index.dim) == vectors.shape:
            self._index, index.source = index, vectors  # built from these embeddings before the cast
        self.coords = np.asarray(coords, dtype=np.float32)
        self.labels = np.full(n, -1, np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
        self.names = list(names) if names is not None else [str(i) for i in range(n)]
        self.images = images
        if images is not None and len(images):
            self.image_size = int(images.shape[-1])
        self.class_names = list(class_names or [])
        self.captions = list(captions) if captions is not None and len(captions) == n else None
        self._offer_text_search(None, None, None)  # until a CLIP run's map is shown (_on_computed)
        self.clusters = None if clusters is None else np.asarray(clusters, dtype=np.int64)
        self._thumbs.clear()
        self.neighbor_indices = np.zeros(0, np.int64)
        # Nothing of the previous map stays: its hovered image, its neighbours, its selection.
        self.hovered_index = -1
        self.thumb_label.clear()
        self.thumb_caption.setText(HOVER_HINT)
        self.neighbour_title.setText(NEIGHBOUR_HINT)
        for lab in self.neighbour_labels:
            lab.clear()
            lab.setToolTip("")
        self.selected_indices = np.zeros(0, np.int64)
        self.duplicate_groups, self.outliers = [], None
        for table in (self.dup_table, self.outlier_table):
            table.setRowCount(0)
        self._fill_tags()
        self._recolour()
        self.set_selection(self.selected_indices)
        self.dataLoaded.emit(n)

    def colours_by_cluster(self) -> bool:
        """Whether the map is coloured by k-means clusters: chosen, or the points have no labels."""
        if self.colour_box.currentData() == "cluster":
            return True
        has_labels = len(self.class_names) > 1 and bool((self.labels >= 0).all())
        return len(self.coords) > 0 and not has_labels and self.colour_box.currentData() != "tag"

    def _recolour(self) -> None:
        by_cluster = self.colours_by_cluster()
        self.k_label.setVisible(by_cluster)
        self.k_spin.setVisible(by_cluster)
        if by_cluster and self.clusters is None and len(self.vectors) >= 2:
            from studio.engine.eval import kmeans_labels

            if len(self.vectors) > SYNC_KMEANS_LIMIT and not self.busy:
                # Seconds of k-means on a large set belong in the worker, not the event loop.
                vectors, k = self.vectors, self.k_spin.value()
                self._start(lambda state: kmeans_labels(vectors, k), self._on_clusters)
            elif len(self.vectors) <= SYNC_KMEANS_LIMIT:
                self.clusters = kmeans_labels(self.vectors, self.k_spin.value())
        if not len(self.coords):
            groups, names = None, []
        elif self.colour_box.currentData() == "tag" and self.can_tag():
            from studio.services.explore import tag_groups

            groups, names = tag_groups(self.project, self.dataset_id, self.names)
        elif by_cluster and self.clusters is not None:
            groups, names = self.clusters, [f"cluster {i}" for i in range(int(self.clusters.max()) + 1)]
        else:
            groups, names = np.maximum(self.labels, 0), self.class_names
        self.map_view.set_points(self.coords, groups, names)
        self.map_view.set_selected(self.selected_indices)
        self._redraw_pair()
        self._fill_legend()

    def _fill_legend(self) -> None:
        self.legend_list.clear()
        for group, name, col, count in self.map_view.legend_entries():
            item = QListWidgetItem(swatch_icon(col), f"{name} ({count})")
            item.setData(Qt.ItemDataRole.UserRole, group)
            self.legend_list.addItem(item)
        self.legend_list.setVisible(self.legend_list.count() > 0)

    def legend_texts(self) -> list[str]:
        return [self.legend_list.item(i).text() for i in range(self.legend_list.count())]

    def isolate_group(self, group: int | None) -> None:
        """Show only one colour's points (None, or the shown one again: every colour)."""
        group = None if group == self.map_view.isolated else group
        self.map_view.isolate(group)
        for i in range(self.legend_list.count()):
            item = self.legend_list.item(i)
            on = group is None or item.data(Qt.ItemDataRole.UserRole) == group
            item.setForeground(self.palette().text() if on else self.palette().placeholderText())
        self._isolate_pair()

    def _on_legend_clicked(self, item) -> None:
        self.isolate_group(int(item.data(Qt.ItemDataRole.UserRole)))

    def _on_clusters(self, clusters) -> None:
        self.clusters = np.asarray(clusters, dtype=np.int64)
        self._recolour()

    def _on_k_changed(self) -> None:
        if self.colours_by_cluster() or self.clusters is not None:
            self.clusters = None
            self._recolour()

    def thumbnail(self, index: int, size: int = THUMB, from_file: bool = True) -> QPixmap:
        """The image of a point: from its file when it is one (and `from_file`), else from the
        decoded cache (a grid of hundreds takes these: no photo is decoded on the GUI thread)."""
        from_file = from_file or self.images is None
        key = (int(index), size, from_file)
        pix = self._thumbs.get(key)
        if pix is not None:
            self._thumbs.move_to_end(key)
            return pix
        pix = None
        name = self.names[index] if 0 <= index < len(self.names) else ""
        if from_file and name and os.path.isfile(name):
            pix = file_pixmap(name, size)
        if pix is None and self.images is not None:
            pix = array_to_pixmap(self.images[index], size)
        pix = pix or QPixmap()
        self._thumbs[key] = pix
        if len(self._thumbs) > 512:
            self._thumbs.popitem(last=False)
        return pix

    def _caption(self, index: int) -> str:
        text = self.names[index]
        lab = int(self.labels[index]) if len(self.labels) else -1
        if 0 <= lab < len(self.class_names):
            text += f"\nclass: {self.class_names[lab]}"
        if self.clusters is not None:
            text += f"\ncluster: {int(self.clusters[index])}"
        if self.captions is not None and self.captions[index]:
            first = self.captions[index][0]  # thumb_caption shows plain text, never markup
            text += f"\ncaption: {first if len(first) <= HOVER_CAPTION else first[:HOVER_CAPTION] + '…'}"
        return text

    @Slot(int)
    def show_hover(self, index: int) -> None:
        """Show the hovered point's thumbnail and name (index -1: nothing hovered)."""
        self.hovered_index = int(index)
        if not 0 <= index < len(self.names):
            return
        self.thumb_label.setPixmap(self.thumbnail(index))
        self.thumb_caption.setText(self._caption(index))

    def neighbour_index(self):
        """The search index of the shown embeddings: the one the map's job built, or an exact one
        (the checkpoint slider shows other embeddings than the job indexed)."""
        from studio.engine.eval import NeighbourIndex

        if self._index is None or self._index.source is not self.vectors:
            self._index = NeighbourIndex(self.vectors, exact_up_to=len(self.vectors))
        return self._index

    @Slot(int)
    def show_neighbors(self, index: int) -> None:
        """Fill the grid with the 16 images nearest (cosine) to point `index` in embedding space."""
        if not 0 <= index < len(self.vectors):
            return
        idx, sims = self.neighbour_index().neighbours_of(index, NEIGHBOURS)
        self.neighbour_title.setText(f"Nearest to {Path(self.names[index]).name}")
        self.side_tabs.setCurrentIndex(TAB_NEAREST)
        self.show_hover(index)
        self._show_grid(idx, sims)
        self.map_view.highlight(index, idx)

    def _show_grid(self, idx: np.ndarray, sims: np.ndarray) -> None:
        self.neighbor_indices = np.asarray(idx, dtype=np.int64)
        for i, lab in enumerate(self.neighbour_labels):
            if i < len(idx):
                j = int(idx[i])
                lab.setPixmap(self.thumbnail(j, GRID_THUMB))
                lab.setToolTip(plain_tip(f"{self.names[j]}\ncosine {float(sims[i]):.3f}"))
            else:
                lab.clear()
                lab.setToolTip("")
        self.neighboursShown.emit(self.neighbor_indices)

    # -- dropping an image ----------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
        if any(u.isLocalFile() and u.toLocalFile().lower().endswith(IMAGE_SUFFIXES) for u in urls):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile() and url.toLocalFile().lower().endswith(IMAGE_SUFFIXES):
                event.acceptProposedAction()
                self.find_neighbors_of_file(url.toLocalFile())
                return

    def embed_file(self, path: str) -> np.ndarray:
        """The embedding (D,) of an image file by the shown map's encoder (services.explore; call
        off the GUI thread)."""
        from studio.services.explore import FileEmbedder

        if self._embedder is None:
            if not self._source:
                raise RuntimeError("compute a map first: the dropped image is compared with its embeddings.")
            self._embedder = FileEmbedder(self.project, self._source["run_id"], self._source["step"], "cpu")
        return self._embedder.embed(path)

    def find_neighbors_of_file(self, path: str, wait: bool = False) -> None:
        """Embed a dropped image in a worker, then show its 16 nearest neighbours."""
        if self.busy or not len(self.vectors):
            self.status.setText("Compute a map first, then drop an image on it.")
            return
        path = str(path)

        def job(state):
            state.report("embedding the dropped image", 0, 1)
            return self.embed_file(path)

        self._start(job, lambda vec: self.show_neighbors_of_vector(vec, Path(path).name))

    def show_neighbors_of_vector(self, vector, title: str = "the image") -> np.ndarray:
        idx, sims = self.neighbour_index().search(vector, NEIGHBOURS)
        self.neighbour_title.setText(f"Nearest to {title}")
        self.side_tabs.setCurrentIndex(TAB_NEAREST)
        self._show_grid(idx, sims)
        self.map_view.highlight(-1, idx)
        return idx

    # -- life cycle -----------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop a running job and close the project if this page opened it."""
        if self._task is not None:
            self._task.cancel()
            self._task.wait(30000)
            self._task = None
        if self._owns_project:
            self.project.close()
            self._owns_project = False

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)


__all__ = ["EmbeddingMapView", "ExplorerPage"]
