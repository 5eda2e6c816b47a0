"""The Run details page: a run's config, its checkpoints (resume or export from any), its
evaluation results and its exports (open their folder), with Duplicate and Delete. Everything is
read from the store."""

from __future__ import annotations

import json
from datetime import datetime

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout, QPlainTextEdit, QPushButton, QSplitter,
    QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from studio.gui.widgets import Label, RunTitleRow, page_with_empty_state, read_only_table, section_title

CHECKPOINT_COLUMNS = ["step", "epoch", "file", "size", "saved"]
EVALUATION_COLUMNS = ["kind", "checkpoint", "dataset", "results", "when"]
EXPORT_COLUMNS = ["format", "checkpoint", "file", "when"]


# Values whose bare form misleads ("monitor every 0", "amp True" on a CPU): what they mean.
VALUE_WORDS = {("monitor_every", 0): "each epoch (at most 50 checks a run)", ("monitor_every", -1): "never",
               ("checkpoint_every", 0): "by time and by twentieths of the run only",
               ("amp", True): "on where the device has it (CUDA, MPS)", ("amp", False): "off",
               ("channels_last", None): "on for CNNs on CUDA", ("lr", None): "the method's, for the batch",
               ("optimizer", None): "the method's", ("weight_decay", None): "the method's",
               ("max_grad_norm", None): "no clipping"}


def format_config(config: dict) -> str:
    """A run's config as aligned `label: value` lines in the form's words, the method's own
    settings indented below under their labels."""
    from studio.engine.methods import find_method
    from studio.engine.settings import field_info
    from studio.engine.train import TrainConfig

    known = {f.name for f in TrainConfig.fields()}
    method_cls = find_method(str(config.get("method", "")))
    method_labels = {f.name: f.label for f in method_cls.fields()} if method_cls else {}
    backbone_labels = {}
    try:
        from studio.engine.backbones import backbone_spec
        from studio.engine.settings import config_fields

        option_class = backbone_spec(str(config.get("backbone", ""))).option_class
        backbone_labels = {f.name: f.label for f in config_fields(option_class)} if option_class else {}
    except Exception:  # noqa: BLE001 - a backbone this studio does not know: its names as stored
        pass

    def label(name: str, labels=None) -> str:
        if labels is not None:
            return labels.get(name, name.replace("_", " "))
        return field_info(TrainConfig, name).label if name in known else name.replace("_", " ")

    def shown(name: str, v) -> str:
        try:
            return VALUE_WORDS.get((name, v)) or _value(v)
        except TypeError:  # an unhashable value
            return _value(v)

    lines = []
    flat = {k: v for k, v in config.items() if not isinstance(v, dict)}
    width = max((len(label(k)) for k in config), default=0)
    for k, v in flat.items():
        lines.append(f"{label(k):<{width}}  {shown(k, v)}")
    for k, v in config.items():
        if isinstance(v, dict):
            labels = {"method_config": method_labels, "backbone_options": backbone_labels}.get(k, {})
            empty = "the paper's defaults" if k == "method_config" else "the model's defaults"
            lines.append(f"{label(k)}:" + ("" if v else f"  none set ({empty})"))
            inner = max((len(label(i, labels)) for i in v), default=0)
            for ik, iv in v.items():
                lines.append(f"    {label(ik, labels):<{inner}}  {_value(iv)}")
    return "\n".join(lines)


def _value(v) -> str:
    if v is None:
        return "default"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return json.dumps(list(v))
    return str(v)


def format_results(metrics: dict) -> str:
    """Every number of an evaluation but its settings; rows stored before the suite (no
    "settings") show their scores (accuracies, losses) first, their settings only when no score."""
    if isinstance(metrics.get("settings"), dict):
        return "   ".join(f"{k} {_number(v)}" for k, v in metrics.items()
                          if k != "settings" and isinstance(v, (int, float)) and not isinstance(v, bool))
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    scores = {k: v for k, v in scalars.items() if any(w in k for w in ("top", "acc", "loss", "f1", "map"))}
    shown = scores or scalars
    return "   ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items())


