"""The Dataset side of the window (issue 16, expected and missing): the datasets list's menu
renames and removes, the Dataset page counts the images of each class and browses every image
by class, a page at a time, off the GUI thread."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QMessageBox  # noqa: E402

from conftest import write_image_folder  # noqa: E402

WAIT_MS = 30_000
pytestmark = pytest.mark.usefixtures("private_settings")


def uneven_folder(root, big: int = 5):
    """Classes a: 2 images, b: `big`, c: 3 (tiny PNGs)."""
    write_image_folder(root, classes=("a",), per_class=2, size=4, seed=1)
    write_image_folder(root, classes=("b",), per_class=big, size=4, seed=2)
    write_image_folder(root, classes=("c",), per_class=3, size=4, seed=3)
    return root


@pytest.fixture
def pets(tmp_path):
    """A project (closed) with the folder dataset 'pets' of uneven classes."""
    from studio.services.datasets import add_dataset
    from studio.store import Project

    root = tmp_path / "proj"
    with Project.create(root) as p:
        add_dataset(p, str(uneven_folder(tmp_path / "pets")), name="pets")
    return root


def action(menu, text):
    return next(a for a in menu.actions() if a.text() == text)


def test_the_datasets_menu_renames_and_every_view_follows(make_window, qtbot, pets, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    w = make_window(pets)
    qtbot.waitUntil(lambda: w.panel.dataset_names() == ["pets"], timeout=WAIT_MS)
    w.panel.select_dataset("pets")
    assert w.dataset_page.title_label.text() == "pets"
    menu = w.panel.dataset_menu("pets")
    assert [a.text() for a in menu.actions() if not a.isSeparator()] == ["New run on it…", "Rename…", "Remove…"]
    asked = []
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: (asked.append(a[2]), ("animals", True))[1])
    action(menu, "Rename…").trigger()
    assert asked and "pets" in asked[0]
    assert w.panel.dataset_names() == ["animals"]
    assert w.panel.datasets_list.item(0).text().startswith("animals")
    assert w.panel.selected_dataset_name() == "animals"  # kept selected through the rename
    assert w.dataset_page.title_label.text() == "animals"
    combo = w.new_run_page.dataset_combo
    assert [combo.itemData(i) for i in range(combo.count())] == ["animals"]
    from studio.store import Project

    with Project.open(pets) as p:
        assert [d.name for d in p.datasets()] == ["animals"]

    # a taken name is refused with the store's words, and nothing changes
    from studio.services.datasets import add_dataset

    add_dataset(w.project, "sample", name="sample")
    said = []
    monkeypatch.setattr("studio.gui.dataset_page.message_box", lambda _w, _t, text, question=False: said.append(text))
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("sample", True))
    assert not w.dataset_actions.rename("animals")
    assert said and "exists already" in said[0]
    qtbot.waitUntil(lambda: w.panel.dataset_names() == ["animals", "sample"], timeout=WAIT_MS)

    action(w.panel.dataset_menu("sample"), "New run on it…").trigger()
    assert w.current_page_title() == "New run" and w.new_run_page.dataset() == "sample"


def test_remove_from_the_menu_says_what_goes_and_takes_its_runs(make_window, qtbot, pets, monkeypatch):
    w = make_window(pets)
    p = w.project
    ds = p.dataset("pets")
    run = p.create_run(ds.id, "simclr", "resnet18", {"method": "simclr"}, total_steps=2)
    p.set_run_status(run.id, "stopped")
    (p.run_dir(run.id) / "step-1.ckpt").write_bytes(b"x")
    p.add_checkpoint(run.id, 1, 0.0, p.run_dir(run.id) / "step-1.ckpt")
    qtbot.waitUntil(lambda: w.panel.run_ids() == [run.id], timeout=WAIT_MS)
    w.panel.select_dataset("pets")
    asked = []

    def answer(_w, _title, text, question=False):
        asked.append(text)
        return QMessageBox.StandardButton.Cancel if len(asked) == 1 else QMessageBox.StandardButton.Yes

    monkeypatch.setattr("studio.gui.dataset_page.message_box", answer)
    action(w.panel.dataset_menu("pets"), "Remove…").trigger()  # asked, and the answer is Cancel
    assert w.panel.dataset_names() == ["pets"] and p.runs()
    question = asked[0]
    assert f"run {run.id} with its metrics, 1 checkpoint file and exports" in question
    assert f"runs/{run.id}" in question and "stay where they are" in question

    w.dataset_page.remove_button.click()  # the page's button asks the same; Yes
    assert len(asked) == 2 and asked[1] == question
    assert w.panel.dataset_names() == [] and w.panel.run_ids() == []
    assert p.runs() == [] and not (p.root / "runs" / str(run.id)).exists()
    assert len(list((pets.parent / "pets").rglob("*.png"))) == 10  # the images are the person's
    assert w.dataset_page.dataset is None and w.new_run_page.dataset_combo.count() == 0


def test_a_running_run_keeps_its_dataset(make_window, qtbot, pets, monkeypatch):
    w = make_window(pets)
    p = w.project
    run = p.create_run(p.dataset("pets").id, "simclr", "resnet18", {"method": "simclr"}, total_steps=2)
    said = []
    monkeypatch.setattr("studio.gui.dataset_page.message_box", lambda _w, _t, text, question=False: said.append(text))
    assert not w.dataset_actions.remove("pets")  # queued: a process is about to hold it
    assert len(said) == 1 and f"run {run.id} is queued" in said[0]
    assert [d.name for d in p.datasets()] == ["pets"]


# -- the Dataset page on its own ---------------------------------------------------------------------
@pytest.fixture
def page(qtbot):
    from studio.gui.dataset_page import DatasetPage

    page = DatasetPage()
    qtbot.addWidget(page)
    page.resize(900, 700)
    page.show()
    yield page
    page.shutdown()


def show(page, qtbot, project, name):
    page.set_project(project)
    page.show_dataset(project.dataset(name))
    qtbot.waitUntil(lambda: not page.browser.is_loading() and page.browser.src is not None, timeout=WAIT_MS)


def test_class_counts_largest_first_with_the_smallest_named(page, qtbot, pets):
    from studio.store import Project

    with Project.open(pets) as p:
        show(page, qtbot, p, "pets")
        assert page.counts_view.shown() == [("b", 5), ("c", 3), ("a", 2)]
        assert page.classes_label.text() == "3 classes · largest: b (5 images) · smallest: a (2 images)"
        qtbot.waitUntil(lambda: page.thumbnail_count() == 10, timeout=WAIT_MS)


def test_a_dataset_without_classes_says_so(page, qtbot, tmp_path):
    from studio.services.datasets import add_dataset
    from studio.store import Project

    flat = write_image_folder(tmp_path / "flat", classes=("all",), per_class=4, size=4)
    with Project.create(tmp_path / "proj") as p:
        add_dataset(p, str(flat), name="flat")
        show(page, qtbot, p, "flat")
        assert page.counts_view.shown() == []
        assert page.classes_label.text().startswith("No classes")
        assert page.captions_label.text().startswith("None. Image-text methods (CLIP) need them")
        assert not page.browser.class_combo.isEnabled()
        assert len(page.browser.shown()) == 4


def test_many_classes_show_the_largest_and_the_smallest(qtbot):
    from studio.gui.dataset_browser import COUNT_ROWS, ClassCountsView
    from studio.services.datasets import ClassCount

    view = ClassCountsView()
    qtbot.addWidget(view)
    rows = [ClassCount(f"k{i:02d}", 100 - i) for i in range(30)]
    view.set_counts(rows)
    shown = view.shown()
    assert len(shown) == COUNT_ROWS - 1 and shown[0] == ("k00", 100) and shown[-1] == ("k29", 71)


def test_the_browser_filters_by_class_and_pages(page, qtbot, tmp_path):
    from studio.gui.dataset_browser import BROWSER_PAGE
    from studio.services.datasets import add_dataset
    from studio.store import Project

    big = BROWSER_PAGE + 7  # class b fills a page and starts a second
    with Project.create(tmp_path / "proj") as p:
        add_dataset(p, str(uneven_folder(tmp_path / "imgs", big=big)), name="imgs")
        show(page, qtbot, p, "imgs")
        b = page.browser
        total = big + 5
        assert b.class_combo.itemText(0) == f"All classes ({total})"
        assert [b.class_combo.itemText(i) for i in range(1, 4)] == ["a (2)", "b (55)", "c (3)"]
        assert len(b.shown()) == BROWSER_PAGE and b.page_label.text().startswith("page 1 of 2")

        b.set_class("c")
        qtbot.waitUntil(lambda: not b.is_loading(), timeout=WAIT_MS)
        assert [cls for _name, cls in b.shown()] == ["c", "c", "c"]
        assert b.pages == 1 and not b.next_button.isEnabled()
        tip = b.grid.item(0).toolTip()
        assert "000.png" in tip and "class: c" in tip

        b.set_class("b")
        qtbot.waitUntil(lambda: not b.is_loading(), timeout=WAIT_MS)
        first = b.shown()
        assert len(first) == BROWSER_PAGE and {cls for _n, cls in first} == {"b"}
        b.next_button.click()
        b.prev_button.click()
        b.next_button.click()  # three pages asked for at once: only the last one is shown
        qtbot.waitUntil(lambda: not b.is_loading(), timeout=WAIT_MS)
        second = b.shown()
        assert b.page == 1 and len(second) == big - BROWSER_PAGE
        assert not set(second) & set(first)
        assert sorted(n for n, _ in first + second) == sorted(p_.as_posix() for p_ in (tmp_path / "imgs" / "b").glob("*.png"))
        assert b.page_label.text() == f"page 2 of 2  ·  images {BROWSER_PAGE + 1}–{big} of {big}"
        assert not b.next_button.isEnabled() and b.prev_button.isEnabled()


def test_the_page_says_where_captions_come_from_and_which_could_not_be_used(page, qtbot, tmp_path):
    from studio.services.datasets import add_dataset
    from studio.store import Project

    folder = write_image_folder(tmp_path / "capt", classes=("all",), per_class=3, size=4)
    (folder / "all" / "000.txt").write_text("<b>一只猫</b> on a mat", encoding="utf-8")
    (folder / "all" / "001.txt").write_text("", encoding="utf-8")
    with Project.create(tmp_path / "proj") as p:
        add_dataset(p, str(folder), name="capt")
        add_dataset(p, "sample", name="sample")
        show(page, qtbot, p, "capt")
        text = page.captions_label.text()
        assert text.startswith("captions: 1 of 3 images, from a .txt file beside each image")
        assert "all/001.png: empty caption" in text and "all/002.png: no caption" in text
        show(page, qtbot, p, "sample")
        assert "templated from the class names" in page.captions_label.text()
        assert "not real captions" in page.captions_label.text()


def test_captions_show_under_thumbnails_as_plain_text_with_a_length_histogram(page, qtbot, tmp_path):
    from studio.gui.dataset_browser import BROWSER_PX
    from studio.store import Project
    from studio.services.datasets import add_dataset

    folder = write_image_folder(tmp_path / "capt", classes=("all",), per_class=3, size=4)
    long = "一只猫 sits on a mat " * 40  # 800 characters: cut under the image, whole in the tip
    (folder / "all" / "000.txt").write_text(long, encoding="utf-8")
    (folder / "all" / "001.txt").write_text("<b>bold</b> & <i>not</i>", encoding="utf-8")
    (folder / "all" / "002.txt").write_text("a cat", encoding="utf-8")
    with Project.create(tmp_path / "proj") as p:
        add_dataset(p, str(folder), name="capt")
        show(page, qtbot, p, "capt")
        qtbot.waitUntil(lambda: page.thumbnail_count() == 3 and page.browser.grid.count() == 3, timeout=WAIT_MS)
        for grid in (page.thumbs, page.browser.grid):
            texts = [grid.item(i).text() for i in range(grid.count())]
            tips = [grid.item(i).toolTip() for i in range(grid.count())]
            assert texts[0].startswith("一只猫 sits") and texts[0].endswith("…") and len(texts[0]) < 40
            assert texts[1].startswith("<b>bold")  # markup is shown as typed (items are plain text)
            assert texts[2] == "a cat"
            assert long.strip() in tips[0].replace("<br>", "\n")  # the whole caption, escaped
            assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;i&gt;not&lt;/i&gt;" in tips[1]
        assert page.browser.grid.gridSize().height() > BROWSER_PX + 10  # room for the caption line
        assert page.caption_lengths_label.isVisible()
        bars = page.caption_lengths.shown()
        assert sum(n for _, n in bars) == 3 and bars[0][0].startswith("5–") and bars[0][1] == 2
        assert bars[-1][1] == 1 and bars[-1][0].endswith(f"{len(long.strip())}")  # "a cat", the tags, the long one

        add_dataset(p, "sample", name="sample")
        show(page, qtbot, p, "sample")
        qtbot.waitUntil(lambda: page.thumbnail_count() > 0, timeout=WAIT_MS)
        assert "templated from the class names" in page.captions_label.text()
        assert page.thumbs.item(0).text() == "a photo of a 0."
        # "a photo of a 0." (15), "a picture of a 0." (17), "an image of the 0." (18): one bar a length
        assert page.caption_lengths.shown() == [("15", 1797), ("16", 0), ("17", 1797), ("18", 1797)]
