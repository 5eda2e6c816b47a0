"""The start page shown when no project is open."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from studio.gui.style import app_icon


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
        icon = QLabel()
        icon.setPixmap(app_icon().pixmap(56, 56))
        title = QLabel("SSL Studio")
        title.setObjectName("PageTitle")
        subtitle = QLabel("Train self-supervised image encoders on your own images, watch them learn, export them.")
        subtitle.setObjectName("PageSubtitle")
        subtitle.setWordWrap(True)
        lay.addWidget(icon)
        lay.addWidget(title)
        lay.addWidget(subtitle)
        lay.addSpacing(10)
        self.sample_button = QPushButton("Try the sample")
        self.sample_button.setObjectName("Primary")
        self.sample_button.setToolTip("Open a project holding 1,797 handwritten digits, ready to train.")
        self.new_button = QPushButton("New project…")
        self.open_button = QPushButton("Open project…")
        buttons = QHBoxLayout()
        buttons.setSpacing(8)
        for b in (self.sample_button, self.new_button, self.open_button):
            b.setMinimumHeight(34)
            buttons.addWidget(b)
        lay.addLayout(buttons)
        self.recent_button = QPushButton()
        self.recent_button.setFlat(True)
        self.recent_button.setStyleSheet("text-align: left; color: #2f6fed; border: none; background: transparent;")
        self.recent_button.hide()
        lay.addWidget(self.recent_button)
        row.addWidget(card)
        row.addStretch(1)
        outer.addLayout(row)
        outer.addStretch(2)

        self.sample_button.clicked.connect(self.sample_requested)
        self.new_button.clicked.connect(self.new_requested)
        self.open_button.clicked.connect(self.open_requested)
        self.recent_button.clicked.connect(lambda: self.recent_requested.emit(self.recent_button.property("path")))

    def set_recent(self, path: str | None) -> None:
        self.recent_button.setVisible(bool(path))
        if path:
            self.recent_button.setText(f"Reopen {path}")
            self.recent_button.setProperty("path", path)
