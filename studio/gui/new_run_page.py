"""The New run page: a form generated from METHODS, BACKBONES and each method's config fields.

Nothing here names a method: adding one to the METHODS table adds it to this form (DESIGN.md rule 2).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDoubleValidator
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QFormLayout, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QScrollArea,
    QSpinBox, QVBoxLayout, QWidget,
)

from studio.engine.backbones import BACKBONES
from studio.engine.methods import METHODS
from studio.engine.train import TrainConfig
from studio.engine.train.config import OPTIMIZERS
from studio.gui.widgets import ConfigFieldEditor, CompactDoubleSpinBox


class NewRunPage(QWidget):
    """Emits `start_requested(dataset_name, TrainConfig)` when Start is clicked on a valid form, or
    `distributed_start_requested(dataset_name, TrainConfig, processes)` when 'Train on all N GPUs'
    is ticked (shown only where there is more than one CUDA device; see `set_gpu_count`)."""

    start_requested = Signal(str, object)
    distributed_start_requested = Signal(str, object, int)

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
        self.length_unit.currentIndexChanged.connect(self._length_bounds)
        self._length_bounds()
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
        self.length_spin.setToolTip("How long to train: whole passes over the dataset (epochs) or optimiser steps.")
        self.length_unit.setToolTip(self.length_spin.toolTip())
        self.batch_spin.setToolTip("Images per optimiser step. Contrastive methods like large batches; "
                                   "lower it when the device runs out of memory.")
        self.image_size_spin.setToolTip("Images are resized to this square size once, then cropped and "
                                        "augmented at this size on the device.")
        self.device_combo.setToolTip("Where to train: auto picks a CUDA GPU, then Apple MPS, else the CPU.")
        self.optimizer_combo.setToolTip("The optimiser; 'method default' uses the paper's (SGD, LARS or AdamW).")
        self.checkpoint_spin.setToolTip("Save a checkpoint every so many steps (resume and export from any); "
                                        "a checkpoint is always saved at the end and on Stop.")
        self.seed_spin.setToolTip("Random seed of the data order, augmentations and initial weights: "
                                  "the same seed and config give the same run.")
        self.dataset_combo.setToolTip("The images to learn from (add more with File ▸ Add dataset folder…, "
                                      "or drop a folder on the window).")
        self.method_combo.setToolTip("The self-supervised pretext task.")
        f.addRow("Length", length)
        f.addRow("Batch size", self.batch_spin)
        f.addRow("Learning rate", self.lr_edit)
        f.addRow("Image size", self.image_size_spin)
        f.addRow("Device", self.device_combo)
        self.gpu_count = 0
        self.all_gpus_check = QCheckBox()
        self.all_gpus_check.setObjectName("all_gpus")
        self.all_gpus_check.setToolTip(
            "Data-parallel training: one process per GPU (torchrun and DistributedDataParallel), started "
            "as a child process that records the run like any other. The batch size is the global batch, "
            "split evenly over the GPUs. Stop saves a checkpoint; pausing is not available.")
        f.addRow("", self.all_gpus_check)
        self._all_gpus_form = f
        f.addRow("Optimizer", self.optimizer_combo)
        f.addRow("Warm-up (epochs)", self.warmup_spin)
        f.addRow("Checkpoint every", self.checkpoint_spin)
        f.addRow("Metrics every", self.log_every_spin)
        f.addRow("Seed", self.seed_spin)
        # Every label carries its field's tooltip, so hovering the name explains it too.
        for row in range(f.rowCount()):
            label = f.itemAt(row, QFormLayout.ItemRole.LabelRole)
            field_item = f.itemAt(row, QFormLayout.ItemRole.FieldRole)
            if label is None or field_item is None or label.widget() is None:
                continue
            w = field_item.widget() or (field_item.layout().itemAt(0).widget() if field_item.layout() else None)
            if w is not None:
                label.widget().setToolTip(w.toolTip())
        grid.addWidget(how, 0, 1, 2, 1, Qt.AlignmentFlag.AlignTop)

        # -- the method's own fields ---------------------------------------------------------
        self.method_box = QGroupBox("Method settings")
        self.method_form = QFormLayout(self.method_box)
        self._tune_form(self.method_form)
        grid.addWidget(self.method_box, 1, 0, Qt.AlignmentFlag.AlignTop)
        grid.setRowStretch(2, 1)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)

        # -- what it will cost -------------------------------------------------------------------
        cost = QHBoxLayout()
        self.estimate_button = QPushButton("Estimate time and memory")
        self.estimate_button.setToolTip("Train a few real steps of this config on the chosen device and "
                                        "extrapolate the time per epoch and the memory it needs.")
        self.estimate_button.clicked.connect(self.estimate)
        self.estimate_label = QLabel("Before you start: estimate what this run will cost.")
        self.estimate_label.setObjectName("Hint")
        self.estimate_label.setWordWrap(True)
        self.estimate_warning = QLabel()
        self.estimate_warning.setObjectName("ErrorText")
        self.estimate_warning.setWordWrap(True)
        self.estimate_warning.hide()
        cost.addWidget(self.estimate_button, 0, Qt.AlignmentFlag.AlignTop)
        texts = QVBoxLayout()
        texts.addWidget(self.estimate_label)
        texts.addWidget(self.estimate_warning)
        cost.addLayout(texts, 1)
        self.project = None
        self.estimate_result = None
        self.estimate_result_config = None
        self.estimating = False
        self._estimate_token = 0

        # -- start ---------------------------------------------------------------------------
        self.error_label = QLabel()
        self.error_label.setObjectName("ErrorText")
        self.error_label.setWordWrap(True)
        self.start_button = QPushButton("Start training")
        self.start_button.setObjectName("Primary")
        self.start_button.setMinimumWidth(150)
        self.start_button.setToolTip("Create the run and train it (Ctrl+Return).")
        self.start_button.clicked.connect(self._on_start)
        # One footer: the estimate and any error on the left, Start on the right.
        texts.addWidget(self.error_label)
        cost.addSpacing(12)
        cost.addWidget(self.start_button, 0, Qt.AlignmentFlag.AlignTop)
        lay.addLayout(cost)
        lay.addStretch(1)

        self.method_combo.currentIndexChanged.connect(self._on_method_changed)
        for w in (self.backbone_combo, self.dataset_combo, self.length_unit, self.device_combo, self.optimizer_combo):
            w.currentIndexChanged.connect(self.validate)
        for w in (self.length_spin, self.batch_spin, self.image_size_spin, self.seed_spin, self.checkpoint_spin,
                  self.log_every_spin):
            w.valueChanged.connect(self.validate)
        self.warmup_spin.valueChanged.connect(self.validate)
        self.lr_edit.textChanged.connect(self.validate)
        self.all_gpus_check.toggled.connect(self._on_all_gpus_toggled)
        self._on_method_changed()
        self.set_gpu_count(_cuda_device_count())

    @staticmethod
    def _tune_form(form: QFormLayout) -> None:
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setHorizontalSpacing(12)
        form.setVerticalSpacing(8)

    # -- all GPUs ------------------------------------------------------------------------------
    def set_gpu_count(self, count: int) -> None:
        """Offer 'Train on all N GPUs' when there are N > 1 CUDA devices; hide it otherwise."""
        self.gpu_count = max(0, int(count))
        offered = self.gpu_count > 1
        self.all_gpus_check.setText(f"Train on all {self.gpu_count} GPUs (distributed)")
        if not offered:
            self.all_gpus_check.setChecked(False)
        self._all_gpus_form.setRowVisible(self.all_gpus_check, offered)
        self.validate()

    def distributed_processes(self) -> int:
        """How many processes Start trains with: the GPUs when 'all GPUs' is ticked, else 1."""
        return self.gpu_count if self.gpu_count > 1 and self.all_gpus_check.isChecked() else 1

    def _on_all_gpus_toggled(self, checked: bool) -> None:
        # The processes take one GPU each: the device choice does not apply.
        self.device_combo.setEnabled(not checked)
        self.validate()

    # -- data in -------------------------------------------------------------------------------
    def set_project(self, project) -> None:
        self.project = project
        self._clear_estimate()

    def set_config(self, config, dataset: str | None = None) -> None:
        """Fill the form from a TrainConfig (or its dict): a duplicated run starts from its parent's."""
        from studio.engine.train import TrainConfig

        if isinstance(config, dict):
            config = TrainConfig.from_dict(config)
        if dataset:
            self.select_dataset(dataset)
        self.method_combo.setCurrentIndex(max(0, self.method_combo.findData(config.method)))
        self.backbone_combo.setCurrentIndex(max(0, self.backbone_combo.findData(config.backbone)))
        for name, value in (config.method_config or {}).items():
            if name in self.field_editors:
                self.field_editors[name].set_value(value)
        steps_mode = config.steps is not None
        self.length_unit.setCurrentIndex(self.length_unit.findData("steps" if steps_mode else "epochs"))
        self.length_spin.setValue(int(config.steps if steps_mode else (config.epochs or 100)))
        self.batch_spin.setValue(int(config.batch_size))
        self.lr_edit.setText("" if config.lr is None else f"{config.lr:g}")
        self.image_size_spin.setValue(int(config.image_size))
        i = self.device_combo.findData(config.device)
        self.device_combo.setCurrentIndex(i if i >= 0 else 0)
        self.optimizer_combo.setCurrentIndex(max(0, self.optimizer_combo.findData(config.optimizer)))
        self.warmup_spin.setValue(float(config.warmup_epochs))
        self.seed_spin.setValue(int(config.seed))
        self.checkpoint_spin.setValue(int(config.checkpoint_every))
        self.log_every_spin.setValue(int(config.log_every))
        self.validate()

    # -- the cost estimate ------------------------------------------------------------------------
    def busy(self) -> bool:
        """True while the estimate is being measured (a screenshot waits for it)."""
        return self.estimating

    def estimate(self) -> None:
        """Measure a few real steps of the current config on a worker; the result shows below."""
        from studio.gui.workers import start_task
        from studio.services.estimate import estimate_for_dataset

        if self.project is None or self.validate() is not None:
            return
        self._estimate_token += 1
        token, root, dataset, config = self._estimate_token, self.project.root, self.dataset_combo.currentData(), self.config()
        self.estimating = True
        self.estimate_button.setEnabled(False)
        self.estimate_label.setText("Measuring a few training steps…")
        self.estimate_warning.hide()
        start_task(lambda: estimate_for_dataset(root, dataset, config),
                   lambda est: self._show_estimate(token, est),
                   lambda err: self._show_estimate_error(token, err))

    def _show_estimate(self, token: int, est) -> None:
        from studio.gui.widgets import format_duration
        from studio.services.estimate import format_bytes

        if token != self._estimate_token:
            return
        self.estimating = False
        self.estimate_button.setEnabled(True)
        self.estimate_result = est
        self.estimate_result_config = self.config()
        memory = ("peak " if est.memory_measured else "about ") + format_bytes(est.peak_memory_bytes)
        of = f" of {format_bytes(est.device_memory_bytes)}" if est.device_memory_bytes else ""
        self.estimate_label.setText(
            f"On {est.device_name}: {format_duration(est.seconds_per_epoch)} per epoch "
            f"({est.seconds_per_step * 1000:.0f} ms per step × {est.steps_per_epoch:,} steps), "
            f"about {format_duration(est.total_seconds)} for the whole run ({est.total_steps:,} steps); "
            f"memory {memory}{of}.")
        self.estimate_warning.setText("\n".join(est.warnings))
        self.estimate_warning.setVisible(bool(est.warnings))

    def _show_estimate_error(self, token: int, error: str) -> None:
        if token != self._estimate_token:
            return
        self.estimating = False
        self.estimate_button.setEnabled(True)
        self.estimate_result = None
        self.estimate_label.setText("The estimate could not be made.")
        self.estimate_warning.setText(error)
        self.estimate_warning.show()

    def _clear_estimate(self) -> None:
        self._estimate_token += 1  # a measurement still under way no longer applies
        self.estimating = False
        self.estimate_result = None
        if hasattr(self, "estimate_label"):
            self.estimate_button.setEnabled(True)
            self.estimate_label.setText("Before you start: estimate what this run will cost.")
            self.estimate_warning.hide()

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

    def _length_bounds(self) -> None:
        """The length box takes what TrainConfig allows for the chosen unit (epochs or steps)."""
        from studio.engine.settings import field_info

        info = field_info(TrainConfig, self.length_unit.currentData() or "epochs")
        self.length_spin.setRange(int(info.min or 1), int(info.max or 2**31 - 1))

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
        processes = self.distributed_processes()
        if error is None and processes > 1 and self.batch_spin.value() % processes:
            error = (f"The batch size {self.batch_spin.value()} does not split evenly over {processes} GPUs: "
                     f"the batch is the global batch, so choose a multiple of {processes}.")
        self.error_label.setText(error or "")
        self.start_button.setEnabled(error is None)
        if hasattr(self, "estimate_button"):
            self.estimate_button.setEnabled(error is None and self.project is not None and not self.estimating)
            if self.estimate_result is not None and self.estimate_result_config != self.config():
                self._clear_estimate()
        cls = METHODS[self.method_name()]
        spec = BACKBONES.get(self.backbone_combo.currentData())
        if spec is not None:
            self.backbone_info.setText(spec.description)
        kinds = " or ".join(k.upper() for k in cls.backbone_kinds)
        self.backbone_combo.setToolTip(f"{cls.title} works with {kinds} backbones.")
        return error

    def _on_start(self) -> None:
        if self.validate() is not None:
            return
        processes = self.distributed_processes()
        if processes > 1:
            self.distributed_start_requested.emit(self.dataset_combo.currentData(), self.config(), processes)
        else:
            self.start_requested.emit(self.dataset_combo.currentData(), self.config())


def _cuda_device_count() -> int:
    """The CUDA devices the 'all GPUs' option counts (SSL_STUDIO_FAKE_GPUS=N pretends N, on the CPU)."""
    from studio.services.distributed import cuda_device_count

    return cuda_device_count()
