"""Compare runs: curves overlaid per checked run, a sortable table with evaluation results."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import Qt

from conftest import tiny_train_config


@pytest.fixture
def runs_project(project):
    """Three stored runs with curves and evaluations, written as a training run would."""
    from studio.services.training import create_run

    ids = []
    now = time.time()
    for i, (backbone, knn) in enumerate((("resnet18", 0.55), ("vit_tiny", 0.81), ("resnet18", 0.30))):
        run = create_run(project, "sample", tiny_train_config(backbone=backbone, method="simclr",
                                                              backbone_options={"num_layers": 1} if backbone == "vit_tiny" else {}))
        project.set_run_status(run.id, "running")
        steps = np.arange(1, 21)
        loss = 5.0 - (i + 1) * 0.1 * np.log(steps)
        project.add_metrics([(run.id, int(s), s / 10, "loss", float(v), now) for s, v in zip(steps, loss)])
        project.add_metrics([(run.id, 20, 2.0, "knn_top1", knn, now)])
        project.set_run_status(run.id, "finished")
        project.update_run(run.id, steps=20, final_loss=float(loss[-1]))
        project.add_evaluation(run.id, "knn", {"top1": knn}, checkpoint_step=20, dataset_id=1)
        project.add_evaluation(run.id, "linear", {"top1": knn + 0.1}, checkpoint_step=20, dataset_id=1)
        ids.append(run.id)
    return project, ids


def test_checked_runs_overlay_their_curves(qtbot, runs_project):
    from studio.gui.compare import CompareRunsPage

    project, ids = runs_project
    page = CompareRunsPage(project)
    qtbot.addWidget(page)
    assert page.run_list.count() == 3 and page.curve_items == {}
    page.set_checked([ids[0], ids[2]])
    assert sorted(page.curve_items) == [ids[0], ids[2]]
    x, y = page.curve_items[ids[2]].getData()
    series = project.metric_series(ids[2], ["loss"])
    np.testing.assert_allclose(y, series.values["loss"])
    np.testing.assert_allclose(x, series.steps["loss"])
    assert page.current_metric() == "loss"
    assert page.metric_box.findData("knn_top1") >= 0

    page.set_metric("knn_top1")
    assert sorted(page.curve_items) == [ids[0], ids[2]]
    assert page.curve_items[ids[0]].getData()[1].tolist() == [0.55]

    # Ticking a box in the list (as a user does) adds that run's curve.
    page.run_list.item(1).setCheckState(Qt.CheckState.Checked)
    assert sorted(page.curve_items) == sorted(ids)


def test_table_shows_runs_with_evaluations_and_sorts_by_number(qtbot, runs_project):
    from studio.gui.compare import COLUMNS, CompareRunsPage

    project, ids = runs_project
    page = CompareRunsPage(project)
    qtbot.addWidget(page)
    rows = page.table_rows()
    assert len(rows) == 3
    col = {name: i for i, name in enumerate(COLUMNS)}
    by_id = {int(r[col["Run"]]): r for r in rows}
    assert by_id[ids[1]][col["Backbone"]] == "vit_tiny"
    assert by_id[ids[1]][col["Dataset"]] == "sample"
    assert by_id[ids[1]][col["Method"]] == "simclr"
    assert float(by_id[ids[1]][col["kNN top-1"]]) == pytest.approx(0.81)
    assert float(by_id[ids[0]][col["Linear top-1"]]) == pytest.approx(0.65)
    assert by_id[ids[0]][col["Duration"]] != ""

    page.table.sortItems(col["kNN top-1"], Qt.SortOrder.DescendingOrder)
    assert [int(r[col["Run"]]) for r in page.table_rows()] == [ids[1], ids[0], ids[2]]
    page.table.sortItems(col["kNN top-1"], Qt.SortOrder.AscendingOrder)
    assert [int(r[col["Run"]]) for r in page.table_rows()] == [ids[2], ids[0], ids[1]]

    # A new evaluation shows after a refresh (the store is the truth).
    project.add_evaluation(ids[2], "knn", {"top1": 0.99}, checkpoint_step=20, dataset_id=1)
    page.refresh()
    by_id = {int(r[col["Run"]]): r for r in page.table_rows()}
    assert float(by_id[ids[2]][col["kNN top-1"]]) == pytest.approx(0.99)


def test_the_axis_and_the_metric_box_speak_words_not_keys(qtbot, runs_project):
    from studio.gui.compare import CompareRunsPage

    project, ids = runs_project
    page = CompareRunsPage(project)
    qtbot.addWidget(page)
    page.set_checked(ids)
    page.set_metric("knn_top1")
    assert page.metric_box.currentText() == "kNN top-1"
    axis = page.plot.getPlotItem().getAxis("left")
    assert axis.labelText == "kNN top-1" and not axis.autoSIPrefix  # 0.55 shown as 0.55, not 550 (x0.001)
    assert axis.labelString().find("x0.001") < 0
    assert page.legend_entries() == [f"run {i}" for i in ids]
    assert all(f"run {i}" in page.legend_label.text() for i in ids)
    # The legend is a row above the plot, not an item over the curves.
    assert page.plot.getPlotItem().legend is None


def test_rows_start_sorted_as_the_header_says(qtbot, runs_project):
    from studio.gui.compare import CompareRunsPage

    project, ids = runs_project
    page = CompareRunsPage(project)
    qtbot.addWidget(page)
    header = page.table.horizontalHeader()
    assert header.sortIndicatorSection() == 0 and header.sortIndicatorOrder() == Qt.SortOrder.AscendingOrder
    assert [int(r[0]) for r in page.table_rows()] == sorted(ids)


def test_dark_palette_gives_dark_plots(qtbot, runs_project, monkeypatch):
    from PySide6.QtGui import QColor

    from studio.gui import style
    from studio.gui.compare import CompareRunsPage
    from studio.gui.explorer import EmbeddingMapView

    project, ids = runs_project
    # The theme's colour table as apply_style(app, "dark") leaves it (the app-wide stylesheet is
    # test_app_window's business).
    monkeypatch.setattr(style, "_current_dark", True)
    page = CompareRunsPage(project)
    view = EmbeddingMapView()
    qtbot.addWidget(page)
    qtbot.addWidget(view)
    page.set_checked(ids)
    for plot in (page.plot, view):
        assert QColor(plot.backgroundBrush().color()).lightness() < 80
    tick = page.plot.getPlotItem().getAxis("left").textPen().color()
    assert tick.lightness() > 150  # light text on the dark plot
    monkeypatch.setattr(style, "_current_dark", False)
    for plot in (page.plot, view):  # what restyle_plots calls on a theme change
        plot.apply_theme()
        assert QColor(plot.backgroundBrush().color()).lightness() > 200
