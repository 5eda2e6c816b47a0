"""Issue 20: nothing a person does, and nothing the machine does, loses their work.

Each test here fails on the code before the fix and passes after it.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_train_config

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "studio", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env)


def _run_cli(*argv: str) -> tuple[int, str, str]:
    import contextlib
    import io

    from studio.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A project with one finished 4-step run that kept a checkpoint at step 2 and last.ckpt."""
    from studio.services.datasets import add_dataset
    from studio.services.training import create_run, execute_run
    from studio.store import Project

    root = tmp_path_factory.mktemp("faults")
    project = Project.create(root / "proj")
    add_dataset(project, "sample", name="sample")
    run = create_run(project, "sample", tiny_train_config(steps=4, batch_size=8, checkpoint_every=2, monitor_every=-1))
    assert execute_run(project, run.id).status == "finished"
    project.close()
    return root / "proj", run.id


# -- 1. exports never write over the project's files ----------------------------------------------
@pytest.mark.parametrize("target", ["project.db", "runs/{run}/last.ckpt", "cache"])
def test_export_never_writes_over_the_projects_own_files(trained, target):
    proj, run_id = trained
    out = proj / target.format(run=run_id)
    before = out.read_bytes() if out.is_file() else None
    code, stdout, err = _run_cli("export", str(proj), str(run_id), "--format", "torchvision", "--out", str(out),
                                 "--force", "--json")
    assert code == 1, err
    assert "project's own files" in err and stdout == ""
    if before is not None:
        assert out.read_bytes() == before
    assert sqlite3.connect(str(proj / "project.db")).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_export_over_an_existing_file_needs_force(trained, tmp_path):
    proj, run_id = trained
    out = tmp_path / "enc.pth"
    out.write_bytes(b"mine")
    code, _, err = _run_cli("export", str(proj), str(run_id), "--format", "torchvision", "--out", str(out))
    assert code == 1 and "--force" in err
    assert out.read_bytes() == b"mine"
    code, stdout, err = _run_cli("export", str(proj), str(run_id), "--format", "torchvision", "--out", str(out),
                                 "--force", "--json")
    assert code == 0, err
    assert out.read_bytes() != b"mine"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_existing_outputs_lists_what_an_export_would_replace(trained, tmp_path):
    from studio.engine.export import ExportError
    from studio.services.export import existing_outputs
    from studio.store import Project

    proj, run_id = trained
    (tmp_path / "enc.pth").write_bytes(b"x")
    with Project.open(proj) as project:
        assert existing_outputs(project, run_id, "torchvision", tmp_path / "enc.pth") == [tmp_path / "enc.pth"]
        assert existing_outputs(project, run_id, "torchvision", tmp_path / "other.pth") == []
        with pytest.raises(ExportError):
            existing_outputs(project, run_id, "torchvision", proj / "project.db")


# -- 3. a full disk ---------------------------------------------------------------------------------
def _full_disk_open(limit: int = 64_000):
    """`open` for the checkpoint writer whose files take `limit` bytes, then fail as a full disk
    does: torch.save itself meets the ENOSPC (and reports it its own way, 'unexpected pos')."""
    import io

    class FullFile(io.FileIO):
        def write(self, b):
            if self.tell() + len(b) > limit:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(b)

    def fake_open(path, mode="r", *args, **kwargs):
        if "w" in mode:
            return FullFile(path, "wb")
        return open(path, mode, *args, **kwargs)

    return fake_open


