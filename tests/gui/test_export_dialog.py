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


def test_changing_the_format_changes_the_destination(qtbot, finished_run, tmp_path):
    from studio.gui.export_dialog import ExportDialog

    project, run_id = finished_run
    dialog = ExportDialog(project, run_id)
    qtbot.addWidget(dialog)
    assert dialog.selected_format() == "exported-program"  # the format torch recommends comes first
    assert dialog.destination_edit.text().endswith(f"run-{run_id}-step-3-exported-program")
    dialog.set_format("torchscript")
    assert dialog.destination_edit.text().endswith(f"run-{run_id}-step-3-torchscript")
    # Edited by hand (a character typed at the end, then removed): still follows the format.
    dialog.destination_edit.end(False)
    qtbot.keyClicks(dialog.destination_edit, "x")
    qtbot.keyClick(dialog.destination_edit, Qt.Key.Key_Backspace)
    dialog.set_format("onnx")
    assert dialog.destination_edit.text() == str(project.root / "exports" / f"run-{run_id}-step-3-onnx")
    # A file name for the old format gets the new format's suffix; a plain folder stays.
    dialog.set_destination(tmp_path / "mine.onnx")
    dialog.set_format("exported-program")
    assert dialog.destination_edit.text() == str(tmp_path / "mine.pt2")
    dialog.set_destination(tmp_path / "models")
    dialog.set_format("safetensors")
    assert dialog.destination_edit.text() == str(tmp_path / "models")


class _Desktop:
    """QDesktopServices.openUrl, recorded; `opens` says whether the desktop has a file manager."""

    def __init__(self, opens: bool):
        self.opens, self.urls = opens, []

    def openUrl(self, url):  # noqa: N802 - Qt's name
        self.urls.append(url.toLocalFile())
        return self.opens


def test_after_an_export_the_dialog_opens_its_folder(qtbot, finished_run, tmp_path, monkeypatch):
    import studio.gui.export_dialog as export_dialog
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QMessageBox

    project, run_id = finished_run
    dialog = export_dialog.ExportDialog(project, run_id)
    qtbot.addWidget(dialog)
    dialog.show()
    assert not dialog.open_folder_button.isEnabled()  # nothing written yet
    dest = tmp_path / "program"
    dialog.set_format("exported-program")
    dialog.set_destination(dest)
    with qtbot.waitSignal(dialog.exported, timeout=120_000):
        dialog.start_export()
    assert (dest / "encoder.pt2").is_file()
    shown = dialog.card_view.toPlainText()
    assert 'torch.export.load("encoder.pt2").module()' in shown and "recommends" in shown
    assert dialog.open_folder_button.isEnabled()

    desktop = _Desktop(opens=True)
    monkeypatch.setattr(export_dialog, "QDesktopServices", desktop)
    qtbot.mouseClick(dialog.open_folder_button, Qt.MouseButton.LeftButton)
    assert desktop.urls == [str(dest)] and dialog.folder_message is None

    # No file manager on this desktop: the path is shown, selectable and copyable, not nothing.
    desktop.opens = False
    qtbot.mouseClick(dialog.open_folder_button, Qt.MouseButton.LeftButton)
    box = dialog.folder_message
    assert desktop.urls == [str(dest)] * 2
    assert isinstance(box, QMessageBox) and box.isVisible() and str(dest) in box.text()
    assert box.textInteractionFlags() & Qt.TextInteractionFlag.TextSelectableByMouse
    copy = next(b for b in box.buttons() if b.text() == "Copy path")
    copy.click()
    assert QGuiApplication.clipboard().text() == str(dest)

    # A new export starts: the button waits for its files.
    dialog.set_destination(tmp_path / "blocked" / "x")
    (tmp_path / "blocked").write_text("a file where a folder should be")
    with qtbot.waitSignal(dialog.export_failed, timeout=120_000):
        dialog.start_export()
    assert not dialog.open_folder_button.isEnabled()


def test_run_details_lists_the_exports_and_opens_their_folder(qtbot, finished_run, tmp_path, monkeypatch):
    import studio.gui.export_dialog as export_dialog
    from studio.gui.run_details import RunDetailsPage
    from studio.services.export import export_run

    project, run_id = finished_run
    page = RunDetailsPage()
    qtbot.addWidget(page)
    page.set_project(project)
    page.show_run(run_id)
    assert page.exports_table.rowCount() == 0 and not page.open_export_folder_button.isEnabled()
    assert not page.no_exports_label.isHidden()

    export_run(project, run_id, "exported-program", out=tmp_path / "a")
    export_run(project, run_id, "onnx", out=tmp_path / "b" / "model.onnx", checkpoint_step=2)
    page.refresh()
    t = page.exports_table
    rows = [[t.item(r, c).text() for c in range(t.columnCount())] for r in range(t.rowCount())]
    assert [r[:3] for r in rows] == [["ONNX", "step 2", str(tmp_path / "b" / "model.onnx")],
                                     ["torch.export ExportedProgram", "step 3", str(tmp_path / "a" / "encoder.pt2")]]
    assert page.no_exports_label.isHidden() and page.open_export_folder_button.isEnabled()

    desktop = _Desktop(opens=True)
    monkeypatch.setattr(export_dialog, "QDesktopServices", desktop)
    qtbot.mouseClick(page.open_export_folder_button, Qt.MouseButton.LeftButton)  # the newest, selected
    t.selectRow(1)
    qtbot.mouseClick(page.open_export_folder_button, Qt.MouseButton.LeftButton)
    assert desktop.urls == [str(tmp_path / "b"), str(tmp_path / "a")]

    desktop.opens = False
    qtbot.mouseClick(page.open_export_folder_button, Qt.MouseButton.LeftButton)
    assert page.folder_message is not None and str(tmp_path / "a") in page.folder_message.text()
    page.folder_message.close()

    # A folder deleted since: the button says so instead of opening nothing.
    import shutil

    shutil.rmtree(tmp_path / "a")
    t.selectRow(0)
    t.selectRow(1)
    assert not page.open_export_folder_button.isEnabled()
    assert "no longer on disk" in page.open_export_folder_button.toolTip()
