"""Runs named, noted and tagged from the runs list's right-click menu, found with the filter, and
queued from the New run form to start when the run before them ends (issue 16, expected and
missing)."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from conftest import tiny_train_config  # noqa: E402

WAIT_MS = 90_000
pytestmark = pytest.mark.usefixtures("private_settings")


def test_the_right_click_menu_names_notes_and_tags_a_run_and_the_filter_finds_it(make_window, qtbot, project, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    from studio.services.training import create_run

    a = create_run(project, "sample", tiny_train_config())
    b = create_run(project, "sample", tiny_train_config(method="byol"))
    for r in (a, b):
        project.set_run_status(r.id, "finished", steps=6, total_steps=6)
    w = make_window(project.root)
    menu = w.run_context_menu(a.id)
    texts = [x.text() for x in menu.actions() if x.text()]
    assert texts[:3] == ["Re&name run…", "Run n&otes…", "Run &tags…"] and "E&valuate…" in texts
    assert w.shown_run_id() == a.id and w.rename_action.isEnabled()
    assert not w.start_queued_action.isEnabled()  # a finished run is not in the queue

    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a_, **k: ("warm-up test", True)))
    w.rename_action.trigger()
    qtbot.waitUntil(lambda: "warm-up test" in w.panel.run_text(a.id))
    assert w.run_page.title_label.text() == f"Run {a.id}: warm-up test"
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a_, **k: ("ablation, small lr", True)))
    w.tags_action.trigger()
    monkeypatch.setattr(QInputDialog, "getMultiLineText", staticmethod(lambda *a_, **k: ("lr 0.03: flat loss", True)))
    w.notes_action.trigger()
    qtbot.waitUntil(lambda: "#ablation #small lr" in w.panel.run_text(a.id))
    assert project.run(a.id).notes == "lr 0.03: flat loss"
    w.show_page("Run details")
    qtbot.waitUntil(lambda: "lr 0.03: flat loss" in w.run_details.notes_label.text())
    assert "#ablation" in w.run_details.notes_label.text()

    w.panel.runs_filter.setText("ablation")
    assert w.panel.visible_run_ids() == [a.id]
    w.panel.runs_filter.setText("byol")
    assert w.panel.visible_run_ids() == [b.id]
    w.panel.runs_filter.setText("nothing like it")
    assert w.panel.visible_run_ids() == [] and w.panel.no_runs_label.text() == "No run matches the filter."
    w.panel.runs_filter.clear()
    assert sorted(w.panel.visible_run_ids()) == [a.id, b.id]


def test_a_queued_run_starts_when_the_run_before_it_ends(make_window, qtbot, project):
    w = make_window(project.root)
    w.show_new_run("sample")
    page = w.new_run_page
    page.set_config(tiny_train_config(steps=500, batch_size=8))  # trains until stopped
    qtbot.mouseClick(page.start_button, Qt.MouseButton.LeftButton)
    first = next(iter(w.jobs))

    page.set_config(tiny_train_config(steps=3, batch_size=8))
    assert page.queue_button.isEnabled(), page.queue_button.toolTip()
    qtbot.mouseClick(page.queue_button, Qt.MouseButton.LeftButton)
    second = max(r.id for r in project.runs())
    assert second != first and list(w.jobs) == [first]  # it waits
    qtbot.waitUntil(lambda: "in the queue, next" in w.panel.run_text(second), timeout=WAIT_MS)
    assert project.run(second).status == "queued"

    qtbot.waitUntil(lambda: w.run_page.stop_button.isEnabled(), timeout=WAIT_MS)
    w.stop_run(first)
    qtbot.waitUntil(lambda: second in w.jobs, timeout=WAIT_MS)  # the queue took it
    qtbot.waitUntil(lambda: second not in w.jobs, timeout=WAIT_MS)
    assert project.run(first).status == "stopped"
    assert project.run(second).status == "finished" and project.run(second).steps == 3
    assert project.queued_run_ids() == []
