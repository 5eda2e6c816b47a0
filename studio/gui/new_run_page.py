"""The New run page: a form generated from METHODS, BACKBONES and each method's config fields.

Nothing here names a method: adding one to the METHODS table adds it to this form (DESIGN.md rule 2).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDoubleValidator
from PySide6.QtWidgets import (
    QComboBox, QFormLayout, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QScrollArea,
    QSpinBox, QVBoxLayout, QWidget,
)

from studio.engine.backbones import BACKBONES
from studio.engine.methods import METHODS
from studio.engine.train import TrainConfig
from studio.engine.train.config import OPTIMIZERS
from studio.gui.widgets import ConfigFieldEditor, CompactDoubleSpinBox


class NewRunPage(QWidget):
    """Emits `start_requested(dataset_name, TrainConfig)` when Start is clicked on a valid form."""

    start_requested = Signal(str, object)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.field_editors: dict[str, ConfigFieldEditor] = {}
        self._building = False

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        outer.addWidget(scroll)
        body = QWidget()
        scroll.setWidget(body)
        lay = QVBoxLayout(body)
        lay.setContentsMargins(24, 18, 24, 18)
        lay.setSpacing(12)

        title = QLabel("New training run")
        title.setObjectName("PageTitle")
        subtitle = QLabel("Pick a dataset, a pretext method and an encoder. Every setting starts at the paper's default.")
        subtitle.setObjectName("PageSubtitle")
        subtitle.setWordWrap(True)
        lay.addWidget(title)
        lay.addWidget(subtitle)

        grid = QGridLayout()
        grid.setHorizontalSpacing(16)
        grid.setVerticalSpacing(12)
        lay.addLayout(grid)

        # -- what to train ---------------------------------------------------------------
        what = QGroupBox("What to train")
        f = QFormLayout(what)
        self._tune_form(f)
        self.dataset_combo = QComboBox()
        self.dataset_combo.setObjectName("dataset")
        self.method_combo = QComboBox()
        self.method_combo.setObjectName("method")
        for name, cls in METHODS.items():
            self.method_combo.addItem(f"{cls.title}  ·  {cls.family}", name)
        self.method_info = QLabel()
        self.method_info.setObjectName("Hint")
        self.method_info.setWordWrap(True)
        self.backbone_combo = QComboBox()
        self.backbone_combo.setObjectName("backbone")
        for name, spec in BACKBONES.items():
            self.backbone_combo.addItem(f"{name}  ({spec.kind.upper()}, {spec.feature_dim}-d)", name)
            self.backbone_combo.setItemData(self.backbone_combo.count() - 1, spec.description, Qt.ItemDataRole.ToolTipRole)
        self.backbone_info = QLabel()
        self.backbone_info.setObjectName("Hint")
        self.backbone_info.setWordWrap(True)
        f.addRow("Dataset", self.dataset_combo)
        f.addRow("Method", self.method_combo)
        f.addRow("", self.method_info)
        f.addRow("Backbone", self.backbone_combo)
        f.addRow("", self.backbone_info)
        grid.addWidget(what, 0, 0, Qt.AlignmentFlag.AlignTop)

        # -- how long and how --------------------------------------------------------------
        how = QGroupBox("Training")
        f = QFormLayout(how)
        self._tune_form(f)
        defaults = TrainConfig()
        length = QHBoxLayout()
        self.length_unit = QComboBox()
        self.length_unit.setObjectName("length_unit")
        self.length_unit.addItem("epochs", "epochs")
        self.length_unit.addItem("steps", "steps")
        self.length_spin = QSpinBox()
        self.length_spin.setObjectName("length")
        self.length_spin.setRange(1, 10_000_000)
        self.length_spin.setValue(100)
        length.addWidget(self.length_spin, 1)
        length.addWidget(self.length_unit)
        self.batch_spin = QSpinBox()
        self.batch_spin.setObjectName("batch_size")
        self.batch_spin.setRange(2, 65536)
        self.batch_spin.setValue(defaults.batch_size)
        self.lr_edit = QLineEdit()
        self.lr_edit.setObjectName("lr")
        validator = QDoubleValidator(0.0, 100.0, 10)
        validator.setNotation(QDoubleValidator.Notation.ScientificNotation)
        self.lr_edit.setValidator(validator)
        self.image_size_spin = QSpinBox()
        self.image_size_spin.setObjectName("image_size")
        self.image_size_spin.setRange(8, 1024)
        self.image_size_spin.setValue(defaults.image_size)
        self.image_size_spin.setSuffix(" px")
        self.device_combo = QComboBox()
        self.device_combo.setObjectName("device")
        self.device_combo.addItem("auto (best available)", "auto")
        try:
            from studio.engine.device import available_devices

            for d in available_devices():
                self.device_combo.addItem(d, d)
        except Exception:  # noqa: BLE001 - a broken driver still leaves 'auto' and the CPU
            self.device_combo.addItem("cpu", "cpu")
        self.optimizer_combo = QComboBox()
        self.optimizer_combo.setObjectName("optimizer")
        self.optimizer_combo.addItem("method default", None)
        for o in OPTIMIZERS:
            self.optimizer_combo.addItem(o, o)
        self.warmup_spin = CompactDoubleSpinBox()
        self.warmup_spin.setObjectName("warmup_epochs")
        self.warmup_spin.setRange(0.0, 1000.0)
        self.warmup_spin.setValue(defaults.warmup_epochs)
        self.warmup_spin.setToolTip("linear warm-up of the learning rate, capped at a tenth of the run")
        self.seed_spin = QSpinBox()
        self.seed_spin.setObjectName("seed")
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setValue(defaults.seed)
        self.log_every_spin = QSpinBox()
        self.log_every_spin.setObjectName("log_every")
        self.log_every_spin.setRange(1, 100_000)
        self.log_every_spin.setValue(defaults.log_every)
        self.log_every_spin.setSuffix(" steps")
        self.log_every_spin.setToolTip("how often the metrics leave the device and reach the curves")
        self.checkpoint_spin = QSpinBox()
        self.checkpoint_spin.setObjectName("checkpoint_every")
        self.checkpoint_spin.setRange(0, 10_000_000)
        self.checkpoint_spin.setSpecialValueText("at the end only")
        self.checkpoint_spin.setSuffix(" steps")
        f.addRow("Length", length)
        f.addRow("Batch size", self.batch_spin)
        f.addRow("Learning rate", self.lr_edit)
        f.addRow("Image size", self.image_size_spin)
        f.addRow("Device", self.device_combo)
        f.addRow("Optimizer", self.optimizer_combo)
        f.addRow("Warm-up (epochs)", self.warmup_spin)
        f.addRow("Checkpoint every", self.checkpoint_spin)
        f.addRow("Metrics every", self.log_every_spin)
        f.addRow("Seed", self.seed_spin)
        grid.addWidget(how, 0, 1, 2, 1, Qt.AlignmentFlag.AlignTop)

        # -- the method's own fields ---------------------------------------------------------
        self.method_box = QGroupBox("Method settings")
        self.method_form = QFormLayout(self.method_box)
        self._tune_form(self.method_form)
        grid.addWidget(self.method_box, 1, 0, Qt.AlignmentFlag.AlignTop)
        grid.setRowStretch(2, 1)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)

        # -- start ---------------------------------------------------------------------------
        bottom = QHBoxLayout()
        self.error_label = QLabel()
        self.error_label.setObjectName("ErrorText")
        self.error_label.setWordWrap(True)
        self.start_button = QPushButton("Start training")
        self.start_button.setObjectName("Primary")
        self.start_button.setMinimumWidth(150)
        self.start_button.clicked.connect(self._on_start)
        bottom.addWidget(self.error_label, 1)
        bottom.addWidget(self.start_button)
        lay.addLayout(bottom)
        lay.addStretch(1)

        self.method_combo.currentIndexChanged.connect(self._on_method_changed)
        for w in (self.backbone_combo, self.dataset_combo, self.length_unit, self.device_combo, self.optimizer_combo):
            w.currentIndexChanged.connect(self.validate)
        for w in (self.length_spin, self.batch_spin, self.image_size_spin, self.seed_spin, self.checkpoint_spin,
                  self.log_every_spin):
            w.valueChanged.connect(self.validate)
        self.warmup_spin.valueChanged.connect(self.validate)
        self.lr_edit.textChanged.connect(self.validate)
        self._on_method_changed()

    @staticmethod
    def _tune_form(form: QFormLayout) -> None:
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setHorizontalSpacing(12)
        form.setVerticalSpacing(8)

    # -- data in -------------------------------------------------------------------------------
    def set_datasets(self, names: list[str]) -> None:
        current = self.dataset_combo.currentData()
        if [self.dataset_combo.itemData(i) for i in range(self.dataset_combo.count())] == names:
            return
        self.dataset_combo.blockSignals(True)
        self.dataset_combo.clear()
        for n in names:
            self.dataset_combo.addItem(n, n)
        idx = self.dataset_combo.findData(current)
        self.dataset_combo.setCurrentIndex(idx if idx >= 0 else 0)
        self.dataset_combo.blockSignals(False)
        self.validate()

    def select_dataset(self, name: str) -> None:
        idx = self.dataset_combo.findData(name)
        if idx >= 0:
            self.dataset_combo.setCurrentIndex(idx)

    # -- method -------------------------------------------------------------------------------
    def method_name(self) -> str:
        return self.method_combo.currentData()

    def _on_method_changed(self) -> None:
        cls = METHODS[self.method_name()]
        self.method_info.setText(f"<b>{cls.family.capitalize()}.</b> {cls.summary}<br><i>{cls.paper}</i>")
        lr_hint = f"method default: {cls.default_lr:g} × batch/256 ({cls.default_optimizer})"
        self.lr_edit.setPlaceholderText(lr_hint)
        self.lr_edit.setToolTip("Leave empty for the " + lr_hint)
        while self.method_form.rowCount():
            self.method_form.removeRow(0)
        self.field_editors = {}
        self.method_box.setTitle(f"{cls.title} settings")
        for info in cls.fields():
            editor = ConfigFieldEditor(info)
            editor.changed.connect(self.validate)
            self.field_editors[info.name] = editor
            label = QLabel(info.name.replace("_", " "))
            label.setToolTip(editor.tooltip())
            self.method_form.addRow(label, editor.widget)
        if not self.field_editors:
            self.method_form.addRow(QLabel("This method has no settings of its own."))
        # Mark the backbones this method cannot use, so the choice explains itself.
        for i in range(self.backbone_combo.count()):
            spec = BACKBONES[self.backbone_combo.itemData(i)]
            ok = spec.kind in cls.backbone_kinds
            tip = spec.description if ok else f"{cls.title} cannot use a {spec.kind.upper()} backbone."
            self.backbone_combo.setItemData(i, tip, Qt.ItemDataRole.ToolTipRole)
        self.validate()

    # -- the config ----------------------------------------------------------------------------
    def method_values(self) -> dict[str, Any]:
        return {name: e.value() for name, e in self.field_editors.items()}

    def config(self) -> TrainConfig:
        lr_text = self.lr_edit.text().strip().replace(",", ".")
        length = int(self.length_spin.value())
        steps_mode = self.length_unit.currentData() == "steps"
        return TrainConfig(
            method=self.method_name(),
            backbone=self.backbone_combo.currentData(),
            method_config=self.method_values(),
            epochs=None if steps_mode else length,
            steps=length if steps_mode else None,
            batch_size=int(self.batch_spin.value()),
            lr=float(lr_text) if lr_text else None,
            optimizer=self.optimizer_combo.currentData(),
            warmup_epochs=float(self.warmup_spin.value()),
            image_size=int(self.image_size_spin.value()),
            device=self.device_combo.currentData(),
            seed=int(self.seed_spin.value()),
            checkpoint_every=int(self.checkpoint_spin.value()),
            log_every=int(self.log_every_spin.value()),
        )

    def validate(self) -> str | None:
        """Check the form as `create_run` will; show the reason and disable Start when it fails."""
        from studio.services.training import validate_config

        error = None
        if self.dataset_combo.count() == 0:
            error = "Add a dataset first (File ▸ Add dataset folder… or Add sample)."
        else:
            try:
                validate_config(self.config())
            except ValueError as exc:  # a half-typed learning rate
                error = f"The learning rate is not a number ({exc})."
            except Exception as exc:  # noqa: BLE001 - ConfigError and friends carry the message
                error = str(exc)
        self.error_label.setText(error or "")
        self.start_button.setEnabled(error is None)
        cls = METHODS[self.method_name()]
        spec = BACKBONES.get(self.backbone_combo.currentData())
        if spec is not None:
            self.backbone_info.setText(spec.description)
        kinds = " or ".join(k.upper() for k in cls.backbone_kinds)
        self.backbone_combo.setToolTip(f"{cls.title} works with {kinds} backbones.")
        return error

    def _on_start(self) -> None:
        if self.validate() is None:
            self.start_requested.emit(self.dataset_combo.currentData(), self.config())
