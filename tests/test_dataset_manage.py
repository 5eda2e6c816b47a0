"""Renaming and removing datasets (issue 16, expected and missing): the rules in
services.datasets, and `ssl-studio dataset rename|remove` over them.

Runs here are stored, not trained: a run's rows, metric points, checkpoint files, exports,
embeddings and maps are written as the trainer and the exporter would write them, which is what
removal has to find and delete (or keep)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import write_image_folder
from test_cli import one_json, run_cli


@pytest.fixture
def folder_project(tmp_path):
    """A project with a folder dataset 'pets' (inside the project folder, as people do put
    it) and the sample, for the image folder's survival."""
    from studio.services.datasets import add_dataset
    from studio.store import Project

    p = Project.create(tmp_path / "proj")
    images = write_image_folder(p.root / "pets", classes=("cats", "dogs"), per_class=3, size=8)
    add_dataset(p, str(images), name="pets")
    add_dataset(p, "sample", name="sample")
    yield p
    p.close()


def stored_run(project, dataset: str, status: str = "finished", outside=None) -> int:
    """A run on `dataset` with everything a trained, evaluated, explored and exported run has."""
    ds = project.dataset(dataset)
    run = project.create_run(ds.id, "simclr", "resnet18", {"method": "simclr"}, total_steps=4)
    project.set_run_status(run.id, status)
    folder = project.run_dir(run.id)
    for step in (2, 4):
        (folder / f"step-{step}.ckpt").write_bytes(b"ckpt")
        project.add_checkpoint(run.id, step, 0.1, folder / f"step-{step}.ckpt")
    project.add_metrics([(run.id, s, 0.0, "loss", 1.0 / (s + 1), 0.0) for s in range(4)])
    emb = project.root / "embeddings" / f"run{run.id}-step4-dataset{ds.id}.npy"
    emb.parent.mkdir(exist_ok=True)
    np.save(emb, np.zeros((3, 2), np.float32))
    e = project.add_embedding(ds.id, emb, 3, 2, run_id=run.id, checkpoint_step=4)
    mp = emb.with_name(emb.stem + "-pca-x.npy")
    np.save(mp, np.zeros((3, 2), np.float32))
    project.add_embedding_map(e.id, "pca", {}, mp)
    project.add_evaluation(run.id, "knn", {"knn_top1": 0.5}, 4, ds.id)
    export = project.root / "exports" / f"run-{run.id}-step-4-torchscript"
    export.mkdir(parents=True)
    (export / "encoder.pt").write_bytes(b"x")
    (export / "card.json").write_text("{}")
    project.add_export(run.id, "torchscript", export / "encoder.pt", {})
    if outside is not None:
        outside.write_bytes(b"mine")
        project.add_export(run.id, "onnx", outside, {})
    return run.id


# -- services ---------------------------------------------------------------------------------------
def test_rename_keeps_the_runs_and_refuses_empty_and_taken_names(folder_project):
    from studio.services.datasets import rename_dataset
    from studio.store import ProjectError

    p = folder_project
    run_id = stored_run(p, "pets")
    d = rename_dataset(p, "pets", "  animals ")
    assert d.name == "animals" and d.id == p.dataset("animals").id
    assert p.run(run_id).dataset == "animals"  # runs refer to it by id and follow
    assert [x.name for x in p.datasets()] == ["animals", "sample"]
    with pytest.raises(ProjectError, match="exists already"):
        rename_dataset(p, "animals", "sample")
    with pytest.raises(ProjectError, match="needs a name"):
        rename_dataset(p, "animals", "   ")
    with pytest.raises(ProjectError, match="no dataset 'pets'"):
        rename_dataset(p, "pets", "x")
    assert rename_dataset(p, "animals", "animals").name == "animals"  # its own name is no clash
    assert [x.name for x in p.datasets()] == ["animals", "sample"]