def test_torch_save_reports_a_full_disk_as_unexpected_pos_and_it_is_recognised(tmp_path, monkeypatch):
    import torch

    import studio.engine.train.checkpoint as ckpt
    from studio.engine.errors import DiskFullError

    with pytest.raises(RuntimeError, match="unexpected pos"):  # the form the writer must recognise
        with _full_disk_open(1000)(tmp_path / "raw", "wb") as f:
            torch.save({"w": torch.zeros(10_000)}, f)
    monkeypatch.setattr(ckpt, "open", _full_disk_open(), raising=False)
    with pytest.raises(DiskFullError, match="the disk is full"):
        ckpt.save_checkpoint(tmp_path / "step-2.ckpt", {"w": torch.zeros(100_000)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # no temporary file left


def test_disk_full_during_a_checkpoint_fails_the_run_and_train_json_still_prints(tmp_path, monkeypatch):
    from sqlalchemy.exc import OperationalError

    import studio.engine.train.checkpoint as ckpt
    from studio.store import Project

    proj = tmp_path / "p"
    assert _run_cli("init", str(proj))[0] == 0
    assert _run_cli("dataset", "add", str(proj), "sample")[0] == 0
    monkeypatch.setattr(ckpt, "open", _full_disk_open(), raising=False)

    def log_full(self, run_id, message, level="info"):  # the run's log cannot be written either
        raise OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))

    monkeypatch.setattr(Project, "log", log_full)
    code, stdout, err = _run_cli("train", str(proj), "--dataset", "sample", "--method", "simclr", "--backbone",
                                 "resnet18", "--steps", "4", "--batch-size", "8", "--image-size", "16", "--device",
                                 "cpu", "--checkpoint-every", "2", "--json")
    monkeypatch.undo()
    assert code == 1
    payload = json.loads(stdout)
    assert payload["status"] == "failed" and "the disk is full" in payload["reason"]
    assert "OperationalError" not in err and "unexpected pos" not in err
    with Project.open(proj) as p:
        (run,) = p.runs()
        assert run.status == "failed" and "the disk is full" in run.reason
        assert p.checkpoints(run.id) == []
    assert not [f for f in (proj / "runs").rglob("*") if ".tmp-" in f.name]


def test_a_checkpoint_is_refused_before_writing_when_the_disk_lacks_room(project, monkeypatch):
    import studio.engine.train.checkpoint as ckpt
    from studio.services.training import create_run, execute_run

    monkeypatch.setattr(ckpt, "free_space", lambda folder: 2**20)
    run = create_run(project, "sample", tiny_train_config(steps=4, batch_size=8, checkpoint_every=2))
    result = execute_run(project, run.id)
    assert result.status == "failed" and "the disk is full" in result.reason and "MB are free" in result.reason
    assert project.run(run.id).status == "failed"


def test_temporary_checkpoints_of_a_killed_writer_are_removed_when_the_project_opens(project):
    from studio.store import Project

    run_dir = project.root / "runs" / "1"
    run_dir.mkdir(parents=True, exist_ok=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = run_dir / f".step-4.ckpt.tmp-{dead.pid}"
    mine = run_dir / f".step-6.ckpt.tmp-{os.getpid()}"  # being written by this process now
    stale.write_bytes(b"partial")
    mine.write_bytes(b"partial")
    Project.open(project.root).close()
    assert not stale.exists() and mine.exists()


def _copy_project(trained, tmp_path) -> tuple[Path, int]:
    import shutil

    src, run_id = trained
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst, run_id


def _events(project, run_id) -> list[str]:
    return [e.message for e in project.events(run_id)]


# -- 4. one trainer per run -------------------------------------------------------------------------
def test_a_second_trainer_of_a_held_run_is_refused_and_a_dead_holders_lease_is_taken_over(trained, tmp_path):
    import time

    from studio.store import Project, RunHeldError

    proj, run_id = _copy_project(trained, tmp_path)
    with Project.open(proj) as p:
        p.set_run_status(run_id, "stopped", "stopped by the user")
        before = (p.run(run_id), _events(p, run_id))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from studio.store import Project; p = Project.open(sys.argv[1]); "
                               "p.lease_run(int(sys.argv[2])); print('held', flush=True); time.sleep(120)",
         str(proj), str(run_id)], stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        code, stdout, err = _run_cli("train", str(proj), "--resume", str(run_id), "--json")
        assert code == 1
        assert f"run {run_id} is being trained by another process (process {holder.pid}" in err
        with Project.open(proj) as p:
            assert p.run_is_held(run_id)
            assert (p.run(run_id), _events(p, run_id)) == before  # nothing changed
            with pytest.raises(RunHeldError):
                p.lease_run(run_id)
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    with Project.open(proj) as p:
        assert not p.run_is_held(run_id)
        p.lease_run(run_id).release()  # the dead process's lease is taken over


# -- 5. a checkpoint is checked against its run -------------------------------------------------------
def _stopped_at_step_2(trained, tmp_path):
    """A copy of the trained project whose run looks stopped at step 2 (last.ckpt gone)."""
    from studio.store import Project

    proj, run_id = _copy_project(trained, tmp_path)
    (proj / "runs" / str(run_id) / "last.ckpt").unlink()
    with Project.open(proj) as p:
        p.set_run_status(run_id, "stopped", "stopped by the user", steps=2)
    return proj, run_id


def _doctor(path: Path, **changes) -> None:
    import studio.engine.train.checkpoint as ckpt

    state = ckpt.load_checkpoint(path)
    for key, value in changes.items():
        if key.startswith("config."):
            state["config"][key[len("config."):]] = value
        else:
            state[key] = value
    ckpt.save_checkpoint(path, {k: v for k, v in state.items() if k not in ("format", "version")})


