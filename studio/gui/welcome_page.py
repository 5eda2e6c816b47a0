"""The start page shown when no project is open."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from studio.gui.style import app_icon, colour
from studio.gui.widgets import Label, plain_tip, section_title


class WelcomePage(QWidget):
    new_requested = Signal()
    open_requested = Signal()
    sample_requested = Signal()
    recent_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        row = QHBoxLayout()
        row.addStretch(1)
        card = QFrame()
        card.setObjectName("Card")
        card.setFixedWidth(520)
        lay = QVBoxLayout(card)
        lay.setContentsMargins(36, 32, 36, 32)
        lay.setSpacing(12)
        icon = Label()
        icon.setPixmap(app_icon().pixmap(56, 56))
        title = Label("SSL Studio")
        title.setObjectName("PageTitle")
        subtitle = Label("Train self-supervised image encoders on your own images, watch them learn, export them.")
        subtitle.setObjectName("PageSubtitle")
        subtitle.setWordWrap(True)
        lay.addWidget(icon)
        lay.addWidget(title)
        lay.addWidget(subtitle)
        lay.addSpacing(10)
        self.sample_button = QPushButton("Try the sample")
        self.sample_button.setObjectName("Primary")
        self.sample_button.setToolTip("Open a project holding 1,797 handwritten digits, with a SimCLR run ready to start.")
        self.sample_button.setShortcut("Ctrl+T")
        self.new_button = QPushButton("New project…")
        self.open_button = QPushButton("Open project…")
        buttons = QHBoxLayout()
        buttons.setSpacing(8)
        for b in (self.sample_button, self.new_button, self.open_button):
            b.setMinimumHeight(34)
            buttons.addWidget(b)
        lay.addLayout(buttons)
        hint = Label("Or drop a folder of images on this window once a project is open.")
        hint.setObjectName("Hint")
        lay.addWidget(hint)
        self.recent_title = section_title("Recent projects")
        lay.addWidget(self.recent_title)
        self.recent_box = QVBoxLayout()
        self.recent_box.setSpacing(0)
        lay.addLayout(self.recent_box)
        self.recent_buttons: list[QPushButton] = []
        self.recent_title.hide()
        row.addWidget(card)
        row.addStretch(1)
        outer.addLayout(row)
        outer.addStretch(2)

        self.sample_button.clicked.connect(self.sample_requested)
        self.new_button.clicked.connect(self.new_requested)
        self.open_button.clicked.connect(self.open_requested)

    def set_recent(self, paths) -> None:
        """The recent project folders, newest first, one link-like button each."""
        if isinstance(paths, str):
            paths = [paths]
        paths = list(paths or [])
        for b in self.recent_buttons:
            self.recent_box.removeWidget(b)
            b.deleteLater()
        self.recent_buttons = []
        for path in paths:
            b = QPushButton(f"{Path(path).name}    {path}")
            b.setFlat(True)
            b.setCursor(Qt.CursorShape.PointingHandCursor)
            b.setToolTip(plain_tip(f"Open {path}"))
            b.setProperty("path", path)
            b.clicked.connect(lambda _=False, p=path: self.recent_requested.emit(p))
            self.recent_box.addWidget(b)
            self.recent_buttons.append(b)
        self.recent_title.setVisible(bool(paths))
        self.apply_theme()

    def recent_paths(self) -> list[str]:
        return [b.property("path") for b in self.recent_buttons]

    def apply_theme(self) -> None:
        for b in self.recent_buttons:
            b.setStyleSheet(f"text-align: left; color: {colour('#1b4fc4')}; border: none; "
                            "background: transparent; padding: 3px 0;")