def test_remove_is_refused_while_runs_use_it_and_names_them(folder_project):
    from studio.engine.errors import DatasetError
    from studio.services.datasets import can_remove_dataset, remove_dataset, removal_plan

    p = folder_project
    a, b = stored_run(p, "pets"), stored_run(p, "pets")
    plan = removal_plan(p, "pets")
    assert plan.run_ids == [a, b] and plan.checkpoints == 4
    verdict = can_remove_dataset(p, plan)
    assert not verdict and f"runs {a} and {b}" in verdict.reason
    with pytest.raises(DatasetError, match=f"runs {a} and {b}"):
        remove_dataset(p, "pets")
    assert [d.name for d in p.datasets()] == ["pets", "sample"]
    assert len(p.runs()) == 2 and (p.root / "runs" / str(a) / "step-2.ckpt").is_file()
    # a run this front door trains (busy) or a process holds is refused even with its runs
    assert "stop it first" in can_remove_dataset(p, plan, with_runs=True, busy=lambda i: i == b).reason
    p.set_run_status(a, "running")
    assert not can_remove_dataset(p, removal_plan(p, "pets"), with_runs=True)


def test_remove_with_runs_deletes_their_rows_and_files_and_keeps_the_images(folder_project, tmp_path):
    from studio.services.datasets import remove_dataset, removal_plan

    p = folder_project
    mine = tmp_path / "my-encoder.onnx"  # an export the person saved outside the project
    run_id = stored_run(p, "pets", outside=mine)
    other = stored_run(p, "sample")  # another dataset's run: untouched
    p.tag_images(p.dataset("pets").id, ["pets/cats/000.png"], "blurry")
    plan = removal_plan(p, "pets")
    assert "run " + str(run_id) in plan.summary() and "pets stay where they are" in plan.summary()
    assert str(mine) in plan.kept

    done = remove_dataset(p, "pets", with_runs=True)
    assert done.run_ids == [run_id] and done.embeddings == 1 and done.evaluations == 1 and done.tags == 1
    assert [d.name for d in p.datasets()] == ["sample"]
    assert [r.id for r in p.runs()] == [other]
    assert p.metric_series(run_id, ["loss"]).steps.get("loss", []) == []
    assert p.checkpoints(run_id) == [] and p.exports(run_id) == [] and p.embeddings(run_id) == []
    assert all(e.run_id != run_id for e in p.evaluations())
    assert not (p.root / "runs" / str(run_id)).exists()
    assert not (p.root / "exports" / f"run-{run_id}-step-4-torchscript").exists()
    assert not list((p.root / "embeddings").glob(f"run{run_id}-*"))
    # what was not the dataset's stays: the images, the other run's files, the person's export
    assert sorted(x.name for x in (p.root / "pets" / "cats").iterdir()) == ["000.png", "001.png", "002.png"]
    assert len(list((p.root / "pets").rglob("*.png"))) == 6
    assert (p.root / "runs" / str(other) / "step-4.ckpt").is_file() and p.checkpoints(other)
    assert list((p.root / "embeddings").glob(f"run{other}-*"))
    assert mine.read_bytes() == b"mine"


def test_deleting_a_run_deletes_the_files_its_rows_refer_to_inside_the_project_only(folder_project, tmp_path):
    """Project.delete_run asks the rule dataset removal asks (store.run_files): its folder, its
    embeddings and maps, its exports inside the project go; a person's export elsewhere, a
    dataset's images and another run's files stay."""
    p = folder_project
    mine = tmp_path / "my-encoder.onnx"
    run_id = stored_run(p, "pets", outside=mine)
    other = stored_run(p, "pets")
    beside = p.root / "exports" / "picked" / "enc.pt"  # an export saved as a file inside the project
    beside.parent.mkdir(parents=True)
    for path in (beside, beside.with_name("enc.card.json"), beside.with_name("enc.README.md")):
        path.write_text("x")
    p.add_export(run_id, "torchscript", beside, {})
    emb = p.embeddings(run_id)[0]
    into_images = p.root / "pets" / "cats" / "000.png"  # a row that points at an image: never deleted
    p.add_export(run_id, "onnx", into_images, {})

    deleted = p.delete_run(run_id)
    assert [r.id for r in p.runs()] == [other]
    assert not (p.root / "runs" / str(run_id)).exists()
    assert not p.abs(emb.path).exists() and not list((p.root / "embeddings").glob(f"run{run_id}-*"))
    assert not (p.root / "exports" / f"run-{run_id}-step-4-torchscript").exists()
    assert not any(beside.parent.iterdir())
    assert f"runs/{run_id}" in deleted and emb.path in deleted
    assert mine.read_bytes() == b"mine" and into_images.is_file()
    assert len(list((p.root / "pets").rglob("*.png"))) == 6
    assert (p.root / "runs" / str(other) / "step-4.ckpt").is_file()
    assert list((p.root / "embeddings").glob(f"run{other}-*"))
    assert (p.root / "exports" / f"run-{other}-step-4-torchscript" / "encoder.pt").is_file()


