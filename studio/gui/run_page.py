"""The Run page: one run's live curves, progress and controls, redrawn from the store.

The window's store poller calls `refresh`, which reads only the points added since the last read (`metric_series(after_id=...)`), so the
same code draws a run trained by this window, one trained by the CLI in another process, and a
finished run of a reopened project (DESIGN.md rule 5: the store is the truth).
"""

from __future__ import annotations

import bisect

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox, QGridLayout, QHBoxLayout, QPlainTextEdit, QProgressBar, QPushButton,
    QWidget,
)

from studio.engine.train.callbacks import final_loss_meaning
from studio.gui.plot_options import PlotOptions
from studio.gui.plots import MetricPlot, metric_label
from studio.gui.style import CURVE_COLOURS, status_colour
from studio.gui.widgets import Label, RunTitleRow, format_duration, page_with_empty_state
from studio.status import RunStatus

# Where each stored metric is drawn; every other name goes to the "other metrics" plot.
MAIN_PLOTS = {"loss": "loss", "lr": "lr", "images_per_s": "throughput"}
LOSS_TERM = "loss/"  # a combined run's terms (loss/simclr, loss/mae): drawn with the total


def plot_of(name: str) -> str | None:
    """The main plot a metric is drawn on, or None for the "other metrics" plot."""
    return MAIN_PLOTS.get(name) or ("loss" if name.startswith(LOSS_TERM) else None)
