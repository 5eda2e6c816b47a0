"""Small widgets shared by the pages: plain-text labels, editors generated from a config field,
stat cards, pills.

Text that comes from people or their files (dataset, file, class and run names, reasons, paths)
is shown as plain text everywhere: `Label` is a QLabel whose text is plain unless a page asks
for rich text (and then escapes what it did not write, `html.escape`); `plain_tip` makes a
tooltip that shows such text as it is; `message_box` asks or warns in plain text.
"""

from __future__ import annotations

import html
import math
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFrame, QGridLayout, QHBoxLayout, QLabel, QLineEdit, QMessageBox, QScrollArea,
    QSizePolicy, QSpinBox, QStackedLayout, QVBoxLayout, QWidget,
)


class Label(QLabel):
    """A QLabel that shows its text as plain text (QLabel's default guesses, and renders `<h1>`)."""

    def __init__(self, text: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setTextFormat(Qt.TextFormat.PlainText)
        if text:
            self.setText(text)


class ElidedLabel(Label):
    """A one-line label that gives way in a narrow window: it shows as much of its text as fits,
    ending in "…" (text() is still the whole text; the tooltip should say it too)."""

    MIN_WIDTH = 140

    def __init__(self, text: str = "", parent: QWidget | None = None):
        super().__init__("", parent)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        if text:
            self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt override
        self._full = text
        self._elide()
        self.updateGeometry()

    def text(self) -> str:
        return self._full

    def sizeHint(self):  # noqa: N802 - Qt override
        hint = super().sizeHint()
        hint.setWidth(self.fontMetrics().horizontalAdvance(self._full) + 4)
        return hint

    def minimumSizeHint(self):  # noqa: N802 - Qt override
        hint = super().minimumSizeHint()
        hint.setWidth(min(self.MIN_WIDTH, self.sizeHint().width()))
        return hint

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight, max(10, self.width()))
        if shown != super().text():
            super().setText(shown)


def plain_tip(text: str) -> str:
    """A tooltip showing `text` as it is (Qt renders a tooltip that looks like HTML as HTML)."""
    return "<qt>" + html.escape(str(text), quote=False).replace("\n", "<br>") + "</qt>" if text else ""


