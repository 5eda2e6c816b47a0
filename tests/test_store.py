"""The project database: round trips, live reading while a run writes, WAL, recovery of dead runs.

These use the store alone (no engine), as the GUI reading a project does."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from studio.store import Project, ProjectError, RunRecorder


@pytest.fixture
def store(tmp_path):
    p = Project.create(tmp_path / "proj")
    yield p
    p.close()


def _dataset(p: Project) -> int:
    return p.add_dataset(name="digits", kind="sample", source="sample", images=1797, classes=10,
                         class_names=[str(i) for i in range(10)]).id


def test_a_run_round_trips_through_the_database(store, tmp_path):
    ds = _dataset(store)
    config = {"method": "simclr", "backbone": "resnet18", "steps": 8, "method_config": {"temperature": 0.2}, "lr": None}
    run = store.create_run(ds, "simclr", "resnet18", config, total_steps=8)
    assert run.status == "queued" and run.dataset == "digits"
    store.set_run_status(run.id, "running")
    store.add_metrics([(run.id, s, s / 4, "loss", 5.0 - 0.1 * s, 1000.0 + s) for s in range(1, 9)])
    store.add_metrics([(run.id, s, s / 4, "lr", 0.01 * s, 1000.0 + s) for s in range(1, 9)])
    ck4 = store.run_dir(run.id) / "step-4.ckpt"
    ck8 = store.run_dir(run.id) / "last.ckpt"
    for path in (ck4, ck8):
        path.write_bytes(b"x")
    store.add_checkpoint(run.id, 4, 1.0, ck4)  # absolute paths in, relative paths stored
    store.add_checkpoint(run.id, 8, 2.0, ck8)
    store.add_checkpoint(run.id, 8, 2.0, ck8)  # last.ckpt rewritten: still one row
    store.update_run(run.id, steps=8, epochs=2, final_loss=4.2)
    store.set_run_status(run.id, "finished")
    store.close()

    with Project.open(tmp_path / "proj") as again:
        got = again.run(run.id)
        assert got.config == config
        assert (got.status, got.steps, got.total_steps, got.epochs, got.final_loss) == ("finished", 8, 8, 2, 4.2)
        assert got.started_at is not None and got.finished_at is not None and got.finished_at >= got.started_at
        assert got.pid == os.getpid()
        series = again.metric_series(run.id)
        assert series.names() == ["loss", "lr"]
        assert series.steps["loss"] == list(range(1, 9))
        assert series.values["loss"] == pytest.approx([5.0 - 0.1 * s for s in range(1, 9)])
        assert [c.path for c in again.checkpoints(run.id)] == [f"runs/{run.id}/step-4.ckpt", f"runs/{run.id}/last.ckpt"]
        assert again.latest_checkpoint(run.id).step == 8
        ck8.unlink()
        assert again.latest_checkpoint(run.id).path == f"runs/{run.id}/step-4.ckpt"  # only files on disk
        assert again.abs(f"runs/{run.id}/step-4.ckpt") == ck4
        assert [e.message for e in again.events(run.id)][-1] == "status: finished"
        again.truncate_metrics(run.id, 5)
        assert again.metric_series(run.id, ["loss"]).steps["loss"] == [1, 2, 3, 4, 5]


def test_opening_a_folder_that_is_not_a_project_says_so(tmp_path):
    with pytest.raises(ProjectError, match="ssl-studio init"):
        Project.open(tmp_path)


def test_a_reader_sees_points_while_a_writer_adds_them(store):
    run = store.create_run(_dataset(store), "simclr", "resnet18", {})
    recorder = RunRecorder(store, run.id, flush_interval=0.02)
    total = 300
    done = threading.Event()

    def write():
        recorder.on_start(SimpleNamespace(total_steps=total, device_name="CPU", start_step=0))
        for step in range(1, total + 1):
            recorder.on_metrics(step, step / 100, {"loss": 1.0 / step, "lr": 0.1})
            time.sleep(0.002)
        recorder.on_status("finished")
        recorder.on_end(SimpleNamespace(steps=total, epochs=3, final_loss=1.0 / total, images_per_s=10.0))
        done.set()

    reader = Project.open(store.root)  # a second connection, as the GUI opening a CLI run
    try:
        writer = threading.Thread(target=write)
        writer.start()
        seen: list[int] = []
        last_id, steps = 0, []
        while not done.is_set():
            chunk = reader.metric_series(run.id, ["loss"], after_id=last_id)
            last_id = chunk.last_id
            steps += chunk.steps.get("loss", [])
            seen.append(len(steps))
            time.sleep(0.01)
        writer.join()
        chunk = reader.metric_series(run.id, ["loss"], after_id=last_id)
        steps += chunk.steps.get("loss", [])
        partial = {n for n in seen if 0 < n < total}
        assert len(partial) >= 2, seen  # points arrived in several batches during the run
        assert steps == list(range(1, total + 1))  # each point once, in order, none lost
        final = reader.run(run.id)
        assert final.status == "finished" and final.steps == total and final.final_loss == pytest.approx(1.0 / total)
        assert recorder.error is None
    finally:
        reader.close()


def test_wal_mode_and_integrity(store):
    run = store.create_run(_dataset(store), "simclr", "resnet18", {})
    store.add_metrics([(run.id, 1, 0.0, "loss", 3.0, 0.0)])
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert store.db_path.name == "project.db" and store.db_path.parent == store.root


def test_a_run_left_running_by_a_dead_process_is_marked_interrupted(store):
    ds = _dataset(store)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = store.create_run(ds, "simclr", "resnet18", {})
    store.set_run_status(orphan.id, "running")
    store.update_run(orphan.id, pid=dead.pid)
    alive = store.create_run(ds, "simclr", "resnet18", {})
    store.set_run_status(alive.id, "running")  # this process, fresh heartbeat
    finished = store.create_run(ds, "simclr", "resnet18", {})
    store.set_run_status(finished.id, "finished")

    with Project.open(store.root) as again:
        assert again.run(orphan.id).status == "interrupted"
        assert "stopped unexpectedly" in again.run(orphan.id).reason
        assert again.run(alive.id).status == "running"
        assert again.run(finished.id).status == "finished"


def test_a_second_open_in_the_same_process_leaves_the_first_connection_seeing_other_writers(project):
    """Opening the project again here (its file checks included) must not drop the POSIX locks of
    the first connection: another process that writes and closes would then delete the WAL under
    it, and it would read a stale snapshot for ever (a GUI saw a run torchrun had finished as
    'queued')."""
    import subprocess
    import sys

    from conftest import tiny_train_config

    from studio.services.training import create_run
    from studio.store import Project

    run = create_run(project, "sample", tiny_train_config(steps=2))
    assert project.run(run.id).status == "queued"
    Project.open(project.root).close()  # e.g. a GUI task opening its own Project
    code = ("import sys; from studio.store import Project; p = Project.open(sys.argv[1]); "
            "p.set_run_status(int(sys.argv[2]), 'finished'); p.close()")
    subprocess.run([sys.executable, "-c", code, str(project.root), str(run.id)], check=True, timeout=120)
    assert project.run(run.id).status == "finished"
