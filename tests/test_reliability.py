"""Faults, bad input and shared projects (issue 8): nothing that happens loses work or runs code."""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_train_config

ROOT = Path(__file__).resolve().parent.parent


def _integrity(db: Path) -> str:
    with sqlite3.connect(str(db)) as c:
        return c.execute("PRAGMA integrity_check").fetchone()[0]


def _cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studio", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


# -- killed mid-run -------------------------------------------------------------------------------
def test_sigkill_mid_run_leaves_a_sound_database_and_the_run_resumes_from_its_checkpoint(tmp_path):
    from studio.store import Project

    proj = tmp_path / "p"
    assert _cli("init", str(proj)).returncode == 0
    assert _cli("dataset", "add", str(proj), "sample").returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio", "train", str(proj), "--dataset", "sample", "--method", "simclr",
         "--backbone", "resnet18", "--steps", "400", "--batch-size", "16", "--image-size", "16",
         "--device", "cpu", "--checkpoint-every", "3", "--json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not list((proj / "runs").glob("*/step-6.ckpt")):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        assert list((proj / "runs").glob("*/step-6.ckpt")), "no checkpoint appeared in time"
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    assert _integrity(proj / "project.db") == "ok"
    with Project.open(proj) as p:
        (run,) = p.runs()
        assert run.status == "interrupted"
        ck = p.latest_checkpoint(run.id)
        assert ck is not None and ck.step >= 6 and ck.step % 3 == 0
        resume_step = ck.step

    # resume, and let it run a few steps past the checkpoint before stopping it cleanly
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio", "train", str(proj), "--resume", str(run.id), "--json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.time() + 180
        target = resume_step + 3
        while time.time() < deadline and not (proj / "runs" / str(run.id) / f"step-{target}.ckpt").exists():
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    result = json.loads(out)
    assert result["status"] == "stopped", err
    assert result["steps"] >= resume_step + 3

    with Project.open(proj) as p:
        steps, _ = p.metric_curve(run.id, "loss", max_points=100_000)
        assert steps == sorted(set(steps)), "a resumed run drew some steps twice"
        assert steps[0] == 1 and steps[-1] == result["steps"]
        assert steps == list(range(1, result["steps"] + 1))
        assert p.run(run.id).status == "stopped"


