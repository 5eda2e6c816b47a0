"""Shared fixtures: offscreen Qt, CPU only, small data made here.

Each area keeps its own fixtures in its own test files; only what several areas use lives here.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def project(tmp_path):
    """A fresh project folder with the built-in sample as dataset 'sample'."""
    from studio.services.datasets import add_dataset
    from studio.store import Project

    p = Project.create(tmp_path / "proj")
    add_dataset(p, "sample", name="sample")
    yield p
    p.close()


def write_image_folder(root: Path, classes=("cats", "dogs"), per_class: int = 6, size: int = 12, seed: int = 0) -> Path:
    """A folder of small coloured PNGs in class sub-folders (labels)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for ci, name in enumerate(classes):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            arr[..., ci % 3] = 255 - 20 * ci
            Image.fromarray(arr).save(d / f"{i:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(tmp_path / "images")


@pytest.fixture(autouse=True)
def _garbage_collected_on_the_main_thread():
    """After a test, the objects it left in reference cycles are freed here, on the main (GUI)
    thread, not by a later test's worker thread (studio.gui.tasks.collect_garbage_on_gui_thread)."""
    yield
    if "PySide6.QtWidgets" in sys.modules:
        import gc

        gc.collect()


def tiny_train_config(**overrides):
    """A TrainConfig small enough for a 2-core CI: few steps, small images, small batch."""
    from studio.engine.train import TrainConfig

    base = dict(method="simclr", backbone="resnet18", steps=6, batch_size=32, image_size=16, device="cpu",
                warmup_epochs=0.0, log_every=1, seed=0)
    base.update(overrides)
    return TrainConfig(**base)


# -- a run that collapses, on stubs (continuing from before a collapse: test_branch, the GUI's) --
COLLAPSE_AT = 12  # the stub health monitor's verdict turns at this step


def collapsing_config(**overrides):
    """A TrainConfig for the collapse stubs below."""
    # Checkpoints by twentieths only (every step of 20), health checks every 4 steps.
    # A one-layer ViT-Tiny: checkpoints every step cost less than a ResNet's.
    return tiny_train_config(**{"image_size": 8, "batch_size": 4, "steps": 20, "checkpoint_minutes": 0.0,
                                "monitor_every": 4, "backbone": "vit_tiny",
                                "backbone_options": {"num_layers": 1, "patch_size": 4}, **overrides})


def health(collapse_at: int | None):
    def monitor(encoder, step):
        collapsed = collapse_at is not None and step >= collapse_at
        return {"collapse": float(collapsed), "embedding_std_ratio": 0.01 if collapsed else 0.5}
    return monitor


def ticking_clock():
    """Each reading a minute and a second later: every due check finds the automatic checkpoint's
    minimum interval passed."""
    return itertools.count(0.0, 61.0).__next__


def collapsed_run(project):
    """A finished run whose stub health monitor found it collapsing from step COLLAPSE_AT (issue
    21: continuing from before a collapse); its healthy checkpoint is step 8's."""
    from studio.engine.train import Trainer
    from studio.services.training import create_run, execute_run

    run = create_run(project, "sample", collapsing_config())

    def trainer(*args, **kwargs):
        return Trainer(*args, **{**kwargs, "monitors": [health(COLLAPSE_AT)], "clock": ticking_clock()})

    assert execute_run(project, run.id, trainer_factory=trainer).status == "finished"
    return project.run(run.id)


# -- the main window, for the GUI tests ----------------------------------------------------------
@pytest.fixture
def private_settings(tmp_path, monkeypatch):
    """Recent projects, 'last project', theme and geometry go to a file of the test, never the
    user's settings (GUI test modules use it for every test: pytestmark)."""
    from PySide6.QtCore import QSettings

    import studio.gui.main_window as mw

    path = str(tmp_path / "settings.ini")
    monkeypatch.setattr(mw, "settings", lambda: QSettings(path, QSettings.Format.IniFormat))


@pytest.fixture
def make_window(qtbot):
    """make(path=None): a shown main window (fast polling), on a project when given one. Every
    window's jobs are stopped at the end: no thread or child process outlives its test."""
    from studio.gui.main_window import MainWindow

    windows = []

    def make(path=None):
        w = MainWindow(poll_ms=150, curve_ms=150)
        qtbot.addWidget(w)
        windows.append(w)
        if path is not None:
            w.open_project(path)
        w.resize(1200, 760)
        w.show()
        return w

    yield make
    for w in windows:
        w.stop_all_jobs()
        assert not w.jobs


def fill_tiny_form(page, steps=500, batch=8, device="cpu"):
    """A New run form that trains in seconds on a CPU; many steps by default so that Stop comes
    first. device=None leaves the device choice as it is."""
    page.method_combo.setCurrentIndex(page.method_combo.findData("simclr"))
    page.backbone_combo.setCurrentIndex(page.backbone_combo.findData("resnet18"))
    page.length_unit.setCurrentIndex(page.length_unit.findData("steps"))
    page.length_spin.setValue(steps)
    page.batch_spin.setValue(batch)
    page.image_size_spin.setValue(16)
    if device is not None:
        page.device_combo.setCurrentIndex(page.device_combo.findData(device))
    page.warmup_spin.setValue(0.0)
    page.log_every_spin.setValue(1)
