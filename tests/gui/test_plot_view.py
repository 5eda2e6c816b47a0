"""The Run page's curves can be smoothed, drawn on a log loss axis and against wall-clock time
(TensorBoard's habits; issue 16, expected and missing), and the choice is kept."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

pytestmark = pytest.mark.usefixtures("private_settings")


def test_smoothing_is_a_debiased_moving_average():
    from studio.gui.plots import smooth_ema

    assert np.allclose(smooth_ema([3.0, 3.0, 3.0], 0.9), 3.0)  # debiased: no pull towards zero
    assert np.allclose(smooth_ema([1.0, 0.0], 0.5), [1.0, 0.25 / 0.75])
    assert np.allclose(smooth_ema([1.0, 2.0], 0.0), [1.0, 2.0])
    assert np.allclose(smooth_ema([1.0, np.nan, 1.0], 0.5), [1.0, 1.0, 1.0])  # a NaN is passed over


def _run_with_points(project, losses, start=1000.0, seconds_per_step=30.0):
    from studio.engine.train import TrainConfig
    from studio.services.training import create_run

    run = create_run(project, "sample", TrainConfig(method="simclr", backbone="resnet18", steps=len(losses), batch_size=32))
    project.set_run_status(run.id, "finished", steps=len(losses), total_steps=len(losses))
    project.add_metrics([(run.id, i + 1, 0.0, "loss", v, start + seconds_per_step * i) for i, v in enumerate(losses)])
    return run


def test_smoothing_log_scale_and_wall_time_axis(make_window, qtbot, project):
    losses = [8.0, 2.0, 8.0, 2.0, 8.0, 2.0, 8.0, 2.0]
    run = _run_with_points(project, losses)
    w = make_window(project.root)
    w.panel.select_run(run.id)
    page = w.run_page
    qtbot.waitUntil(lambda: len(page.curve_data("loss")[0]) == len(losses))
    x, y = page.curve_data("loss")
    assert list(x) == list(range(1, 9)) and list(y) == losses  # smoothing 0: the points as they are

    page.smoothing_slider.setValue(80)
    x, y = page.curve_data("loss")
    assert y.max() - y.min() < 4.0  # the zig-zag of 6 is smoothed out...
    raw = page.loss_plot.raw_curves["loss"]
    assert list(raw.yData) == losses  # ...over the raw points, drawn faint behind it
    assert page.smoothing_value.text() == "0.80"

    page.log_check.setChecked(True)
    page.flush_drawing()
    assert page.loss_plot.getPlotItem().ctrl.logYCheck.isChecked()
    lo, hi = page.loss_plot.getPlotItem().getViewBox().viewRange()[1]
    assert lo <= np.log10(2.0) and hi >= np.log10(8.0) and hi < 2  # the view is in decades

    page.x_axis_combo.setCurrentIndex(page.x_axis_combo.findData("time"))
    x, _ = page.curve_data("loss")
    assert np.allclose(x, [0.5 * i for i in range(8)])  # 30 s a step: minutes since the first point
    assert page.loss_plot.getPlotItem().getAxis("bottom").labelText == "minutes since the start"

    # The choices are kept for the next window.
    w2 = make_window(project.root)
    assert w2.run_page.smoothing_slider.value() == 80 and w2.run_page.log_check.isChecked()
    assert w2.run_page.x_axis_combo.currentData() == "time"


def test_a_loss_below_zero_cannot_go_on_a_log_axis(make_window, qtbot, project):
    run = _run_with_points(project, [-1.0, -1.5, -1.9])  # BYOL's and SimSiam's losses are negative
    w = make_window(project.root)
    page = w.run_page
    page.log_check.setChecked(True)
    w.panel.select_run(run.id)
    qtbot.waitUntil(lambda: len(page.curve_data("loss")[0]) == 3)
    assert not page.log_check.isEnabled()
    assert not page.loss_plot.log_y
    assert list(page.curve_data("loss")[1]) == [-1.0, -1.5, -1.9]


def test_a_page_fills_the_window_and_scrolls_only_below_its_minimum(make_window, qtbot, project):
    """The Run page once stood 1,269 px tall in a 717 px window (QScrollArea gave its word-wrapped
    layout its preferred height): the plots were at their size hints and the page scrolled."""
    run = _run_with_points(project, [3.0, 2.0, 1.0])
    w = make_window(project.root)
    w.resize(1280, 800)
    w.panel.select_run(run.id)
    w.show_page("Run")
    holder, page = w._holders["Run"], w.run_page
    qtbot.waitUntil(lambda: page.height() == holder.viewport().height())
    assert not holder.verticalScrollBar().isVisible()
    assert page.loss_plot.height() + page.lr_plot.height() < holder.viewport().height()
    w.resize(1024, 500)  # below the page's minimum: it keeps its minimum and scrolls
    qtbot.waitUntil(lambda: holder.verticalScrollBar().isVisible())
    assert page.height() >= page.minimumSizeHint().height()