def message_box(parent: QWidget | None, title: str, text: str, question: bool = False) -> QMessageBox.StandardButton:
    """A warning (or a Yes/Cancel question) whose text is plain text; its answer."""
    icon = QMessageBox.Icon.Question if question else QMessageBox.Icon.Warning
    buttons = (QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel if question
               else QMessageBox.StandardButton.Ok)
    box = QMessageBox(icon, title, text, buttons, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    if question:
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    return QMessageBox.StandardButton(box.exec())

from studio.gui.style import status_colour

INT_LIMIT = 2**31 - 1


class PageHolder(QScrollArea):
    """A page's frame in the window: the page fills the window and scrolls only where the window
    is smaller than the page's minimum size (the window works from 1024 x 640 up).

    QScrollArea's own resizing gives a page with word-wrapped text its *preferred* height for the
    width (a Run page of 1,269 px in a 717 px window: plots at their 640 x 480 size hints and a
    scroll bar); here the page gets the viewport's size, grown only to its minimum."""

    def __init__(self, page: QWidget | None = None):
        super().__init__()
        self.setWidgetResizable(False)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        if page is not None:
            self.setWidget(page)

    def setWidget(self, page: QWidget) -> None:  # noqa: N802 - Qt override
        super().setWidget(page)
        page.installEventFilter(self)
        self.fit()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.fit()
        return False

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self.fit()

    def minimum_for(self, width: int) -> tuple[int, int]:
        page = self.widget()
        least = page.minimumSizeHint().expandedTo(page.minimumSize())
        lay = page.layout()
        # A stack's own "minimum" height for a width is its preferred one (Qt's default): ask
        # the page shown in it.
        while isinstance(lay, QStackedLayout) and lay.currentWidget() is not None:
            lay = lay.currentWidget().layout()
        height = least.height()
        if lay is not None and lay.hasHeightForWidth():
            height = max(height, lay.totalMinimumHeightForWidth(max(width, least.width())))
        return least.width(), height

    def fit(self) -> None:
        page = self.widget()
        if page is None:
            return
        # The scroll bars take room from the viewport: size against the area without them first.
        full = self.size()
        min_w, min_h = self.minimum_for(full.width())
        bar = self.style().pixelMetric(self.style().PixelMetric.PM_ScrollBarExtent)
        width = full.width() - (bar if min_h > full.height() else 0)
        height = full.height() - (bar if min_w > width else 0)
        min_w, min_h = self.minimum_for(width)
        page.resize(max(width, min_w), max(height, min_h))


class TwoColumns(QObject):
    """A form's two columns in a grid that become one (the second under the first) when the
    width of `viewport` (the form's scroll area) is under what the two need side by side, so a
    1024 x 640 window shows the New run form without scrolling sideways (its two columns need
    about 910 px)."""

    def __init__(self, grid: QGridLayout, first: list[QWidget], second: QVBoxLayout, viewport: QWidget):
        super().__init__(viewport)
        self.grid, self.first, self.second, self.viewport = grid, first, second, viewport
        self.narrow = False
        viewport.installEventFilter(self)

    def needed(self) -> int:
        parent = self.grid.parentWidget()
        m = parent.layout().contentsMargins() if parent is not None and parent.layout() is not None else None
        margins = (m.left() + m.right()) if m is not None else 0
        first = max(w.minimumSizeHint().width() for w in self.first)
        return first + self.grid.horizontalSpacing() + self.second.minimumSize().width() + margins

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if watched is self.viewport and event.type() == QEvent.Type.Resize:
            self.fit()
        return False

    def fit(self) -> None:
        narrow = self.viewport.width() < self.needed()
        if narrow == self.narrow:
            return
        self.narrow = narrow
        self.grid.removeItem(self.second)
        if narrow:
            self.grid.addLayout(self.second, 2, 0)
            self.grid.setColumnStretch(1, 0)
        else:
            self.grid.addLayout(self.second, 0, 1, 2, 1)
            self.grid.setColumnStretch(1, 1)


def page_with_empty_state(page: QWidget, message: str, bottom_margin: int = 14,
                          spacing: int = 10) -> tuple[QStackedLayout, QVBoxLayout]:
    """A page that shows `message` until it has something to show (index 0), then its body
    (index 1); returns the stack and the body's layout."""
    stack = QStackedLayout(page)
    empty = Label(message)
    empty.setObjectName("Muted")
    empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
    stack.addWidget(empty)
    body = QWidget()
    stack.addWidget(body)
    lay = QVBoxLayout(body)
    lay.setContentsMargins(24, 18, 24, bottom_margin)
    lay.setSpacing(spacing)
    return stack, lay


class PageLayout(QVBoxLayout):
    """A page's top layout that fits its page to the space it is given.

    Word-wrapped labels make a layout "height for width", and a QScrollArea then scrolls as soon
    as the page is shorter than its *preferred* height for the width. Saying no lets the scroll
    area compare against the page's minimum size, so scroll bars appear only when it must."""

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt override
        return False


class CompactDoubleSpinBox(QDoubleSpinBox):
    """A float spin box that shows 0.5, not 0.500000, yet keeps six decimals of precision."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setDecimals(6)
        self.setStepType(QDoubleSpinBox.StepType.AdaptiveDecimalStepType)

    def textFromValue(self, value: float) -> str:  # noqa: N802 - Qt override
        return f"{value:.6g}"


def zero_meaning(help_text: str) -> str:
    """What 0 stands for in a setting's help ("...; 0 means the backbone's feature size", "0: by
    time only"), shown in its spin box instead of a bare 0; "" when the help does not say."""
    import re

    found = re.search(r"(?:\b0 means|(?:^|; )0:) ([^;()]+)", help_text or "")
    return found.group(1).strip().rstrip(".") if found else ""


class ConfigFieldEditor:
    """The editor of one FieldInfo: a spin box with its bounds, a combo for choices, a check box
    for bools, a line edit for text; its tooltip is the field's help."""

    def __init__(self, info: Any):
        self.info = info
        t = info.type
        if info.choices:
            w = QComboBox()
            for c in info.choices:
                w.addItem(str(c), c)
            idx = w.findData(info.default)
            w.setCurrentIndex(max(0, idx))
            self.changed = w.currentIndexChanged
        elif t == "bool":
            w = QCheckBox()
            w.setChecked(bool(info.default))
            self.changed = w.toggled
        elif t == "int":
            w = QSpinBox()
            w.setRange(int(info.min) if info.min is not None else -INT_LIMIT,
                       int(info.max) if info.max is not None else INT_LIMIT)
            w.setValue(int(info.default))
            w.setGroupSeparatorShown(False)
            zero = zero_meaning(info.help) if info.min == 0 else ""
            if zero:  # "hidden dim: the backbone's feature size", not "hidden dim: 0"
                w.setSpecialValueText(zero)
            self.changed = w.valueChanged
        elif t == "float":
            w = CompactDoubleSpinBox()
            w.setRange(float(info.min) if info.min is not None else -1e12,
                       float(info.max) if info.max is not None else 1e12)
            w.setValue(float(info.default))
            self.changed = w.valueChanged
        else:
            w = QLineEdit(str(info.default) if info.default is not None else "")
            self.changed = w.textChanged
        w.setObjectName(f"field_{info.name}")
        w.setToolTip(self.tooltip())
        self.widget = w

    def tooltip(self) -> str:
        info = self.info
        tip = info.help or info.name
        bounds = []
        if info.min is not None:
            bounds.append(f"min {info.min:g}")
        if info.max is not None:
            bounds.append(f"max {info.max:g}")
        extra = f" ({', '.join(bounds)})" if bounds else ""
        return f"{tip}{extra}. Default: {info.default}."

    def value(self) -> Any:
        w = self.widget
        if isinstance(w, QComboBox):
            return w.currentData()
        if isinstance(w, QCheckBox):
            return w.isChecked()
        if isinstance(w, QSpinBox):
            return int(w.value())
        if isinstance(w, QDoubleSpinBox):
            v = float(w.value())
            return v if math.isfinite(v) else self.info.default
        return w.text()

    def set_value(self, value: Any) -> None:
        w = self.widget
        if isinstance(w, QComboBox):
            w.setCurrentIndex(max(0, w.findData(value)))
        elif isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        elif isinstance(w, QSpinBox):
            w.setValue(int(value))
        elif isinstance(w, QDoubleSpinBox):
            w.setValue(float(value))
        else:
            w.setText(str(value))


class StatCard(QFrame):
    """A number with a caption, e.g. '1,797' over 'images'."""

    def __init__(self, caption: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("Card")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(16, 10, 16, 10)
        lay.setSpacing(2)
        self.value_label = Label("–")
        self.value_label.setObjectName("StatValue")
        self.caption_label = Label(caption)
        self.caption_label.setObjectName("StatLabel")
        lay.addWidget(self.value_label)
        lay.addWidget(self.caption_label)

    def set_value(self, text: str) -> None:
        self.value_label.setText(text)


class StatusPill(QLabel):
    """A run status as a coloured rounded label."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setObjectName("StatusPill")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.set_status("")

    def set_status(self, status: str) -> None:
        self.setText(status or "–")
        self.setVisible(bool(status))
        # The per-status colour goes on top of the stylesheet's shape.
        self.setStyleSheet(f"#StatusPill {{ background: {status_colour(status)}; }}")


class RunTitleRow(QHBoxLayout):
    """A run page's heading: "Run N: SimCLR on resnet18" with its status pill; buttons added to the
    row after it sit on the right."""

    def __init__(self):
        super().__init__()
        self.title_label = ElidedLabel()
        self.title_label.setObjectName("PageTitle")
        self.status_pill = StatusPill()
        # Beside the status while the health monitor's latest verdict is "collapsed".
        self.health_pill = Label("collapsing")
        self.health_pill.setObjectName("HealthPill")
        self.health_pill.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.health_pill.hide()
        # Beside it while the kNN monitor's latest check is under the untrained encoder's.
        self.baseline_pill = Label("below random init")
        self.baseline_pill.setObjectName("HealthPill")
        self.baseline_pill.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.baseline_pill.hide()
        self.addWidget(self.title_label)
        self.addSpacing(8)
        self.addWidget(self.status_pill, 0, Qt.AlignmentFlag.AlignVCenter)
        self.addSpacing(4)
        self.addWidget(self.health_pill, 0, Qt.AlignmentFlag.AlignVCenter)
        self.addSpacing(4)
        self.addWidget(self.baseline_pill, 0, Qt.AlignmentFlag.AlignVCenter)
        self.addStretch(1)

    def show_health(self, collapse_step: int | None, message: str = "", ended: bool = False) -> None:
        """Show the pill when the latest health check (at `collapse_step`) found the outputs
        collapsed ("collapsing" while the run goes on, "collapsed" once it has ended), with the
        health monitor's own words (eval.health.collapse_verdict) as its tooltip; None hides it."""
        self.health_pill.setVisible(collapse_step is not None)
        if collapse_step is not None:
            self.health_pill.setText("collapsed" if ended else "collapsing")
            self.health_pill.setToolTip(f"At step {collapse_step:,} {message} The run's log below says when it began.")

    def show_baseline(self, step: int | None, message: str = "") -> None:
        """Show the pill when the kNN check at `step` was below the untrained encoder's, with the
        verdict's words (eval.health.baseline_verdict) as its tooltip; None hides it."""
        self.baseline_pill.setVisible(step is not None)
        if step is not None:
            self.baseline_pill.setToolTip(f"At step {step:,} {message}")

    def show_run(self, run) -> None:
        from studio.services.labels import method_words, run_title

        self.title_label.setText(run_title(run))
        self.title_label.setToolTip(plain_tip(f"{run_title(run)} ({method_words(run)})" if run.name else run_title(run)))
        self.status_pill.set_status(run.status)


def section_title(text: str) -> QLabel:
    label = Label(text.upper())
    label.setObjectName("SectionTitle")
    return label


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "–"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def read_only_table(columns) -> "QTableWidget":
    """A table of whole rows, one selected at a time, not editable, columns sized to their
    contents (Run details' checkpoints and evaluations, the Explorer's problem lists)."""
    from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget

    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(list(columns))
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    return table
