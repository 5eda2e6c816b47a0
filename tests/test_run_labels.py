"""A run's name, notes and tags (schema 5), the filter that finds runs by them, and the run queue's
rules (services.labels), without Qt."""

from __future__ import annotations

import sqlite3

import pytest

from conftest import tiny_train_config


def test_a_run_is_named_noted_and_tagged_and_found_by_it(project):
    from studio.services.labels import parse_tags, run_matches, run_title
    from studio.services.training import create_run
    from studio.store import ProjectError

    a = create_run(project, "sample", tiny_train_config())
    b = create_run(project, "sample", tiny_train_config(method="byol"))
    assert run_title(a) == f"Run {a.id}: SimCLR on resnet18"
    project.label_run(a.id, name="  small lr  ", notes="lr 0.03\nloss flat", tags=parse_tags("ablation, lr , ablation,"))
    a = project.run(a.id)
    assert (a.name, a.notes, a.tags) == ("small lr", "lr 0.03\nloss flat", ("ablation", "lr"))
    assert run_title(a) == f"Run {a.id}: small lr"
    assert project.run_tags() == ["ablation", "lr"]
    assert run_matches(a, "ablation simclr") and not run_matches(b, "ablation")
    assert run_matches(b, "byol") and run_matches(b, f"#{b.id}") and run_matches(a, "#lr") and run_matches(b, "")
    project.label_run(a.id, name="")  # empty: back to unnamed; the rest kept
    a = project.run(a.id)
    assert a.name is None and a.tags == ("ablation", "lr")
    with pytest.raises(ProjectError, match="comma"):
        project.label_run(a.id, tags=["a,b"])
    with pytest.raises(ProjectError, match="at most 200"):
        project.label_run(a.id, name="x" * 201)
    with pytest.raises(ProjectError, match="no run 99"):
        project.label_run(99, name="x")


def test_the_queue_hands_out_its_runs_in_order_and_passes_over_what_left_it(project):
    from studio.services.labels import enqueue, next_in_queue, queue_words
    from studio.services.runs import can_delete

    first = enqueue(project, "sample", tiny_train_config())
    second = enqueue(project, "sample", tiny_train_config(method="byol"))
    third = enqueue(project, "sample", tiny_train_config(method="vicreg"))
    assert project.queued_run_ids() == [first.id, second.id, third.id]
    assert [project.queue_place(r.id) for r in (first, second, third)] == [1, 2, 3]
    assert queue_words(project) == f"3 runs wait in the queue ({first.id}, {second.id}, {third.id})"
    # A run waiting in the queue is held by no process: it may be deleted (it leaves the queue).
    assert can_delete(project.run(second.id))
    project.delete_run(second.id)
    project.set_run_status(first.id, "running")  # started by hand meanwhile
    assert next_in_queue(project).id == third.id  # first passed over (not queued now), second gone
    assert next_in_queue(project) is None and project.queued_run_ids() == [] and queue_words(project) == ""
    # A config the trainer would refuse is refused before it is queued.
    from studio.engine.errors import ConfigError

    with pytest.raises(ConfigError):
        enqueue(project, "sample", tiny_train_config(batch_size=0))
    assert project.queued_run_ids() == []


def test_an_older_project_gets_run_names_tags_and_the_queue(project):
    from studio.store import Project
    from studio.store.migrations import SCHEMA_VERSION
    from studio.services.training import create_run

    run = create_run(project, "sample", tiny_train_config())
    root = project.root
    project.close()
    with sqlite3.connect(str(root / "project.db")) as c:  # a schema-4 file: no such columns
        for column in ("name", "tags", "queue_position"):
            c.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        c.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    with Project.open(root) as p:
        assert p.meta("schema_version") == str(SCHEMA_VERSION) == "6"
        old = p.run(run.id)
        assert old.name is None and old.tags == () and old.queue_position is None
        p.label_run(run.id, name="kept", tags=["a"])
        assert p.run(run.id).tags == ("a",)
    assert (root / "project.db.bak-v4").is_file()
