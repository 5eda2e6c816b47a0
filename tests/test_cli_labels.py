"""`ssl-studio label`, `runs --filter` and the run queue from the command line (`train --queue`,
`train --from-queue`), over services.labels (issue 16, expected and missing).

Commands run in-process (test_cli.run_cli); the queue's runs train for 3 steps on 16 images of
8 px ('small': on the sample, the health monitor's checks take most of a run), on the CPU."""

from __future__ import annotations

import json
import shutil
import signal

import pytest

from conftest import tiny_train_config, write_image_folder
from test_cli import one_json, run_cli

TINY = ["--image-size", "8", "--steps", "3", "--batch-size", "8", "--device", "cpu", "--log-every", "1"]
NEW = ["--dataset", "small", "--method", "simclr", "--backbone", "resnet18", *TINY]


@pytest.fixture
def small(project, tmp_path):
    """The project with 'small' beside the sample: 16 images of 8 px in two classes."""
    from studio.services.datasets import add_dataset

    add_dataset(project, str(write_image_folder(tmp_path / "small", per_class=8, size=8)), name="small")
    return project


def _tiny(**overrides):
    return tiny_train_config(**{"steps": 3, "batch_size": 8, "image_size": 8, **overrides})


def _stored(project, **overrides):
    from studio.services.training import create_run

    return create_run(project, "sample", _tiny(**overrides))


def test_label_names_notes_and_tags_a_run(project):
    run = _stored(project)
    root = project.root
    code, out, err = run_cli("label", root, run.id, "--name", "  warm-up test ", "--tags", "ablation, small lr",
                             "--add-tag", "keep", "--notes", "lr 0.03")
    assert code == 0, err
    assert out.splitlines()[:2] == [f"Run {run.id}: warm-up test", "tags: ablation, small lr, keep"]
    code, out, err = run_cli("label", root, run.id, "--remove-tag", "ablation", "--add-tag", "keep", "--json")
    assert code == 0 and one_json(out) == {"id": run.id, "name": "warm-up test", "notes": "lr 0.03",
                                           "tags": ["small lr", "keep"]}
    # --name '' clears the name (the title falls back to the method); the rest is kept
    code, out, _ = run_cli("label", root, run.id, "--name", "")
    assert code == 0 and out.splitlines()[0] == f"Run {run.id}: SimCLR on resnet18"
    assert project.run(run.id).name is None and project.run(run.id).tags == ("small lr", "keep")
    # no option: the labels shown, nothing changed
    assert run_cli("label", root, run.id, "--json")[1].strip() == json.dumps(
        {"id": run.id, "name": None, "notes": "lr 0.03", "tags": ["small lr", "keep"]})
    code, out, _ = run_cli("label", root, run.id, "--tags", "")
    assert code == 0 and "tags: none" in out and project.run(run.id).tags == ()


@pytest.mark.parametrize("argv, words", [
    (["--add-tag", "a,b"], "cannot hold a comma"),
    (["--name", "x" * 201], "at most 200 characters"),
    (["--name", "x"], "no run 99"),
])
def test_label_refusals_exit_1_with_one_line(project, argv, words):
    run = _stored(project)
    run_id = 99 if words.startswith("no run") else run.id
    code, out, err = run_cli("label", project.root, run_id, *argv)
    assert code == 1 and out == "" and words in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    assert project.run(run.id).name is None and project.run(run.id).tags == ()


def test_label_refused_in_a_read_only_project(project, monkeypatch):
    import studio.store.database as database

    run = _stored(project)
    monkeypatch.setattr(database, "writable", lambda db: False)  # as on a read-only file system
    code, _, err = run_cli("label", project.root, run.id, "--name", "x")
    assert code == 1 and "viewing only" in err and err.strip().splitlines()[-1].startswith("error: ")
    assert project.run(run.id).name is None


def test_runs_shows_names_and_tags_and_filters_as_the_gui_does(project):
    a = _stored(project)
    b = _stored(project, method="byol")
    project.label_run(a.id, name="small lr", tags=["ablation", "lr"])
    project.put_in_queue(b.id)
    code, out, err = run_cli("runs", project.root)
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split()[-3:] == ["loss", "name", "tags"]
    for column, cells in (("name", ("small lr", "-")), ("method", ("simclr", "byol")), ("tags", ("ablation, lr", "-"))):
        at = header.index(column)  # each column starts where its heading does
        assert [r[at:].split("  ")[0] for r in rows] == list(cells), column
    assert "queued (1)" in rows[1]

    rows = one_json(run_cli("runs", project.root, "--json")[1])["runs"]
    assert [(r["name"], r["tags"], r["notes"], r["queue_position"]) for r in rows] == [
        ("small lr", ["ablation", "lr"], None, None), (None, [], None, 1)]
    # the filter: services.labels.run_matches, every word somewhere in the run
    for words, ids in (("ablation simclr", [a.id]), ("byol", [b.id]), (f"#{b.id}", [b.id]), ("#lr", [a.id]),
                       ("ablation byol", [])):
        found = one_json(run_cli("runs", project.root, "--filter", words, "--json")[1])["runs"]
        assert [r["id"] for r in found] == ids, words
    code, out, err = run_cli("runs", project.root, "--filter", "nothing-like-it")
    assert code == 0 and out == "" and "no run matches 'nothing-like-it' (2 in all)" in err


