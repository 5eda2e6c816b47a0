"""The New run page's "Preview the views": rows of the dataset's images with the views the chosen
method trains on, drawn on a task and redrawn when the method or the image size changes."""

from __future__ import annotations

import pytest

from tests.conftest import tiny_train_config

pytest.importorskip("pytestqt")

pytestmark = pytest.mark.usefixtures("private_settings")


@pytest.fixture
def page(make_window, project):
    w = make_window(project.root)
    w.show_new_run("sample")
    page = w.new_run_page
    page.set_config(tiny_train_config(image_size=16), dataset="sample")
    return page


def _shown(qtbot, preview, columns: int):
    qtbot.waitUntil(lambda: not preview.busy() and len(preview.column_labels()) == columns, timeout=60_000)
    return preview.column_labels()


def test_the_preview_shows_a_row_per_image_with_the_methods_views_and_follows_the_method(qtbot, page):
    from studio.services.preview import DEFAULT_IMAGES

    preview = page.preview
    assert not preview.isExpanded() and preview.row_count() == 0  # folded: nothing drawn
    preview.expand()
    assert _shown(qtbot, preview, 3) == ["original (16 px)", "view 1 (global, 16 px)", "view 2 (global, 16 px)"]
    assert preview.row_count() == DEFAULT_IMAGES
    grid = preview.scroll.widget().layout()
    # Headers over the columns; each 16 px view scaled up by a whole factor (visible pixels).
    assert grid.itemAtPosition(0, 2).widget().text() == "view 1\nglobal, 16 px"
    pixmap = grid.itemAtPosition(1, 2).widget().pixmap()
    assert pixmap.width() == 96 and pixmap.height() == 96
    assert grid.itemAtPosition(1, 0).widget().text().startswith("class ")

    page.method_combo.setCurrentIndex(page.method_combo.findData("dino"))
    labels = _shown(qtbot, preview, 1 + 2 + 6)  # the original, two global and six local crops
    assert labels[3] == "view 3 (local, 8 px)" and preview.row_count() == DEFAULT_IMAGES
    assert grid is not preview.scroll.widget().layout()
    assert "DINO" in preview.note.text()

    page.image_size_spin.setValue(32)
    assert _shown(qtbot, preview, 9)[1] == "view 1 (global, 32 px)"


def test_new_draw_shows_other_images_and_a_method_that_cannot_run_says_why(qtbot, page):
    preview = page.preview
    preview.expand()
    _shown(qtbot, preview, 3)
    first = [r.name for r in preview.preview.rows]
    preview.draw_button.click()
    qtbot.waitUntil(lambda: not preview.busy() and [r.name for r in preview.preview.rows] != first, timeout=60_000)
    assert preview.row_count() == 6

    page.method_combo.setCurrentIndex(page.method_combo.findData("mae"))  # MAE on a ResNet: refused
    qtbot.waitUntil(lambda: not preview.busy() and preview.row_count() == 0, timeout=60_000)
    assert preview.note.text().startswith("No preview: MAE") and "ViT" in preview.note.text()
    page.backbone_combo.setCurrentIndex(page.backbone_combo.findData("vit_tiny"))
    assert _shown(qtbot, preview, 3)[2].startswith("view 1 masked")
