"""The New run page's budget: "about 5 minutes", "about an hour", "overnight" or the paper's
schedule sizes the batch, image size and length for the device and dataset (services/budget.py,
measured on a Task, cancellable), says why, and leaves what the person set alone (a mixin of
NewRunPage, which owns the form)."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QFormLayout

from studio.gui.widgets import Label
from studio.services.budget import BUDGETS, SIZED


class BudgetSection:
    def _build_budget(self, form: QFormLayout) -> None:
        self._budget_task = None
        self._sized: dict | None = None  # the sized fields' values the last sizing chose
        self._sized_method: dict = {}  # the method settings the last sizing chose
        self.sizing = False
        self.budget_combo = QComboBox()
        self.budget_combo.setObjectName("budget")
        self.budget_combo.addItem("my settings", None)
        for name, (label, _) in BUDGETS.items():
            self.budget_combo.addItem(label, name)
        self.budget_combo.setToolTip("Size the run to the time you have: batch size, image size and length are "
                                     "chosen for this device and dataset from a few measured steps. Settings "
                                     "you changed yourself stay as you set them.")
        self.budget_combo.activated.connect(lambda _: self.choose_budget(self.budget_combo.currentData()))
        self.budget_note = Label()
        self.budget_note.setObjectName("Hint")
        self.budget_note.setWordWrap(True)
        self.budget_note.hide()
        form.addRow("Budget", self.budget_combo)
        form.addRow("", self.budget_note)

    def kept_settings(self) -> set[str]:
        """The sized settings the person changed since the form was filled (or last sized)."""
        current = self.config()
        reference = self._sized if self._sized is not None else {f: getattr(self._base, f) for f in SIZED}
        if current.steps != reference.get("steps") or current.epochs != reference.get("epochs"):
            return {f for f in SIZED if f in ("epochs", "steps") or getattr(current, f) != reference.get(f)}
        return {f for f in SIZED if getattr(current, f) != reference.get(f)}

    def choose_budget(self, budget: str | None) -> None:
        """Size the form for `budget` (a key of services.budget.BUDGETS) in the background."""
        from studio.gui.tasks import Task
        from studio.services.budget import size_for_dataset

        index = self.budget_combo.findData(budget)
        self.budget_combo.setCurrentIndex(max(0, index))
        if budget is None or self.project is None or self.validate() is not None:
            return
        if self._budget_task is not None:
            self._budget_task.cancel()
        root, dataset, config, keep = self.project.root, self.dataset_combo.currentData(), self.config(), self.kept_settings()
        # A method setting the last sizing chose and the person left alone is sized again.
        resize = [k for k, v in self._sized_method.items() if config.method_config.get(k) == v]
        task = Task(lambda state: size_for_dataset(root, dataset, config, budget, keep=keep, cancelled=state.cancelled,
                                                   resize=resize),
                    name="budget", parent=self)
        task.done.connect(lambda sized: self._apply_budget(task, sized, config, resize))
        task.failed.connect(lambda error: self._end_budget(task, f"Could not size the run: {error}"))
        task.cancelled.connect(lambda: self._end_budget(task, None))
        self._budget_task = task
        self.sizing = True
        self.budget_note.setText(f"Sizing the run for {BUDGETS[budget][0]}: measuring a few steps…")
        self.budget_note.show()
        task.start()

    def _end_budget(self, task, text: str | None) -> bool:
        if task is not self._budget_task:
            return False
        self._budget_task = None
        self.sizing = False
        if text is not None:
            self.budget_note.setText(text)
        return True

    def _apply_budget(self, task, sized, given, resize) -> None:
        """Fill the form with the sized config; `given` is the config it was sized from."""
        if not self._end_budget(task, None):
            return
        self.set_config(sized.config, parent_run_id=self._parent_run_id)
        self._sized = {f: getattr(sized.config, f) for f in SIZED}
        self._sized_method = {k: v for k, v in sized.config.method_config.items()
                              if given.method_config.get(k) != v or k in resize}
        self.budget_combo.setCurrentIndex(max(0, self.budget_combo.findData(sized.budget)))
        kept = "" if not sized.reasons else "; ".join(sized.reasons) + "."
        self.budget_note.setText(f"Sized for {BUDGETS[sized.budget][0]}: {kept}" if kept else
                                 f"{BUDGETS[sized.budget][0]}: your own settings are kept.")
        self.budget_note.show()
