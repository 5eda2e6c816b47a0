"""The desktop-app conventions of the main window: pages wired in, welcome page, recent projects,
drag and drop, run details (duplicate, delete, checkpoints), About, themes, remembered layout."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QPalette  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

WAIT_MS = 60_000


@pytest.fixture(autouse=True)
def isolated_app(private_settings, tmp_path, monkeypatch):
    """Settings in a file of the test (private_settings), the sample project in tmp_path, and the
    app's theme as it was for the next tests."""
    import studio.gui.main_window as mw

    monkeypatch.setattr(mw, "sample_project_path", lambda: tmp_path / "Sample project")
    app = QApplication.instance()
    sheet, palette = app.styleSheet(), app.palette()
    yield
    if app.styleSheet() != sheet:  # a theme was applied: the next tests get the app as it was
        import studio.gui.style as style

        app.setStyleSheet(sheet)
        app.setPalette(palette)
        style._current_dark = False


@pytest.fixture
def window(make_window):
    w = make_window()
    w.resize(1100, 720)
    return w


def stored_run(project, checkpoint_steps=(), **overrides):
    """A finished run as the CLI leaves it: metrics, and checkpoint files on disk."""
    from conftest import tiny_train_config

    from studio.services.training import create_run

    config = tiny_train_config(steps=20, **overrides)
    run = create_run(project, "sample", config)
    project.update_run(run.id, total_steps=20)
    project.set_run_status(run.id, "running")
    project.add_metrics([(run.id, s, s / 10, "loss", 5.0 - 0.1 * s, time.time()) for s in range(1, 21)])
    for step in checkpoint_steps:
        path = project.run_dir(run.id) / f"step-{step}.ckpt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 2048)
        project.add_checkpoint(run.id, step, step / 10, path)
    project.set_run_status(run.id, "finished", steps=20)
    return project.run(run.id)


def test_explorer_and_compare_tabs_show_the_runs_and_export_opens_for_the_selected_run(window, qtbot, project):
    first = stored_run(project, checkpoint_steps=(10, 20))
    second = stored_run(project, checkpoint_steps=(20,), batch_size=8)
    window.open_project(project.root)
    titles = [window.tabs.tabText(i) for i in range(window.tabs.count())]
    assert titles[:4] == ["Dataset", "New run", "Run", "Run details"]
    assert "Explorer" in titles and "Compare" in titles

    explorer = window.page("Explorer")
    assert explorer.run_ids() == [first.id, second.id]
    window.show_page("Compare")
    texts = window.page("Compare").run_texts()
    assert texts[0].startswith(f"#{first.id} simclr") and texts[1].startswith(f"#{second.id} simclr")

    window.panel.select_run(first.id)
    assert window.run_page.run_id == first.id
    window.export_action.trigger()  # Run ▸ Export… (Ctrl+E)
    dialog = window.export_dialog
    assert dialog is not None and dialog.isVisible() and dialog.run_id == first.id
    assert [dialog.checkpoint_combo.itemData(i) for i in range(dialog.checkpoint_combo.count())] == [20, 10]
    dialog.close()

    # The run page's Export button and the details page's "Export this checkpoint" pick their run and step.
    window.panel.select_run(second.id)
    qtbot.mouseClick(window.run_page.export_button, Qt.MouseButton.LeftButton)
    assert window.export_dialog.run_id == second.id
    window.export_dialog.close()
    window.panel.select_run(first.id)
    assert window.run_details.select_checkpoint(10)
    qtbot.mouseClick(window.run_details.export_from_button, Qt.MouseButton.LeftButton)
    assert window.export_dialog.run_id == first.id and window.export_dialog.selected_step() == 10
    window.export_dialog.close()

    # A project opened later rebuilds both pages on it.
    other = project.root.parent / "other"
    from studio.store import Project

    Project.create(other).close()
    window.open_project(other)
    assert window.page("Explorer").run_ids() == [] and window.page("Compare").run_texts() == []


def test_try_the_sample_opens_the_sample_project_on_a_ready_simclr_form(window, qtbot, tmp_path):
    assert window.stack.currentWidget() is window.welcome
    qtbot.mouseClick(window.welcome.sample_button, Qt.MouseButton.LeftButton)
    assert window.project is not None and window.project.root == (tmp_path / "Sample project").resolve()
    assert [d.name for d in window.project.datasets()] == ["sample"]
    assert window.current_page_title() == "New run"
    page = window.new_run_page
    assert page.method_name() == "simclr" and page.dataset_combo.currentData() == "sample"
    assert page.start_button.isEnabled(), page.error_label.text()
    assert "SimCLR" in page.method_box.title()
    # Sized to about five minutes on this machine, not a preset of its own (issue 16.2).
    qtbot.waitUntil(lambda: not page.sizing, timeout=120_000)
    assert page.budget_combo.currentData() == "5m" and page.budget_note.text().startswith("Sized for about 5 minutes")
    from studio.engine.device import resolve_device
    from studio.services.budget import DEVICE_BATCH

    kind = resolve_device("auto").device.type
    assert page.config().image_size == 32 and page.config().batch_size == min(DEVICE_BATCH[kind], 256)