def test_a_file_another_run_refers_to_stays_when_a_run_is_deleted(folder_project):
    p = folder_project
    a, b = stored_run(p, "sample"), stored_run(p, "sample")
    shared = p.root / "exports" / "encoder.onnx"  # b's export wrote over a's
    shared.write_bytes(b"b")
    p.add_export(a, "onnx", shared, {})
    p.add_export(b, "onnx", shared, {})
    p.delete_run(a)
    assert shared.read_bytes() == b"b"
    p.delete_run(b)
    assert not shared.exists()


def test_the_files_an_export_writes_beside_itself_are_the_ones_deletion_knows(folder_project):
    from studio.engine.export.embeddings import index_path_for
    from studio.services.export import resolve_output
    from studio.store.run_files import EXPORT_COMPANIONS, export_files

    p = folder_project
    target = p.root / "mine" / "enc.onnx"
    main, card, readme = resolve_output(p, 1, None, "onnx", target)
    known = export_files(p, p.rel(main), 1)
    assert {card, readme, index_path_for(main)} <= set(known) and len(known) == 1 + len(EXPORT_COMPANIONS)


def test_class_counts_and_the_images_of_a_class(tmp_path):
    from studio.engine.data import open_source
    from studio.services.datasets import class_counts, image_indices

    root = write_image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=2, size=4)
    write_image_folder(root, classes=("c",), per_class=5, size=4)
    src = open_source("folder", str(root))
    assert [(c.name, c.images) for c in class_counts(src)] == [("c", 5), ("a", 2), ("b", 2)]
    assert [src.name(i).split("/")[-2] for i in image_indices(src, "b")] == ["b", "b"]
    assert len(image_indices(src)) == 9 and len(image_indices(src, "zebra")) == 0
    flat = tmp_path / "flat"
    write_image_folder(flat, classes=("only",), per_class=3, size=4)  # one sub-folder: no classes
    assert class_counts(open_source("folder", str(flat))) == []


# -- the command line -----------------------------------------------------------------------------------
def test_cli_dataset_rename_and_remove(folder_project, tmp_path):
    p = folder_project
    root = p.root
    run_id = stored_run(p, "pets")
    code, out, err = run_cli("dataset", "rename", root, "pets", "animals", "--json")
    assert code == 0, err
    assert one_json(out) == {"name": "animals", "was": "pets"}
    code, out, err = run_cli("dataset", "rename", root, "animals", "sample")
    assert code == 1 and err.startswith("error: ") and "exists already" in err and len(err.strip().splitlines()) == 1

    code, out, err = run_cli("dataset", "remove", root, "animals")
    assert code == 1 and f"run {run_id}" in err and "--with-runs" in err
    code, out, err = run_cli("dataset", "list", root, "--json")
    assert [d["name"] for d in one_json(out)["datasets"]] == ["animals", "sample"]

    code, out, err = run_cli("dataset", "remove", root, "animals", "--with-runs", "--json")
    assert code == 0, err
    result = one_json(out)
    assert result["removed"] == "animals" and result["runs"] == [run_id]
    assert f"runs/{run_id}" in result["files"] and result["kept"] == []
    assert all(not f.startswith("pets") for f in result["files"])
    code, out, err = run_cli("dataset", "list", root, "--json")
    assert [d["name"] for d in one_json(out)["datasets"]] == ["sample"]
    assert len(list((root / "pets").rglob("*.png"))) == 6

    code, out, err = run_cli("dataset", "remove", root, "sample")
    assert code == 0 and "removed dataset 'sample'" in err
    code, out, err = run_cli("dataset", "remove", root, "sample")
    assert code == 1 and "no dataset 'sample'" in err
