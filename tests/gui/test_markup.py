"""Names people give (datasets, folders, files, projects) and reasons stored with runs are shown
as they are, never rendered as rich text: no heading, no colour, no live link (issue 20, item 9)."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtGui import Qt  # noqa: E402
from PySide6.QtWidgets import QLabel, QListWidget, QWidget  # noqa: E402

pytestmark = pytest.mark.usefixtures("private_settings")

EVIL = '<h1>BIG</h1><font color=red>RED</font><a href="https://example.org">link</a>'
EVIL_FILE = "<font color=red size=7>EVIL.png"  # no '/': a file name
EVIL_CLASS = "<b>cls"
EVIL_PROJECT = "<i>proj"
MARKERS = ("<h1>", "<font", "<b>cls", "<i>proj", "<a href")


def _renders_rich(text: str, fmt) -> bool:
    return fmt == Qt.TextFormat.RichText or (fmt == Qt.TextFormat.AutoText and Qt.mightBeRichText(text))


def markup_rendered(*tops: QWidget) -> list[str]:
    """Every label, tooltip and list tooltip of `tops` that would render a marker as rich text."""
    bad = []
    for top in tops:
        for label in [top, *top.findChildren(QLabel)]:
            if isinstance(label, QLabel) and any(m in label.text() for m in MARKERS) \
                    and _renders_rich(label.text(), label.textFormat()):
                bad.append(f"label {label.objectName() or type(label).__name__}: {label.text()!r}")
        for w in [top, *top.findChildren(QWidget)]:
            tips = [w.toolTip()]
            if isinstance(w, QListWidget):
                tips += [w.item(i).toolTip() for i in range(w.count())]
            for tip in tips:
                if any(m in tip for m in MARKERS) and Qt.mightBeRichText(tip):
                    bad.append(f"tooltip of {type(w).__name__}: {tip!r}")
    return bad


@pytest.fixture
def evil_project(tmp_path):
    """A project folder, dataset, class folder, skipped file and run reason all named with markup."""
    import numpy as np
    from PIL import Image

    from conftest import tiny_train_config

    from studio.services.datasets import add_dataset
    from studio.services.training import create_run
    from studio.store import Project

    images = tmp_path / "images"
    rng = np.random.default_rng(0)
    for cls in (EVIL_CLASS, "plain"):
        (images / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(images / cls / f"{i}.png")
    (images / "plain" / EVIL_FILE).write_bytes(b"not an image")
    p = Project.create(tmp_path / EVIL_PROJECT)
    record = add_dataset(p, str(images), name=EVIL)
    assert record.skipped == 1
    run = create_run(p, EVIL, tiny_train_config(steps=10))
    p.set_run_status(run.id, "running")
    p.add_metrics([(run.id, s, s / 10, "loss", 5.0 - 0.1 * s, time.time()) for s in range(1, 6)])
    ck = p.run_dir(run.id) / "step-5.ckpt"
    ck.parent.mkdir(parents=True, exist_ok=True)
    ck.write_bytes(b"x" * 1024)
    p.add_checkpoint(run.id, 5, 0.5, ck)
    p.set_run_status(run.id, "failed", f"could not read {EVIL}")
    yield p, run.id
    p.close()


def test_every_page_shows_markup_as_plain_text(make_window, qtbot, evil_project):
    project, run_id = evil_project
    w = make_window(project.root)
    assert markup_rendered(w) == []

    w.panel.select_dataset(EVIL)
    assert w.current_page_title() == "Dataset"
    page = w.dataset_page
    qtbot.waitUntil(lambda: page.thumbnail_count() > 0, timeout=30_000)
    texts = [label.text() for label in page.findChildren(QLabel)]
    assert EVIL in texts  # the title: the name as typed, shown
    assert any(EVIL_FILE in t for t in texts) and any(EVIL_CLASS in t for t in texts)
    assert markup_rendered(w) == []
    assert w.width() == 1200  # a long name wraps; it does not widen the window

    w.show_new_run(EVIL)
    assert w.new_run_page.dataset() == EVIL
    assert markup_rendered(w) == []

    w.panel.select_run(run_id)
    assert w.current_page_title() == "Run"
    qtbot.waitUntil(lambda: EVIL in w.run_page.findChild(QLabel, "ErrorText").text(), timeout=10_000)
    assert markup_rendered(w) == []
    for title in ("Run details", "Explorer", "Compare"):
        w.show_page(title)
        w.refresh_now()
        assert markup_rendered(w) == [], title

    dialog = w.open_export_dialog(run_id)
    assert any(EVIL in label.text() or "&lt;h1&gt;" in label.text() for label in dialog.findChildren(QLabel))
    assert markup_rendered(dialog) == []
    dialog.close()

    w.close_project()  # the welcome page lists the project by its folder's name
    assert markup_rendered(w) == []
    assert any(EVIL_PROJECT in b.text() for b in w.welcome.recent_buttons)
