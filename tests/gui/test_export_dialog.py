"""The export dialog: choose a format and a destination, export on a worker thread, see the card."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import Qt  # noqa: E402

from conftest import tiny_train_config  # noqa: E402


@pytest.fixture
def finished_run(project):
    from studio.services.training import create_run, execute_run

    config = tiny_train_config(backbone="vit_tiny", backbone_options={"num_layers": 2, "patch_size": 4},
                               steps=3, batch_size=8, monitor_every=-1, checkpoint_every=2)
    run = create_run(project, "sample", config)
    assert execute_run(project, run.id).status == "finished"
    return project, run.id


def test_export_dialog_exports_safetensors_and_shows_the_card(qtbot, finished_run, tmp_path):
    from studio.gui.export_dialog import ExportDialog

    project, run_id = finished_run
    dialog = ExportDialog(project.root, run_id)
    qtbot.addWidget(dialog)
    dialog.show()

    # The run's checkpoints, newest first.
    steps = [dialog.checkpoint_combo.itemData(i) for i in range(dialog.checkpoint_combo.count())]
    assert steps == [3, 2]
    # The destination follows the format until the user picks one.
    dialog.set_format("onnx")
    assert dialog.destination_edit.text().endswith("run-1-step-3-onnx")
    assert not dialog.dataset_combo.isVisible()
    dialog.set_format("embeddings-npy")
    assert dialog.dataset_combo.isVisible() and not dialog.heads_check.isEnabled()

    dialog.set_format("safetensors")
    dialog.checkpoint_combo.setCurrentIndex(1)  # step 2
    dest = tmp_path / "exported"
    dialog.set_destination(dest)
    with qtbot.waitSignal(dialog.exported, timeout=120_000) as blocker:
        qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
        assert not dialog.export_button.isEnabled()  # no second export while one runs
    payload = blocker.args[0]

    assert (dest / "encoder.safetensors").is_file()
    card = json.loads((dest / "card.json").read_text())
    assert card["format"] == "safetensors" and card["checkpoint_step"] == 2 and card["feature_dim"] == 192
    shown = dialog.card_view.toPlainText()
    assert "vit_tiny trained with simclr" in shown
    assert "Feature size" in shown and "192" in shown
    assert 'load_file("encoder.safetensors")' in shown  # the snippet is in the result view
    assert str(dest / "encoder.safetensors") in dialog.status_label.text()
    assert dialog.export_button.isEnabled() and not dialog.cancel_button.isEnabled()
    assert payload["checkpoint_step"] == 2
    records = project.exports(run_id)
    assert len(records) == 1 and records[0].format == "safetensors" and records[0].checkpoint_step == 2


def test_export_dialog_shows_a_failure(qtbot, finished_run, tmp_path):
    from studio.gui.export_dialog import ExportDialog

    project, run_id = finished_run
    dialog = ExportDialog(project, run_id)
    qtbot.addWidget(dialog)
    # A file where the destination folder should be: the export cannot be written.
    blocker_file = tmp_path / "occupied"
    blocker_file.write_text("x")
    dialog.set_format("torchvision")
    dialog.set_destination(blocker_file / "sub")
    with qtbot.waitSignal(dialog.export_failed, timeout=120_000):
        dialog.start_export()
    assert "Export failed: could not write" in dialog.status_label.text()
    assert "Traceback" not in dialog.status_label.text()
    assert dialog.export_button.isEnabled()
    assert project.exports(run_id) == []


def test_export_dialog_asks_before_replacing_files_and_never_writes_over_the_project(qtbot, finished_run, tmp_path,
                                                                                     monkeypatch):
    import studio.gui.widgets as widgets
    from PySide6.QtWidgets import QMessageBox

    from studio.gui.export_dialog import ExportDialog

    project, run_id = finished_run
    dialog = ExportDialog(project, run_id)
    qtbot.addWidget(dialog)
    dialog.set_format("torchvision")
    dest = tmp_path / "out"
    dialog.set_destination(dest)
    with qtbot.waitSignal(dialog.exported, timeout=120_000):
        dialog.start_export()
    written = (dest / "encoder.pth").stat().st_mtime_ns
    asked = []
    answers = [QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Yes]
    monkeypatch.setattr(widgets, "message_box", lambda *a, **k: (asked.append(a[2]), answers.pop(0))[1])
    dialog.start_export()  # the same files again: asked, and Cancel keeps them
    assert len(asked) == 1 and "would replace 3 file(s)" in asked[0] and str(dest / "encoder.pth") in asked[0]
    assert not dialog.is_running() and "existing files are kept" in dialog.status_label.text()
    assert (dest / "encoder.pth").stat().st_mtime_ns == written
    with qtbot.waitSignal(dialog.exported, timeout=120_000):
        dialog.start_export()  # asked again: Yes replaces them
    assert len(asked) == 2 and len(project.exports(run_id)) == 2

    before = (project.root / "project.db").read_bytes()[:100]
    dialog.set_format("torchscript")
    dialog.set_destination(project.root / "project.db")
    with qtbot.waitSignal(dialog.export_failed, timeout=10_000):
        dialog.start_export()
    assert "one of the project's own files" in dialog.status_label.text() and len(asked) == 2
    assert (project.root / "project.db").read_bytes()[:100] == before
