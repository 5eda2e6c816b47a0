"""The Explorer's Steps slider: the map of every checkpoint, computed on a task, each aligned onto
the one before; moving the slider redraws that step's map and keeps the selection."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import tiny_train_config, write_image_folder


def _run(project, steps, every):
    from studio.services.training import create_run, execute_run

    # A one-layer ViT-Tiny at 8 px: its checkpoints cost less than a ResNet's.
    config = tiny_train_config(steps=steps, batch_size=8, checkpoint_every=every, monitor_every=-1, image_size=8,
                               backbone="vit_tiny", backbone_options={"num_layers": 1, "patch_size": 4})
    run = create_run(project, "shapes", config)
    assert execute_run(project, run.id).status == "finished"
    return run.id


@pytest.fixture(scope="module")
def stepped(tmp_path_factory):
    """A labelled dataset (3 classes × 8 images) and two runs: checkpoints at 2, 4 and 6, and one
    checkpoint only."""
    from studio.services.datasets import add_dataset
    from studio.store import Project

    root = tmp_path_factory.mktemp("explorer_steps")
    folder = write_image_folder(root / "imgs", classes=("a", "b", "c"), per_class=8, size=12)
    p = Project.create(root / "proj")
    add_dataset(p, str(folder), name="shapes")
    stepped_id = _run(p, 6, 2)
    single_id = _run(p, 2, 0)
    yield p, stepped_id, single_id
    p.close()


def _page(qtbot, project, run_id):
    from studio.gui.explorer import ExplorerPage

    page = ExplorerPage(project)
    qtbot.addWidget(page)
    page.resize(1024, 640)
    page.run_box.setCurrentIndex(page.run_box.findData(run_id))
    return page


def _drawn(page) -> np.ndarray:
    """The drawn points, row i the point of image i."""
    view = page.map_view
    out = np.zeros((len(view.coords), 2))
    for item, rows in zip(view.scatter_items, view._item_indices):
        out[rows] = np.column_stack(item.getData())
    return out


def test_the_slider_steps_through_every_checkpoints_aligned_map(qtbot, stepped):
    from studio.services.explore_steps import compute_step_maps

    project, run_id, _ = stepped
    page = _page(qtbot, project, run_id)
    assert not page.steps_slider.isEnabled() and not page.steps_button.isHidden()
    assert page.steps_button.isEnabled() and page.steps_value.text() == "3 checkpoints"
    stages = []
    page.map_box.setCurrentIndex(page.map_box.findData("pca"))
    with qtbot.waitSignal(page.dataLoaded, timeout=120_000):
        page.steps_button.click()
        assert page.busy and not page.steps_button.isEnabled()  # on the task; the click returned at once
        page._task.progress.connect(lambda p: stages.append(p.stage))
    qtbot.waitUntil(lambda: not page.busy)
    assert "map 3 of 3: step 6" in stages
    # One position per checkpoint; the newest shown first; the button gone (computed).
    slider = page.steps_slider
    assert slider.isEnabled() and (slider.minimum(), slider.maximum(), slider.value()) == (0, 2, 2)
    assert page.shown_step == 6 and page.steps_value.text() == "step 6 of 6"
    assert page.steps_button.isHidden()
    expected = compute_step_maps(project, run_id, algorithm="pca", device="cpu")  # read back: stored
    np.testing.assert_allclose(_drawn(page), expected.coords[2], atol=1e-5)
    assert page.legend_texts() == ["a (8)", "b (8)", "c (8)"]

    page.select_on_map([1, 5, 17])
    slider.setValue(0)  # what dragging it to the left end does
    assert page.shown_step == 2 and page.steps_value.text() == "step 2 of 6"
    np.testing.assert_allclose(_drawn(page), expected.coords[0], atol=1e-5)
    assert not np.allclose(_drawn(page), expected.coords[2])
    np.testing.assert_array_equal(page.selected_indices, [1, 5, 17])  # the same images stay selected
    np.testing.assert_allclose(page.map_view.selection_item.getData()[0], expected.coords[0][[1, 5, 17], 0], atol=1e-5)
    assert page.selection_title.text() == "3 selected"
    np.testing.assert_array_equal(page.vectors, expected.vectors[0])  # neighbours ask this step's embeddings
    assert page.legend_texts() == ["a (8)", "b (8)", "c (8)"]
    page.map_view.pointHovered.emit(5)
    assert page.hovered_index == 5 and "class: a" in page.thumb_caption.text()
    page.isolate_group(1)  # only class b shown: it stays so while stepping
    slider.setValue(1)
    np.testing.assert_allclose(_drawn(page), expected.coords[1], atol=1e-5)
    np.testing.assert_array_equal(page.selected_indices, [1, 5, 17])
    assert page.map_view.isolated == 1 and [i.isVisible() for i in page.map_view.scatter_items] == [False, True, False]

    # Another map's choices: the button comes back for them; computing one map forgets the steps.
    page.map_box.setCurrentIndex(page.map_box.findData("tsne"))
    assert not page.steps_button.isHidden() and slider.isEnabled()
    with qtbot.waitSignal(page.dataLoaded, timeout=120_000):
        page.compute(run_id=run_id, checkpoint_step=None, dataset=None, algorithm="pca")
    qtbot.waitUntil(lambda: not page.busy)
    assert page.shown_step is None and not slider.isEnabled()


def test_a_run_with_one_checkpoint_disables_the_slider_and_says_why(qtbot, stepped):
    project, _, single_id = stepped
    page = _page(qtbot, project, single_id)
    assert not page.steps_slider.isEnabled() and not page.steps_button.isEnabled()
    assert "one checkpoint (step 2)" in page.steps_slider.toolTip()
    assert "checkpoint every" in page.steps_button.toolTip()
    assert page.steps_value.text() == "one checkpoint (step 2)"


def test_k_means_colours_keep_their_meaning_from_step_to_step(qtbot, stepped):
    from studio.engine.eval import kmeans_labels, match_clusters

    project, run_id, _ = stepped
    page = _page(qtbot, project, run_id)
    page.colour_box.setCurrentIndex(page.colour_box.findData("cluster"))
    page.k_spin.setValue(3)
    with qtbot.waitSignal(page.dataLoaded, timeout=120_000):
        page.compute_steps(algorithm="pca")
    qtbot.waitUntil(lambda: not page.busy)
    v = page.step_maps.vectors
    # Clustered on the task, each step's ids those of the step before's clusters it overlaps most.
    first = kmeans_labels(v[0], 3)
    page.steps_slider.setValue(0)
    np.testing.assert_array_equal(page.clusters, first)
    page.steps_slider.setValue(1)
    np.testing.assert_array_equal(page.clusters, match_clusters(kmeans_labels(v[1], 3), first))
    assert sorted(page.map_view.item_groups) == sorted(set(page.clusters.tolist()))
    assert page.legend_texts()[0].startswith("cluster ")

    # Colouring by cluster chosen after stepping: clustered then, matched to the step beside.
    page.colour_box.setCurrentIndex(page.colour_box.findData("label"))
    page.k_spin.setValue(2)
    page._on_k_changed()  # what editing the spin box ends with
    page.colour_box.setCurrentIndex(page.colour_box.findData("cluster"))
    beside = page.clusters.copy()  # step 1's, k = 2
    page.steps_slider.setValue(2)
    np.testing.assert_array_equal(page.clusters, match_clusters(kmeans_labels(v[2], 2), beside))


def test_another_runs_map_beside_it_shares_the_selection(qtbot, stepped):
    from studio.engine.eval import procrustes_align
    from studio.services.evaluation import compute_embeddings, embedding_map

    project, run_id, single_id = stepped
    page = _page(qtbot, project, run_id)
    with qtbot.waitSignal(page.dataLoaded, timeout=120_000):
        page.compute(run_id=run_id, checkpoint_step=None, dataset=None, algorithm="pca")
    qtbot.waitUntil(lambda: not page.busy)
    assert page.pair_pane.isHidden()
    page.pair_check.setChecked(True)
    assert not page.pair_pane.isHidden() and page.pair_run_box.currentData() == single_id  # another run first
    page.pair_button.click()
    assert page.busy  # on a task
    qtbot.waitUntil(lambda: not page.busy and page.pair is not None, timeout=120_000)
    other = compute_embeddings(project, single_id, dataset=page.dataset_id, device="cpu")
    expected = procrustes_align(embedding_map(project, other, "pca"), page.coords)
    view = page.pair_view
    assert view.point_count() == 24 and "Run 2, step 2" in page.pair_title.text()
    drawn = np.zeros((24, 2))
    for item, rows in zip(view.scatter_items, view._item_indices):
        drawn[rows] = np.column_stack(item.getData())
    np.testing.assert_allclose(drawn, expected, atol=1e-4)
    assert view.legend_entries() == page.map_view.legend_entries()  # the same colours

    view.boxSelected.emit(np.array([3, 4, 20]))  # a box drawn on the other run's map
    np.testing.assert_array_equal(page.selected_indices, [3, 4, 20])
    np.testing.assert_array_equal(page.map_view.selected, [3, 4, 20])
    np.testing.assert_array_equal(view.selected, [3, 4, 20])
    assert page.selection_title.text() == "3 selected"
    page.select_on_map([0, 9])  # and one drawn on this run's
    np.testing.assert_array_equal(view.selected, [0, 9])
    page.isolate_group(2)
    assert view.isolated == 2
    view.pointHovered.emit(9)
    assert page.hovered_index == 9
    # Another map shown: the pair was of the one before.
    with qtbot.waitSignal(page.dataLoaded, timeout=120_000):
        page.compute(run_id=run_id, checkpoint_step=None, dataset=None, algorithm="tsne")
    qtbot.waitUntil(lambda: not page.busy)
    assert page.pair is None and view.point_count() == 0
