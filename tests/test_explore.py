"""The Explorer's use cases without Qt: tags on a dataset's images (schema 3), a selection
exported as a dataset of the project."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from conftest import write_image_folder


@pytest.fixture
def folder_project(tmp_path):
    from studio.services.datasets import add_dataset
    from studio.store import Project

    folder = write_image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=5, size=8)
    p = Project.create(tmp_path / "proj")
    ds = add_dataset(p, str(folder), name="shapes")
    names = sorted(str(f) for f in folder.rglob("*.png"))
    yield p, ds, names
    p.close()


def test_tags_are_stored_per_dataset_image_and_colour_groups(folder_project):
    from studio.services.explore import UNTAGGED, tag_groups, tag_selection

    project, ds, names = folder_project
    assert tag_selection(project, ds.id, names, [0, 1, 2], "blurry") == 3
    assert tag_selection(project, ds.id, names, [2, 3], "blurry") == 1  # 2 had it already
    tag_selection(project, ds.id, names, [3, 9], "approved")
    assert project.image_tags(ds.id) == {"approved": [names[3], names[9]], "blurry": names[:4]}
    groups, group_names = tag_groups(project, ds.id, names)
    assert group_names == ["approved", "blurry", UNTAGGED]
    assert groups.tolist() == [1, 1, 1, 0, 2, 2, 2, 2, 2, 0]
    project.untag_images(ds.id, [names[0]], "blurry")
    assert names[0] not in project.image_tags(ds.id)["blurry"]
    from studio.store import ProjectError

    with pytest.raises(ProjectError, match="needs a name"):
        tag_selection(project, ds.id, names, [0], "  ")


def test_an_older_project_gets_the_tags_table(folder_project):
    from studio.store import Project
    from studio.store.migrations import SCHEMA_VERSION

    project, ds, names = folder_project
    root = project.root
    project.close()
    with sqlite3.connect(str(root / "project.db")) as c:
        c.execute("DROP TABLE image_tags")
        c.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with Project.open(root) as p:
        assert SCHEMA_VERSION >= 3 and p.meta("schema_version") == str(SCHEMA_VERSION)
        p.tag_images(ds.id, names[:2], "kept")
        assert p.image_tags(ds.id) == {"kept": names[:2]}
    assert (root / "project.db.bak-v2").is_file()


def test_a_selection_becomes_a_dataset_of_the_project(folder_project):
    from studio.services.explore import export_selection_dataset
    from studio.store import ProjectError

    project, ds, names = folder_project
    labels = np.array([0] * 5 + [1] * 5)
    new = export_selection_dataset(project, "picked", [1, 2, 7], names, labels, ["a", "b"])
    assert new.images == 3 and new.classes == 2 and new.class_names == ["a", "b"]
    assert not new.source.startswith("/")  # inside the project: stored relative
    folder = project.root / new.source
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png")) == ["a/001.png", "a/002.png", "b/002.png"]
    with pytest.raises(ProjectError, match="exists already"):
        export_selection_dataset(project, "picked", [1], names, labels, ["a", "b"])
    # Images that are no files (a built-in set's) are written from their pixels.
    pixels = np.random.default_rng(0).integers(0, 255, size=(4, 3, 8, 8), dtype=np.uint8)
    flat = export_selection_dataset(project, "from pixels", [0, 3], ["0", "1", "2", "3"], np.full(4, -1), [], pixels)
    assert flat.images == 2
