"""After a collapse, the Run page offers to continue from the last healthy checkpoint with the
health monitor's suggested change (issue 21, item 4), and Run ▸ Continue with the suggested
change does the same; the new run starts, continues the old one and trains to its end."""

from __future__ import annotations

import pytest
from conftest import collapsed_run

pytest.importorskip("pytestqt")

pytestmark = pytest.mark.usefixtures("private_settings")


def test_a_collapsed_run_offers_its_change_and_continues_as_a_new_run(make_window, qtbot, project, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from studio.services.training import create_run
    from studio.engine.train import TrainConfig

    healthy = create_run(project, "sample", TrainConfig(method="simclr", backbone="resnet18", steps=5))
    project.set_run_status(healthy.id, "stopped", "stopped by the user")
    run = collapsed_run(project)
    w = make_window(project.root)
    w.panel.select_run(healthy.id)
    qtbot.waitUntil(lambda: w.run_page.run_id == healthy.id)
    assert not w.run_page.branch_button.isVisible() and not w.branch_action.isEnabled()
    assert "has not collapsed" in w.branch_action.toolTip()

    w.panel.select_run(run.id)
    qtbot.waitUntil(lambda: w.run_page.branch_button.isVisible(), timeout=5000)
    text = w.run_page.branch_button.text()
    assert text.startswith("Continue from before the collapse with learning rate ") and "→" in text
    assert w.branch_action.isEnabled()

    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.Yes)
    w.run_page.branch_button.click()
    assert "its last checkpoint before the collapse at step 12 (step 8)" in asked[0]
    new = max(project.runs(), key=lambda r: r.id)
    assert (new.parent_run_id, new.parent_step) == (run.id, 8)
    qtbot.waitUntil(lambda: project.run(new.id).status == "finished", timeout=120_000)
    assert project.run(new.id).steps == 20 and w.run_page.run_id == new.id
    assert project.run(run.id).status == "finished"  # the collapsed run stays as it was
