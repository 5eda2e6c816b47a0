"""Text search in the Explorer: with a CLIP run's map shown, a typed sentence is embedded in a
worker and the images of the named class are ringed on the map and fill the grid first; hover
shows an image's caption. Without a CLIP run the box is not offered."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from test_clip_search import COLOURS, PER_CLASS, clip_search_project  # noqa: F401 - the module's fixture


def _shown(qtbot, project, run_id):
    from studio.gui.explorer import ExplorerPage

    page = ExplorerPage(project)
    qtbot.addWidget(page)
    page.resize(1100, 700)
    with qtbot.waitSignal(page.dataLoaded, timeout=120_000):
        page.compute(run_id=run_id, checkpoint_step=None, dataset=None, algorithm="pca")
    return page


def test_typing_a_sentence_rings_the_named_class_first(qtbot, clip_search_project):
    from PySide6.QtCore import QThread
    from PySide6.QtWidgets import QApplication

    from studio.store import Project

    root, clip_id, simclr_id = clip_search_project
    with Project.open(root) as project:
        page = _shown(qtbot, project, simclr_id)
        assert not page.text_box.isVisibleTo(page)  # a run without a text tower: no text box
        page.compute(run_id=clip_id, checkpoint_step=None, dataset=None, algorithm="pca")
        qtbot.waitUntil(lambda: not page.busy, timeout=120_000)
        assert page.text_box.isVisibleTo(page) and page.text_label.text() == "Search by text"

        threads = []
        page.neighboursShown.connect(lambda _idx: threads.append(QThread.currentThread()))
        qtbot.keyClicks(page.text_box, "a photo of a blue.")
        with qtbot.waitSignal(page.neighboursShown, timeout=120_000) as blocker:
            qtbot.keyClick(page.text_box, Qt.Key.Key_Return)
            assert page.busy  # embedded in the worker, not on the GUI thread
        assert threads == [QApplication.instance().thread()]
        found = np.asarray(blocker.args[0])
        blue = page.class_names.index("blue")
        first = page.labels[found[:PER_CLASS]]
        assert (first == blue).sum() >= PER_CLASS - 1, first
        # the rings on the map are at those points, in that order
        marks = page.map_view._neighbour_marks.getData()
        assert np.allclose(np.column_stack(marks), page.coords[found])
        assert "a photo of a blue." in page.neighbour_title.text()
        assert "cosine" in page.neighbour_labels[0].toolTip()

        # hover shows the image's first caption, as plain text
        page.show_hover(int(found[0]))
        assert page.thumb_caption.textFormat() == Qt.TextFormat.PlainText
        assert page.thumb_caption.text().endswith("caption: a photo of a blue.")
        page.shutdown()
