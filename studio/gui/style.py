"""The look: Fusion with a light or dark palette (following the system unless the user chose),
the stylesheet from studio/resources, status colours and the small icons drawn at run time."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QBrush, QColor, QIcon, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QApplication

from studio.status import RunStatus

ACCENT = "#2f6fed"
TEXT = "#1d2530"

STATUS_COLOURS = {
    RunStatus.QUEUED.value: "#8a94a3",
    RunStatus.RUNNING.value: "#2f6fed",
    RunStatus.PAUSED.value: "#d08c00",
    RunStatus.FINISHED.value: "#1e8e4f",
    RunStatus.STOPPED.value: "#6b7583",
    RunStatus.INTERRUPTED.value: "#c2590a",
    RunStatus.DIVERGED.value: "#b3261e",
    RunStatus.FAILED.value: "#b3261e",
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
    if status == RunStatus.QUEUED:
        p.setPen(QPen(colour, 2))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawEllipse(QPointF(8, 8), 5, 5)
    elif status == RunStatus.PAUSED:
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


ICON_SIZES = (16, 32, 48, 64, 128, 256, 512)


def app_icon() -> QIcon:
    """The application icon from studio/resources/icons at every size shipped (sharp on high-DPI
    screens); two overlapping views of one image, drawn here if the files are missing."""
    if "app" in _icon_cache:
        return _icon_cache["app"]
    icons = resources.files("studio").joinpath("resources", "icons")
    icon = QIcon()
    for n in ICON_SIZES:
        f = icons.joinpath(f"ssl-studio-{n}.png")
        if f.is_file():
            icon.addFile(str(f))
    if icon.isNull():
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
        icon = QIcon(pm)
    _icon_cache["app"] = icon
    return icon


THEMES = ("system", "light", "dark")

# The stylesheet is written for the light theme; the dark one maps each of its colours.
DARK_COLOURS = {
    "#ffffff": "#262a30", "#f4f5f7": "#1e2125", "#1d2530": "#e4e7eb", "#dde1e7": "#3a3f47",
    "#c5ccd6": "#4a505a", "#6b7583": "#9aa3ae", "#5b6573": "#a4adb8", "#f7f8fa": "#2c3036",
    "#eaedf1": "#181a1e", "#e1e5ea": "#3a3f47", "#d4e1fb": "#2d4373", "#10213f": "#e8eefc",
    "#a9c0ef": "#34466b", "#4a5462": "#b8c0ca", "#f4f6fb": "#8a94a3", "#f0f3f7": "#30353c",
    "#e8ecf2": "#353a42", "#e3e8ef": "#3a4048", "#e0b4b0": "#7a3a35", "#dfe4ea": "#2a2e35",
    "#d5dae1": "#2e3238", "#aeb6c2": "#5a616b", "#9aa3ae": "#6b7480", "#2c3440": "#d0d5dc",
    "#1b4fc4": "#8fb0f7", "#b3261e": "#f2867e", "#3a4350": "#c3cad3",
}

_current_dark = False


def colour(light: str) -> str:
    """A colour of the light theme, as the current theme shows it."""
    return DARK_COLOURS.get(light.lower(), light) if _current_dark else light


def is_dark() -> bool:
    return _current_dark


def system_prefers_dark() -> bool:
    """The desktop's colour scheme (Qt 6.5+); light where the platform does not say."""
    from PySide6.QtGui import QGuiApplication

    hints = QGuiApplication.styleHints()
    scheme = getattr(hints, "colorScheme", None)
    if scheme is None:
        return False
    return scheme() == Qt.ColorScheme.Dark


def stylesheet(dark: bool = False) -> str:
    """The .qss with {icons} made the absolute folder of the shipped icons (QSS urls are paths)."""
    base = resources.files("studio").joinpath("resources")
    try:
        text = base.joinpath("style.qss").read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return ""
    icons = Path(str(base.joinpath("icons"))).as_posix()
    text = text.replace("{icons}", icons)
    if dark:
        text = re.sub(r"#[0-9a-fA-F]{6}\b", lambda m: DARK_COLOURS.get(m.group(0).lower(), m.group(0)), text)
    return text


def _palette(dark: bool) -> QPalette:
    c = colour if dark else (lambda x: x)
    pal = QPalette()
    pal.setColor(QPalette.ColorRole.Window, QColor(c("#f4f5f7")))
    pal.setColor(QPalette.ColorRole.WindowText, QColor(c(TEXT)))
    pal.setColor(QPalette.ColorRole.Base, QColor(c("#ffffff")))
    pal.setColor(QPalette.ColorRole.AlternateBase, QColor("#2a2e35" if dark else "#f0f2f5"))
    pal.setColor(QPalette.ColorRole.Text, QColor(c(TEXT)))
    pal.setColor(QPalette.ColorRole.Button, QColor(c("#ffffff")))
    pal.setColor(QPalette.ColorRole.ButtonText, QColor(c(TEXT)))
    pal.setColor(QPalette.ColorRole.Highlight, QColor(ACCENT))
    pal.setColor(QPalette.ColorRole.HighlightedText, QColor("#ffffff"))
    pal.setColor(QPalette.ColorRole.ToolTipBase, QColor(c("#ffffff")))
    pal.setColor(QPalette.ColorRole.ToolTipText, QColor(c(TEXT)))
    pal.setColor(QPalette.ColorRole.PlaceholderText, QColor("#6b7480" if dark else "#8a94a3"))
    pal.setColor(QPalette.ColorRole.Link, QColor("#8fb0f7" if dark else ACCENT))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6b7480" if dark else "#9aa3ae"))
    if dark:
        # Fusion draws bevels and the tab bar's base line with these: keep them out of white.
        for role, value in ((QPalette.ColorRole.Light, "#3a3f47"), (QPalette.ColorRole.Midlight, "#30353c"),
                            (QPalette.ColorRole.Mid, "#2a2e35"), (QPalette.ColorRole.Dark, "#16181b"),
                            (QPalette.ColorRole.Shadow, "#0e0f11"), (QPalette.ColorRole.BrightText, "#ffffff")):
            pal.setColor(role, QColor(value))
    return pal


def apply_style(app: QApplication, theme: str = "system") -> bool:
    """Apply the theme ('system' | 'light' | 'dark') to the whole application; returns True if dark.

    Open plots follow through `restyle_plots` (pyqtgraph draws its own backgrounds)."""
    global _current_dark
    dark = theme == "dark" or (theme == "system" and system_prefers_dark())
    _current_dark = dark
    app.setStyle("Fusion")
    app.setPalette(_palette(dark))
    app.setStyleSheet(stylesheet(dark))
    app.setWindowIcon(app_icon())

    import pyqtgraph as pg

    pg.setConfigOptions(antialias=True, background=colour("#ffffff") if dark else "w", foreground=colour("#3a4350"))
    restyle_plots(app)
    return dark


def restyle_plots(app: QApplication) -> None:
    """Give every open plot the current theme's background and axis colours."""
    import pyqtgraph as pg

    from studio.gui.plots import theme_plot  # the one place plots take the palette's colours

    for w in app.allWidgets():
        if isinstance(w, pg.PlotWidget):
            if hasattr(w, "apply_theme"):
                w.apply_theme()
            else:
                theme_plot(w)