def _number(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def evaluation_tooltip(kind: str, metrics: dict) -> str:
    """What the protocol measures (services' table says it once) and the settings it ran with."""
    from studio.services.evaluation import protocol

    p = protocol(kind)
    lines = [p.label + ": " + p.about] if p is not None else [kind]
    settings = metrics.get("settings")
    if isinstance(settings, dict) and settings:
        lines.append("Settings: " + ", ".join(f"{k} {_value(v) if not isinstance(v, dict) else json.dumps(v)}"
                                               for k, v in settings.items()))
    from studio.gui.evaluate_dialog import wrapped

    return wrapped("\n".join(lines))


def _ago(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M") if t else ""


def _size(n: int | None) -> str:
    if n is None:
        return "missing"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


class RunDetailsPage(QWidget):
    duplicate_requested = Signal(int)
    delete_requested = Signal(int)
    export_requested = Signal(int, object)  # run id, checkpoint step (None: newest)
    evaluate_requested = Signal(int, object)  # run id, checkpoint step (None: newest)
    resume_requested = Signal(int, int)  # run id, checkpoint step

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = None
        self.run_id: int | None = None
        self.run = None
        self._signature = None
        self._verdicts: dict = {}
        self._verdict_source = None  # (run, checkpoint step) -> Verdict of resuming from it

        self._stack, lay = page_with_empty_state(self, "Select a run in the side panel to see its config, checkpoints and evaluations.", 14, 8)

        head = self.heading = RunTitleRow()
        self.title_label, self.status_pill = head.title_label, head.status_pill
        self.duplicate_button = QPushButton("Duplicate run…")
        self.duplicate_button.setToolTip("A new-run form filled with this run's config: change one thing and start.")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Export the encoder of the newest checkpoint (or of the one selected below).")
        self.evaluate_button = QPushButton("Evaluate…")
        self.evaluate_button.setToolTip("The evaluation suite (kNN, linear probe, few-shot, fine-tuning, retrieval, "
                                        "clustering, diagnostics) of the selected (or newest) checkpoint on a dataset; "
                                        "the results are stored with the run.")
        self.delete_button = QPushButton("Delete run…")
        self.delete_button.setObjectName("Danger")
        self.delete_button.setToolTip("Delete the run, its metrics and its files (checkpoints, exports).")
        self._delete_tip, self._export_tip = self.delete_button.toolTip(), self.export_button.toolTip()
        self._evaluate_tip = self.evaluate_button.toolTip()
        for b in (self.duplicate_button, self.evaluate_button, self.export_button, self.delete_button):
            head.addWidget(b)
        lay.addLayout(head)
        self.subtitle_label = Label()
        self.subtitle_label.setObjectName("PageSubtitle")
        self.subtitle_label.setWordWrap(True)
        lay.addWidget(self.subtitle_label)
        # The person's own words on the run (Edit ▸ Run notes… / Run tags…), shown when there are some.
        self.notes_label = Label()
        self.notes_label.setObjectName("Muted")
        self.notes_label.setWordWrap(True)
        self.notes_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notes_label.hide()
        lay.addWidget(self.notes_label)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.setChildrenCollapsible(False)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(section_title("Config"))
        self.config_view = QPlainTextEdit()
        self.config_view.setObjectName("Log")
        self.config_view.setReadOnly(True)
        self.config_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        # Wide enough for a setting and its value in words ("learning rate   the method's default").
        self.config_view.setMinimumWidth(330)
        ll.addWidget(self.config_view, 1)
        split.addWidget(left)

        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(section_title("Checkpoints"))
        self.checkpoints_table = self._table(CHECKPOINT_COLUMNS)
        rl.addWidget(self.checkpoints_table, 2)
        ck_buttons = QHBoxLayout()
        self.resume_from_button = QPushButton("Resume from this checkpoint")
        self.resume_from_button.setToolTip("Continue training the run from the selected checkpoint; "
                                           "the metrics after it are replaced.")
        self._resume_tip = self.resume_from_button.toolTip()
        self.export_from_button = QPushButton("Export this checkpoint…")
        ck_buttons.addWidget(self.resume_from_button)
        ck_buttons.addWidget(self.export_from_button)
        ck_buttons.addStretch(1)
        rl.addLayout(ck_buttons)
        rl.addWidget(section_title("Evaluations"))
        self.evaluations_table = self._table(EVALUATION_COLUMNS)
        rl.addWidget(self.evaluations_table, 1)
        self.no_evaluations_label = Label("No evaluation yet: Evaluate… (Run ▸ Evaluate) adds one.")
        self.no_evaluations_label.setObjectName("Hint")
        rl.addWidget(self.no_evaluations_label)
        self._build_exports(rl)
        split.addWidget(right)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        self.splitter = split
        lay.addWidget(split, 1)

        self.duplicate_button.clicked.connect(lambda: self.run_id and self.duplicate_requested.emit(self.run_id))
        self.delete_button.clicked.connect(lambda: self.run_id and self.delete_requested.emit(self.run_id))
        self.export_button.clicked.connect(lambda: self.run_id and self.export_requested.emit(self.run_id, None))
        self.evaluate_button.clicked.connect(
            lambda: self.run_id and self.evaluate_requested.emit(self.run_id, self.selected_checkpoint_step()))
        self.export_from_button.clicked.connect(self._export_selected)
        self.resume_from_button.clicked.connect(self._resume_selected)
        self.checkpoints_table.itemSelectionChanged.connect(self._update_buttons)

    @staticmethod
    def _table(columns: list[str]) -> QTableWidget:
        return read_only_table(columns)

    # -- what is shown -------------------------------------------------------------------------
    def set_project(self, project) -> None:
        self.project = project
        self.show_run(None)

    def show_run(self, run_id: int | None) -> None:
        self.run_id = run_id
        self.run = None
        self._signature = None
        self._stack.setCurrentIndex(0 if run_id is None else 1)
        self.refresh()

    def refresh(self) -> None:
        if self.project is None or self.run_id is None:
            return
        try:
            run = self.project.run(self.run_id)
        except Exception:  # noqa: BLE001 - deleted meanwhile
            self.show_run(None)
            return
        checkpoints = self.project.checkpoints(self.run_id)
        evaluations = self.project.evaluations(self.run_id)
        exports = self.project.exports(self.run_id)
        signature = (run.status, run.steps, len(checkpoints), len(evaluations), len(exports), run.name, run.notes,
                     run.tags)
        if signature == self._signature:
            return
        self._signature = signature
        self.run = run
        self.heading.show_run(run)
        if run.parent_run_id and run.parent_step is not None:
            parent = f"   ·   continues run {run.parent_run_id} from its step {run.parent_step:,}"
        elif run.parent_run_id:
            parent = f"   ·   duplicated from run {run.parent_run_id}"
        else:
            parent = ""
        words = [" ".join(f"#{t}" for t in run.tags)] if run.tags else []
        words += [run.notes] if run.notes else []
        self.notes_label.setText("\n".join(words))
        self.notes_label.setVisible(bool(words))
        self.subtitle_label.setText(f"dataset {run.dataset}   ·   {run.steps:,} / {run.total_steps:,} steps   ·   "
                                    f"created {_ago(run.created_at)}{parent}")
        text = format_config(run.config)
        if self.config_view.toPlainText() != text:
            self.config_view.setPlainText(text)
        self._fill_checkpoints(checkpoints)
        self._fill_evaluations(evaluations)
        self._fill_exports(exports)
        self._update_buttons()

    def _fill_checkpoints(self, checkpoints) -> None:
        t = self.checkpoints_table
        selected = self.selected_checkpoint_step()
        t.setRowCount(0)
        for ck in sorted(checkpoints, key=lambda c: (c.step, c.path), reverse=True):
            path = self.project.abs(ck.path)
            size = path.stat().st_size if path.is_file() else None
            row = t.rowCount()
            t.insertRow(row)
            values = [f"{ck.step:,}", f"{ck.epoch:.2f}", ck.path, _size(size), _ago(ck.created_at)]
            for col, v in enumerate(values):
                item = QTableWidgetItem(v)
                item.setData(Qt.ItemDataRole.UserRole, ck.step)
                item.setData(Qt.ItemDataRole.UserRole + 1, size is not None)
                t.setItem(row, col, item)
            if ck.step == selected:
                t.selectRow(row)
        if t.rowCount() and not t.selectedItems():
            t.selectRow(0)

    def _fill_evaluations(self, evaluations) -> None:
        t = self.evaluations_table
        t.setRowCount(0)
        names = {d.id: d.name for d in self.project.datasets()}
        for ev in sorted(evaluations, key=lambda e: e.created_at, reverse=True):
            row = t.rowCount()
            t.insertRow(row)
            results = format_results(ev.metrics)
            values = [ev.kind, "" if ev.checkpoint_step is None else f"step {ev.checkpoint_step:,}",
                      names.get(ev.dataset_id, ""), results, _ago(ev.created_at)]
            tip = evaluation_tooltip(ev.kind, ev.metrics)
            for col, v in enumerate(values):
                item = QTableWidgetItem(v)
                item.setToolTip(tip)
                t.setItem(row, col, item)
        self.no_evaluations_label.setVisible(t.rowCount() == 0)

    # -- exports ---------------------------------------------------------------------------------
    def _build_exports(self, rl: QVBoxLayout) -> None:
        rl.addWidget(section_title("Exports"))
        self.exports_table = self._table(EXPORT_COLUMNS)
        rl.addWidget(self.exports_table, 1)
        self.no_exports_label = Label("No export yet: Export… writes the encoder (or embeddings) with a model card.")
        self.no_exports_label.setObjectName("Hint")
        rl.addWidget(self.no_exports_label)
        row = QHBoxLayout()
        self.open_export_folder_button = QPushButton("Open export folder")
        self.open_export_folder_button.setToolTip("Open the folder of the selected export's files.")
        self._open_folder_tip = self.open_export_folder_button.toolTip()
        row.addWidget(self.open_export_folder_button)
        row.addStretch(1)
        rl.addLayout(row)
        self.folder_message = None
        self.open_export_folder_button.clicked.connect(self.open_export_folder)
        self.exports_table.itemSelectionChanged.connect(self._update_export_buttons)
        self.exports_table.itemDoubleClicked.connect(lambda _item: self.open_export_folder())

    def _fill_exports(self, exports) -> None:
        from studio.engine.export.card import FORMAT_TITLES

        t = self.exports_table
        chosen = t.selectedItems()
        selected = chosen[0].data(Qt.ItemDataRole.UserRole + 1) if chosen else None
        t.setRowCount(0)
        for ex in sorted(exports, key=lambda e: e.id, reverse=True):
            path = self.project.abs(ex.path)
            row = t.rowCount()
            t.insertRow(row)
            values = [FORMAT_TITLES.get(ex.format, ex.format),
                      "" if ex.checkpoint_step is None else f"step {ex.checkpoint_step:,}", ex.path, _ago(ex.created_at)]
            for col, v in enumerate(values):
                item = QTableWidgetItem(v)
                item.setData(Qt.ItemDataRole.UserRole, str(path.parent))
                item.setData(Qt.ItemDataRole.UserRole + 1, ex.id)
                item.setToolTip(str(path) if path.exists() else f"{path} (no longer on disk)")
                t.setItem(row, col, item)
            if ex.id == selected:
                t.selectRow(row)
        if t.rowCount() and not t.selectedItems():
            t.selectRow(0)
        self.no_exports_label.setVisible(t.rowCount() == 0)
        self._update_export_buttons()

    def selected_export_folder(self):
        """The folder of the selected export's files (a Path), or None."""
        from pathlib import Path

        items = self.exports_table.selectedItems()
        return Path(items[0].data(Qt.ItemDataRole.UserRole)) if items else None

    def _update_export_buttons(self) -> None:
        folder = self.selected_export_folder()
        there = folder is not None and folder.is_dir()
        self.open_export_folder_button.setEnabled(there)
        self.open_export_folder_button.setToolTip(
            self._open_folder_tip if there or folder is None else f"{folder} is no longer on disk.")

    def open_export_folder(self) -> None:
        from studio.gui.export_dialog import open_folder

        folder = self.selected_export_folder()
        if folder is not None and folder.is_dir():
            self.folder_message = open_folder(self, folder)

    # -- actions -------------------------------------------------------------------------------
    def selected_checkpoint_step(self) -> int | None:
        items = self.checkpoints_table.selectedItems()
        return int(items[0].data(Qt.ItemDataRole.UserRole)) if items else None

    def select_checkpoint(self, step: int) -> bool:
        for row in range(self.checkpoints_table.rowCount()):
            if self.checkpoints_table.item(row, 0).data(Qt.ItemDataRole.UserRole) == step:
                self.checkpoints_table.selectRow(row)
                return True
        return False

    def _selected_on_disk(self) -> bool:
        items = self.checkpoints_table.selectedItems()
        return bool(items) and bool(items[0].data(Qt.ItemDataRole.UserRole + 1))

    def set_verdicts(self, verdicts: dict) -> None:
        """The window's verdicts for the shown run (services.runs decides): Delete, Export."""
        self._verdicts = dict(verdicts)
        self._update_buttons()

    def set_verdict_source(self, fn) -> None:
        """`fn(run, step) -> Verdict`: may the run be resumed from the checkpoint at `step`?"""
        self._verdict_source = fn
        self._update_buttons()

    def layout_state(self):
        return self.splitter.saveState()

    def restore_layout_state(self, state) -> None:
        self.splitter.restoreState(state)

    def _update_buttons(self) -> None:
        r = self.run
        on_disk = self._selected_on_disk()
        self.export_from_button.setEnabled(on_disk)
        self.export_from_button.setToolTip("" if on_disk else "The selected checkpoint's file is not on disk.")
        step = self.selected_checkpoint_step()
        resume = None
        if r is not None and self._verdict_source is not None:
            resume = self._verdict_source(r, step)
        self.resume_from_button.setEnabled(bool(resume))
        self.resume_from_button.setToolTip(self._resume_tip if resume or resume is None else resume.reason)
        for name, button, tip in (("delete", self.delete_button, self._delete_tip),
                                  ("export", self.export_button, self._export_tip),
                                  ("evaluate", self.evaluate_button, self._evaluate_tip)):
            verdict = self._verdicts.get(name)
            button.setEnabled(bool(verdict))
            button.setToolTip(tip if verdict or verdict is None else verdict.reason)

    def _export_selected(self) -> None:
        step = self.selected_checkpoint_step()
        if self.run_id and step is not None:
            self.export_requested.emit(self.run_id, step)

    def _resume_selected(self) -> None:
        step = self.selected_checkpoint_step()
        if self.run_id and step is not None:
            self.resume_requested.emit(self.run_id, step)
