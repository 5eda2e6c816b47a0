"""The New run page's Budget: sized for the device and dataset from measured steps, with its
reasons shown, and what the person set left alone."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

pytestmark = pytest.mark.usefixtures("private_settings")


@pytest.fixture
def window(make_window, project):
    w = make_window(project.root)
    w.show_new_run("sample")
    return w


def _length(page):
    return page.length_spin.value(), page.length_unit.currentData()


def test_five_minutes_on_the_cpu_sizes_the_sample_run_and_says_why(qtbot, window):
    from studio.engine.train import TrainConfig

    page = window.new_run_page
    page.set_config(TrainConfig(method="simclr", backbone="resnet18", image_size=64, device="cpu"), dataset="sample")
    assert _length(page) == (100, "epochs") and page.batch_spin.value() == 256
    page.choose_budget("5m")
    assert page.busy() and "Sizing the run" in page.budget_note.text()
    qtbot.waitUntil(lambda: not page.sizing, timeout=120_000)
    note = page.budget_note.text()
    assert page.budget_combo.currentData() == "5m" and note.startswith("Sized for about 5 minutes")
    assert page.batch_spin.value() == 64 and page.image_size_spin.value() == 32 and "batch 64" in note
    config = page.config()
    assert config.steps is not None or config.epochs < 100  # shortened from the 100 epochs it had
    assert "s a step measured on CPU" in note

    # A setting the person changes is theirs: sizing for an hour keeps the batch they chose.
    page.batch_spin.setValue(16)
    page.choose_budget("1h")
    qtbot.waitUntil(lambda: not page.sizing, timeout=120_000)
    assert page.batch_spin.value() == 16 and page.config().batch_size == 16
    assert "batch 16" not in page.budget_note.text() and page.budget_note.text().startswith("Sized for about an hour")


def test_switching_the_dataset_clears_an_estimate_made_for_the_other_one(qtbot, window):
    page = window.new_run_page
    page.set_datasets(["sample", "other"])
    page.select_dataset("sample")
    page.estimate_result, page.estimate_result_config, page.estimate_result_dataset = object(), page.config(), "sample"
    page.validate()
    assert page.estimate_result is not None  # same config, same images: it still holds
    page.select_dataset("other")
    assert page.estimate_result is None and "Before you start" in page.estimate_label.text()