def test_recent_projects_are_remembered_and_listed(window, qtbot, tmp_path):
    from studio.gui.main_window import MainWindow, recent_projects
    from studio.store import Project

    a, b = tmp_path / "alpha", tmp_path / "beta"
    for p in (a, b):
        Project.create(p).close()
    window.open_project(a)
    window.open_project(b)
    window.open_project(a)
    assert recent_projects() == [str(a.resolve()), str(b.resolve())]
    names = window.recent_menu_entries()
    assert names[:2] == ["alpha", "beta"]

    # A new window lists them on its welcome page; a click opens one.
    w2 = MainWindow()
    qtbot.addWidget(w2)
    assert w2.welcome.recent_paths() == [str(a.resolve()), str(b.resolve())]
    qtbot.mouseClick(w2.welcome.recent_buttons[1], Qt.MouseButton.LeftButton)
    assert w2.project is not None and w2.project.root == b.resolve()
    w2.close()


def test_dropping_a_folder_adds_it_as_a_dataset(window, qtbot, project, image_folder):
    window.open_project(project.root)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(image_folder))])
    enter = QDragEnterEvent(window.rect().center(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    window.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(window.rect().center()), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    window.dropEvent(drop)
    assert window.dataset_progress_bar.isVisible()  # adding runs on a worker, with a progress bar
    qtbot.waitUntil(lambda: "images" in window.panel.dataset_names(), timeout=WAIT_MS)
    record = project.dataset("images")
    assert (record.images, record.classes) == (12, 2)
    qtbot.waitUntil(lambda: not window.dataset_progress_bar.isVisible(), timeout=WAIT_MS)
    assert window.dataset_page.title_label.text() == "images"

    # A file (not a folder) is refused at the door.
    text = QMimeData()
    text.setUrls([QUrl.fromLocalFile(str(next(image_folder.rglob("*.png"))))])
    refused = QDragEnterEvent(window.rect().center(), Qt.DropAction.CopyAction, text, Qt.MouseButton.LeftButton,
                              Qt.KeyboardModifier.NoModifier)
    window.dragEnterEvent(refused)
    assert not refused.isAccepted()


def test_duplicate_prefills_the_form_with_the_runs_config(window, project, monkeypatch):
    from studio.engine.train import TrainConfig

    run = stored_run(project, batch_size=12, image_size=24, seed=7, lr=0.03, checkpoint_every=5,
                     method_config={"temperature": 0.2})
    window.open_project(project.root)
    window.panel.select_run(run.id)
    window.duplicate_action.trigger()
    assert window.current_page_title() == "New run"
    form = window.new_run_page.config()
    stored = TrainConfig.from_dict(run.config)
    for name in ("method", "backbone", "steps", "epochs", "batch_size", "image_size", "seed", "lr", "checkpoint_every",
                 "warmup_epochs", "device", "log_every"):
        assert getattr(form, name) == pytest.approx(getattr(stored, name)), name
    assert form.method_config["temperature"] == pytest.approx(0.2)
    # Started from here (Run ▸ Start on the New run page), the new run remembers its parent.
    import studio.gui.run_controller as rc

    monkeypatch.setattr(rc.RunController, "_launch", lambda *a, **k: None)  # the training itself is tested elsewhere
    import dataclasses

    window.new_run_page.set_config(dataclasses.replace(form, batch_size=16), dataset="sample", parent_run_id=run.id)
    before = {r.id for r in project.runs()}
    window.start_action.trigger()
    (new_id,) = {r.id for r in project.runs()} - before
    assert project.run(new_id).parent_run_id == run.id and project.run(new_id).config["batch_size"] == 16


def test_delete_run_asks_once_and_removes_the_run_and_its_files(window, project, monkeypatch):
    run = stored_run(project, checkpoint_steps=(10, 20))
    keep = stored_run(project)
    run_dir = project.run_dir(run.id)
    assert any(run_dir.iterdir())
    window.open_project(project.root)
    window.panel.select_run(run.id)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.Cancel)
    assert not window.delete_run(run.id)
    assert [r.id for r in project.runs()] == [run.id, keep.id] and run_dir.is_dir()
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.Yes)
    window.delete_action.trigger()
    assert len(asked) == 2 and f"run {run.id}" in asked[-1].lower()
    assert [r.id for r in project.runs()] == [keep.id]
    assert not run_dir.exists() and project.checkpoints(run.id) == []
    assert window.panel.run_ids() == [keep.id] and window.run_page.run_id == keep.id