NOT_PLOTTED = {"eta_s"}  # the engine's ETA: shown beside the progress bar, not drawn
PREFERRED_MONITOR = "knn_top1"
DRAW_TURN_MS = 30  # between two plots' redraws
class RunPage(PlotOptions, QWidget):
    pause_requested = Signal(int)
    resume_requested = Signal(int)
    stop_requested = Signal(int)
    export_requested = Signal(int)
    branch_requested = Signal(int)  # continue the shown run, collapsed, with the suggested change
    status_shown = Signal(str)  # the shown run's status changed (the window updates its verdicts)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = None
        self.run_id: int | None = None
        self.run = None
        self.live = False  # this window's job trains the shown run
        self.series_steps: dict[str, list[int]] = {}
        self.series_values: dict[str, list[float]] = {}
        self.series_times: dict[str, list[float]] = {}
        self._last_id = 0
        self._last_event_id = 0
        self._live_progress: tuple[int, int, float] | None = None
        self._activity = ""  # what the live run does between steps ("" while it steps)

        self._stack, lay = page_with_empty_state(self, "Select a run in the side panel, or start one on the New run page.", 14, 10)

        head = self.heading = RunTitleRow()
        self.title_label, self.status_pill = head.title_label, head.status_pill
        self.pause_button = QPushButton("Pause")
        self.resume_button = QPushButton("Resume")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("Danger")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Export this run's encoder (TorchScript, ONNX, torchvision, safetensors) "
                                      "or its embeddings (Ctrl+E).")
        self._tips = {"pause": "Pause training (the run keeps its place).", "resume": "Continue the run.",
                      "stop": "Stop the run with a checkpoint (Ctrl+.).", "export": self.export_button.toolTip()}
        for b in (self.pause_button, self.resume_button, self.stop_button, self.export_button):
            b.setMinimumWidth(84)
            b.setEnabled(False)
            head.addWidget(b)
        lay.addLayout(head)
        self.subtitle_label = Label()
        self.subtitle_label.setObjectName("PageSubtitle")
        lay.addWidget(self.subtitle_label)
        self.reason_label = Label()
        self.reason_label.setObjectName("ErrorText")
        self.reason_label.setWordWrap(True)
        self.reason_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.reason_label)
        # After a collapse: continue from the last healthy checkpoint with the suggested change.
        self.branch_button = QPushButton()
        self.branch_button.setObjectName("Primary")
        self.branch_button.setVisible(False)
        self.branch_button.setToolTip("A new run continues this one from its last checkpoint that the health check found "
                                      "healthy, with this change; this run stays as it is.")
        self.branch_button.clicked.connect(lambda: self.run_id and self.branch_requested.emit(self.run_id))
        lay.addWidget(self.branch_button, 0, Qt.AlignmentFlag.AlignLeft)

        prog = QHBoxLayout()
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(True)
        self.progress_label = Label()
        self.progress_label.setObjectName("Muted")
        self.progress_label.setMinimumWidth(120)
        self.progress_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        prog.addWidget(self.progress_bar, 1)
        prog.addSpacing(12)
        prog.addWidget(self.progress_label)
        lay.addLayout(prog)

        lay.addLayout(self.plot_options_row())

        plots = QGridLayout()
        plots.setSpacing(10)
        self.loss_plot = MetricPlot("Training loss", "loss")
        self.lr_plot = MetricPlot("Learning rate", "learning rate")
        self.speed_plot = MetricPlot("Throughput", "images/s")
        # Monitors (kNN accuracy, embedding health, momentum, ...) differ in scale: one at a time.
        self.other_plot = MetricPlot("Monitors", "value", empty_text="no monitor check yet")
        self.other_combo = QComboBox()
        self.other_combo.setObjectName("MonitorChoice")
        self.other_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.other_combo.currentIndexChanged.connect(self._on_other_choice)
        # The choice sits where the plot's title would be, so the three plots line up.
        self.other_combo.setParent(self.other_plot)
        self.other_plot.set_title(" ")
        self.other_plot.resized = self._place_other_combo
        other = self.other_plot
        plots.addWidget(self.loss_plot, 0, 0, 1, 3)
        plots.addWidget(self.lr_plot, 1, 0)
        plots.addWidget(self.speed_plot, 1, 1)
        plots.addWidget(other, 1, 2)
        plots.setRowStretch(0, 3)
        plots.setRowStretch(1, 2)
        lay.addLayout(plots, 1)
        self.plots = {"loss": self.loss_plot, "lr": self.lr_plot, "throughput": self.speed_plot}

        self.latest_label = Label()
        self.latest_label.setObjectName("Muted")
        self.latest_label.setWordWrap(True)
        lay.addWidget(self.latest_label)
        self.log_view = QPlainTextEdit()
        self.log_view.setObjectName("Log")
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(2000)
        self.log_view.setMinimumHeight(40)
        self.log_view.setMaximumHeight(92)
        lay.addWidget(self.log_view)

        self.pause_button.clicked.connect(lambda: self.run_id and self.pause_requested.emit(self.run_id))
        self.resume_button.clicked.connect(lambda: self.run_id and self.resume_requested.emit(self.run_id))
        self.stop_button.clicked.connect(lambda: self.run_id and self.stop_requested.emit(self.run_id))
        self.export_button.clicked.connect(lambda: self.run_id and self.export_requested.emit(self.run_id))

        self._dirty: dict[str, None] = {}  # plots to draw, in order ("loss", "lr", "throughput", "other")
        self._draw_timer = QTimer(self)
        self._draw_timer.setInterval(DRAW_TURN_MS)
        self._draw_timer.timeout.connect(self._draw_next)
        self._apply_view_options()

    # -- what is shown -------------------------------------------------------------------------
    def set_project(self, project) -> None:
        self.project = project
        self.show_run(None)

    def show_run(self, run_id: int | None, live: bool = False) -> None:
        """Show run `run_id` (None: nothing); `live` when this window's job trains it."""
        if run_id == self.run_id and run_id is not None:
            self.live = live
            return
        self.run_id = run_id
        self.run = None
        self.live = live
        self.series_steps, self.series_values, self.series_times = {}, {}, {}
        self._last_id = self._last_event_id = 0
        self._live_progress = None
        self._activity = ""
        self._dirty.clear()
        for p in (*self.plots.values(), self.other_plot):
            p.clear_curves()
            p.reset_view()
        self._draw_baseline("")
        self.heading.show_baseline(None)
        self.other_combo.blockSignals(True)
        self.other_combo.clear()
        self.other_combo.blockSignals(False)
        self.other_combo.hide()
        self.other_plot.set_title("Monitors: none yet")
        self.other_plot.getPlotItem().setLabel("left", "value")
        self.log_view.clear()
        self.latest_label.clear()
        self._stack.setCurrentIndex(0 if run_id is None else 1)
        self.refresh()

    def warm_up(self, size) -> None:
        """Lay out and paint the plots once, off screen, at `size` (the page's size when shown)."""
        shown = self._stack.currentIndex()
        self._stack.setCurrentIndex(1)  # the plots, not the empty-state message
        self.resize(size)
        self.grab()
        self._stack.setCurrentIndex(shown)

    def on_activity(self, run_id: int, text: str) -> None:
        """What this window's run does between steps (a monitor check), shown while it lasts."""
        if run_id == self.run_id:
            self._activity = text
            self._update_progress()

    def on_progress(self, run_id: int, step: int, total: int, images_per_s: float) -> None:
        """Progress from this window's worker: fresher than the store, shown at once."""
        if run_id == self.run_id:
            self._live_progress = (step, total, images_per_s)
            self._update_progress()

    # -- reading the store -----------------------------------------------------------------------
    def refresh(self) -> None:
        if self.project is None or self.run_id is None:
            return
        before = self.run.status if self.run is not None else None
        try:
            self.run = self.project.run(self.run_id)
        except Exception:  # noqa: BLE001 - deleted meanwhile
            self.show_run(None)
            return
        if self.run.status != before:
            self.status_shown.emit(str(self.run.status))
        new = self.project.metric_series(self.run_id, after_id=self._last_id)
        if new.last_id != self._last_id:
            self._last_id = new.last_id
            for name in new.steps:
                self._append(name, new.steps[name], new.values[name], new.times.get(name, []))
            self._redraw(new.names())
        events = self.project.events(self.run_id, after_id=self._last_event_id)
        for e in events:
            self.log_view.appendPlainText(f"{e.time:%H:%M:%S}  {e.level:<7} {e.message}")
            self._last_event_id = e.id
        self._update_header()
        self._update_progress()

    def _append(self, name: str, steps: list[int], values: list[float], times: list[float]) -> None:
        old_s = self.series_steps.setdefault(name, [])
        old_v = self.series_values.setdefault(name, [])
        old_t = self.series_times.setdefault(name, [])
        if old_s and steps and steps[0] <= old_s[-1]:
            # A resumed run redoes steps after its checkpoint; the store dropped the old ones.
            cut = bisect.bisect_left(old_s, steps[0])
            del old_s[cut:], old_v[cut:], old_t[cut:]
        old_s.extend(steps)
        old_v.extend(values)
        old_t.extend(times)

    def _redraw(self, names: list[str]) -> None:
        """Mark the plots whose series grew; they are drawn one per event-loop turn (_draw_next)."""
        for name in names:
            target = plot_of(name)
            if name in NOT_PLOTTED:
                continue
            if target is not None:
                self._dirty.setdefault(target, None)
            else:
                if self.other_combo.findData(name) < 0:
                    self.other_combo.addItem(metric_label(name), name)
                    if name == PREFERRED_MONITOR:
                        self.other_combo.setCurrentIndex(self.other_combo.count() - 1)
                if name == self.other_combo.currentData():
                    self._dirty.setdefault("other", None)
        if self._dirty and not self._draw_timer.isActive():
            self._draw_timer.start()
        # Non-breaking spaces inside an entry: the line wraps only between entries.
        latest = [f"{metric_label(n)} {self._fmt(self.series_values[n][-1])}".replace(" ", "\u00a0")
                  for n in sorted(self.series_values) if self.series_values[n] and n not in NOT_PLOTTED]
        self.latest_label.setText("Latest:  " + "   ·   ".join(latest) if latest else "")

    def _draw_next(self) -> None:
        """Draw one dirty plot. Qt paints every dirty widget of a window in one pass, and a
        pyqtgraph plot costs 10-40 ms of Python to paint while training threads hold the cores:
        drawing the four plots on four turns keeps each pass (each event-loop stall) short."""
        if not self._dirty:
            self._draw_timer.stop()
            return
        target = next(iter(self._dirty))
        del self._dirty[target]
        if target == "other":
            self._draw_other()
            return
        terms = sorted(n for n in self.series_steps if n.startswith(LOSS_TERM)) if target == "loss" else []
        for name in [n for n, plot_name in MAIN_PLOTS.items() if plot_name == target] + terms:
            if name in self.series_steps:
                if target == "loss" and self.loss_plot.log_y != self._log_loss():
                    self.loss_plot.set_view_options(log_y=self._log_loss())
                if name in terms and self.loss_plot.legend is None:  # the terms need telling apart
                    self.loss_plot.legend = self.loss_plot.getPlotItem().addLegend(offset=(-10, 10))
                    for drawn, curve in self.loss_plot.curves.items():
                        self.loss_plot.legend.addItem(curve, drawn)
                self.plots[target].set_series(name, self.x_values(name), self.series_values[name])
                self.plots[target].fit_view(self._x_total())

    def flush_drawing(self) -> None:
        """Draw every plot still waiting for its turn (for readers that need the curves now)."""
        while self._dirty:
            self._draw_next()
        self._draw_timer.stop()

    def _on_other_choice(self) -> None:
        self.other_plot.clear_curves()
        self.other_plot.reset_view()
        self._draw_baseline("")
        self._draw_other()

    def _draw_other(self) -> None:
        name = self.other_combo.currentData()
        if not name or name not in self.series_steps:
            return
        self.other_plot.set_title(" ")
        self.other_combo.show()
        self._place_other_combo()
        self.other_plot.getPlotItem().setLabel("left", name.replace("_", " "))
        for old in [n for n in self.other_plot.curves if n != name]:
            self.other_plot.remove_curve(old)
        x = self.x_values(name)
        self.other_plot.set_series(name, x, self.series_values[name], symbol="o" if len(x) < 50 else None,
                                   symbolSize=5, symbolBrush=CURVE_COLOURS[0], symbolPen=None)
        self._draw_baseline(name)
        self.other_plot.fit_view(self._x_total())

    def _draw_baseline(self, name: str) -> None:
        """A dashed line at the untrained encoder's kNN top-1 under the kNN curve: the level the
        run must beat."""
        import pyqtgraph as pg

        baseline = self.knn_baseline() if name == PREFERRED_MONITOR else None
        line = getattr(self, "_baseline_line", None)
        if baseline is None:
            if line is not None:
                self.other_plot.getPlotItem().removeItem(line)
                self._baseline_line = None
            return
        if line is None:
            pen = pg.mkPen(CURVE_COLOURS[0], width=1, style=Qt.PenStyle.DashLine)
            line = pg.InfiniteLine(angle=0, movable=False, pen=pen,
                                   label="untrained {value:.3f}", labelOpts={"position": 0.5, "color": CURVE_COLOURS[0], "anchors": [(0.5, 1), (0.5, 1)]})
            self.other_plot.getPlotItem().addItem(line, ignoreBounds=False)
            self._baseline_line = line
        line.setValue(baseline)

    def _total_steps(self) -> int | None:
        """The x span of the plots: the steps a live run will reach (its plots span them from the
        start), or the last step a run that has ended logged."""
        r = self.run
        if r is not None and RunStatus.of(r.status).is_active:
            return r.total_steps or None
        return max((s[-1] for s in self.series_steps.values() if s), default=None)

    def _place_other_combo(self) -> None:
        combo = self.other_combo
        combo.adjustSize()
        combo.move(max(0, (self.other_plot.width() - combo.width()) // 2), 2)

    @staticmethod
    def _fmt(v: float) -> str:
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"

    def curve_data(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The (steps, values) drawn for a metric (empty when not drawn)."""
        self.flush_drawing()
        target = plot_of(name)
        plot = self.plots[target] if target else self.other_plot
        c = plot.curves.get(name)
        if c is None or c.xData is None:
            return np.zeros(0), np.zeros(0)
        return np.asarray(c.xData), np.asarray(c.yData)

    # -- header, progress, buttons -----------------------------------------------------------
    def _update_header(self) -> None:
        r = self.run
        if r is None:
            return
        self.heading.show_run(r)
        self._update_health()
        bits = [f"dataset {r.dataset}", f"batch {r.config.get('batch_size', '?')}",
                f"{r.config.get('image_size', '?')} px"]
        if r.device:
            bits.append(r.device)
        if r.duration_s is not None:
            bits.append(f"ran {format_duration(r.duration_s)}")
        status = RunStatus.of(r.status)
        if status.is_active and status is not RunStatus.QUEUED and not self.live and r.pid:
            bits.append(f"trained by process {r.pid}" + (f" on {r.host}" if r.host else ""))
        self.subtitle_label.setText("   ·   ".join(bits))
        reason = r.reason if status.has_ended and status is not RunStatus.FINISHED else None
        self.reason_label.setText(reason or "")
        self.reason_label.setVisible(bool(reason))
        self.reason_label.setObjectName("ErrorText" if status.is_error else "Muted")
        self.reason_label.style().unpolish(self.reason_label)
        self.reason_label.style().polish(self.reason_label)

    def knn_baseline(self) -> float | None:
        """kNN top-1 of the untrained encoder: the monitors' check at step 0 (None before it, or
        for a run without one)."""
        steps = self.series_steps.get(PREFERRED_MONITOR) or []
        return self.series_values[PREFERRED_MONITOR][0] if steps and steps[0] == 0 else None

    def _update_baseline(self) -> None:
        """The heading's "below random init" pill follows the kNN monitor's latest check."""
        from studio.engine.eval.health import baseline_verdict

        steps = self.series_steps.get(PREFERRED_MONITOR) or []
        below, message = (False, "")
        if len(steps) > 1:
            below, message = baseline_verdict(self.series_values[PREFERRED_MONITOR][-1], self.knn_baseline())
        self.heading.show_baseline(steps[-1] if below else None, message)

    def _update_health(self) -> None:
        """The heading's "collapsing" pill follows the health monitor's latest verdict."""
        from studio.engine.eval.health import collapse_verdict

        self._update_baseline()

        verdicts = self.series_values.get("collapse")
        if not verdicts:
            self.heading.show_health(None)
            self._show_remedy(False)
            return
        step = self.series_steps["collapse"][-1]
        spread_steps = self.series_steps.get("embedding_std_ratio") or []
        # A non-finite spread is not written: then the last one on record is from another check.
        spread = self.series_values["embedding_std_ratio"][-1] if spread_steps and spread_steps[-1] == step else None
        from studio.engine.methods import find_method

        advice = getattr(find_method(self.run.method), "collapse_advice", "")
        collapsing, message = collapse_verdict({"collapse": verdicts[-1], "embedding_std_ratio": spread}, advice)
        ended = RunStatus.of(self.run.status).has_ended
        self._show_remedy(collapsing and ended)
        if not collapsing:
            self.heading.show_health(None)
            return
        self.heading.show_health(step, message, ended=ended)

    def _show_remedy(self, show: bool) -> None:
        """The "continue with the change" button under a run that ended collapsed, naming the
        change (engine.train.remedy); hidden otherwise, and for methods that cannot collapse."""
        remedy = None
        if show:
            from studio.engine.train import TrainConfig
            from studio.engine.train.remedy import collapse_remedy

            try:
                remedy = collapse_remedy(TrainConfig.from_dict(self.run.config))
            except Exception:  # noqa: BLE001 - a run of a method this studio no longer has
                remedy = None
        self.branch_button.setVisible(remedy is not None)
        if remedy is not None:
            self.branch_button.setText(f"Continue from before the collapse with {remedy.text}…")

    def _update_progress(self) -> None:
        r = self.run
        if r is None:
            return
        step, total = r.steps or 0, r.total_steps or 0
        ips_values = self.series_values.get("images_per_s")
        ips = ips_values[-1] if ips_values else (r.images_per_s or 0.0)
        status = RunStatus.of(r.status)
        if self._live_progress is not None and status.is_active:
            lstep, ltotal, lips = self._live_progress
            if lstep >= step:
                step, total = lstep, ltotal or total
                ips = lips or ips
        if self.series_steps.get("loss"):
            step = max(step, self.series_steps["loss"][-1])
        total = max(total, step)
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(min(step, max(1, total)))
        self.progress_bar.setFormat(f"step {step:,} / {total:,}" if total else "waiting to start")
        colour = status_colour(r.status)
        if self.progress_bar.property("colour") != colour:
            self.progress_bar.setProperty("colour", colour)
            self.progress_bar.setStyleSheet(f"QProgressBar::chunk {{ background: {colour}; }}")
        parts = []
        if ips:
            parts.append(f"{ips:,.0f} images/s")
        if status is RunStatus.RUNNING and self._activity:
            parts.append(f"{self._activity}…")
        if status is RunStatus.RUNNING and ips and total > step:
            parts.append(f"ETA {format_duration(self._eta(step, total, ips))}")
        elif status is RunStatus.QUEUED:
            parts.append("loading images…")
        elif status is RunStatus.PAUSED:
            parts.append("paused")
        if r.final_loss is not None and status.has_ended:
            parts.append(f"final loss {r.final_loss:.4g} ({final_loss_meaning(r.config.get('log_every'))})")
        self.progress_label.setText("   ·   ".join(parts))

    def _eta(self, step: int, total: int, ips: float) -> float:
        """Seconds to the end: the engine's ETA (steps and monitor checks left, `eta_s`) scaled
        to the steps done since, else the steps left at the current speed."""
        steps, values = self.series_steps.get("eta_s"), self.series_values.get("eta_s")
        if steps and values and total > steps[-1]:
            return values[-1] * (total - step) / (total - steps[-1])
        return (total - step) * int(self.run.config.get("batch_size") or 1) / ips

    def set_verdicts(self, verdicts: dict, live: bool = False) -> None:
        """Enable the buttons by the window's verdicts (services.runs decides); a disabled
        button says why in its tooltip."""
        self.live = live
        for name, button in (("pause", self.pause_button), ("resume", self.resume_button),
                             ("stop", self.stop_button), ("export", self.export_button)):
            verdict = verdicts.get(name)
            ok = bool(verdict)
            button.setEnabled(ok)
            button.setToolTip(self._tips[name] if ok or verdict is None else verdict.reason)

    def button_states(self) -> dict[str, bool]:
        """Which of Pause, Resume, Stop and Export are enabled (what the user can press)."""
        return {"pause": self.pause_button.isEnabled(), "resume": self.resume_button.isEnabled(),
                "stop": self.stop_button.isEnabled(), "export": self.export_button.isEnabled()}
