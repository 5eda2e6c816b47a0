"""Run ▸ Evaluate…: judge a run's checkpoint on a dataset of the project with any subset of the
evaluation suite (one checkbox per protocol of services.evaluation.PROTOCOLS) on a Task with
progress and cancel; the results are stored by services.evaluation and show in Run details,
Compare and the Evaluation view at once."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QProgressBar, QPushButton, QVBoxLayout, QWidget,
)

from studio.gui.widgets import Label

def wrapped(text: str, width: int = 90) -> str:
    """A long tooltip in lines of `width` (plain-text tooltips do not wrap by themselves)."""
    import textwrap

    return "\n".join(textwrap.fill(part, width) for part in text.split("\n"))


def _choices(image_text: bool = True):
    """The dialog's checkboxes: every protocol, then the untrained-encoder baseline (services' table);
    the image-text ones only for a run with a text tower."""
    from studio.services.evaluation import BASELINE, PROTOCOLS

    return (*(p for p in PROTOCOLS if image_text or not p.needs_text), BASELINE)


def _is_image_text(run) -> bool:
    from studio.engine.train import TrainConfig
    from studio.services.evaluation_text import is_image_text

    try:
        return is_image_text(TrainConfig.from_dict(run.config))
    except Exception:  # noqa: BLE001 - a config this studio cannot read offers the image protocols
        return False


class EvaluateDialog(QDialog):
    """Emits `evaluated(run_id, results)` once the chosen evaluations are stored."""

    evaluated = Signal(int, dict)
    fast_options: dict = {}  # extra evaluate_run arguments (tests: fewer fine-tuning steps)

    def __init__(self, project, run_id: int, step: int | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.project, self.run_id, self.step = project, run_id, step
        self.task = None
        self.results: dict | None = None
        self._reason_shown = False
        run = project.run(run_id)
        self.setWindowTitle(f"Evaluate run {run_id}")
        lay = QVBoxLayout(self)
        at = f"its checkpoint at step {step:,}" if step is not None else "its newest checkpoint"
        intro = Label(f"Run {run_id} ({run.method} on {run.backbone}), {at}, on a dataset of the project.")
        intro.setWordWrap(True)
        lay.addWidget(intro)
        form = QFormLayout()
        self.dataset_combo = QComboBox()
        self.dataset_combo.setObjectName("dataset")
        self._labelled: dict[str, bool] = {}
        for ds in project.datasets():
            self._labelled[ds.name] = ds.classes > 1
            what = f"{ds.classes} classes" if ds.classes > 1 else "no labels"
            self.dataset_combo.addItem(f"{ds.name} ({ds.images:,} images, {what})", ds.name)
        own = self.dataset_combo.findData(run.dataset)
        self.dataset_combo.setCurrentIndex(max(0, own))
        self.dataset_combo.setToolTip("The run's own dataset, or any other of the project (transfer).")
        self.dataset_combo.currentIndexChanged.connect(self._update)
        form.addRow("Dataset", self.dataset_combo)
        self.checks: dict[str, QCheckBox] = {}
        for choice in _choices(_is_image_text(run)):
            box = QCheckBox(choice.label)
            box.setChecked(choice.default)
            box.setToolTip(wrapped(choice.tooltip))
            box.toggled.connect(self._update)
            self.checks[choice.key] = box
            form.addRow("", box)
        lay.addLayout(form)
        self.progress_bar = QProgressBar()
        self.progress_bar.hide()
        self.status_label = Label("")
        self.status_label.setWordWrap(True)
        self.status_label.setObjectName("Hint")
        lay.addWidget(self.progress_bar)
        lay.addWidget(self.status_label)
        buttons = QDialogButtonBox()
        self.run_button = QPushButton("Evaluate")
        self.run_button.setObjectName("Primary")
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        close = buttons.addButton(QDialogButtonBox.StandardButton.Close)
        close.clicked.connect(self.close)
        buttons.addButton(self.run_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.ActionRole)
        lay.addWidget(buttons)
        self._update()

    def chosen(self) -> dict[str, bool]:
        return {key: box.isChecked() for key, box in self.checks.items()}

    def protocols(self) -> list[str]:
        from studio.services.evaluation import PROTOCOL_KEYS

        chosen = self.chosen()
        return [key for key in PROTOCOL_KEYS if chosen.get(key)]

    def _update(self) -> None:
        from studio.services.evaluation import labels_missing

        dataset = self.dataset_combo.currentData()
        why = ""
        if self.dataset_combo.count() == 0:
            why = "No dataset in this project: add a folder of images first."
        elif not self.protocols():
            why = "Choose at least one evaluation."
        else:
            why = labels_missing(self.protocols(), self.chosen()["baseline"], self._labelled.get(dataset, False), dataset)
            why = why[:1].upper() + why[1:]
        self.run_button.setEnabled(not why and self.task is None)
        self.run_button.setToolTip(why or "Evaluate the checkpoint and store the results with the run.")
        if self.task is None and (why or self._reason_shown):
            self.status_label.setText(why)  # a reason, or none once it is gone
            self._reason_shown = bool(why)

    def start(self) -> None:
        from studio.gui.tasks import Task

        if self.task is not None or not self.run_button.isEnabled():
            return
        root, run_id, step, dataset = self.project.root, self.run_id, self.step, self.dataset_combo.currentData()
        protocols, baseline, options = self.protocols(), self.chosen()["baseline"], dict(self.fast_options)

        def work(state):
            from studio.services.evaluation import evaluate_run
            from studio.store import Project

            with Project.open(root) as project:
                return evaluate_run(project, run_id, dataset=dataset, checkpoint_step=step, protocols=protocols,
                                    baseline=baseline, report=state.report, cancelled=state.cancelled,
                                    **options)

        task = Task(work, name="evaluate", parent=self)
        task.progress.connect(self._on_progress)
        task.done.connect(self._on_done)
        task.failed.connect(lambda error: self._end(f"The evaluation failed: {error}"))
        task.cancelled.connect(lambda: self._end("Cancelled; nothing was stored for the unfinished part."))
        self.task = task
        self.progress_bar.setRange(0, 0)
        self.progress_bar.show()
        self.cancel_button.setEnabled(True)
        self.status_label.setText("Embedding the images…")
        self._update()
        task.start()

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def busy(self) -> bool:
        return self.task is not None

    def _on_progress(self, p) -> None:
        if p.total > 0:
            self.progress_bar.setRange(0, p.total)
            self.progress_bar.setValue(p.done)
        self.status_label.setText(f"{p.stage[:1].upper() + p.stage[1:]}…")

    def _end(self, text: str) -> None:
        self.task = None
        self.progress_bar.hide()
        self.cancel_button.setEnabled(False)
        self.status_label.setText(text)
        self._update()

    def _on_done(self, results: dict) -> None:
        self.results = results
        self._end(results_text(results))
        self.evaluated.emit(self.run_id, results)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.cancel()
        super().closeEvent(event)


def results_text(results: dict) -> str:
    """One line of what an evaluation found, its numbers as stored."""
    names = (("knn_top1", "kNN top-1"), ("linear_top1", "linear probe"), ("finetune_top1", "fine-tuned"),
             ("finetune_random_top1", "from scratch"), ("knn_random_top1", "kNN untrained"),
             ("linear_random_top1", "linear untrained"))
    parts = [f"{label} {results[key]:.3f}" for key, label in names if results.get(key) is not None]
    for key in ("fewshot", "retrieval", "clustering", "rank"):
        value = results.get(key)
        if isinstance(value, dict):
            shots = "-shot" if key == "fewshot" else ""
            parts.append(" ".join(f"{k}{shots} {v:.1f}" if k == "effective_rank" else f"{k}{shots} {v:.3f}"
                                  for k, v in value.items() if isinstance(v, float)))
    step = results.get("checkpoint_step")
    at = f" (step {step:,})" if step is not None else ""
    return ("Stored" + at + ": " + ", ".join(parts) + ".") if parts else "Stored."


class RunDialogs:
    """The window's Run ▸ Evaluate… and Export… dialogs (a mixin of MainWindow)."""

    evaluate_dialog = None
    export_dialog = None

    def open_export_dialog(self, run_id: int | None = None, checkpoint_step: int | None = None):
        """Run ▸ Export…: the export dialog for a run (the shown one by default), at a checkpoint."""
        from studio.gui.export_dialog import ExportDialog

        run_id = run_id if run_id is not None else self.run_page.run_id
        if self.project is None or run_id is None:
            self.statusBar().showMessage("Select a run to export first.", 6000)
            return None
        if self.export_dialog is not None:
            self.export_dialog.close()
        dialog = ExportDialog(self.project, run_id, self)
        if checkpoint_step is not None:
            dialog.select_checkpoint(checkpoint_step)
        dialog.exported.connect(lambda info: self.statusBar().showMessage(
            f"Run {run_id} exported to {info.get('path', '')}.", 15000))
        dialog.export_failed.connect(lambda msg: self.statusBar().showMessage(f"Export failed: {msg}", 15000))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
        self.export_dialog = dialog
        dialog.open()
        return dialog

    def open_evaluate_dialog(self, run_id: int | None = None, step: int | None = None):
        run_id = run_id if run_id is not None else self.shown_run_id()
        if self.project is None or run_id is None:
            self.statusBar().showMessage("Select a run to evaluate first.", 6000)
            return None
        if self.evaluate_dialog is not None and not self.evaluate_dialog.busy():
            self.evaluate_dialog.close()
        dialog = EvaluateDialog(self.project, run_id, step, self)
        dialog.evaluated.connect(lambda rid, results: self._on_evaluated(rid, results))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
        self.evaluate_dialog = dialog
        dialog.open()
        return dialog

    def _on_evaluated(self, run_id: int, results: dict) -> None:
        """The new numbers show at once: Run details, the Compare table's columns, the Evaluation view."""
        self.statusBar().showMessage(f"Run {run_id}: {results_text(results)}", 15000)
        self.refresh_now()
        for title in ("Compare", "Evaluation"):
            page = self._pages.get(title)
            if hasattr(page, "refresh"):
                page.refresh()
