"""Text search in the Explorer (a mixin of ExplorerPage, which owns the map and the grid): with
a CLIP run shown, a sentence typed in "Search by text" is embedded by the run's text tower in a
worker (services.explore.TextSearcher, which compares it with the images in the run's shared
image-text space, not the encoder features the map is drawn from) and its nearest images fill
the neighbour grid and are ringed on the map."""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QHBoxLayout, QLineEdit

from studio.gui.explorer_layout import NEIGHBOURS
from studio.gui.widgets import Label

TEXT_HINT = "a photo of a …, then Enter"


def build_text_row(page) -> QHBoxLayout:
    """The "Search by text" row (hidden until a CLIP run's map is shown)."""
    page.text_label = Label("Search by text")
    page.text_box = QLineEdit()
    page.text_box.setPlaceholderText(TEXT_HINT)
    page.text_box.setClearButtonEnabled(True)
    page.text_box.setToolTip("the images nearest to a sentence, by this CLIP run's text and image towers")
    page.text_box.returnPressed.connect(lambda: page.search_text(page.text_box.text()))
    row = QHBoxLayout()
    row.addWidget(page.text_label)
    row.addWidget(page.text_box, 1)
    page.text_label.hide()
    page.text_box.hide()
    return row


class TextSearchActions:
    _text_source: tuple | None = None  # (run id, checkpoint step, dataset id) of the shown map, a CLIP run's
    _text_searcher = None

    def _offer_text_search(self, run_id: int | None, step: int | None, dataset_id: int | None) -> None:
        """Show the text box when the map shown is a CLIP run's (asked of services, not decided here)."""
        from studio.engine.train import TrainConfig
        from studio.services.evaluation_text import is_image_text

        clip = (run_id is not None and self.project is not None
                and is_image_text(TrainConfig.from_dict(self.project.run(run_id).config)))
        source = (int(run_id), step, dataset_id) if clip else None
        if source != self._text_source:
            self._text_searcher = None
        self._text_source = source
        self.text_label.setVisible(clip)
        self.text_box.setVisible(clip)

    def text_search_offered(self) -> bool:
        return self._text_source is not None

    def search_text(self, text: str) -> None:
        """Embed `text` in a worker, then show the images nearest to it."""
        text = str(text).strip()
        if not self.text_search_offered() or not len(self.vectors):
            self.status.setText("Compute the map of a CLIP run first, then search it by text.")
            return
        if not text:
            self.status.setText("Type a sentence to search for, e.g. “a photo of a dog.”")
            return
        if self.busy:
            self.status.setText("Wait for the current job to finish, then search again.")
            return
        from studio.services.explore import TextSearcher

        run_id, step, dataset_id = self._text_source
        project, shown = self.project, len(self.vectors)
        if self._text_searcher is None:
            self._text_searcher = TextSearcher(project, run_id, step, "auto")
        searcher = self._text_searcher

        def job(state):
            state.report("embedding the sentence", 0, 1)
            idx, sims, data = searcher.search(text, dataset_id, NEIGHBOURS, report=state.report)
            if len(data.names) != shown:
                raise RuntimeError("the dataset changed since its map was computed; press Compute again.")
            return idx, sims

        self._start(job, lambda found: self.show_text_results(found[0], found[1], text))

    def show_text_results(self, idx, sims, text: str) -> np.ndarray:
        """The grid and the map's rings show the images found for `text`, most similar first."""
        from studio.gui.explorer_selection import TAB_NEAREST

        idx = np.asarray(idx, dtype=np.int64)
        self.neighbour_title.setText(f"Nearest to “{text}”")
        self.side_tabs.setCurrentIndex(TAB_NEAREST)
        self._show_grid(idx, sims)
        self.map_view.highlight(-1, idx)
        self.status.setText(f"The {len(idx)} images nearest to “{text}” in the run's image-text space.")
        return idx