def test_run_details_show_config_checkpoints_and_evaluations(window, project):
    run = stored_run(project, checkpoint_steps=(10, 20), batch_size=8)
    project.add_evaluation(run.id, "knn", {"knn_top1": 0.8125}, checkpoint_step=20, dataset_id=project.dataset("sample").id)
    window.open_project(project.root)
    window.panel.select_run(run.id)
    window.show_page("Run details")
    d = window.run_details
    text = d.config_view.toPlainText()
    assert "batch size" in text and " 8" in text and "temperature" in text
    # The form's words, and what special values mean rather than "monitor_every 0" or "amp True".
    assert "monitor every" in text and "each epoch" in text and "monitor_every" not in text
    amp = next(line for line in text.splitlines() if line.startswith("mixed precision"))
    assert amp.split(None, 2)[2] == "on where the device has it (CUDA, MPS)" and "True" not in text
    assert d.config_view.isReadOnly()
    assert [d.checkpoints_table.item(r, 0).text() for r in range(d.checkpoints_table.rowCount())] == ["20", "10"]
    assert d.evaluations_table.rowCount() == 1
    assert "knn_top1 0.8125" in d.evaluations_table.item(0, 3).text()
    # The last checkpoint ends the run: resuming from it is refused with a reason, no job starts.
    assert d.select_checkpoint(20)
    assert not d.resume_from_button.isEnabled() and "nothing to resume" in d.resume_from_button.toolTip()
    d.resume_from_button.click()
    assert not window.jobs
    # An earlier one can be resumed: the button says nothing against it.
    assert d.select_checkpoint(10)
    assert d.resume_from_button.isEnabled()


def test_about_lists_the_versions(window):
    import PySide6
    import torch

    from studio import __version__

    box = window.show_about()
    text = box.text()
    assert f"<b>{__version__}</b>" in text and torch.__version__ in text and PySide6.__version__ in text
    assert "CUDA" in text and "Qt" in text
    box.close()


def test_theme_switch_changes_the_palette_and_the_plots(window):
    app = QApplication.instance()
    assert window.set_theme("dark") is True
    dark_window = app.palette().color(QPalette.ColorRole.Window)
    assert dark_window.lightness() < 80
    assert window.run_page.loss_plot.backgroundBrush().color().lightness() < 80
    assert window.theme_actions["dark"].isChecked()
    assert window.set_theme("light") is False
    assert app.palette().color(QPalette.ColorRole.Window).lightness() > 200
    assert window.run_page.loss_plot.backgroundBrush().color().lightness() > 200
    assert window.theme() == "light"


def test_status_bar_device_notification_and_remembered_layout(window, qtbot, project):
    from studio.gui.main_window import MainWindow

    assert window.device_label.text().startswith("Device: CPU") or "GiB" in window.device_label.text()
    window.open_project(project.root)
    window.runs.finished.emit(42, {"status": "failed", "reason": "the loss became nan at step 3"})
    assert window.last_notification == ("Run 42 failed", "the loss became nan at step 3")
    assert "nan at step 3" in window.statusBar().currentMessage()

    window.splitter.setSizes([300, 800])
    before = window.splitter.sizes()
    window.save_layout()
    w2 = MainWindow()
    qtbot.addWidget(w2)
    assert w2.restore_layout()
    # The offscreen screen is 800 px wide, so Qt clamps the restored width; at the same width the
    # side panel gets its remembered share back.
    w2.open_project(project.root)
    w2.show()
    w2.resize(window.size())
    qtbot.waitUntil(lambda: w2.width() == window.width(), timeout=5000)
    w2.restore_layout()
    w2.resize(window.size())
    qtbot.waitUntil(lambda: w2.splitter.sizes()[0] == before[0], timeout=10_000)


def test_resume_follows_the_services_rule_and_says_why_not(window, qtbot, project):
    """Finished: Resume is off and its tooltip says why. Failed or diverged with a checkpoint:
    Resume is on (services.runs.can_resume); a diverged run warns as it starts again."""
    finished = stored_run(project, checkpoint_steps=(10,))
    window.open_project(project.root)
    window.panel.select_run(finished.id)
    assert not window.run_page.button_states()["resume"]
    assert "nothing to resume" in window.run_page.resume_button.toolTip()
    assert not window.resume_action.isEnabled() and "nothing to resume" in window.resume_action.toolTip()

    failed = stored_run(project, checkpoint_steps=(10,))
    project.set_run_status(failed.id, "failed", "the device ran out of memory")
    diverged = stored_run(project, checkpoint_steps=(10,))
    project.set_run_status(diverged.id, "diverged", "the loss became nan at step 11")
    window.refresh_now()
    window.panel.select_run(failed.id)
    assert window.run_page.button_states()["resume"] and window.resume_action.isEnabled()
    window.panel.select_run(diverged.id)
    assert window.run_page.button_states()["resume"]
    qtbot.mouseClick(window.run_page.resume_button, Qt.MouseButton.LeftButton)
    assert diverged.id in window.jobs  # a job of this window continues it
    assert "diverged" in window.statusBar().currentMessage() and "may diverge again" in \
        window.statusBar().currentMessage()
    # The checkpoint file of this test is no real checkpoint: the job ends, and the window says how.
    qtbot.waitUntil(lambda: diverged.id not in window.jobs, timeout=WAIT_MS)
    assert f"Run {diverged.id} " in window.statusBar().currentMessage()
    assert project.run(diverged.id).status not in ("queued", "running", "paused")