def test_a_checkpoint_killed_while_being_written_leaves_the_previous_one_whole(tmp_path):
    from studio.engine.train.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "last.ckpt"
    save_checkpoint(path, {"step": 1, "model": {"w": torch.ones(3)}})
    script = (
        "import sys, torch; from studio.engine.train.checkpoint import save_checkpoint\n"
        f"save_checkpoint({str(path)!r}, {{'step': 2, 'model': {{'w': torch.zeros(150_000_000)}}}})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not list(tmp_path.glob(".last.ckpt.tmp-*")):
            time.sleep(0.01)
        assert list(tmp_path.glob(".last.ckpt.tmp-*")), "the writer never started"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    state = load_checkpoint(path)
    assert state["step"] == 1
    assert torch.equal(state["model"]["w"], torch.ones(3))


# -- bad images -----------------------------------------------------------------------------------
def test_awkward_images_are_read_or_skipped_with_their_name_and_reason(tmp_path, capsys):
    from PIL import Image

    from studio.cli import main

    folder = tmp_path / "awkward"
    folder.mkdir()
    Image.new("1", (20_000, 20_000)).save(folder / "bomb.png")  # 400 M pixels: a decompression bomb
    Image.fromarray(np.full((6, 6), 40_000, dtype=np.uint16)).save(folder / "deep.png")  # 16-bit
    Image.new("CMYK", (6, 6), (0, 255, 255, 0)).save(folder / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: a 8 x 4 picture is shown 4 x 8
    Image.new("RGB", (8, 4), (10, 200, 10)).save(folder / "rotated.jpg", exif=exif)
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("not an image")

    from studio.engine.data import FolderSource

    src = FolderSource(folder)
    by_name = {Path(src.name(i)).name: i for i in range(len(src))}
    assert src.load(by_name["rotated.jpg"]).size == (4, 8)
    deep = np.asarray(src.load(by_name["deep.png"]))
    assert deep.shape == (6, 6, 3) and 150 < deep.mean() < 160  # 40000/65535 of white
    cmyk = np.asarray(src.load(by_name["cmyk.jpg"]))
    assert cmyk.shape == (6, 6, 3) and cmyk[..., 0].mean() > 200 and cmyk[..., 1].mean() < 60  # red stays red

    proj = tmp_path / "p"
    assert main(["init", str(proj)]) == 0
    capsys.readouterr()
    assert main(["dataset", "add", str(proj), str(folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == 3 and out["skipped"] == 3
    reasons = {Path(f["file"]).name: f["reason"] for f in out["skipped_files"]}
    assert set(reasons) == {"bomb.png", "empty.png", "notes.jpg"}
    assert "decompression bomb" in reasons["bomb.png"]
    assert reasons["notes.jpg"] == "not an image"


# -- out of memory, disk full ---------------------------------------------------------------------
def test_out_of_memory_fails_the_run_with_advice_and_the_next_run_works(project, monkeypatch):
    from studio.engine.methods.simclr import SimCLR
    from studio.services.training import create_run, execute_run

    real_step = SimCLR.training_step

    def oom(self, views, state):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(SimCLR, "training_step", oom)
    run = create_run(project, "sample", tiny_train_config(steps=3))
    result = execute_run(project, run.id)
    assert result.status == "failed"
    assert "smaller batch" in result.reason
    stored = project.run(run.id)
    assert stored.status == "failed" and "out of memory" in stored.reason

    monkeypatch.setattr(SimCLR, "training_step", real_step)
    run2 = create_run(project, "sample", tiny_train_config(steps=3))
    assert execute_run(project, run2.id).status == "finished"
    assert project.run(run2.id).status == "finished"


def test_disk_full_while_checkpointing_stops_the_run_with_a_clear_message(project, monkeypatch):
    import studio.engine.train.checkpoint as ckpt
    from studio.services.training import create_run, execute_run

    def full(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", full)
    run = create_run(project, "sample", tiny_train_config(steps=4, checkpoint_every=2))
    result = execute_run(project, run.id)
    assert result.status == "failed"
    assert "disk is full" in result.reason
    assert project.run(run.id).status == "failed"
    assert project.checkpoints(run.id) == []
    run_dir = project.root / "runs" / str(run.id)
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".ckpt") or ".tmp-" in p.name]
    assert _integrity(project.db_path) == "ok"


def test_disk_full_while_writing_metrics_fails_the_run_and_keeps_the_project_consistent(project, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from studio.services.training import create_run, execute_run
    from studio.store import Project

    def full(self, rows):
        raise OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))

    run = create_run(project, "sample", tiny_train_config(steps=3))
    monkeypatch.setattr(Project, "add_metrics", full)
    result = execute_run(project, run.id)
    monkeypatch.undo()
    stored = project.run(run.id)
    assert stored.status == "failed"
    assert "disk is full" in stored.reason
    assert result.status == "failed"
    assert _integrity(project.db_path) == "ok"


# -- untrusted project files ----------------------------------------------------------------------
class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_replaced_by_a_malicious_pickle_runs_no_code(project, tmp_path):
    from studio.engine.errors import CheckpointError
    from studio.engine.train.checkpoint import load_checkpoint
    from studio.services.training import create_run, execute_run

    run = create_run(project, "sample", tiny_train_config(steps=2))
    assert execute_run(project, run.id).status == "finished"
    ck = project.abs(project.latest_checkpoint(run.id).path)
    marker = tmp_path / "pwned"
    with open(ck, "wb") as f:
        pickle.dump({"format": "ssl-studio-checkpoint", "payload": _Evil(str(marker))}, f)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(ck)
    assert "not loaded" in str(err.value)
    assert not marker.exists()
    # torch.save's zip format with the same payload is refused too
    torch.save({"format": "ssl-studio-checkpoint", "payload": _Evil(str(marker))}, ck)
    with pytest.raises(CheckpointError):
        load_checkpoint(ck)
    assert not marker.exists()


# -- database versions, moved folders -------------------------------------------------------------
def _downgrade_to_v1(db: Path) -> None:
    with sqlite3.connect(str(db)) as c:
        c.execute("ALTER TABLE runs DROP COLUMN notes")
        c.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")


def test_an_older_project_is_backed_up_then_upgraded(project):
    from studio.services.training import create_run
    from studio.store import Project
    from studio.store.migrations import SCHEMA_VERSION

    run = create_run(project, "sample", tiny_train_config())
    root = project.root
    project.close()
    _downgrade_to_v1(root / "project.db")
    with Project.open(root) as p:
        assert p.meta("schema_version") == str(SCHEMA_VERSION)
        assert p.run(run.id).method == "simclr"
        p.update_run(run.id, notes="kept")
    backup = root / "project.db.bak-v1"
    assert backup.is_file()
    with sqlite3.connect(str(backup)) as c:
        assert c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "1"
        assert c.execute("SELECT count(*) FROM runs").fetchone()[0] == 1


def test_a_project_from_a_newer_studio_is_refused_untouched(project):
    from studio.store import Project, SchemaVersionError

    root = project.root
    project.close()
    with sqlite3.connect(str(root / "project.db")) as c:
        c.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    before = (root / "project.db").read_bytes()
    with pytest.raises(SchemaVersionError, match="newer SSL Studio"):
        Project.open(root)
    assert (root / "project.db").read_bytes() == before
    assert not list(root.glob("project.db.bak-*"))


def test_a_moved_project_folder_still_opens_with_its_files(project, tmp_path):
    from studio.engine.train.checkpoint import load_checkpoint
    from studio.services.training import create_run, execute_run
    from studio.store import Project

    run = create_run(project, "sample", tiny_train_config(steps=2))
    assert execute_run(project, run.id).status == "finished"
    old = project.root
    project.close()
    new = tmp_path / "elsewhere" / "renamed"
    new.parent.mkdir()
    os.rename(old, new)
    with Project.open(new) as p:
        ck = p.latest_checkpoint(run.id)
        assert not Path(ck.path).is_absolute()
        assert load_checkpoint(p.abs(ck.path))["step"] == 2


# -- concurrency ----------------------------------------------------------------------------------
def test_a_writer_at_full_rate_and_polling_readers_never_see_a_locked_database(project):
    from studio.store import Project

    ds = project.dataset("sample")
    run = project.create_run(ds.id, "simclr", "resnet18", {})
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[int] = []

    def writer():
        w = Project.open(project.root)
        step = 0
        try:
            while not stop.is_set():
                w.add_metrics([(run.id, step + i, 0.0, "loss", 1.0, 0.0) for i in range(50)])
                w.update_run(run.id, steps=step)
                step += 50
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            w.close()

    def reader():
        r = Project.open(project.root)
        last = 0
        try:
            while not stop.is_set():
                series = r.metric_series(run.id, ["loss"], after_id=last)
                last = series.last_id
                r.runs()
                seen.append(last)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            r.close()

    threads = [threading.Thread(target=writer), threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(3.0)
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors[0]
    assert max(seen) > 0, "the readers never saw a point"
    assert _integrity(project.db_path) == "ok"