def test_train_queue_then_from_queue_trains_them_in_order(small):
    project = small
    root = project.root
    code, out, err = run_cli("train", root, *NEW, "--queue")
    assert code == 0, err
    first = int(out.split()[1])
    assert out.startswith(f"run {first} queued (place 1): SimCLR on resnet18") and "--from-queue" in err
    code, out, err = run_cli("train", root, *NEW, "--method", "byol", "--queue", "--json")
    assert code == 0, err
    second = one_json(out)
    assert second == {"run_id": second["run_id"], "queued": True, "place": 2}
    assert project.queued_run_ids() == [first, second["run_id"]]
    assert all(r.status == "queued" and r.steps == 0 for r in project.runs())  # stored, not trained

    code, out, err = run_cli("train", root, "--from-queue", "--json")
    assert code == 0, err
    done = one_json(out)
    assert [(r["run_id"], r["status"], r["steps"]) for r in done["runs"]] == [
        (first, "finished", 3), (second["run_id"], "finished", 3)]
    assert done["failed"] == [] and done["still_queued"] == []
    assert done["runs"][0]["checkpoint"] == f"runs/{first}/last.ckpt"
    assert err.index(f"from the queue: run {first}") < err.index(f"from the queue: run {second['run_id']}")
    assert project.queued_run_ids() == [] and project.run(second["run_id"]).method == "byol"
    # an empty queue is nothing to do
    code, out, err = run_cli("train", root, "--from-queue")
    assert code == 0 and out == "" and "the queue is empty" in err


def test_from_queue_goes_on_past_a_failed_run_and_exits_1_naming_it(small, tmp_path):
    project = small
    from studio.services.datasets import add_dataset
    from studio.services.labels import enqueue

    images = write_image_folder(tmp_path / "gone", per_class=4, size=8)
    add_dataset(project, str(images), name="gone")
    lost, bad, good = (enqueue(project, name, _tiny()) for name in ("gone", "small", "small"))
    shutil.rmtree(images)  # the dataset's folder went away after the run was queued
    project.update_run(bad.id, config={**bad.config, "batch_size": 0})  # a stored config the trainer refuses

    code, out, err = run_cli("train", project.root, "--from-queue")
    assert code == 1
    assert f"run {good.id} finished at step 3" in out
    assert f"error: run {lost.id} failed" in err and f"error: run {bad.id} not started from the queue" in err
    last = err.strip().splitlines()[-1]
    assert last == f"error: 2 of the queue's runs did not end well: run {lost.id} failed, run {bad.id} not started"
    assert project.run(lost.id).status == "failed" and project.run(good.id).status == "finished"
    assert project.run(bad.id).status == "queued" and project.queued_run_ids() == []  # kept, out of the queue
    assert any("not started from the queue" in e.message for e in project.events(bad.id))


def test_ctrl_c_stops_the_run_under_way_and_leaves_the_rest_queued(small, monkeypatch):
    project = small
    from studio.cli.train import ProgressPrinter
    from studio.services.labels import enqueue

    first = enqueue(project, "small", _tiny(steps=40))
    rest = [enqueue(project, "small", _tiny()).id for _ in range(2)]
    seen = ProgressPrinter.on_metrics

    def ctrl_c_at_the_first_point(self, step, epoch, metrics):
        seen(self, step, epoch, metrics)
        if not getattr(self, "asked", False):
            self.asked = True
            signal.raise_signal(signal.SIGINT)  # caught by stop_on_signals: stop after this step

    monkeypatch.setattr(ProgressPrinter, "on_metrics", ctrl_c_at_the_first_point)
    code, out, err = run_cli("train", project.root, "--from-queue", "--json")
    assert code == 0, err
    done = one_json(out)
    assert [r["run_id"] for r in done["runs"]] == [first.id] and done["runs"][0]["status"] == "stopped"
    assert done["still_queued"] == rest == project.queued_run_ids()
    assert project.run(first.id).status == "stopped" and project.latest_checkpoint(first.id) is not None
    assert all(project.run(i).status == "queued" for i in rest)


@pytest.mark.parametrize("argv", [
    ["--queue", "--resume", "1"],
    ["--from-queue", "--method", "simclr"],
    ["--from-queue", "--run-id", "1"],
    ["--queue", "--from-queue"],
])
def test_queue_flags_with_options_that_pick_another_run_are_wrong_usage(project, argv):
    with pytest.raises(SystemExit) as usage:
        run_cli("train", project.root, *argv)
    assert usage.value.code == 2
    assert project.runs() == []
