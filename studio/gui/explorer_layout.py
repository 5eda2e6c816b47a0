"""The Explorer page's widgets and their layout (studio.gui.explorer holds what they do)."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QGridLayout, QHBoxLayout, QLabel, QListWidget, QProgressBar,
    QPushButton, QSlider, QSpinBox, QSplitter, QTableWidget, QTabWidget, QVBoxLayout, QWidget,
)

from studio.engine.eval.projection import PROJECTION_ALGORITHMS
from studio.gui.compare import SORT_ARROWS
from studio.gui.embedding_map import EmbeddingMapView, map_name
from studio.gui.style import colour
from studio.gui.widgets import Label, PageLayout, read_only_table
from studio.services.explore import DUPLICATE_THRESHOLD, DUPLICATE_THRESHOLD_RANGE, OUTLIER_K, OUTLIER_K_RANGE

NEIGHBOURS = 16
THUMB = 80
GRID_THUMB = 56
HOVER_HINT = "Hover a point"
NEIGHBOUR_HINT = "Click a point (or drop an image file) for its 16 nearest neighbours"


def _problem_table(columns) -> QTableWidget:
    table = read_only_table(columns)
    table.horizontalHeader().setSortIndicator(0, Qt.SortOrder.AscendingOrder)  # first column, as found
    table.horizontalHeader().setStyleSheet(SORT_ARROWS)
    table.setSortingEnabled(True)
    return table


def build_explorer(page) -> None:
    """Create the page's controls as attributes of `page`, lay them out and connect them."""
    page.run_box = QComboBox()
    page.step_box = QComboBox()
    page.dataset_box = QComboBox()
    page.map_box = QComboBox()
    for key in PROJECTION_ALGORITHMS:
        page.map_box.addItem(map_name(key), key)
    page.colour_box = QComboBox()
    page.colour_box.addItem("label", "label")
    page.colour_box.addItem("k-means cluster", "cluster")
    page.colour_box.addItem("tag", "tag")
    page.k_label = Label("clusters")
    page.k_spin = QSpinBox()
    page.k_spin.setRange(2, 100)
    page.k_spin.setValue(10)
    page.k_spin.setToolTip("clusters for k-means colouring")
    page.compute_button = QPushButton("Compute")
    page.cancel_button = QPushButton("Cancel")
    page.cancel_button.setEnabled(False)
    page.progress = QProgressBar()
    page.progress.setTextVisible(True)
    page.progress.setFormat("")
    page.progress.setFixedWidth(220)
    page.progress.hide()  # shown while a job runs
    page.status = Label("Pick a run and press Compute.")
    page.status.setWordWrap(True)

    # Two rows, and combo boxes that may shrink below their longest entry, so the page fits a
    # 1024 px window: what to embed on the first row, how to draw it on the second.
    for box in (page.run_box, page.step_box, page.dataset_box):
        box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        box.setMinimumContentsLength(14)
    # A run's entry is short ("#3 simclr · resnet18 · sample", its status an icon and a tip) so the
    # box shows it whole; the list that drops down is as wide as its longest entry.
    page.run_box.setMinimumContentsLength(26)
    page.run_box.view().setTextElideMode(Qt.TextElideMode.ElideMiddle)
    controls = QVBoxLayout()
    rows = (((("Run", page.run_box), ("Checkpoint", page.step_box), ("Dataset", page.dataset_box)), ()),
            ((("Map", page.map_box), ("Colour by", page.colour_box)), (page.k_label, page.k_spin, page.compute_button,
                                                                      page.cancel_button)))
    for labelled, plain in rows:
        row = QHBoxLayout()
        for label, w in labelled:
            row.addWidget(Label(label))
            row.addWidget(w, 1 if w in (page.run_box, page.dataset_box) else 0)
        for w in plain:
            row.addWidget(w)
        if plain:  # the first row's run and dataset boxes take its spare width
            row.addStretch(1)
        controls.addLayout(row)

    page.map_view = EmbeddingMapView()
    page.select_check = QCheckBox("Select (or Shift+drag)")
    page.lasso_check = QCheckBox("Lasso")
    page.lasso_check.setToolTip("select by drawing around the points instead of a box")
    # The legend: one entry per colour; clicking one shows only that colour, clicking it again all.
    page.legend_list = QListWidget()
    page.legend_list.setFixedWidth(130)
    page.legend_list.setToolTip("click a colour to show only its points; click it again to show all")

    # Right panel: hover thumbnail, neighbour grid, selection.
    page.thumb_label = Label()
    page.thumb_label.setFixedSize(THUMB, THUMB)
    page.thumb_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    page.thumb_label.setStyleSheet(f"border: 1px solid {colour('#c5ccd6')};")
    page.thumb_caption = Label(HOVER_HINT)
    page.thumb_caption.setWordWrap(True)
    page.neighbour_title = Label(NEIGHBOUR_HINT)
    page.neighbour_title.setWordWrap(True)
    grid_widget = QWidget()
    grid = QGridLayout(grid_widget)
    grid.setSpacing(2)
    page.neighbour_labels: list[QLabel] = []
    for i in range(NEIGHBOURS):
        lab = Label()
        lab.setFixedSize(GRID_THUMB, GRID_THUMB)
        lab.setAlignment(Qt.AlignmentFlag.AlignCenter)
        lab.setStyleSheet(f"border: 1px solid {colour('#dde1e7')};")
        grid.addWidget(lab, i // 4, i % 4)
        page.neighbour_labels.append(lab)
    page.selection_title = Label("No selection")
    page.selection_list = QListWidget()  # the selection as a grid of thumbnails
    page.selection_list.setViewMode(QListWidget.ViewMode.IconMode)
    page.selection_list.setIconSize(QSize(GRID_THUMB, GRID_THUMB))
    page.selection_list.setGridSize(QSize(GRID_THUMB + 14, GRID_THUMB + 22))
    page.selection_list.setResizeMode(QListWidget.ResizeMode.Adjust)
    page.selection_list.setMovement(QListWidget.Movement.Static)
    page.selection_list.setUniformItemSizes(True)
    page.selection_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
    page.selection_list.setMinimumHeight(48)
    page.export_button = QPushButton("Export list...")
    page.export_button.setToolTip("the selected files as a CSV (index, file, label, class, x, y) or a text file")
    page.export_button.setEnabled(False)
    page.export_dataset_button = QPushButton("As dataset...")
    page.export_dataset_button.setToolTip("copy the selected images into a new dataset of this project")
    page.export_dataset_button.setEnabled(False)
    page.tag_box = QComboBox()
    page.tag_box.setEditable(True)
    page.tag_box.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
    page.tag_box.lineEdit().setPlaceholderText("tag")
    page.tag_button = QPushButton("Tag")
    page.tag_button.setToolTip("put this tag on the selected images (stored in the project)")
    page.tag_button.setEnabled(False)

    # Problems: near duplicates and outliers, each a sortable list linked to the map.
    lo, hi = DUPLICATE_THRESHOLD_RANGE
    page.dup_slider = QSlider(Qt.Orientation.Horizontal)
    page.dup_slider.setRange(round(lo * 1000), round(hi * 1000))
    page.dup_slider.setValue(round(DUPLICATE_THRESHOLD * 1000))
    page.dup_value = Label(f"{DUPLICATE_THRESHOLD:.3f}")
    page.dup_slider.setToolTip("cosine similarity from which two images count as near copies")
    page.dup_button = QPushButton("Find duplicates")
    page.dup_table = _problem_table(("Group", "Images", "Similarity", "First file"))
    page.outlier_k = QSpinBox()
    page.outlier_k.setRange(*OUTLIER_K_RANGE)
    page.outlier_k.setValue(OUTLIER_K)
    page.outlier_k.setToolTip("an image is scored by its distance to its k-th nearest other image")
    page.outlier_button = QPushButton("Find outliers")
    page.outlier_table = _problem_table(("Rank", "Distance", "File"))

    side = QWidget()
    side_layout = QVBoxLayout(side)
    top = QHBoxLayout()
    top.addWidget(page.thumb_label)
    top.addWidget(page.thumb_caption, 1)
    side_layout.addLayout(top)
    nearest = QWidget()
    nl = QVBoxLayout(nearest)
    nl.setContentsMargins(0, 4, 0, 0)
    nl.addWidget(page.neighbour_title)
    nl.addWidget(grid_widget)
    nl.addStretch(1)
    selection = QWidget()
    sl = QVBoxLayout(selection)
    sl.setContentsMargins(0, 4, 0, 0)
    sl.addWidget(page.selection_title)
    sl.addWidget(page.selection_list, 1)
    tag_row = QHBoxLayout()
    tag_row.addWidget(page.tag_box, 1)
    tag_row.addWidget(page.tag_button)
    sl.addLayout(tag_row)
    export_row = QHBoxLayout()
    export_row.addWidget(page.export_button)
    export_row.addWidget(page.export_dataset_button)
    sl.addLayout(export_row)
    dups = QWidget()
    dl = QVBoxLayout(dups)
    dl.setContentsMargins(0, 4, 0, 0)
    dup_row = QHBoxLayout()
    dup_row.addWidget(Label("Similarity"))
    dup_row.addWidget(page.dup_slider, 1)
    dup_row.addWidget(page.dup_value)
    dl.addLayout(dup_row)
    dl.addWidget(page.dup_button)
    dl.addWidget(page.dup_table, 1)
    outliers = QWidget()
    ol = QVBoxLayout(outliers)
    ol.setContentsMargins(0, 4, 0, 0)
    k_row = QHBoxLayout()
    k_row.addWidget(Label("k-th neighbour"))
    k_row.addWidget(page.outlier_k)
    k_row.addStretch(1)
    ol.addLayout(k_row)
    ol.addWidget(page.outlier_button)
    ol.addWidget(page.outlier_table, 1)
    # One tab each, so the lists get the panel's height: a click shows Nearest, a drag Selected.
    page.side_tabs = QTabWidget()
    page.side_tabs.setUsesScrollButtons(False)
    page.side_tabs.addTab(nearest, "Nearest")
    page.side_tabs.addTab(selection, "Selected")
    page.side_tabs.addTab(dups, "Duplicates")
    page.side_tabs.addTab(outliers, "Outliers")
    side_layout.addWidget(page.side_tabs, 1)

    left = QWidget()
    left_layout = QVBoxLayout(left)
    left_layout.setContentsMargins(0, 0, 0, 0)
    from studio.gui.explorer_text import build_text_row

    left_layout.addLayout(build_text_row(page))  # shown for a CLIP run's map
    map_row = QHBoxLayout()
    from studio.gui.explorer_pair import build_pair_pane

    map_row.addWidget(page.map_view, 1)
    map_row.addWidget(build_pair_pane(page), 1)  # another run's map, hidden until asked for
    map_row.addWidget(page.legend_list)
    left_layout.addLayout(map_row, 1)
    select_row = QHBoxLayout()
    select_row.addWidget(page.select_check)
    select_row.addWidget(page.lasso_check)
    select_row.addWidget(page.pair_check)
    select_row.addStretch(1)
    left_layout.addLayout(select_row)
    from studio.gui.explorer_steps import build_steps_row

    left_layout.addLayout(build_steps_row(page))

    splitter = QSplitter()
    splitter.addWidget(left)
    splitter.addWidget(side)
    splitter.setStretchFactor(0, 3)
    splitter.setStretchFactor(1, 1)
    # Wide enough for every tab's title (the theme's padding included).
    side.setMinimumWidth(max(330, page.side_tabs.tabBar().sizeHint().width() + 24))

    layout = PageLayout(page)
    layout.addLayout(controls)
    status_row = QHBoxLayout()
    status_row.addWidget(page.status, 1)
    status_row.addWidget(page.progress)
    layout.addLayout(status_row)
    layout.addWidget(splitter, 1)

    page.run_box.currentIndexChanged.connect(page._fill_steps)
    page.compute_button.clicked.connect(page.compute)
    page.cancel_button.clicked.connect(page.cancel)
    page.colour_box.currentIndexChanged.connect(page._recolour)
    page.k_spin.editingFinished.connect(page._on_k_changed)
    page.select_check.toggled.connect(lambda on: setattr(page.map_view, "select_mode", on))
    page.lasso_check.toggled.connect(lambda on: setattr(page.map_view, "lasso", on))
    page.legend_list.itemClicked.connect(page._on_legend_clicked)
    page.export_button.clicked.connect(page._export_dialog)
    page.export_dataset_button.clicked.connect(page._export_dataset_dialog)
    page.tag_button.clicked.connect(lambda: page.tag_selected(page.tag_box.currentText()))
    page.tag_box.lineEdit().returnPressed.connect(lambda: page.tag_selected(page.tag_box.currentText()))
    page.dup_slider.valueChanged.connect(lambda v: page.dup_value.setText(f"{v / 1000:.3f}"))
    page.dup_button.clicked.connect(lambda: page.find_problems("duplicates"))
    page.outlier_button.clicked.connect(lambda: page.find_problems("outliers"))
    page.dup_table.cellClicked.connect(lambda row, _c: page._on_problem_row(page.dup_table, row))
    page.outlier_table.cellClicked.connect(lambda row, _c: page._on_problem_row(page.outlier_table, row))
    page.map_view.pointHovered.connect(page.show_hover)
    page.map_view.pointClicked.connect(page.show_neighbors)
    page.map_view.boxSelected.connect(page.select_on_map)

