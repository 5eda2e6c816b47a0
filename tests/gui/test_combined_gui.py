"""Combined runs in the GUI: the New run form's "+ Add objective" (what the form produces) and
the Run page drawing each term of the loss beside the total."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")


@pytest.fixture
def page(qtbot):
    from studio.gui.new_run_page import NewRunPage

    p = NewRunPage()
    qtbot.addWidget(p)
    p.set_datasets(["sample"])
    p.backbone_combo.setCurrentIndex(p.backbone_combo.findData("vit_tiny"))
    return p


def test_adding_an_objective_makes_a_combined_run_with_each_objectives_weight_and_settings(page, qtbot):
    from PySide6.QtCore import Qt

    page.method_combo.setCurrentIndex(page.method_combo.findData("byol"))
    page.field_editors["hidden_dim"].set_value(512)  # typed before the objective is added: it stays
    qtbot.mouseClick(page.add_objective_button, Qt.MouseButton.LeftButton)
    combo = page.objective_rows[0][1]
    combo.setCurrentIndex(combo.findData("mae"))
    assert page.method_name() == "byol+mae"
    assert page.method_box.title() == "BYOL + MAE settings"
    names = list(page.field_editors)
    assert names[0] == "byol_weight" and "mae_weight" in names and "mae_mask_ratio" in names
    assert page.field_editors["byol_hidden_dim"].value() == 512
    mask = page.field_editors["mae_mask_ratio"]
    assert mask.widget.toolTip().startswith("fraction of patches hidden")  # the objective's own help
    page.field_editors["mae_weight"].set_value(0.5)
    mask.set_value(0.6)
    config = page.config()
    assert config.method == "byol+mae"
    assert config.method_config["mae_weight"] == pytest.approx(0.5)
    assert config.method_config["mae_mask_ratio"] == pytest.approx(0.6)
    assert config.method_config["byol_hidden_dim"] == 512 and config.method_config["byol_weight"] == 1.0
    assert page.validate() is None and page.can_start()
    # A CNN cannot carry MAE: the form says so from the combination's own rule.
    page.backbone_combo.setCurrentIndex(page.backbone_combo.findData("resnet18"))
    assert not page.can_start() and "ViT" in page.error_text()

    # Removing the objective leaves BYOL alone, with the value typed for it.
    remove = page.objective_rows[0][0].findChild(type(page.add_objective_button), "remove_objective")
    qtbot.mouseClick(remove, Qt.MouseButton.LeftButton)
    assert page.method_name() == "byol" and page.objective_rows == []
    assert page.field_editors["hidden_dim"].value() == 512 and "mae_weight" not in page.field_editors


def test_a_stored_combined_run_fills_the_form_as_its_objectives(page):
    from studio.engine.train import TrainConfig

    stored = TrainConfig(method="simclr+byol", backbone="vit_tiny", method_config={"byol_weight": 0.25,
                                                                                   "simclr_temperature": 0.2})
    page.set_config(stored)
    assert page.method_combo.currentData() == "simclr" and page.objectives() == ["byol"]
    assert page.field_editors["byol_weight"].value() == pytest.approx(0.25)
    assert page.config().method == "simclr+byol"
    assert page.config().method_config == {"byol_weight": 0.25, "simclr_temperature": 0.2}
    # A recipe in the method list is itself, with no objectives added.
    page.set_config(TrainConfig(method="simclr+mae", backbone="vit_tiny"))
    assert page.method_combo.currentData() == "simclr+mae" and page.objectives() == []


def test_the_run_page_draws_each_term_of_a_combined_loss_beside_the_total(make_window, project, qtbot):
    import time

    from conftest import tiny_train_config

    from studio.services.training import create_run

    run = create_run(project, "sample", tiny_train_config(method="simclr+mae", steps=10, backbone="vit_tiny"))
    t = time.time()
    rows = []
    for s in range(1, 6):
        rows += [(run.id, s, s / 10, "loss/simclr", 5.0 - 0.1 * s, t), (run.id, s, s / 10, "loss/mae", 1.0 - 0.1 * s, t),
                 (run.id, s, s / 10, "loss", 6.0 - 0.2 * s, t)]
    project.add_metrics(rows)
    project.set_run_status(run.id, "finished")
    w = make_window(project.root)
    w.panel.select_run(run.id)
    page = w.run_page
    qtbot.waitUntil(lambda: len(page.curve_data("loss/mae")[0]) == 5, timeout=10_000)
    assert list(page.curve_data("loss/simclr")[1]) == pytest.approx([4.9, 4.8, 4.7, 4.6, 4.5])
    assert list(page.curve_data("loss")[0]) == [1, 2, 3, 4, 5]
    assert {"loss", "loss/mae", "loss/simclr"} <= set(page.loss_plot.curves)
    legend = [label.text for _, label in page.loss_plot.legend.items]
    assert legend == ["loss", "loss/mae", "loss/simclr"]
    assert page.other_combo.findData("loss/mae") < 0  # not among the monitors
