"""The New run page's "+ Add objective": more methods trained on the same backbone, each a row
with its method and a remove button (a mixin of NewRunPage, which owns the form).

The run's method is then the objectives joined by "+" and the Method settings box shows the
combination's generated settings (each objective's weight and its own settings,
engine.methods.combined): the page adds no rule of its own. Values already typed carry over when
an objective is added or removed.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from studio.engine.methods import METHODS, method_class
from studio.engine.methods.combined import SEPARATOR, WEIGHT, Combined, setting_name


def _objective_methods() -> list[str]:
    """What can be added as an objective: every method but the combinations themselves."""
    return [name for name, cls in METHODS.items() if not issubclass(cls, Combined)]


def _by_objective(cls, values: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """A method's settings as {(objective, field): value}, for a single method or a combination."""
    if not issubclass(cls, Combined):
        return {(cls.name, k): v for k, v in values.items()}
    out = {}
    for part in cls.parts:
        for field in [WEIGHT] + [f.name for f in part.fields()]:
            name = setting_name(part.name, field)
            if name in values:
                out[(part.name, field)] = values[name]
    return out


class ObjectivesSection:
    def _build_objectives(self, form: QFormLayout) -> None:
        self.objective_rows: list[tuple[QWidget, QComboBox]] = []
        box = QWidget()
        self._objectives_layout = QVBoxLayout(box)
        self._objectives_layout.setContentsMargins(0, 0, 0, 0)
        self.add_objective_button = QPushButton("+ Add objective")
        self.add_objective_button.setObjectName("add_objective")
        self.add_objective_button.setToolTip("Train another method's objective on the same backbone: the loss is the "
                                             "weighted sum, each objective with its own heads, views and settings.")
        self.add_objective_button.clicked.connect(lambda: self.add_objective())
        self._objectives_layout.addWidget(self.add_objective_button)
        form.addRow("", box)

    def objectives(self) -> list[str]:
        """The added objectives' methods, in order (the Method box's is the first objective)."""
        return [combo.currentData() for _, combo in self.objective_rows]

    def combined_name(self, first: str) -> str:
        return SEPARATOR.join([first] + self.objectives()) if self.objective_rows else first

    def add_objective(self, name: str | None = None) -> QComboBox:
        """A new objective row, set to `name` or to the first method not yet chosen."""
        chosen = set(self.method_name().split(SEPARATOR))
        choices = _objective_methods()
        row = QWidget()
        lay = QHBoxLayout(row)
        lay.setContentsMargins(0, 0, 0, 0)
        combo = QComboBox()
        combo.setObjectName("objective")
        combo.setToolTip("Another objective on the same backbone.")
        for n in choices:
            combo.addItem(f"+ {METHODS[n].title}  ·  {METHODS[n].family}", n)
        pick = name if name is not None else next((n for n in choices if n not in chosen), choices[0])
        combo.setCurrentIndex(max(0, combo.findData(pick)))
        remove = QPushButton("×")
        remove.setObjectName("remove_objective")
        remove.setToolTip("Remove this objective.")
        remove.setFixedWidth(32)
        lay.addWidget(combo, 1)
        lay.addWidget(remove)
        self._objectives_layout.insertWidget(len(self.objective_rows), row)
        before = self.method_name()
        self.objective_rows.append((row, combo))
        remove.clicked.connect(lambda: self.remove_objective(row))
        combo.currentIndexChanged.connect(lambda _: self._rebuild_method_form())
        self._rebuild_method_form(before)
        return combo

    def remove_objective(self, row: QWidget) -> None:
        before = self.method_name()
        self.objective_rows = [(r, c) for r, c in self.objective_rows if r is not row]
        row.setParent(None)
        row.deleteLater()
        self._rebuild_method_form(before)

    def select_objectives(self, method: str) -> None:
        """Show a stored run's method: one of the list, or a combination as its first objective
        and the others added."""
        for row, _ in list(self.objective_rows):
            row.setParent(None)
            row.deleteLater()
        self.objective_rows = []
        self.field_editors = {}  # the stored run's settings, not the ones shown before, fill the form
        parts = [method] if self.method_combo.findData(method) >= 0 else method.split(SEPARATOR)
        self.method_combo.blockSignals(True)
        self.method_combo.setCurrentIndex(max(0, self.method_combo.findData(parts[0])))
        self.method_combo.blockSignals(False)
        for part in parts[1:]:
            self.add_objective(part)
        self._rebuild_method_form(None)

    def _rebuild_method_form(self, before: str | None = "") -> None:
        """Rebuild the Method settings for the current objectives, keeping the values the person
        changed (`before`: the method the form showed; "" for the last one shown)."""
        before = getattr(self, "_shown_method", None) if before == "" else before
        carried: dict[tuple[str, str], Any] = {}
        if before:
            old = method_class(before)
            changed = {n: e.value() for n, e in self.field_editors.items() if e.value() != e.info.default}
            carried = _by_objective(old, changed)
        self._on_method_changed()
        self._shown_method = self.method_name()
        new = method_class(self._shown_method)
        names = {key: name for name in self.field_editors for key in _by_objective(new, {name: None})}
        for key, value in carried.items():
            if key in names:
                self.field_editors[names[key]].set_value(value)
