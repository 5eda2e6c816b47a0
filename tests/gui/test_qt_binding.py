"""The Qt binding must not consume references to None while painting.

PySide6 6.12.0's QPainter.setPen released a reference to None on every call. On Python 3.11,
where None is not immortal, the live curves' axes (several setPen calls per repaint) brought its
count to zero within minutes of training and the app aborted with "Fatal Python error:
none_dealloc". pyproject.toml excludes that release; these tests catch it coming back. (From
Python 3.12 None is immortal and its count does not move: the tests pass there either way.)
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("private_settings")


def _none_refs() -> int:
    return sys.getrefcount(None)


def test_qpainter_set_pen_keeps_none_alive(qapp):
    from PySide6.QtGui import QColor, QImage, QPainter, QPen

    image = QImage(16, 16, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    try:
        before = _none_refs()
        for _ in range(2000):
            painter.setPen(QPen(QColor(0, 0, 0)))
        lost = before - _none_refs()
    finally:
        painter.end()
    assert lost < 100, f"QPainter.setPen released {lost} references to None in 2000 calls"


def test_repainting_a_live_plot_keeps_none_alive(qtbot):
    from studio.gui.plots import MetricPlot

    plot = MetricPlot("Training loss", "loss")
    qtbot.addWidget(plot)
    plot.resize(600, 240)
    plot.show()
    curve = plot.curve("loss")
    steps = np.arange(1, 301, dtype=float)
    loss = 7 * np.exp(-steps / 60) + 0.1 * np.sin(steps)
    before = _none_refs()
    for n in range(100, 301):  # a growing curve rescales the axes, which are redrawn each time
        curve.setData(steps[:n], loss[:n])
        plot.viewport().repaint()
    lost = before - _none_refs()
    assert lost < 100, f"200 repaints released {lost} references to None"
    assert curve.xData is not None and len(curve.xData) == 300


def test_live_plot_keeps_every_point_in_a_view_that_seldom_moves(qtbot):
    """The Run page's plots move their view only when they must, so their cached axes are reused
    between repaints; every point stays visible, and a pan or zoom by the user is kept."""
    from studio.gui.plots import MetricPlot

    plot = MetricPlot("Training loss", "loss")
    qtbot.addWidget(plot)
    plot.resize(600, 240)
    plot.show()
    curve = plot.curve("loss")
    vb = plot.getPlotItem().getViewBox()
    steps = np.arange(1, 201, dtype=float)
    loss = 6 * np.exp(-steps / 40) + 1.0  # 6.85 down to 1.0
    moves = 0
    last = None
    for n in range(2, 201):
        curve.setData(steps[:n], loss[:n])
        plot.fit_view(total_steps=200)
        (x0, x1), (y0, y1) = vb.viewRange()
        assert x0 <= 1 and x1 >= 200 and x1 < 210  # the whole run, from the first point
        assert y0 <= loss[:n].min() and y1 >= loss[:n].max()
        moves += (x0, x1, y0, y1) != last
        last = (x0, x1, y0, y1)
    assert moves <= 10, f"the view moved {moves} times in 199 updates"  # 8 here; autorange: 199
    # Settled values are refitted: the view is no taller than 1 / Y_SHRINK of their span.
    curve.setData(steps, np.r_[loss[:100], np.full(100, 1.0) + 0.01 * np.sin(steps[100:])])
    plot.fit_view(total_steps=200)
    plot.fit_view(total_steps=200)
    # A step past the planned total (a resumed run with more steps) widens x.
    curve.setData(np.r_[steps, 260.0], np.r_[loss, 1.0])
    plot.fit_view(total_steps=200)
    assert vb.viewRange()[0][1] >= 260
    # After the user zooms, updates leave the view alone; the "A" button follows the data again.
    vb.scaleBy((0.5, 0.5))
    vb.sigRangeChangedManually.emit(vb.state["mouseEnabled"])
    zoomed = vb.viewRange()
    curve.setData(np.r_[steps, 260.0, 261.0], np.r_[loss, 1.0, 50.0])
    plot.fit_view(total_steps=200)
    assert vb.viewRange() == zoomed
    plot.reset_view()
    assert vb.viewRange()[1][1] >= 50.0


def test_a_stopped_run_narrows_x_to_the_steps_it_made(qtbot):
    from studio.gui.plots import MetricPlot

    plot = MetricPlot("Training loss", "loss")
    qtbot.addWidget(plot)
    steps = np.arange(1, 46, dtype=float)
    plot.curve("loss").setData(steps, 5 - steps / 100)
    plot.fit_view(total_steps=120)  # while it runs: the whole planned run
    assert plot.getPlotItem().getViewBox().viewRange()[0][1] >= 120
    plot.fit_view(total_steps=45)  # stopped at 45 (the Run page passes the last logged step)
    x0, x1 = plot.getPlotItem().getViewBox().viewRange()[0]
    assert x0 <= 1 and 45 <= x1 < 50
