"""Before Start, say what it will cost: a few real steps, measured, extrapolated, with warnings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

# The lightest CNN of the registry: the estimate's logic does not depend on the backbone.
LIGHT = "mobilenet_v3_small"


def tiny_images(n=40, size=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, size, size), dtype=np.uint8)


def test_estimate_measures_real_steps_extrapolates_and_warns():
    from conftest import tiny_train_config

    from studio.engine.train import build_method
    from studio.services.estimate import DAY_S, cost_warnings, estimate_cost

    cfg = tiny_train_config(backbone=LIGHT, steps=None, epochs=3, batch_size=8, image_size=16)
    est = estimate_cost(cfg, tiny_images(), steps=2)
    assert est.device == "cpu" and est.batch_size == 8 and est.measured_steps == 2
    assert est.seconds_per_step > 0 and est.peak_memory_bytes > 0
    assert est.steps_per_epoch == 40 // 8 and est.total_steps == 3 * 5
    assert est.seconds_per_epoch == pytest.approx(est.seconds_per_step * 5)
    assert est.total_seconds == pytest.approx(est.seconds_per_step * 15)
    # Weights, gradients and the optimiser's momentum at least, plus the activations.
    params = sum(p.numel() * 4 for p in build_method(cfg).parameters())
    assert est.peak_memory_bytes > 3 * params
    assert est.device_memory_bytes and est.fits and est.warnings == []

    # The same measurement for ten million epochs on a 1 MiB device: both warnings.
    huge = dataclasses.replace(est, total_steps=10**7 * 5, total_seconds=est.seconds_per_step * 5 * 10**7,
                               device_memory_bytes=2**20)
    assert huge.total_seconds > DAY_S and not huge.fits
    warnings = cost_warnings(huge)
    assert len(warnings) == 2 and "days" in warnings[0] and "would not fit" in warnings[1]


def test_the_new_run_page_shows_the_estimate_and_warns_for_a_huge_epoch_count(qtbot, project, tmp_path, monkeypatch):
    import studio.gui.main_window as mw

    ini = str(tmp_path / "settings.ini")
    monkeypatch.setattr(mw, "settings", lambda: QSettings(ini, QSettings.Format.IniFormat))
    w = mw.MainWindow()
    qtbot.addWidget(w)
    w.open_project(project.root)
    w.show_new_run("sample")
    page = w.new_run_page
    from conftest import tiny_train_config

    # The most epochs a run may have.
    page.set_config(tiny_train_config(backbone=LIGHT, steps=None, epochs=100_000, batch_size=8, image_size=16))
    assert page.estimate_button.isEnabled()
    page.estimate_button.click()
    assert not page.estimate_button.isEnabled() and "Measuring" in page.estimate_label.text()
    qtbot.waitUntil(lambda: page.estimate_result is not None, timeout=240_000)
    est = page.estimate_result
    assert est.seconds_per_step > 0 and est.steps_per_epoch == 1797 // 8
    assert est.total_steps == 100_000 * (1797 // 8)
    assert "per epoch" in page.estimate_label.text() and "CPU" in page.estimate_label.text()
    assert page.estimate_warning.isVisibleTo(page) and "days" in page.estimate_warning.text()
    # Changing the config makes the estimate stale: it is cleared, not left lying.
    page.batch_spin.setValue(16)
    assert page.estimate_result is None and not page.estimate_warning.isVisibleTo(page)
