"""The New run page's cost estimate: a few real training steps measured on a Task, cancellable
between steps, the result (time per epoch, memory, warnings) shown under the form (a mixin of
NewRunPage, which owns the widgets)."""

from __future__ import annotations


class CostEstimateSection:
    # -- the cost estimate ------------------------------------------------------------------------
    def busy(self) -> bool:
        """True while the estimate is being measured or the run sized (a screenshot waits for it)."""
        return self.estimating or getattr(self, "sizing", False)

    def estimate(self) -> None:
        """Measure a few real steps of the current config on a task; the result shows below."""
        from studio.gui.tasks import Task
        from studio.services.estimate import estimate_for_dataset

        if self.project is None or self.estimating or self.validate() is not None:
            return
        root, dataset, config = self.project.root, self.dataset_combo.currentData(), self.config()
        task = Task(lambda state: estimate_for_dataset(root, dataset, config, cancelled=state.cancelled,
                                                       progress=state.report), name="estimate", parent=self)
        task.progress.connect(lambda p: self.estimate_label.setText(f"Measuring: {p.stage} ({p.done}/{p.total})…"))
        task.done.connect(lambda est: self._show_estimate(task, est, config))
        task.failed.connect(lambda err: self._show_estimate_error(task, err))
        task.cancelled.connect(lambda: self._end_estimate(task, "The estimate was cancelled."))
        self._estimate_task = task
        self._estimate_dataset = dataset
        self.estimating = True
        self.estimate_button.setEnabled(False)
        self.cancel_estimate_button.show()
        self.estimate_label.setText("Measuring a few training steps…")
        self.estimate_warning.hide()
        task.start()

    def cancel_estimate(self) -> None:
        if self._estimate_task is not None:
            self._estimate_task.cancel()

    def _end_estimate(self, task, text: str | None = None) -> bool:
        if task is not self._estimate_task:
            return False  # superseded (the config changed meanwhile)
        self._estimate_task = None
        self.estimating = False
        self.cancel_estimate_button.hide()
        self.estimate_button.setEnabled(self.validate() is None and self.project is not None)
        if text is not None:
            self.estimate_label.setText(text)
        return True

    def _show_estimate(self, task, est, config) -> None:
        from studio.gui.widgets import format_duration
        from studio.services.estimate import format_bytes

        if not self._end_estimate(task):
            return
        if config != self.config():
            self.estimate_label.setText("Before you start: estimate what this run will cost.")
            return
        self.estimate_result = est
        self.estimate_result_config = config
        self.estimate_result_dataset = self._estimate_dataset  # the estimate holds for these images only
        memory = ("peak " if est.memory_measured else "about ") + format_bytes(est.peak_memory_bytes)
        of = f" of {format_bytes(est.device_memory_bytes)}" if est.device_memory_bytes else ""
        self.estimate_label.setText(
            f"On {est.device_name}: {format_duration(est.seconds_per_epoch)} per epoch "
            f"({est.seconds_per_step * 1000:.0f} ms per step × {est.steps_per_epoch:,} steps), "
            f"about {format_duration(est.total_seconds)} for the whole run ({est.total_steps:,} steps); "
            f"memory {memory}{of}.")
        self.estimate_warning.setText("\n".join(est.warnings))
        self.estimate_warning.setVisible(bool(est.warnings))

    def _show_estimate_error(self, task, error: str) -> None:
        if not self._end_estimate(task, "The estimate could not be made."):
            return
        self.estimate_result = None
        self.estimate_warning.setText(error)
        self.estimate_warning.show()

    def _clear_estimate(self) -> None:
        if self._estimate_task is not None:
            self._estimate_task.cancel()  # a measurement under way no longer applies
            self._estimate_task = None
        self.estimating = False
        self.estimate_result = None
        if hasattr(self, "estimate_label"):
            self.cancel_estimate_button.hide()
            self.estimate_label.setText("Before you start: estimate what this run will cost.")
            self.estimate_warning.hide()
