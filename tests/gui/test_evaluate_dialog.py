"""Evaluate from the GUI: Run ▸ Evaluate… (and Run details' button) stores kNN and linear-probe
results of the run's checkpoint, with progress, and Run details shows them at once."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

pytestmark = pytest.mark.usefixtures("private_settings")


@pytest.fixture
def trained_run(project):
    from conftest import tiny_train_config

    from studio.services.training import create_run, execute_run

    run = create_run(project, "sample", tiny_train_config(steps=2, batch_size=8, image_size=16, monitor_every=-1))
    assert execute_run(project, run.id).status == "finished"
    return project.run(run.id)


def test_evaluate_stores_knn_and_linear_and_run_details_show_them(make_window, project, trained_run, qtbot):
    w = make_window(project.root)
    w.panel.select_run(trained_run.id)
    w.show_page("Run details")
    qtbot.waitUntil(lambda: w.evaluate_action.isEnabled(), timeout=10_000)
    assert w.run_details.evaluate_button.isEnabled() and w.run_details.evaluations_table.rowCount() == 0
    w.run_details.evaluate_button.click()
    dialog = w.evaluate_dialog
    assert dialog.isVisible() and dialog.dataset_combo.currentData() == "sample"
    assert dialog.chosen() == {"knn": True, "linear": True, "fewshot": False, "finetune": False, "retrieval": False,
                               "clustering": False, "rank": False, "baseline": False}
    dialog.run_button.click()
    assert dialog.busy() and not dialog.run_button.isEnabled()
    qtbot.waitUntil(lambda: not dialog.busy(), timeout=120_000)
    text = dialog.status_label.text()
    assert text.startswith("Stored (step 2): kNN top-1 0.") and "linear probe 0." in text, text
    kinds = sorted(e.kind for e in project.evaluations(trained_run.id))
    assert kinds == ["knn", "linear"]
    qtbot.waitUntil(lambda: w.run_details.evaluations_table.rowCount() == 2, timeout=10_000)
    assert not w.run_details.no_evaluations_label.isVisible()


def test_evaluate_is_refused_with_a_reason_for_a_run_without_a_checkpoint(make_window, project):
    from conftest import tiny_train_config

    from studio.services.training import create_run

    run = create_run(project, "sample", tiny_train_config(steps=2))
    w = make_window(project.root)
    w.panel.select_run(run.id)
    w.update_actions()
    assert not w.evaluate_action.isEnabled() and "checkpoint" in w.evaluate_action.toolTip()
    dialog = w.open_evaluate_dialog(run.id)
    dialog.checks["knn"].setChecked(False)
    dialog.checks["linear"].setChecked(False)
    assert not dialog.run_button.isEnabled() and "at least one" in dialog.status_label.text()
    dialog.close()


def test_compare_offers_evaluate_for_a_run_and_fills_its_column(make_window, project, trained_run, qtbot):
    w = make_window(project.root)
    w.show_page("Compare")
    compare = w.page("Compare")
    compare.refresh()
    [row] = [r for r in range(compare.table.rowCount()) if compare.run_at_row(r) == trained_run.id]
    knn_col = list(compare.table.horizontalHeaderItem(c).text() for c in range(compare.table.columnCount())).index("kNN top-1")
    assert compare.table.item(row, knn_col).text() == ""
    [action] = compare.table_menu_for(row).actions()
    assert action.text() == f"Evaluate run {trained_run.id}…"
    action.trigger()
    dialog = w.evaluate_dialog
    assert dialog.run_id == trained_run.id
    dialog.checks["linear"].setChecked(False)
    dialog.run_button.click()
    qtbot.waitUntil(lambda: not dialog.busy(), timeout=120_000)
    [row] = [r for r in range(compare.table.rowCount()) if compare.run_at_row(r) == trained_run.id]
    assert compare.table.item(row, knn_col).text().startswith("0.")


def test_a_read_only_project_is_shown_for_viewing_with_every_write_off(make_window, project, trained_run, monkeypatch):
    import studio.store.database as database

    project.close()
    monkeypatch.setattr(database, "writable", lambda db: False)  # as on a read-only file system
    w = make_window(project.root)
    assert w.project.read_only and "(read-only)" in w.windowTitle()
    assert "open for viewing only" in w.statusBar().currentMessage()
    w.panel.select_run(trained_run.id)
    w.update_actions()
    for name in ("evaluate", "export", "delete", "duplicate", "add_folder", "add_sample", "start"):
        action = w.actions_by_name[name]
        assert not action.isEnabled() and "viewing only" in action.toolTip(), name
    assert not w.run_details.evaluate_button.isEnabled()
    assert "viewing only" in w.run_details.evaluate_button.toolTip()
