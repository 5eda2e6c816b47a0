"""The Run page's plot options (TensorBoard's habits), kept across runs and sessions: smoothing of
the loss and throughput, a log loss axis, and the x axis (step or wall-clock minutes). A part of
RunPage: it provides the plots, the series and the drawing turns."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QSlider

from studio.gui.plots import positive
from studio.gui.widgets import Label
from studio.status import RunStatus

X_AXES = {"step": "step", "time": "minutes since the start"}  # the plots' x axis choices


def _settings():
    from studio.gui import main_window  # late: main_window imports the Run page

    return main_window.settings()


class PlotOptions:
    """Mixed into RunPage (loss_plot, speed_plot, plots, other_plot, series_*, run, _dirty,
    flush_drawing, _total_steps)."""

    def plot_options_row(self) -> QHBoxLayout:
        view = QHBoxLayout()
        view.setSpacing(8)
        view.addWidget(Label("Smoothing"))
        self.smoothing_slider = QSlider(Qt.Orientation.Horizontal)
        self.smoothing_slider.setObjectName("Smoothing")
        self.smoothing_slider.setRange(0, 99)
        self.smoothing_slider.setFixedWidth(120)
        self.smoothing_slider.setToolTip("Draw the loss and the throughput as exponential moving averages of their "
                                         "points (the raw points stay faint behind); 0 draws the points as they are.")
        self.smoothing_value = Label("0")
        self.smoothing_value.setObjectName("Muted")
        self.smoothing_value.setMinimumWidth(30)
        view.addWidget(self.smoothing_slider)
        view.addWidget(self.smoothing_value)
        view.addSpacing(12)
        self.log_check = QCheckBox("Log scale (loss)")
        self.log_check.setToolTip("Draw the loss on a logarithmic axis: a loss that falls by factors reads as a line.")
        view.addWidget(self.log_check)
        view.addSpacing(12)
        view.addWidget(Label("x axis"))
        self.x_axis_combo = QComboBox()
        self.x_axis_combo.setObjectName("XAxis")
        for key, words in X_AXES.items():
            self.x_axis_combo.addItem(words, key)
        self.x_axis_combo.setToolTip("Plot against the training step, or against the wall-clock minutes since the run's "
                                     "first point (pauses and resumes show as gaps).")
        view.addWidget(self.x_axis_combo)
        view.addStretch(1)
        s_ = _settings()
        self.smoothing_slider.setValue(int(s_.value("plots/smoothing", 0, type=int)))
        self.log_check.setChecked(bool(s_.value("plots/log_loss", False, type=bool)))
        self.x_axis_combo.setCurrentIndex(max(0, self.x_axis_combo.findData(s_.value("plots/x_axis", "step", type=str))))
        self.smoothing_slider.valueChanged.connect(self._on_view_options)
        self.log_check.toggled.connect(self._on_view_options)
        self.x_axis_combo.currentIndexChanged.connect(self._on_view_options)

        return view

    def _on_view_options(self, *_) -> None:
        s = _settings()
        s.setValue("plots/smoothing", self.smoothing_slider.value())
        s.setValue("plots/log_loss", self.log_check.isChecked())
        s.setValue("plots/x_axis", self.x_axis_combo.currentData())
        self._apply_view_options()

    def _apply_view_options(self) -> None:
        weight = self.smoothing_slider.value() / 100.0
        self.smoothing_value.setText(f"{weight:.2f}")
        label = X_AXES[self.x_axis_combo.currentData() or "step"]
        every = (*self.plots.values(), self.other_plot)
        for p in every:
            p.getPlotItem().setLabel("bottom", label)
            # The schedule and the sparse monitor checks are drawn as they are: smoothing is for noise.
            p.set_view_options(smoothing=weight if p in (self.loss_plot, self.speed_plot) else 0.0,
                               log_y=p is self.loss_plot and self._log_loss(), refit=False)
        # Every curve drawn again against the chosen x axis, then a view that fits it.
        self._dirty.update(dict.fromkeys(["loss", "lr", "throughput", "other"]))
        self.flush_drawing()
        for p in every:
            p.reset_view(self._x_total())

    def _log_loss(self) -> bool:
        """A log loss axis when asked for and the loss allows it (BYOL's and SimSiam's losses are
        negative: the box is then off, saying why)."""
        loss = self.series_values.get("loss")
        can = loss is None or not loss or positive(loss)
        self.log_check.setEnabled(can)
        self.log_check.setToolTip("Draw the loss on a logarithmic axis: a loss that falls by factors reads as a line."
                                  if can else "This run's loss goes to zero or below: a log axis cannot show it.")
        return can and self.log_check.isChecked()

    def x_values(self, name: str) -> np.ndarray:
        """The x of `name`'s points on the chosen axis: steps, or minutes since the run's first point."""
        if self.x_axis_combo.currentData() == "time":
            start = min((t[0] for t in self.series_times.values() if t), default=0.0)
            return (np.asarray(self.series_times.get(name, []), dtype=float) - start) / 60.0
        return np.asarray(self.series_steps[name], dtype=float)

    def _x_total(self) -> float | None:
        """The x span of the plots on the chosen axis (see _total_steps); in time, a live run's is
        not known (the view grows ahead of it) and an ended run's is its last point's."""
        if self.x_axis_combo.currentData() != "time":
            return self._total_steps()
        r = self.run
        if r is None or RunStatus.of(r.status).is_active:
            return None
        return max((float(self.x_values(n)[-1]) for n, t in self.series_times.items() if t), default=None)
