"""The embedding explorer: points drawn, hover thumbnail, neighbour grid, selection export, drop."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from conftest import tiny_train_config, write_image_folder


@pytest.fixture
def explore_project(tmp_path):
    """A labelled folder dataset and one run (never trained: step 0 is its initial encoder)."""
    from studio.services.datasets import add_dataset
    from studio.services.training import create_run
    from studio.store import Project

    folder = write_image_folder(tmp_path / "imgs", classes=("a", "b", "c"), per_class=10, size=12)
    p = Project.create(tmp_path / "proj")
    add_dataset(p, str(folder), name="shapes")
    run = create_run(p, "shapes", tiny_train_config(image_size=16))
    yield p, run.id, folder
    p.close()


def _page(qtbot, project):
    from studio.gui.explorer import ExplorerPage

    page = ExplorerPage(project)
    qtbot.addWidget(page)
    page.resize(1100, 700)
    return page


def _computed(qtbot, page, run_id):
    from PySide6.QtCore import QThread
    from PySide6.QtWidgets import QApplication

    threads = []
    page.dataLoaded.connect(lambda _n: threads.append(QThread.currentThread()))
    with qtbot.waitSignal(page.dataLoaded, timeout=120_000) as blocker:
        page.compute(run_id=run_id, checkpoint_step=0, dataset=None, algorithm="pca")
        assert page.busy  # the work runs in the worker; the call returned at once
    assert threads == [QApplication.instance().thread()]  # widgets were filled on the GUI thread
    return blocker.args[0]


def test_explorer_computes_in_a_worker_and_shows_every_point(qtbot, explore_project):
    from studio.services.evaluation import compute_embeddings

    project, run_id, _ = explore_project
    page = _page(qtbot, project)
    assert page.run_box.count() == 1 and page.step_box.findData(0) >= 0
    # short enough to show whole; the status is the icon and the tip
    assert page.run_box.itemText(0) == f"#{run_id} simclr · resnet18 · shapes"
    assert "(queued)" in page.run_box.itemData(0, Qt.ItemDataRole.ToolTipRole)
    assert not page.run_box.itemIcon(0).isNull()
    n = _computed(qtbot, page, run_id)
    emb = compute_embeddings(project, run_id, checkpoint_step=0, device="cpu")  # read back, not recomputed
    assert n == len(emb) == 30
    view = page.map_view
    assert view.point_count() == len(emb.vectors)
    assert len(view.scatter_items) == 3  # coloured by label: one item (one brush) per class
    drawn = np.concatenate([np.column_stack(item.getData()) for item in view.scatter_items])
    assert sorted(map(tuple, np.round(drawn, 4))) == sorted(map(tuple, np.round(page.coords.astype(float), 4)))
    np.testing.assert_array_equal(page.vectors, emb.vectors)
    assert not page.busy and "30 images" in page.status.text()


def test_hover_shows_the_points_thumbnail(qtbot, explore_project):
    project, run_id, folder = explore_project
    page = _page(qtbot, project)
    _computed(qtbot, page, run_id)
    page.map_view.pointHovered.emit(7)  # what a mouse move over point 7 emits
    assert page.hovered_index == 7
    pix = page.thumb_label.pixmap()
    assert pix is not None and not pix.isNull() and max(pix.width(), pix.height()) > 12
    assert page.names[7] in page.thumb_caption.text()
    assert "class: " in page.thumb_caption.text()
    # The thumbnail is the image file itself (the folder source), scaled: check a pixel colour.
    from PIL import Image

    img = np.asarray(Image.open(page.names[7]).convert("RGB"))
    shown = pix.toImage()
    c = shown.pixelColor(shown.width() // 2, shown.height() // 2)
    assert abs(c.red() - int(img[6, 6, 0])) < 60 or abs(c.red() - int(img[5, 5, 0])) < 60


def test_click_fills_the_neighbour_grid_with_the_nearest_images(qtbot):
    from studio.engine.eval import nearest_neighbors
    from studio.gui.explorer import ExplorerPage

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 24)).astype(np.float32)
    images = rng.integers(0, 255, size=(200, 3, 8, 8), dtype=np.uint8)
    names = [f"img/{i:03d}.png" for i in range(200)]
    page = ExplorerPage(None)  # no project needed to show data
    qtbot.addWidget(page)
    page.set_data(vectors, vectors[:, :2], np.arange(200) % 4, names, images, ["a", "b", "c", "d"])
    with qtbot.waitSignal(page.neighboursShown, timeout=5000):
        page.map_view.pointClicked.emit(42)  # what a click on point 42 emits
    expected, _ = nearest_neighbors(vectors, 42, 16)
    np.testing.assert_array_equal(page.neighbor_indices, expected)
    for lab, j in zip(page.neighbour_labels, expected):
        assert not lab.pixmap().isNull()
        assert lab.toolTip().startswith(f"<qt>{names[j]}<br>cosine ")  # shown as typed (plain_tip)


def test_the_map_view_maps_mouse_positions_to_points(qtbot):
    from PySide6.QtCore import QPointF, QRectF

    from studio.gui.explorer import EmbeddingMapView

    view = EmbeddingMapView()
    qtbot.addWidget(view)
    view.resize(400, 400)
    view.show()
    coords = np.array([[0.0, 0.0], [10.0, 10.0], [10.0, 0.0]])
    view.set_points(coords, np.array([0, 1, 1]))
    qtbot.waitExposed(view)
    assert view.index_at(QPointF(9.95, 0.05)) == 2
    assert view.index_at(QPointF(5.0, 5.0)) == -1
    with qtbot.waitSignal(view.boxSelected) as blocker:
        view._on_box(QRectF(5, -1, 6, 12))
    assert sorted(blocker.args[0].tolist()) == [1, 2]


def test_box_selection_lists_and_exports_the_right_paths(qtbot, tmp_path):
    from studio.gui.explorer import ExplorerPage

    rng = np.random.default_rng(1)
    coords = rng.uniform(-1, 1, size=(500, 2)).astype(np.float32)
    names = [f"/data/photos/{i:04d}.jpg" for i in range(500)]
    page = ExplorerPage(None)
    qtbot.addWidget(page)
    page.set_data(rng.normal(size=(500, 8)), coords, np.zeros(500, int), names, None, ["x", "y"])
    idx = page.select_rect(0.0, 0.0, 0.5, 0.5)
    inside = np.flatnonzero((coords[:, 0] >= 0) & (coords[:, 0] <= 0.5) & (coords[:, 1] >= 0) & (coords[:, 1] <= 0.5))
    np.testing.assert_array_equal(idx, inside)
    assert page.selection_list.count() == len(inside) > 0  # one thumbnail per selected point
    first = page.selection_list.item(0)
    assert first.text() == "0031.jpg" == names[inside[0]].rsplit("/", 1)[1] and names[inside[0]] in first.toolTip()
    # The selection is ringed on the map: exactly the selected points, in one item.
    ringed = np.column_stack(page.map_view.selection_item.getData())
    np.testing.assert_allclose(ringed, coords[inside], rtol=1e-6)
    assert page.export_button.isEnabled()

    txt = page.export_selection(tmp_path / "sel.txt")
    assert txt.read_text().splitlines() == [names[i] for i in inside]
    with open(page.export_selection(tmp_path / "sel.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == [names[i] for i in inside]
    assert [int(r["index"]) for r in rows] == inside.tolist()
    assert float(rows[0]["x"]) == pytest.approx(float(coords[inside[0], 0]))


def test_a_large_map_searches_through_the_index_its_job_built(qtbot, explore_project, monkeypatch):
    import studio.engine.eval.index as index_module

    monkeypatch.setattr(index_module, "EXACT_UP_TO", 10)  # 30 images count as many
    project, run_id, _ = explore_project
    page = _page(qtbot, project)
    _computed(qtbot, page, run_id)
    index = page.neighbour_index()
    assert index.kind == "ivf" and index.source is page.vectors
    assert "Search: an index of 30 embeddings" in page.status.text()
    with qtbot.waitSignal(page.neighboursShown) as blocker:
        page.show_neighbors(4)
    exact = index_module.NeighbourIndex(page.vectors, exact_up_to=100).neighbours_of(4, 16)[0]
    assert list(blocker.args[0]) == list(exact)  # one cell here: the index finds what exact search finds
    page.set_data(page.vectors.copy(), page.coords, page.labels, page.names, page.images, page.class_names)
    assert page.neighbour_index().kind == "exact"  # other embeddings than the job indexed: searched exactly


def test_dropping_an_image_file_finds_its_neighbours(qtbot, explore_project):
    project, run_id, folder = explore_project
    page = _page(qtbot, project)
    _computed(qtbot, page, run_id)
    target = page.names[4]
    with qtbot.waitSignal(page.neighboursShown, timeout=120_000) as blocker:
        page.find_neighbors_of_file(target)
    found = blocker.args[0]
    assert len(found) == 16
    assert found[0] == 4  # the image itself is in the set: it is its own nearest neighbour


def test_colour_by_kmeans_cluster(qtbot):
    from studio.gui.explorer import ExplorerPage

    rng = np.random.default_rng(2)
    centres = rng.normal(size=(3, 16)) * 10
    vectors = np.repeat(centres, 50, axis=0) + rng.normal(size=(150, 16))
    page = ExplorerPage(None)
    qtbot.addWidget(page)
    page.k_spin.setValue(3)
    page.set_data(vectors, vectors[:, :2], None, None, None, None)  # no labels: clusters colour it
    assert page.clusters is not None and len(page.map_view.scatter_items) == 3
    assert page.map_view.point_count() == 150


def test_recolouring_keeps_the_zoom_and_a_new_map_shows_all_of_it(qtbot):
    page, coords, labels = _labelled_page(qtbot)
    vb = page.map_view.getViewBox()
    vb.setRange(xRange=(0.1, 0.3), yRange=(0.1, 0.3), padding=0)
    zoomed = np.array(vb.viewRange())
    page.colour_box.setCurrentIndex(page.colour_box.findData("cluster"))
    assert len(page.map_view.legend_entries()) == page.k_spin.value()  # recoloured by clusters
    np.testing.assert_allclose(np.array(vb.viewRange()), zoomed)  # the person's zoom stays
    assert page.map_view.index_at(QPointF(float(coords[5, 0]), float(coords[5, 1]))) == 5  # hover still finds it
    page.set_data(page.vectors, coords * 10, labels, page.names, None, page.class_names)
    (x0, x1), _ = vb.viewRange()
    assert x0 <= float((coords * 10)[:, 0].min()) and x1 >= float((coords * 10)[:, 0].max())  # other points: all shown


def _labelled_page(qtbot, n=120, classes=("cat", "dog", "fox")):
    from studio.gui.explorer import ExplorerPage

    rng = np.random.default_rng(3)
    coords = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
    labels = np.arange(n) % len(classes)
    page = ExplorerPage(None)
    qtbot.addWidget(page)
    page.resize(1100, 700)
    page.set_data(rng.normal(size=(n, 8)), coords, labels, [f"/d/{i:03d}.png" for i in range(n)], None, list(classes))
    return page, coords, labels


def test_legend_lists_each_class_and_a_click_isolates_it(qtbot):
    page, coords, labels = _labelled_page(qtbot)
    assert page.legend_texts() == ["cat (40)", "dog (40)", "fox (40)"]
    page._on_legend_clicked(page.legend_list.item(1))  # what a click on "dog" does
    shown = [item for item in page.map_view.scatter_items if item.isVisible()]
    assert len(shown) == 1 and len(shown[0].data) == 40
    # Only dogs can be hovered or selected now.
    idx = page.select_rect(-1, -1, 1, 1)
    assert set(labels[idx]) == {1} and len(idx) == 40
    page._on_legend_clicked(page.legend_list.item(1))  # again: every colour
    assert all(item.isVisible() for item in page.map_view.scatter_items)


def test_k_spin_only_when_colouring_by_cluster(qtbot):
    page, _, _ = _labelled_page(qtbot)
    page.show()
    assert not page.k_spin.isVisible()
    page.colour_box.setCurrentIndex(page.colour_box.findData("cluster"))
    assert page.k_spin.isVisible() and page.legend_list.count() == page.k_spin.value()
    assert page.legend_texts()[0].startswith("cluster 0")


def test_lasso_selects_exactly_the_points_inside(qtbot):
    page, coords, _ = _labelled_page(qtbot, n=400)
    triangle = np.array([[-0.9, -0.9], [0.9, -0.9], [0.0, 0.8]])
    idx = page.select_polygon(triangle)
    x, y = coords[:, 0], coords[:, 1]
    # inside the triangle: above the base, below both slanted sides
    inside = (y > -0.9) & (y < 0.8 - (1.7 / 0.9) * np.abs(x))
    np.testing.assert_array_equal(idx, np.flatnonzero(inside))
    ringed = np.column_stack(page.map_view.selection_item.getData())
    np.testing.assert_allclose(ringed, coords[inside], rtol=1e-6)
    assert page.selection_list.count() == inside.sum() and page.selection_title.text() == f"{inside.sum()} selected"


def test_a_new_map_clears_the_previous_hover_and_neighbours(qtbot):
    page, coords, labels = _labelled_page(qtbot)
    page.map_view.pointClicked.emit(5)
    assert page.neighbour_title.text().startswith("Nearest to 005.png")
    page.select_rect(-1, -1, 0, 0)
    page.set_data(np.ones((10, 8)), coords[:10], labels[:10], [f"/e/{i}.png" for i in range(10)], None, ["cat", "dog", "fox"])
    assert not page.neighbour_title.text().startswith("Nearest") and page.thumb_caption.text() == "Hover a point"
    assert page.thumb_label.pixmap().isNull() and all(lab.pixmap().isNull() for lab in page.neighbour_labels)
    assert len(page.selected_indices) == 0 and len(page.map_view.selection_item.data) == 0


def test_map_names_and_progress_in_plain_words(qtbot):
    from studio.gui.explorer import ExplorerPage, progress_text

    page = ExplorerPage(None)
    qtbot.addWidget(page)
    assert [page.map_box.itemText(i) for i in range(page.map_box.count())] == ["PCA", "t-SNE", "UMAP"]
    assert page.map_box.itemData(1) == "tsne"
    assert progress_text("map: tsne", 0, 1) == "Drawing the t-SNE map…"
    assert progress_text("embedding", 120, 300) == "Embedding the images: 120 of 300"


def test_lasso_a_region_then_tag_it_and_export_it_as_a_dataset(qtbot, explore_project):
    from studio.gui.embedding_map import points_in_polygon

    project, run_id, _ = explore_project
    page = _page(qtbot, project)
    _computed(qtbot, page, run_id)
    c = page.coords.astype(float)
    (x0, y0), (x1, y1) = c.min(0), c.max(0)
    # a triangle over the lower-left half of the map
    polygon = np.array([[x0 - 1, y0 - 1], [x1 + 1, y0 - 1], [x0 - 1, y1 + 1]])
    idx = page.select_polygon(polygon)
    expected = np.flatnonzero(points_in_polygon(c, polygon))
    assert 0 < len(idx) < 30 and idx.tolist() == expected.tolist()
    assert page.selection_list.count() == len(idx)  # one thumbnail each
    assert page.side_tabs.currentWidget().isAncestorOf(page.selection_list)  # the Selected tab shows
    assert all(not page.selection_list.item(i).icon().isNull() for i in range(page.selection_list.count()))

    # Tag the selection; colouring by tag shows it.
    assert page.tag_selected("keep") == len(idx)
    page.colour_box.setCurrentIndex(page.colour_box.findData("tag"))
    assert page.legend_texts() == [f"keep ({len(idx)})", f"untagged ({30 - len(idx)})"]

    with qtbot.waitSignal(page.datasetExported, timeout=60_000) as blocker:
        page.export_dataset("lassoed")
    record = blocker.args[0]
    assert record.images == len(idx) and project.dataset("lassoed").images == len(idx)
    assert page.dataset_box.findData(record.id) >= 0  # offered at once for the next map


def test_problem_lists_are_linked_to_the_map(qtbot):
    from studio.gui.explorer import ExplorerPage

    rng = np.random.default_rng(4)
    centre = rng.normal(size=16)
    vectors = centre + 0.3 * rng.normal(size=(150, 16))
    vectors[20] = vectors[5]
    vectors[90] = vectors[5]
    vectors[33] = -centre * 3  # alone
    page = ExplorerPage(None)
    qtbot.addWidget(page)
    page.set_data(vectors, vectors[:, :2], np.arange(150) % 2, [f"/d/{i:03d}.png" for i in range(150)], None, ["a", "b"])
    page.dup_slider.setValue(999)
    with qtbot.waitSignal(page.problemsFound, timeout=30_000):
        page.find_problems("duplicates")
    assert page.dup_table.rowCount() == 1 and page.dup_table.item(0, 1).text() == "3"
    page._on_problem_row(page.dup_table, 0)  # what a click on the row does
    assert page.selected_indices.tolist() == [5, 20, 90]
    assert len(page.map_view.selection_item.data) == 3
    with qtbot.waitSignal(page.problemsFound, timeout=30_000):
        page.find_problems("outliers")
    assert page.outlier_table.item(0, 2).text() == "033.png" and "/d/033.png" in page.outlier_table.item(0, 2).toolTip()
    page.outlier_table.sortItems(1, Qt.SortOrder.AscendingOrder)  # sortable, by number
    distances = [float(page.outlier_table.item(r, 1).text()) for r in range(page.outlier_table.rowCount())]
    assert distances == sorted(distances)
    page.outlier_table.sortItems(1, Qt.SortOrder.DescendingOrder)
    page._on_problem_row(page.outlier_table, 0)
    assert page.hovered_index == 33 and page.map_view._highlight.data["x"].tolist() == [pytest.approx(vectors[33, 0])]


class _Drag:
    """What pyqtgraph hands a ViewBox for a mouse drag (positions in the ViewBox's own coordinates)."""

    def __init__(self, down, pos, start=False, finish=False):
        self._down, self._pos, self._start, self._finish = down, pos, start, finish

    def modifiers(self):
        return Qt.KeyboardModifier.ShiftModifier

    def button(self):
        return Qt.MouseButton.LeftButton

    def buttonDownPos(self):
        return self._down

    def pos(self):
        return self._pos

    def isStart(self):
        return self._start

    def isFinish(self):
        return self._finish

    def accept(self):
        pass


def test_a_shift_drag_in_lasso_mode_selects_inside_the_drawn_loop(qtbot):
    from PySide6.QtCore import QPointF

    from studio.gui.explorer import EmbeddingMapView

    view = EmbeddingMapView()
    qtbot.addWidget(view)
    view.resize(400, 400)
    view.show()
    qtbot.waitExposed(view)
    grid = np.array([[x, y] for x in range(10) for y in range(10)], dtype=float)
    view.set_points(grid, np.zeros(100, int))
    view.lasso = True
    vb = view.getPlotItem().getViewBox()
    loop = [vb.mapFromView(QPointF(x, y)) for x, y in ((-0.5, -0.5), (4.5, -0.5), (4.5, 2.5), (-0.5, 2.5))]
    with qtbot.waitSignal(view.boxSelected) as blocker:
        for n, p in enumerate(loop[1:], 1):
            vb.mouseDragEvent(_Drag(loop[0], p, start=n == 1, finish=n == len(loop) - 1))
    picked = grid[blocker.args[0]]
    assert len(picked) == 15 and picked[:, 0].max() == 4 and picked[:, 1].max() == 2