@pytest.mark.parametrize("changes, words", [
    ({"step": 10**9}, "outside this run's 0..4 steps"),
    ({"step": -5}, "outside this run's 0..4 steps"),
    ({"config.image_size": 100000}, "refuses"),
    ({"config.backbone": "mobilenet_v3_small"}, "belongs to another run"),
    ({"optimizer": {"state": {}, "param_groups": []}}, "could not be resumed"),  # passes the check, fails to load
])
def test_a_doctored_checkpoint_is_refused_and_a_failed_resume_leaves_the_run_as_it_was(trained, tmp_path, changes,
                                                                                         words):
    from studio.store import Project

    proj, run_id = _stopped_at_step_2(trained, tmp_path)
    _doctor(proj / "runs" / str(run_id) / "step-2.ckpt", **changes)
    with Project.open(proj) as p:
        before = (p.run(run_id), _events(p, run_id), p.metric_series(run_id).steps)
    code, stdout, err = _run_cli("train", str(proj), "--resume", str(run_id), "--json")
    assert code == 1 and words in err, err
    assert "resumed at step" not in err
    with Project.open(proj) as p:
        assert (p.run(run_id), _events(p, run_id), p.metric_series(run_id).steps) == before


def test_another_runs_checkpoint_is_neither_exported_nor_evaluated(trained, tmp_path):
    import shutil

    from studio.services.training import create_run
    from studio.store import Project

    proj, run_id = _copy_project(trained, tmp_path)
    with Project.open(proj) as p:
        other = create_run(p, "sample", tiny_train_config(backbone="mobilenet_v3_small", steps=4))
        target = p.run_dir(other.id) / "last.ckpt"
        shutil.copy(proj / "runs" / str(run_id) / "last.ckpt", target)
        p.add_checkpoint(other.id, 4, 1.0, target)
        p.update_run(other.id, status="stopped", total_steps=4)
    code, _, err = _run_cli("export", str(proj), str(other.id), "--format", "torchvision", "--out",
                            str(tmp_path / "x.pth"))
    assert code == 1 and "belongs to another run" in err and f"runs/{other.id}/last.ckpt" in err
    assert not (tmp_path / "x.pth").exists()
    code, _, err = _run_cli("eval", str(proj), str(other.id), "--knn", "--json")
    assert code == 1 and "belongs to another run" in err
    with Project.open(proj) as p:
        assert p.evaluations(other.id) == []


def test_cached_embeddings_are_keyed_by_the_checkpoints_content(trained, tmp_path):
    import numpy as np
    import torch

    from studio.services.evaluation import compute_embeddings
    from studio.store import Project

    proj, run_id = _copy_project(trained, tmp_path)
    with Project.open(proj) as p:
        first = compute_embeddings(p, run_id, checkpoint_step=4, device="cpu")
        again = compute_embeddings(p, run_id, checkpoint_step=4, device="cpu")
        assert again.record.id == first.record.id  # cached
        path = proj / "runs" / str(run_id) / "last.ckpt"
        import studio.engine.train.checkpoint as ckpt

        state = ckpt.load_checkpoint(path)
        state["model"] = {k: (v.flip(0) if k.startswith("backbone.") and v.dim() == 4 else v)
                          for k, v in state["model"].items()}
        ckpt.save_checkpoint(path, {k: v for k, v in state.items() if k not in ("format", "version")})
        replaced = compute_embeddings(p, run_id, checkpoint_step=4, device="cpu")
        assert replaced.record.id != first.record.id
        assert not np.allclose(replaced.vectors, first.vectors)



# -- 6. the project database -------------------------------------------------------------------------
def test_a_foreign_sqlite_file_is_refused_untouched(tmp_path):
    proj = tmp_path / "p"
    proj.mkdir()
    db = proj / "project.db"
    with sqlite3.connect(str(db)) as c:
        c.execute("CREATE TABLE recipes (id INTEGER PRIMARY KEY, name TEXT)")
        c.execute("INSERT INTO recipes (name) VALUES ('soup')")
    c.close()
    before = db.read_bytes()
    code, _, err = _run_cli("runs", str(proj))
    assert code == 1 and "not an SSL Studio project" in err and "Traceback" not in err
    assert db.read_bytes() == before and sorted(p.name for p in proj.iterdir()) == ["project.db"]
    with sqlite3.connect(str(db)) as c:  # another program's id is refused as well
        c.execute("PRAGMA application_id = 1234")
    code, _, err = _run_cli("runs", str(proj))
    assert code == 1 and "another program" in err


