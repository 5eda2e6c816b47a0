"""The New run form's "start the image encoder from" row: a choice among the project's runs
whose checkpoint fits the backbone the form shows (services.training.image_encoder_sources
decides which fit), instead of a path to type. LiT's start: SSL on the images, then CLIP."""

from __future__ import annotations

import dataclasses

from PySide6.QtWidgets import QComboBox

from studio.engine.train import TrainConfig


class _RefreshingCombo(QComboBox):
    """A combo that lists what is current each time it opens (runs finish, checkpoints appear)."""

    def __init__(self, refresh):
        super().__init__()
        self._refresh = refresh

    def showPopup(self) -> None:  # noqa: N802 - Qt override
        self._refresh()
        super().showPopup()


class EncoderSourceEditor:
    """A setting editor (value, set_value, widget, changed) for TrainConfig.init_from."""

    def __init__(self, info, page):
        self.info, self.page = info, page  # page: the NewRunPage (its project, backbone and sizes)
        self.widget = _RefreshingCombo(self.refresh)
        self.widget.setObjectName(f"field_{info.name}")
        self.widget.setToolTip(info.help)
        self.widget.addItem(info.none or "none", None)
        self.changed = self.widget.currentIndexChanged
        backbone = getattr(page, "backbone_combo", None)
        if backbone is not None:
            backbone.currentIndexChanged.connect(lambda _i: self.refresh())

    def _shown_encoder(self) -> TrainConfig | None:
        """The form's backbone, image size and options (None while one of them is not a value)."""
        editors = getattr(self.page, "setting_editors", {})
        try:
            return dataclasses.replace(TrainConfig(), backbone=self.page.backbone_combo.currentData(),
                                       image_size=editors["image_size"].value(),
                                       backbone_options=editors["backbone_options"].value())
        except Exception:  # noqa: BLE001 - a field being typed; the form shows its error
            return None

    def refresh(self) -> None:
        """List the runs that fit; a chosen checkpoint that no longer fits stays, marked."""
        from studio.services.training import image_encoder_sources

        project = getattr(self.page, "project", None)
        shown = self._shown_encoder()
        sources = image_encoder_sources(project, shown) if project is not None and shown is not None else []
        current = self.widget.currentData()
        self.widget.blockSignals(True)
        self.widget.clear()
        self.widget.addItem(self.info.none or "none", None)
        for s in sources:
            self.widget.addItem(s.describe(), s.path)
        if current is not None and self.widget.findData(current) < 0:
            self.widget.addItem(f"{current} (not a checkpoint that fits this backbone)", current)
        self.widget.setCurrentIndex(max(0, self.widget.findData(current)))
        self.widget.blockSignals(False)
        if self.widget.currentData() != current:
            self.changed.emit(self.widget.currentIndex())

    def offered(self) -> list[str]:
        """The entries listed, in order (the first: the encoder's own initialisation)."""
        return [self.widget.itemText(i) for i in range(self.widget.count())]

    def value(self):
        return self.widget.currentData()

    def set_value(self, value) -> None:
        self.refresh()
        if value is not None and self.widget.findData(value) < 0:
            self.widget.addItem(f"{value} (not a checkpoint that fits this backbone)", value)
        self.widget.setCurrentIndex(max(0, self.widget.findData(value)))
