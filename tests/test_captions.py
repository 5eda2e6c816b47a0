"""Datasets with text: captions read from sidecars, captions.csv / .jsonl or class-name templates,
stored in the project with what could not be used, and loaded with the images for training."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from PIL import Image

from tests.conftest import write_image_folder

# Many scripts, markup, an emoji, right-to-left text: none of it may break import or training.
SCRIPTS = ["一只猫坐在垫子上", "Кошка сидит на коврике", "قطة تجلس على السجادة", "<b>a cat</b> &amp; <i>a mat</i>",
           "गलीचे पर बैठी बिल्ली 🐈", "Η γάτα κάθεται", "猫がマットに座っている", "[a](http://x) **cat** {class}"]


def _flat_folder(root, n=8, size=10):
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / f"img{i}.png")
    return root


def test_sidecar_captions_in_every_script_empty_missing_and_over_long(tmp_path):
    from studio.engine.data import FolderSource
    from studio.engine.data.captions import MAX_CAPTION_CHARS, read_captions

    root = _flat_folder(tmp_path / "imgs", n=11)
    (root / "img10.png").rename(root / "img_last.png")  # after img9 in the folder's order
    for i, text in enumerate(SCRIPTS):
        (root / f"img{i}.txt").write_text(text, encoding="utf-8")
    (root / "img8.txt").write_text("   \n")  # empty
    (root / "img9.txt").write_text("x" * 10_000)  # over-long; img_last has none
    caps = read_captions(FolderSource(root))
    assert caps.kind == "sidecar" and not caps.templated
    assert [c[0] for c in caps.by_image[:8]] == SCRIPTS
    assert caps.by_image[8] == [] and caps.by_image[10] == []
    assert caps.by_image[9] == ["x" * MAX_CAPTION_CHARS]
    reasons = dict(caps.issues)
    assert reasons["img8.png"] == "empty caption" and reasons["img_last.png"] == "no caption"
    assert "over-long caption (10,000 characters)" in reasons["img9.png"]
    assert caps.count == 9


def test_captions_csv_and_jsonl_allow_several_captions_and_report_bad_rows(tmp_path):
    from studio.engine.data import FolderSource
    from studio.engine.data.captions import read_captions

    root = write_image_folder(tmp_path / "csv", classes=("a", "b"), per_class=2)
    (root / "captions.csv").write_text('file,caption\na/000.png,"first, with a comma"\na/000.png,second\n'
                                       'b/001.png,"<p>b one</p>"\nnot-there.png,lost\n001.png,by its bare name? no: two 001\n',
                                       encoding="utf-8")
    caps = read_captions(FolderSource(root))
    assert caps.kind == "csv"
    assert caps.by_image == [["first, with a comma", "second"], [], [], ["<p>b one</p>"]]
    where = {w for w, _ in caps.issues}
    assert {"not-there.png", "001.png", "a/001.png", "b/000.png"} <= where  # 001.png names two images

    root = _flat_folder(tmp_path / "jsonl", n=3)
    (root / "captions.jsonl").write_text(json.dumps({"file": "img0.png", "caption": ["один", "二"]}) + "\n"
                                         + "{broken\n" + json.dumps({"file": "img2.png", "caption": ""}) + "\n",
                                         encoding="utf-8")
    caps = read_captions(FolderSource(root))
    assert caps.kind == "jsonl" and caps.by_image == [["один", "二"], [], []]
    reasons = dict(caps.issues)
    assert "not a JSON object" in reasons["captions.jsonl line 2"] and reasons["img2.png"] == "empty caption"
    assert reasons["img1.png"] == "no caption"


def test_class_folders_and_the_sample_get_templated_captions(tmp_path):
    from studio.engine.data import FolderSource, SampleSource
    from studio.engine.data.captions import read_captions
    from studio.engine.errors import ConfigError

    caps = read_captions(FolderSource(write_image_folder(tmp_path / "cls", classes=("red_fox", "owl"), per_class=2)),
                         templates=("a photo of a {class}.",))
    assert caps.templated and caps.by_image[0] == ["a photo of a owl."] and caps.by_image[3] == ["a photo of a red fox."]
    assert "templated" in caps.describe() and "not real captions" in caps.describe()
    sample = read_captions(SampleSource(limit=20))
    assert sample.templated and sample.count == 20 and len(sample.by_image[0]) == len(sample.templates) >= 2
    with pytest.raises(ConfigError, match="{class}"):
        read_captions(SampleSource(limit=5), templates=("no placeholder",))
    assert read_captions(FolderSource(_flat_folder(tmp_path / "flat", n=2))).kind == ""


def test_captions_are_stored_with_the_dataset_and_loaded_with_its_images(tmp_path):
    from studio.services.datasets import add_dataset, caption_issue_lines, load_images
    from studio.store import Project

    root = _flat_folder(tmp_path / "imgs", n=5)
    for i, text in enumerate(["un chat", "", "x" * 10_000, SCRIPTS[0]]):
        (root / f"img{i}.txt").write_text(text, encoding="utf-8")
    (root / "img3.png").write_bytes(b"not a png")  # unreadable: skipped, its caption unused
    with Project.create(tmp_path / "proj") as p:
        d = add_dataset(p, str(root), name="capt")
        assert d.skipped == 1 and d.caption_kind == "sidecar" and d.captions == 2
        assert p.dataset("capt").caption_issues == d.caption_issues
        assert {name for name, _ in d.caption_issues} == {"img1.png", "img2.png", "img4.png"}
        lines = caption_issue_lines(d)
        assert lines[0].startswith("captions: 2 of 4 images") and any("empty caption" in x for x in lines)
        data = load_images(p, d, 8)
        assert len(data) == 4 and [len(c) for c in data.captions] == [1, 0, 1, 0]
        assert data.captions[0] == ["un chat"] and len(data.captions[2][0]) == 1000
        s = add_dataset(p, "sample", name="sample")
        assert s.templated_captions and s.captions == 1797 and len(p.captions(s.id)["sample/0000.png"]) >= 2
        p.delete_dataset(d.id)
        assert p.captions(d.id) == {}


def test_a_schema_5_project_gets_caption_columns(tmp_path):
    from studio.store import Project

    with Project.create(tmp_path / "proj") as p:
        p.add_dataset(name="old", kind="sample", source="sample", images=3)
    db = tmp_path / "proj" / "project.db"
    with sqlite3.connect(str(db)) as c:
        for column in ("captions", "caption_kind", "caption_templates", "caption_issues"):
            c.execute(f"ALTER TABLE datasets DROP COLUMN {column}")
        c.execute("DROP TABLE image_captions")
        c.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    with Project.open(tmp_path / "proj") as p:
        old = p.dataset("old")
        assert old.captions == 0 and old.caption_kind == "" and p.captions(old.id) == {}
        p.set_captions(old.id, "template", [("sample/0000.png", "a photo of a 0.")], templates=["a photo of a {class}."])
        assert p.dataset("old").captions == 1 and p.dataset("old").templated_captions
