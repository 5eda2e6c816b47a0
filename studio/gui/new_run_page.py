"""The New run page: a form generated from METHODS, BACKBONES, each method's config fields and
TrainConfig's own fields (`TrainConfig.fields()`: help, bounds, group, label).

Nothing here names a method, and nothing lists the training settings by hand: the Training
section holds the basic fields, the folded Advanced section the advanced ones (DESIGN.md rules 2
and 8). `set_config(config)` fills the form; `config()` is `dataclasses.replace(stored, **shown)`,
so whatever the form does not show survives a Duplicate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QFormLayout, QGridLayout, QGroupBox, QHBoxLayout, QPushButton, QScrollArea,
    QSpinBox, QVBoxLayout, QWidget,
)
from superqt import QCollapsible

from studio.engine.backbones import BACKBONES
from studio.engine.methods import METHODS, method_class
from studio.engine.train import TrainConfig
from studio.engine.train.optim import method_optimizer
from studio.gui.budget_section import BudgetSection
from studio.gui.estimate_section import CostEstimateSection
from studio.gui.objectives_section import ObjectivesSection
from studio.gui.setting_editors import editor_for
from studio.gui.view_preview import ViewPreviewSection
from studio.gui.widgets import ConfigFieldEditor, Label, TwoColumns

LENGTH_FIELDS = ("epochs", "steps")  # one "Length" row: a number and its unit
OWN_ROWS = ("method", "backbone", "method_config", "device")  # rows with controls of their own


@dataclass(frozen=True)
class StartRequest:
    """What Start asks the window for: train `config` on `dataset` with `processes` processes."""

    dataset: str
    config: TrainConfig
    processes: int = 1
    parent_run_id: int | None = None  # the run this one was duplicated from


class NewRunPage(BudgetSection, CostEstimateSection, ObjectivesSection, QWidget):
    """Emits `start_requested(StartRequest)` when Start is pressed on a valid form. 'Train on all N
    GPUs' is shown only where there is more than one CUDA device (see `set_gpu_count`)."""

    start_requested = Signal(object)
    queue_requested = Signal(object)  # a StartRequest to store at the end of the run queue

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.field_editors: dict[str, ConfigFieldEditor] = {}  # the method's own
        self.setting_editors: dict[str, Any] = {}  # TrainConfig's, by field name
        self._base = TrainConfig()  # what config() starts from: the duplicated run's config
        self._filled = False  # set_config was called
        self._parent_run_id: int | None = None
        self.project = None
        self.estimate_result = None
        self.estimate_result_config = None
        self.estimating = False
        self._estimate_task = None
        self.gpu_count = 0

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
        title = Label("New training run")
        title.setObjectName("PageTitle")
        subtitle = Label("Pick a dataset, a pretext method and an encoder. Every setting starts at the paper's default.")
        subtitle.setObjectName("PageSubtitle")
        subtitle.setWordWrap(True)
        lay.addWidget(title)
        lay.addWidget(subtitle)
        grid = QGridLayout()
        grid.setHorizontalSpacing(16)
        grid.setVerticalSpacing(12)
        lay.addLayout(grid)
        infos = {i.name: i for i in TrainConfig.fields()}

        # -- what to train ---------------------------------------------------------------
        what = QGroupBox("What to train")
        f = self._form(what)
        self.dataset_combo = QComboBox()
        self.dataset_combo.setObjectName("dataset")
        self.dataset_combo.setToolTip("The images to learn from (add more with File ▸ Add dataset folder…, "
                                      "or drop a folder on the window).")
        self.method_combo = QComboBox()
        self.method_combo.setObjectName("method")
        self.method_combo.setToolTip("The self-supervised pretext task.")
        for name, cls in METHODS.items():
            self.method_combo.addItem(f"{cls.title}  ·  {cls.family}", name)
        self.method_info = Label()
        self.method_info.setObjectName("Hint")
        self.method_info.setWordWrap(True)
        self.method_info.setTextFormat(Qt.TextFormat.RichText)  # built from the METHODS table only
        self.backbone_combo = QComboBox()
        self.backbone_combo.setObjectName("backbone")
        for name, spec in BACKBONES.items():
            self.backbone_combo.addItem(f"{name}  ({spec.kind.upper()}, {spec.feature_dim}-d)", name)
        self.backbone_info = Label()
        self.backbone_info.setObjectName("Hint")
        self.backbone_info.setWordWrap(True)
        f.addRow("Dataset", self.dataset_combo)
        f.addRow("Method", self.method_combo)
        f.addRow("", self.method_info)
        self._build_objectives(f)
        f.addRow("Backbone", self.backbone_combo)
        f.addRow("", self.backbone_info)
        for info in TrainConfig.fields():
            if info.group == "structure" and info.name not in OWN_ROWS:
                self._add_setting(f, info)
        grid.addWidget(what, 0, 0, Qt.AlignmentFlag.AlignTop)

        # -- training: the basic fields ---------------------------------------------------
        how = QGroupBox("Training")
        f = self._form(how)
        self._build_budget(f)
        length = QHBoxLayout()
        self.length_unit = QComboBox()
        self.length_unit.setObjectName("length_unit")
        for name in LENGTH_FIELDS:
            self.length_unit.addItem(infos[name].label, name)
        self.length_spin = QSpinBox()
        self.length_spin.setObjectName("length")
        self.length_unit.currentIndexChanged.connect(self._length_bounds)
        self._length_bounds()
        self.length_spin.setValue(100)
        self.length_spin.setToolTip("How long to train: whole passes over the dataset (epochs) or optimiser steps.")
        self.length_unit.setToolTip(self.length_spin.toolTip())
        length.addWidget(self.length_spin, 1)
        length.addWidget(self.length_unit)
        f.addRow("Length", length)
        self.device_combo = QComboBox()
        self.device_combo.setObjectName("device")
        self.device_combo.setToolTip(infos["device"].help[:1].upper() + infos["device"].help[1:] + ".")
        self.device_combo.addItem("auto (best available)", "auto")
        try:
            from studio.engine.device import available_devices

            for d in available_devices():
                self.device_combo.addItem(d, d)
        except Exception:  # noqa: BLE001 - a broken driver still leaves 'auto' and the CPU
            self.device_combo.addItem("cpu", "cpu")
        for info in TrainConfig.fields():
            if info.group == "basic" and info.name not in LENGTH_FIELDS + OWN_ROWS:
                self._add_setting(f, info)
        f.addRow(infos["device"].title, self.device_combo)
        self.all_gpus_check = QCheckBox()
        self.all_gpus_check.setObjectName("all_gpus")
        self.all_gpus_check.setToolTip(
            "Data-parallel training: one process per GPU (torchrun and DistributedDataParallel), started "
            "as a child process that records the run like any other. The batch size is the global batch, "
            "split evenly over the GPUs. Stop saves a checkpoint; pausing is not available.")
        f.addRow("", self.all_gpus_check)
        self._all_gpus_form = f
        right = QVBoxLayout()  # Training, then the advanced settings right under it
        right.setSpacing(12)
        right.addWidget(how)
        grid.addLayout(right, 0, 1, 2, 1)

        # -- the method's own fields ---------------------------------------------------------
        self.method_box = QGroupBox("Method settings")
        self.method_form = self._form(self.method_box)
        grid.addWidget(self.method_box, 1, 0, Qt.AlignmentFlag.AlignTop)

        # -- advanced, folded away -----------------------------------------------------------
        self.advanced = QCollapsible("Advanced settings", expandedIcon="▾", collapsedIcon="▸")
        self.advanced.setObjectName("AdvancedSettings")
        self.advanced.setDuration(0)
        adv = QWidget()
        f = self._form(adv)
        for info in TrainConfig.fields():
            if info.group == "advanced":
                self._add_setting(f, info)
        self.advanced.addWidget(adv)
        right.addWidget(self.advanced)
        right.addStretch(1)
        grid.setRowStretch(3, 1)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)
        self._columns = TwoColumns(grid, [what, self.method_box], right, scroll.viewport())
        self._form_scroll = scroll
        # The names the tests and the screenshot mode have always used for the common rows.
        ed = self.setting_editors
        self.batch_spin, self.image_size_spin = ed["batch_size"].widget, ed["image_size"].widget
        self.warmup_spin, self.log_every_spin = ed["warmup_epochs"].widget, ed["log_every"].widget
        self.checkpoint_spin, self.lr_edit = ed["checkpoint_every"].widget, ed["lr"].widget
        self.preview = ViewPreviewSection(self)  # the method's views of the dataset's images, folded
        lay.addWidget(self.preview)

        # -- what it will cost, and Start -----------------------------------------------------
        cost = QHBoxLayout()
        buttons = QVBoxLayout()
        self.estimate_button = QPushButton("Estimate time and memory")
        self.estimate_button.setToolTip("Train a few real steps of this config on the chosen device and "
                                        "extrapolate the time per epoch and the memory it needs.")
        self.estimate_button.clicked.connect(self.estimate)
        self.cancel_estimate_button = QPushButton("Cancel")
        self.cancel_estimate_button.setToolTip("Stop measuring (after the step under way).")
        self.cancel_estimate_button.clicked.connect(self.cancel_estimate)
        self.cancel_estimate_button.hide()
        buttons.addWidget(self.estimate_button)
        buttons.addWidget(self.cancel_estimate_button)
        self.estimate_label = Label("Before you start: estimate what this run will cost.")
        self.estimate_label.setObjectName("Hint")
        self.estimate_label.setWordWrap(True)
        self.estimate_warning = Label()
        self.estimate_warning.setObjectName("ErrorText")
        self.estimate_warning.setWordWrap(True)
        self.estimate_warning.hide()
        cost.addLayout(buttons)
        texts = QVBoxLayout()
        texts.addWidget(self.estimate_label)
        texts.addWidget(self.estimate_warning)
        self.error_label = Label()
        self.error_label.setObjectName("ErrorText")
        self.error_label.setWordWrap(True)
        texts.addWidget(self.error_label)
        cost.addLayout(texts, 1)
        self.start_button = QPushButton("Start training")
        self.start_button.setObjectName("Primary")
        self.start_button.setMinimumWidth(150)
        self.start_button.setToolTip("Create the run and train it (Ctrl+Return).")
        self.start_button.clicked.connect(self.request_start)
        self.queue_button = QPushButton("Add to queue")
        self.queue_button.setMinimumWidth(150)
        self.queue_button.clicked.connect(self.request_queue)
        starts = QVBoxLayout()
        starts.addWidget(self.start_button)
        starts.addWidget(self.queue_button)
        cost.addSpacing(12)
        cost.addLayout(starts)
        lay.addStretch(1)
        # The footer stays in view below the scrolling form: the estimate, any error, and Start.
        footer = QWidget()
        footer.setObjectName("FormFooter")
        footer.setLayout(cost)
        cost.setContentsMargins(24, 8, 24, 12)
        outer.addWidget(footer)

        self.method_combo.currentIndexChanged.connect(lambda _: self._rebuild_method_form())
        for w in (self.backbone_combo, self.dataset_combo, self.length_unit, self.device_combo):
            w.currentIndexChanged.connect(self.validate)
        self.length_spin.valueChanged.connect(self.validate)
        self.all_gpus_check.toggled.connect(self._on_all_gpus_toggled)
        self._rebuild_method_form(None)
        self.set_gpu_count(_cuda_device_count())

    def _form(self, parent: QWidget) -> QFormLayout:
        form = QFormLayout(parent)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setHorizontalSpacing(12)
        form.setVerticalSpacing(8)
        return form

    def _add_setting(self, form: QFormLayout, info) -> None:
        editor = editor_for(info, self)
        editor.changed.connect(self.validate)
        self.setting_editors[info.name] = editor
        title = info.label if info.label[1:2].isupper() else info.title  # "kNN k" keeps its case
        label = Label(title + (f" ({info.unit})" if info.unit and info.unit != "px" else ""))
        label.setToolTip(editor.widget.toolTip())
        form.addRow(label, editor.widget)
        if info.name == "warmup_epochs":
            self.warmup_hint = Label()
            self.warmup_hint.setObjectName("Hint")
            self.warmup_hint.hide()
            form.addRow("", self.warmup_hint)

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

    # -- intent --------------------------------------------------------------------------------
    def set_project(self, project) -> None:
        self.project = project
        self._show_method_info()  # its line on which method suits which use reads this project
        self._clear_estimate()
        self.preview.refresh_soon()

    def set_config(self, config, dataset: str | None = None, parent_run_id: int | None = None) -> None:
        """Fill the form from a TrainConfig (or its dict); `parent_run_id`: the run duplicated."""
        if isinstance(config, dict):
            config = TrainConfig.from_dict(config)
        self._base = config
        self._filled = True
        self._parent_run_id = parent_run_id
        if dataset:
            self.select_dataset(dataset)
        self.select_objectives(config.method)
        self.backbone_combo.setCurrentIndex(max(0, self.backbone_combo.findData(config.backbone)))
        for name, value in (config.method_config or {}).items():
            if name in self.field_editors:
                self.field_editors[name].set_value(value)
        steps_mode = config.steps is not None
        self.length_unit.setCurrentIndex(self.length_unit.findData("steps" if steps_mode else "epochs"))
        self.length_spin.setValue(int(config.steps if steps_mode else (config.epochs or 100)))
        if self.device_combo.findData(config.device) < 0:  # stored on a machine with other devices
            self.device_combo.addItem(config.device, config.device)
        self.device_combo.setCurrentIndex(self.device_combo.findData(config.device))
        for name, editor in self.setting_editors.items():
            editor.set_value(getattr(config, name))
        self.validate()

    def request_start(self) -> None:
        """Start, as the button does: emits start_requested when the form is valid."""
        if self.validate() is not None:
            return
        self.start_requested.emit(StartRequest(self.dataset_combo.currentData(), self.config(),
                                               self.distributed_processes(), self._parent_run_id))

    def request_queue(self) -> None:
        """Add to queue, as the button does: emits queue_requested when the form is valid."""
        if self.validate() is not None or not self.queue_button.isEnabled():
            return
        self.queue_requested.emit(StartRequest(self.dataset_combo.currentData(), self.config(), 1, self._parent_run_id))

    def started(self) -> None:
        """The window stored the requested run: a next Start is a new run, no one's duplicate."""
        self._parent_run_id = None

    def show_error(self, text: str) -> None:
        self.error_label.setText(text)

    def error_text(self) -> str:
        return self.error_label.text()

    def can_start(self) -> bool:
        return self.start_button.isEnabled()

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

    def dataset(self) -> str | None:
        return self.dataset_combo.currentData()

    # -- method -------------------------------------------------------------------------------
    def method_name(self) -> str:
        return self.combined_name(self.method_combo.currentData())

    def _show_method_info(self) -> None:
        import html

        from studio.services.evaluation_compare import suitability

        cls = method_class(self.method_name())
        esc = lambda text: html.escape(text, quote=False)  # noqa: E731
        self.method_info.setText(f"<b>{esc(cls.family.capitalize())}.</b> {esc(cls.summary)}<br><i>{esc(cls.paper)}</i>"
                                 f"<br>{esc(suitability(self.project, self.method_name()))}")

    def _on_method_changed(self) -> None:
        cls = method_class(self.method_name())
        self._show_method_info()
        while self.method_form.rowCount():
            self.method_form.removeRow(0)
        self.field_editors = {}
        self.method_box.setTitle(f"{cls.title} settings")
        for info in cls.fields():
            editor = ConfigFieldEditor(info)
            editor.changed.connect(self.validate)
            self.field_editors[info.name] = editor
            label = Label(info.label or info.name.replace("_", " "))
            label.setToolTip(editor.tooltip())
            self.method_form.addRow(label, editor.widget)
        if not self.field_editors:
            self.method_form.addRow(Label("This method has no settings of its own."))
        # Mark the backbones this method cannot use, so the choice explains itself.
        for i in range(self.backbone_combo.count()):
            spec = BACKBONES[self.backbone_combo.itemData(i)]
            ok = spec.kind in cls.backbone_kinds
            tip = spec.description if ok else f"{cls.title} cannot use a {spec.kind.upper()} backbone."
            self.backbone_combo.setItemData(i, tip, Qt.ItemDataRole.ToolTipRole)
        self._columns.fit()
        self.validate()

    # -- the config ----------------------------------------------------------------------------
    def method_values(self) -> dict[str, Any]:
        values = {name: e.value() for name, e in self.field_editors.items()}
        stored = self._base.method_config or {}
        if self._filled and self._base.method == self.method_name():
            # An untouched field keeps its stored value exactly (a spin box rounds what it shows),
            # and a stored run's settings keep their shape: unset ones stay unset.
            defaults = {e.info.name: e.info.default for e in self.field_editors.values()}
            for name, v in list(values.items()):
                if name in stored and _close(stored[name], v):
                    values[name] = stored[name]
                elif name not in stored and _close(defaults[name], v):
                    del values[name]
        return values

    def _length_bounds(self) -> None:
        """The length box takes what TrainConfig allows for the chosen unit (epochs or steps)."""
        from studio.engine.settings import field_info

        info = field_info(TrainConfig, self.length_unit.currentData() or "epochs")
        self.length_spin.setRange(int(info.min or 1), int(info.max or 2**31 - 1))

    def config(self) -> TrainConfig:
        """The stored (or default) config with what the form shows; raises ConfigError for a
        field whose text is not a value of its kind."""
        length = int(self.length_spin.value())
        steps_mode = self.length_unit.currentData() == "steps"
        shown: dict[str, Any] = {name: e.value() for name, e in self.setting_editors.items()}
        shown.update(method=self.method_name(), backbone=self.backbone_combo.currentData(),
                     method_config=self.method_values(), device=self.device_combo.currentData(),
                     epochs=None if steps_mode else length, steps=length if steps_mode else None)
        if not steps_mode and self._base.epochs is None and self._base.steps is None and length == 100:
            shown["epochs"] = None  # "neither": the default length, as stored
        return dataclasses.replace(self._base, **shown)

    def validate(self) -> str | None:
        """Check the form as `prepare_run` will; show the reason and disable Start when it fails."""
        from studio.services.training import validate_config

        if not hasattr(self, "start_button"):
            return None  # still building
        error = None
        if self.dataset_combo.count() == 0:
            error = "Add a dataset first (File ▸ Add dataset folder… or Add sample)."
        else:
            try:
                validate_config(self.config(), self.distributed_processes())
            except Exception as exc:  # noqa: BLE001 - ConfigError and friends carry the message
                error = str(exc)
                error = error[:1].upper() + error[1:]
        self.error_label.setText(error or "")
        self.start_button.setEnabled(error is None)
        self.start_button.setToolTip(error or "Create the run and train it (Ctrl+Return).")
        several = self.distributed_processes() > 1
        self.queue_button.setEnabled(error is None and not several)
        self.queue_button.setToolTip(
            error or ("A run on several GPUs starts at once; the queue trains one run at a time in this window."
                      if several else "Store the run; it starts when the runs training or queued before it "
                                      "have ended (one at a time, in this window)."))
        self.estimate_button.setEnabled(error is None and self.project is not None and not self.estimating)
        if self.estimate_result is not None and (error is not None or self.estimate_result_config != self.config()
                                                 or getattr(self, "estimate_result_dataset", None) != self.dataset()):
            self._clear_estimate()
        cls = method_class(self.method_name())
        spec = BACKBONES.get(self.backbone_combo.currentData())
        if spec is not None:
            self.backbone_info.setText(spec.description)
            self._show_optimizer_default(cls, spec.kind)
        self._show_warmup(None if error else self.config())
        kinds = " or ".join(k.upper() for k in cls.backbone_kinds)
        self.backbone_combo.setToolTip(f"{cls.title} works with {kinds} backbones.")
        self.preview.refresh_soon()
        return error

    def _show_warmup(self, config) -> None:
        """Under the warm-up: what it comes to in steps on this dataset, and when the tenth-of-the-run
        cap cuts it (engine.train.schedules.warmup_steps, the Trainer's rule)."""
        from studio.engine.train.schedules import WARMUP_MAX_SHARE, warmup_steps
        from studio.engine.train.trainer import plan_steps

        text = ""
        images = self._dataset_images()
        if config is not None and images:
            _, per_epoch, total = plan_steps(config, images)
            steps = warmup_steps(config.warmup_epochs, per_epoch, total)
            text = f"= {steps:,} of {total:,} steps"
            if steps < int(config.warmup_epochs * per_epoch):
                text += f" (capped at {WARMUP_MAX_SHARE:.0%} of the run)"
        self.warmup_hint.setText(text)
        self.warmup_hint.setVisible(bool(text))

    def _dataset_images(self) -> int:
        name = self.dataset()
        if self.project is None or not name:
            return 0
        try:
            return int(self.project.dataset(name).images)
        except Exception:  # noqa: BLE001 - a dataset just removed elsewhere: no hint, not an error
            return 0

    def _show_optimizer_default(self, cls, backbone_kind: str) -> None:
        """The learning rate's placeholder says what an empty field means for this method and
        backbone (the one rule: studio.engine.train.optim), and why where it is not the paper's."""
        lr = self.setting_editors.get("lr")
        if lr is None:
            return
        choice = method_optimizer(cls, backbone_kind)
        lr.widget.setPlaceholderText(f"{choice.describe_lr()} ({choice.name})")
        tip = f"Empty: the method's learning rate, {choice.describe_lr()} with {choice.name}."
        lr.widget.setToolTip(tip + (f" {choice.reason[:1].upper()}{choice.reason[1:]}." if choice.reason else ""))

    def shutdown(self) -> None:
        self.cancel_estimate()
        self.preview.shutdown()


def _close(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(a)))
        except (TypeError, ValueError):
            return False
    return a == b


def _cuda_device_count() -> int:
    """The CUDA devices the 'all GPUs' option counts (SSL_STUDIO_FAKE_GPUS=N pretends N, on the CPU)."""
    from studio.services.distributed import cuda_device_count

    return cuda_device_count()
