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
    from studio.gui.run_page import MetricPlot

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
        plot.repaint()
    lost = before - _none_refs()
    assert lost < 100, f"200 repaints released {lost} references to None"
    assert curve.xData is not None and len(curve.xData) == 300
