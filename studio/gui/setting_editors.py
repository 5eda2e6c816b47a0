"""Editors generated from a setting's description (`studio.engine.settings.FieldInfo`).

`editor_for(info)` picks the widget: a spin box within the field's bounds, a check box, a combo
for choices, a line edit for optional numbers ("empty: the method's"), numbers beyond a spin
box's range and NAME=VALUE options. Every editor answers `value()` / `set_value(v)`, has the
field's help as its tooltip, and gives back a value it was set to exactly as it was set, as long
as the person has not changed it (a float spin box rounds; a duplicated run must not).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QComboBox, QLineEdit

from studio.engine.settings import FieldInfo, parse_value
from studio.gui.widgets import INT_LIMIT, ConfigFieldEditor

_NOT_SET = object()


def _tooltip(info: FieldInfo) -> str:
    bounds = [f"min {info.min:g}" if info.min is not None else "", f"max {info.max:g}" if info.max is not None else ""]
    bounds = [b for b in bounds if b]
    extra = f" ({', '.join(bounds)})" if bounds else ""
    empty = f" Empty: {info.none}." if info.optional and info.none else ""
    unit = f" In {info.unit}." if info.unit else ""
    return f"{info.help[:1].upper()}{info.help[1:]}{extra}.{unit}{empty}"


def format_options(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in (options or {}).items())


def parse_option_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "yes", "on", "false", "no", "off"):
        return low in ("true", "yes", "on")
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def parse_options(text: str, what: str = "options") -> dict[str, Any]:
    """'patch_size=4, depth=6' -> {'patch_size': 4, 'depth': 6}."""
    from studio.engine.errors import ConfigError

    out: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"the {what} are NAME=VALUE pairs separated by commas, not {part!r}.")
        out[name.strip()] = parse_option_value(value)
    return out


class _Exact:
    """Remembers the value an editor was set to, so an untouched editor gives it back exactly."""

    def _remember(self, value) -> None:
        self._set_value, self._shown = value, self._read()

    def value(self) -> Any:
        shown = self._read()
        if getattr(self, "_set_value", _NOT_SET) is not _NOT_SET and shown == self._shown:
            return self._set_value
        return shown


class SettingEditor(_Exact):
    """A non-optional field: ConfigFieldEditor's widgets, with exact give-back."""

    def __init__(self, info: FieldInfo):
        self.info = info
        self._inner = ConfigFieldEditor(info)
        self.widget = self._inner.widget
        self.changed = self._inner.changed
        self.widget.setToolTip(_tooltip(info))

    def _read(self):
        return self._inner.value()

    def set_value(self, value) -> None:
        self._inner.set_value(value)
        self._remember(value)


class TextSettingEditor(_Exact):
    """A line edit: optional numbers (empty is None), numbers beyond a spin box, NAME=VALUE options.
    `value()` gives the text's typed value; a text that is not one raises ConfigError (the form
    shows it)."""

    def __init__(self, info: FieldInfo):
        self.info = info
        self.widget = QLineEdit()
        self.widget.setObjectName(f"field_{info.name}")
        self.changed = self.widget.textChanged
        if info.optional and info.none:
            self.widget.setPlaceholderText(info.none)
        if info.type == "dict":
            self.widget.setPlaceholderText("NAME=VALUE, …")
        self.widget.setToolTip(_tooltip(info))
        if info.default is not None:
            self.widget.setText(self._text(info.default))

    def _text(self, value) -> str:
        if value is None:
            return ""
        if self.info.type == "dict":
            return format_options(value)
        return f"{value:g}" if isinstance(value, float) else str(value)

    def _read(self):
        text = self.widget.text().strip()
        if self.info.type == "dict":
            return parse_options(text, self.info.label)
        return parse_value(self.info, text.replace(",", ".") if self.info.type == "float" else text)

    def set_value(self, value) -> None:
        self.widget.setText(self._text(value))
        self._set_value, self._shown = value, self.widget.text()

    def value(self):
        if getattr(self, "_set_value", _NOT_SET) is not _NOT_SET and self.widget.text() == self._shown:
            return self._set_value
        return self._read()


class ChoiceSettingEditor(_Exact):
    """An optional field with choices or an optional bool: a combo whose first entry is None."""

    def __init__(self, info: FieldInfo):
        self.info = info
        self.widget = QComboBox()
        self.widget.setObjectName(f"field_{info.name}")
        self.widget.addItem(info.none or "default", None)
        choices = info.choices or ((True, False) if info.type == "bool" else ())
        for c in choices:
            self.widget.addItem({True: "on", False: "off"}.get(c, str(c)) if info.type == "bool" else str(c), c)
        self.widget.setCurrentIndex(max(0, self.widget.findData(info.default)))
        self.changed = self.widget.currentIndexChanged
        self.widget.setToolTip(_tooltip(info))

    def _read(self):
        return self.widget.currentData()

    def set_value(self, value) -> None:
        i = self.widget.findData(value)
        self.widget.setCurrentIndex(i if i >= 0 else 0)
        self._remember(value)


def editor_for(info: FieldInfo, page=None):
    """The editor of a config field; `page`: the New run form, for a field chosen among the
    project's runs (init_from: which run's image encoder to start from)."""
    if info.name == "init_from" and page is not None:
        from studio.gui.encoder_source import EncoderSourceEditor

        return EncoderSourceEditor(info, page)
    if info.type == "dict":
        return TextSettingEditor(info)
    if info.optional and (info.choices or info.type == "bool"):
        return ChoiceSettingEditor(info)
    if info.optional or (info.type == "int" and info.max is not None and info.max > INT_LIMIT):
        return TextSettingEditor(info)
    return SettingEditor(info)
