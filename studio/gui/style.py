"""The look: Fusion with a light palette, the stylesheet from studio/resources, status colours and
the small icons drawn at run time (no image files to ship or lose)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QBrush, QColor, QIcon, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QApplication

ACCENT = "#2f6fed"
TEXT = "#1d2530"

STATUS_COLOURS = {
    "queued": "#8a94a3",
    "running": "#2f6fed",
    "paused": "#d08c00",
    "finished": "#1e8e4f",
    "stopped": "#6b7583",
    "interrupted": "#c2590a",
    "diverged": "#b3261e",
    "failed": "#b3261e",
}

# Plot pens: one colour per curve, readable on white.
CURVE_COLOURS = ["#2f6fed", "#e8590c", "#2b8a3e", "#9c36b5", "#c92a2a", "#0b7285", "#5f3dc4", "#e67700"]


def status_colour(status: str) -> str:
    return STATUS_COLOURS.get(status, "#8a94a3")


_icon_cache: dict[str, QIcon] = {}


def status_icon(status: str) -> QIcon:
    """A coloured dot (ring for queued, bars for paused) for a run status."""
    if status in _icon_cache:
        return _icon_cache[status]
    pm = QPixmap(16, 16)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    colour = QColor(status_colour(status))
    if status == "queued":
        p.setPen(QPen(colour, 2))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawEllipse(QPointF(8, 8), 5, 5)
    elif status == "paused":
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QBrush(colour))
        p.drawRoundedRect(4, 3, 3, 10, 1, 1)
        p.drawRoundedRect(9, 3, 3, 10, 1, 1)
    else:
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QBrush(colour))
        p.drawEllipse(QPointF(8, 8), 5, 5)
    p.end()
    icon = QIcon(pm)
    _icon_cache[status] = icon
    return icon


def app_icon() -> QIcon:
    """Two overlapping views of one image: the studio's idea in a 64 px icon."""
    pm = QPixmap(64, 64)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor("#9db8f5"))
    p.drawRoundedRect(6, 6, 36, 36, 8, 8)
    p.setBrush(QColor(ACCENT))
    p.drawRoundedRect(22, 22, 36, 36, 8, 8)
    p.end()
    return QIcon(pm)


def stylesheet() -> str:
    """The .qss with {icons} made the absolute folder of the shipped icons (QSS urls are paths)."""
    base = resources.files("studio").joinpath("resources")
    try:
        text = base.joinpath("style.qss").read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return ""
    icons = Path(str(base.joinpath("icons"))).as_posix()
    return text.replace("{icons}", icons)


def apply_style(app: QApplication) -> None:
    app.setStyle("Fusion")
    pal = QPalette()
    pal.setColor(QPalette.ColorRole.Window, QColor("#f4f5f7"))
    pal.setColor(QPalette.ColorRole.WindowText, QColor(TEXT))
    pal.setColor(QPalette.ColorRole.Base, QColor("#ffffff"))
    pal.setColor(QPalette.ColorRole.AlternateBase, QColor("#f0f2f5"))
    pal.setColor(QPalette.ColorRole.Text, QColor(TEXT))
    pal.setColor(QPalette.ColorRole.Button, QColor("#ffffff"))
    pal.setColor(QPalette.ColorRole.ButtonText, QColor(TEXT))
    pal.setColor(QPalette.ColorRole.Highlight, QColor(ACCENT))
    pal.setColor(QPalette.ColorRole.HighlightedText, QColor("#ffffff"))
    pal.setColor(QPalette.ColorRole.ToolTipBase, QColor("#ffffff"))
    pal.setColor(QPalette.ColorRole.ToolTipText, QColor(TEXT))
    pal.setColor(QPalette.ColorRole.PlaceholderText, QColor("#8a94a3"))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor("#9aa3ae"))
    app.setPalette(pal)
    app.setStyleSheet(stylesheet())
    app.setWindowIcon(app_icon())

    import pyqtgraph as pg

    pg.setConfigOptions(antialias=True, background="w", foreground="#3a4350")