def test_an_empty_database_file_is_refused_not_adopted(tmp_path):
    proj = tmp_path / "p"
    proj.mkdir()
    (proj / "project.db").write_bytes(b"")
    code, _, err = _run_cli("runs", str(proj), "--json")
    assert code == 1 and "is empty" in err
    assert (proj / "project.db").stat().st_size == 0


def test_a_studio_project_carries_its_application_id_and_an_old_one_is_adopted(project):
    from studio.store import Project
    from studio.store.database import APPLICATION_ID, header

    project.close()
    assert header(project.db_path)[1] == APPLICATION_ID
    with sqlite3.connect(str(project.db_path)) as c:  # a project made before the id existed
        c.execute("PRAGMA application_id = 0")
    Project.open(project.root).close()
    assert header(project.db_path)[1] == APPLICATION_ID


def _garble(db: Path, offset: int, size: int = 16384) -> None:
    import random

    rng = random.Random(0)
    with open(db, "r+b") as f:
        f.seek(offset)
        f.write(bytes(rng.randrange(256) for _ in range(size)))


def test_a_damaged_database_is_found_on_open_and_repair_copies_out_what_can_be_read(trained, tmp_path):
    from studio.store import Project

    proj, run_id = _copy_project(trained, tmp_path)
    with Project.open(proj) as p:
        points = sum(len(v) for v in p.metric_series(run_id).steps.values())
        p.engine.dispose()
    with sqlite3.connect(str(proj / "project.db")) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    with sqlite3.connect(str(proj / "project.db")) as c:
        # A page of garbage over another table than the runs and their metrics (which this small
        # project keeps in a page or two, so a blind offset could wipe them all): the embeddings'.
        page_size = c.execute("PRAGMA page_size").fetchone()[0]
        root = c.execute("SELECT rootpage FROM sqlite_master WHERE name = 'embeddings'").fetchone()[0]
    c.close()
    _garble(proj / "project.db", (root - 1) * page_size, page_size)
    code, _, err = _run_cli("runs", str(proj))
    assert code == 1 and "is damaged" in err and "ssl-studio repair" in err and "Traceback" not in err
    code, stdout, err = _run_cli("repair", str(proj), "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert (proj / report["damaged"]).is_file()
    code, stdout, err = _run_cli("runs", str(proj), "--json")
    assert code == 0, err
    assert [r["id"] for r in json.loads(stdout)["runs"]] == [run_id]
    with Project.open(proj) as p:
        kept = sum(len(v) for v in p.metric_series(run_id).steps.values())
    assert kept == points, (report, points)


def test_a_bad_schema_version_is_a_clear_error(project):
    project.close()
    with sqlite3.connect(str(project.db_path)) as c:
        c.execute("UPDATE meta SET value = 'abc' WHERE key = 'schema_version'")
    c.close()
    code, _, err = _run_cli("runs", str(project.root))
    assert code == 1 and "schema version is 'abc'" in err and "ValueError" not in err


def test_a_read_only_project_opens_for_viewing(trained, tmp_path, monkeypatch):
    import studio.store.database as database
    from studio.store import Project, ProjectError

    proj, run_id = _copy_project(trained, tmp_path)
    monkeypatch.setattr(database, "writable", lambda db: False)  # as on a read-only file system
    code, stdout, err = _run_cli("runs", str(proj), "--json")
    assert code == 0, err
    assert json.loads(stdout)["runs"][0]["id"] == run_id and "read-only" in err
    with Project.open(proj) as p:
        assert p.read_only and p.run(run_id).status == "finished"
        with pytest.raises(ProjectError, match="read-only"):
            p.log(run_id, "hello")


# -- 7. input that should be refused ----------------------------------------------------------------
@pytest.mark.parametrize("extra, words", [
    (["--backbone", "vit_tiny", "--backbone-option", "patch_size=0"], "the patch size must be at least 1"),
    (["--backbone", "vit_tiny", "--backbone-option", "num_layers=-1"], "the number of layers must be at least 1"),
    (["--backbone", "vit_tiny", "--backbone-option", "patch_size=5"], "not a multiple of the patch size 5"),
    (["--backbone", "resnet18", "--backbone-option", "small_stem=maybe"], "the small stem must be true or false"),
    (["--backbone", "resnet18", "--set", "hidden_dim=1000000000"], "at most"),
    (["--backbone", "resnet18", "--weight-decay", "-1"], "at least 0"),
    (["--backbone", "resnet18", "--checkpoint-every", "-1"], "at least 0"),
    (["--backbone", "resnet18", "--seed", "99999999999999999999"], "at most"),
])
def test_out_of_bounds_settings_are_refused_and_create_no_run(project, extra, words):
    code, stdout, err = _run_cli("train", str(project.root), "--dataset", "sample", "--method", "simclr",
                                 "--steps", "2", "--image-size", "32", "--device", "cpu", *extra, "--json")
    assert code == 1 and words in err, err
    assert len(err.strip().splitlines()) == 1
    assert project.runs() == []


def test_backbone_options_describe_themselves_like_settings():
    from studio.engine.backbones import backbone_spec

    fields = {f.name: f for f in backbone_spec("vit_small").option_fields()}
    assert fields["patch_size"].min == 1 and fields["patch_size"].max == 64 and fields["patch_size"].optional
    assert backbone_spec("vit_small").check_options(32, {"patch_size": "8", "num_layers": "2"}) == {"patch_size": 8,
                                                                                                      "num_layers": 2}
    assert [f.name for f in backbone_spec("resnet50").option_fields()] == ["small_stem"]


# -- 10. folder scans ---------------------------------------------------------------------------------
def test_a_link_back_into_the_folder_a_loop_and_a_fifo_are_skipped_with_a_reason(tmp_path):
    import threading

    from conftest import write_image_folder

    from studio.engine.data import open_source

    root = write_image_folder(tmp_path / "imgs", per_class=4)  # 8 images, classes cats and dogs
    (root / "self").symlink_to(".")
    (root / "cats" / "up").symlink_to("..")
    (root / "dogs" / "loop.png").symlink_to("loop2.png")
    (root / "dogs" / "loop2.png").symlink_to("loop.png")
    os.mkfifo(root / "cats" / "pipe.png")
    outside = write_image_folder(tmp_path / "more", classes=("birds",), per_class=2)
    (root / "dogs" / "more").symlink_to(outside)  # a real folder elsewhere: followed, once
    (root / "cats" / "more-again").symlink_to(outside)

    result = {}
    worker = threading.Thread(target=lambda: result.update(info=open_source("folder", str(root)).verify()),
                              daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the scan blocked (on the FIFO?)"
    info = result["info"]
    assert info.class_names == ["cats", "dogs"] and info.images == 10  # 8 + the 2 behind the link, once
    reasons = {Path(name).name: why for name, why in info.skipped}
    assert "loop" in reasons["self"] and "loop" in reasons["up"]
    assert reasons["loop.png"] == "a symbolic link loop" and reasons["loop2.png"] == "a symbolic link loop"
    assert "FIFO" in reasons["pipe.png"]
    assert any("scanned already" in reasons.get(n, "") for n in ("more", "more-again"))


# -- 11. messages -----------------------------------------------------------------------------------
def test_the_diverged_reason_is_said_once_and_names_the_checkpoint_by_its_relative_path(project, monkeypatch):
    import torch

    from studio.engine.methods.simclr import SimCLR

    original = SimCLR.training_step

    def diverging(self, views, state):
        out = original(self, views, state)
        if state.step >= 2:
            out = {**out, "loss": out["loss"] * torch.tensor(float("nan"))}
        return out

    monkeypatch.setattr(SimCLR, "training_step", diverging)
    code, stdout, err = _run_cli("train", str(project.root), "--dataset", "sample", "--method", "simclr", "--backbone",
                                 "resnet18", "--steps", "6", "--batch-size", "8", "--image-size", "16", "--device",
                                 "cpu", "--checkpoint-every", "2", "--log-every", "1", "--json")
    assert code == 1
    payload = json.loads(stdout)
    assert payload["status"] == "diverged"
    assert err.count("the loss became") == 1, err
    assert str(project.root) not in err and str(project.root) not in payload["reason"]
    assert "runs/1/step-2.ckpt" in err
    assert str(project.root) not in project.run(payload["run_id"]).reason


def test_control_characters_from_file_names_never_reach_the_terminal(project, tmp_path):
    folder = tmp_path / "imgs"
    from conftest import write_image_folder

    write_image_folder(folder, per_class=2)
    (folder / "cats" / "\x1b[31mred\x1b[0m\x07.png").write_bytes(b"not an image")
    code, _, err = _run_cli("dataset", "add", str(project.root), str(folder), "--name", "esc")
    assert code == 0, err
    assert "red" in err and "\x1b" not in err and "\x07" not in err
