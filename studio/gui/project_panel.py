"""The side panel: the project's datasets and runs, re-read from the database when the window's
store poller calls `refresh`, so runs started by the CLI in another process appear and update here."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView, QLineEdit, QListWidget, QListWidgetItem, QMenu, QSizePolicy, QVBoxLayout, QWidget,
)

from studio.gui.style import status_icon
from studio.gui.widgets import Label, plain_tip, section_title
from studio.services.labels import run_matches

RUN_ID_ROLE = Qt.ItemDataRole.UserRole
DATASET_ROLE = Qt.ItemDataRole.UserRole


def _ordinal(n: int) -> str:
    return {1: "next"}.get(n, f"{n}{'tsnrhtdd'[(n // 10 % 10 != 1) * (n % 10 < 4) * n % 10::4]}")


class ProjectPanel(QWidget):
    dataset_selected = Signal(object)  # DatasetRecord
    datasets_changed = Signal(list)  # [DatasetRecord]: one was added, renamed or removed (here or elsewhere)
    new_run_requested = Signal(str)  # the datasets list's menu, by dataset name
    rename_dataset_requested = Signal(str)
    remove_dataset_requested = Signal(str)
    run_selected = Signal(int)
    runs_changed = Signal()  # a run appeared or changed status

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("SidePanel")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setMinimumWidth(250)
        self.setMaximumWidth(420)
        self.project = None
        self._dataset_sig: tuple = ()
        self._run_sig: dict[int, tuple] = {}

        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 12, 10, 10)
        lay.setSpacing(4)
        self.project_title = Label()
        self.project_title.setObjectName("ProjectTitle")
        self.project_title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.project_path = Label()
        self.project_path.setObjectName("ProjectPath")
        self.project_path.setWordWrap(True)
        lay.addWidget(self.project_title)
        lay.addWidget(self.project_path)

        lay.addWidget(section_title("Datasets"))
        self.datasets_list = QListWidget()
        self.datasets_list.setObjectName("DatasetsList")
        self.datasets_list.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        # Long names are elided, never scrolled sideways (a scroll bar would hide the one row).
        self.datasets_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.datasets_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.datasets_list.setFixedHeight(34)
        self.datasets_list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.datasets_list.customContextMenuRequested.connect(self._dataset_menu_at)
        lay.addWidget(self.datasets_list)

        lay.addWidget(section_title("Runs"))
        self.runs_list = QListWidget()
        self.runs_list.setObjectName("RunsList")
        self.runs_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.runs_list.setIconSize(QSize(14, 14))
        self.runs_list.setWordWrap(False)
        self.runs_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        # Long entries are elided, never scrolled sideways (the panel is narrow on purpose).
        self.runs_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # A filter over the runs: words found in a run's number, name, method, backbone, dataset,
        # status or tags (services.labels.run_matches decides).
        self.runs_filter = QLineEdit()
        self.runs_filter.setObjectName("RunsFilter")
        self.runs_filter.setPlaceholderText("Filter runs: name, method, tag…")
        self.runs_filter.setClearButtonEnabled(True)
        self.runs_filter.textChanged.connect(self._apply_filter)
        lay.addWidget(self.runs_filter)
        lay.addWidget(self.runs_list, 1)
        self.no_runs_label = Label("No runs yet: pick a dataset and start one on the New run page.")
        self.no_runs_label.setObjectName("Hint")
        self.no_runs_label.setWordWrap(True)
        lay.insertWidget(lay.indexOf(self.runs_list), self.no_runs_label)

        self.datasets_list.itemSelectionChanged.connect(self._on_dataset_selection)
        self.runs_list.itemSelectionChanged.connect(self._on_run_selection)

    def add_list_action(self, action) -> None:
        """An action whose shortcut works while the runs list has the focus (Delete)."""
        self.runs_list.addAction(action)

    def set_project(self, project) -> None:
        self.project = project
        self._dataset_sig, self._run_sig = (), {}
        self.datasets_list.clear()
        self.runs_list.clear()
        if project is not None:
            self.project_title.setText(project.root.name)
            self.project_path.setText(str(project.root))
            self.project_path.setToolTip(plain_tip(str(project.root)))
        self.refresh()

    # -- reading the store -----------------------------------------------------------------------
    def refresh(self) -> None:
        if self.project is None:
            return
        datasets = self.project.datasets()
        sig = tuple((d.id, d.name, d.images) for d in datasets)
        if sig != self._dataset_sig:
            self._dataset_sig = sig
            # Kept by id: a renamed dataset stays selected.
            items = self.datasets_list.selectedItems()
            selected = items[0].data(DATASET_ROLE).id if items else None
            self.datasets_list.blockSignals(True)
            self.datasets_list.clear()
            for d in datasets:
                item = QListWidgetItem(f"{d.name}   ·   {d.images:,} images")
                item.setToolTip(plain_tip(f"{d.images:,} images · {d.classes} classes · {d.kind}: {d.source}"))
                item.setData(DATASET_ROLE, d)
                self.datasets_list.addItem(item)
                if d.id == selected:
                    item.setSelected(True)
            self.datasets_list.blockSignals(False)
            # As tall as its rows (up to six): no gap under a short list.
            rows = max(1, min(6, len(datasets)))
            self.datasets_list.setFixedHeight(rows * max(26, self.datasets_list.sizeHintForRow(0)) + 6)
            # The run rows name their dataset: each is written again below (removed ones still go).
            self._run_sig = {run_id: (None,) for run_id in self._run_sig}
            self.datasets_changed.emit(datasets)

        runs = self.project.runs()
        changed = False
        present = {r.id for r in runs}
        for run_id in list(self._run_sig):
            if run_id not in present:
                self._take_run_item(run_id)
                del self._run_sig[run_id]
                changed = True
        queue = self.project.queued_run_ids()
        self._runs = {r.id: r for r in runs}
        for r in runs:
            place = queue.index(r.id) + 1 if r.id in queue else None
            sig = (r.status, r.steps, r.total_steps, r.reason, r.name, r.tags, place)
            if self._run_sig.get(r.id) == sig:
                continue
            changed = changed or self._run_sig.get(r.id, (None,))[0] != r.status
            self._run_sig[r.id] = sig
            item = self._run_item(r.id)
            if item is None:
                item = QListWidgetItem()
                item.setData(RUN_ID_ROLE, r.id)
                self.runs_list.insertItem(0, item)  # newest first
            item.setText(self.run_row(r, place))
            item.setIcon(status_icon(r.status))
            tip = f"Run {r.id} on {r.dataset}: {r.status}" + (f" ({r.reason})" if r.reason else "")
            if r.tags:
                tip += "\ntags: " + ", ".join(r.tags)
            if r.notes:
                tip += "\n\n" + r.notes
            item.setToolTip(plain_tip(tip))
        self._apply_filter()
        if changed:
            self.runs_changed.emit()

    @staticmethod
    def run_row(r, place: int | None) -> str:
        """Two lines: the run's number and name (or method and backbone), then where it stands."""
        steps = f"{r.steps:,}/{r.total_steps:,} steps" if r.total_steps else "not started"
        status = f"in the queue, {_ordinal(place)}" if place is not None else str(r.status)
        first = f"#{r.id}  {r.name}  ({r.method})" if r.name else f"#{r.id}  {r.method} · {r.backbone}"
        tags = "  ·  " + " ".join(f"#{t}" for t in r.tags) if r.tags else ""
        return f"{first}\n{status}  ·  {steps}  ·  {r.dataset}{tags}"

    def _apply_filter(self, text: str = "") -> None:
        text = self.runs_filter.text()
        shown = 0
        for i in range(self.runs_list.count()):
            item = self.runs_list.item(i)
            run = getattr(self, "_runs", {}).get(item.data(RUN_ID_ROLE))
            hide = run is not None and not run_matches(run, text)
            item.setHidden(hide)
            shown += not hide
        if text and not shown:
            self.no_runs_label.setText("No run matches the filter.")
            self.no_runs_label.show()
        else:
            self.no_runs_label.setText("No runs yet: pick a dataset and start one on the New run page.")
            self.no_runs_label.setVisible(self.runs_list.count() == 0)

    def visible_run_ids(self) -> list[int]:
        return [self.runs_list.item(i).data(RUN_ID_ROLE) for i in range(self.runs_list.count())
                if not self.runs_list.item(i).isHidden()]

    def _run_item(self, run_id: int) -> QListWidgetItem | None:
        for i in range(self.runs_list.count()):
            item = self.runs_list.item(i)
            if item.data(RUN_ID_ROLE) == run_id:
                return item
        return None

    def _take_run_item(self, run_id: int) -> None:
        item = self._run_item(run_id)
        if item is not None:
            self.runs_list.takeItem(self.runs_list.row(item))

    # -- selection ----------------------------------------------------------------------------
    def run_text(self, run_id: int) -> str:
        """The row shown for a run, as text (e.g. '#3  simclr · resnet18  stopped  40/40')."""
        item = self._run_item(run_id)
        return item.text() if item is not None else ""

    def run_ids(self) -> list[int]:
        return [self.runs_list.item(i).data(RUN_ID_ROLE) for i in range(self.runs_list.count())]

    def dataset_names(self) -> list[str]:
        return [self.datasets_list.item(i).data(DATASET_ROLE).name for i in range(self.datasets_list.count())]

    def selected_dataset_name(self) -> str | None:
        items = self.datasets_list.selectedItems()
        return items[0].data(DATASET_ROLE).name if items else None

    def select_run(self, run_id: int) -> None:
        self.refresh()
        item = self._run_item(run_id)
        if item is not None:
            self.runs_list.setCurrentItem(item)
            self._on_run_selection()

    def select_dataset(self, name: str) -> None:
        self.refresh()
        for i in range(self.datasets_list.count()):
            item = self.datasets_list.item(i)
            if item.data(DATASET_ROLE).name == name:
                self.datasets_list.setCurrentItem(item)
                self._on_dataset_selection()
                return

    def dataset_menu(self, name: str) -> QMenu:
        """The datasets list's context menu for one dataset."""
        read_only = getattr(self.project, "read_only", False)
        menu = QMenu(self)
        menu.addAction("New run on it…", lambda: self.new_run_requested.emit(name))
        menu.addSeparator()
        for text, signal in (("Rename…", self.rename_dataset_requested), ("Remove…", self.remove_dataset_requested)):
            action = menu.addAction(text, lambda s=signal: s.emit(name))
            action.setEnabled(not read_only)
        return menu

    def _dataset_menu_at(self, pos) -> None:
        item = self.datasets_list.itemAt(pos)
        if item is not None:
            self.dataset_menu(item.data(DATASET_ROLE).name).exec(self.datasets_list.viewport().mapToGlobal(pos))

    def _on_dataset_selection(self) -> None:
        items = self.datasets_list.selectedItems()
        if items:
            self.runs_list.blockSignals(True)
            self.runs_list.clearSelection()
            self.runs_list.blockSignals(False)
            self.dataset_selected.emit(items[0].data(DATASET_ROLE))

    def _on_run_selection(self) -> None:
        items = self.runs_list.selectedItems()
        if items:
            self.datasets_list.blockSignals(True)
            self.datasets_list.clearSelection()
            self.datasets_list.blockSignals(False)
            self.run_selected.emit(int(items[0].data(RUN_ID_ROLE)))
