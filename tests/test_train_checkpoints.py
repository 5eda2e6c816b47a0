"""Checkpoints by time and by share of the run (issue 20, item 2): a crash costs at most
`checkpoint_minutes` of training or a twentieth of the run, and only the newest automatic
checkpoint is kept, on disk and in the project database. Clocks are fakes: nothing sleeps."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tiny_train_config

from studio.engine.data import SampleSource, decode_images
from studio.engine.train import TrainConfig, Trainer, TrainingCallbacks, TrainingControl, load_checkpoint
from studio.engine.train.checkpoint import AUTO_CHECKPOINT_MIN_S, CheckpointSchedule


@pytest.fixture(scope="module")
def sample8():
    return decode_images(SampleSource(), 8)


def small_config(**overrides) -> TrainConfig:
    return tiny_train_config(**{"image_size": 8, "batch_size": 4, "monitor_every": -1, **overrides})


class Record(TrainingCallbacks):
    def __init__(self):
        self.saved: list[tuple[str, int]] = []
        self.removed: list[str] = []
        self.loss: dict[int, float] = {}
        self.info = None

    def on_start(self, info):
        self.info = info

    def on_metrics(self, step, epoch, metrics):
        if "loss" in metrics:
            self.loss[step] = metrics["loss"]

    def on_checkpoint(self, path, step, epoch):
        self.saved.append((Path(path).name, step))

    def on_checkpoint_removed(self, path):
        self.removed.append(Path(path).name)


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so the trainer neither catches it nor writes
    last.ckpt on its way out."""


class KillAt(TrainingCallbacks):
    def __init__(self, step: int):
        self.step = step

    def on_metrics(self, step, epoch, metrics):
        if "loss" in metrics and step == self.step:
            raise Killed


class StopAt(TrainingCallbacks):
    def __init__(self, control: TrainingControl, step: int):
        self.control, self.step = control, step

    def on_metrics(self, step, epoch, metrics):
        if "loss" in metrics and step >= self.step:
            self.control.stop()


def test_the_schedule_by_time_by_share_and_by_steps():
    now = [0.0]
    clock = lambda: now[0]  # noqa: E731
    # 200 steps: a twentieth is 10 steps; 2 minutes of training time.
    s = CheckpointSchedule(small_config(steps=200, checkpoint_minutes=2.0, checkpoint_every=7), 200, 0, clock)
    now[0] = 119.0
    assert s.due(3) is None
    now[0] = 120.0
    assert s.due(4) == "auto.ckpt"  # the time rule, long before a twentieth
    s.saved(4)
    now[0] = 120.0 + AUTO_CHECKPOINT_MIN_S
    assert s.due(13) is None and s.due(14) == "step-14.ckpt"  # every 7 steps, kept under its step
    s.saved(14)
    now[0] += AUTO_CHECKPOINT_MIN_S
    assert s.due(23) is None and s.due(24) == "auto.ckpt"  # a twentieth, before the 2 minutes are up
    s.saved(24)
    now[0] += 1.0
    assert s.due(34) is None  # a twentieth again, but too soon after the last checkpoint
    s.paused_for(1000.0)
    now[0] += 1000.0 + AUTO_CHECKPOINT_MIN_S - 2.0
    assert s.due(36) is None  # time spent paused is not training time
    now[0] += 1.0
    assert s.due(37) == "auto.ckpt"
    assert s.due(200) is None  # the end writes last.ckpt

    off = CheckpointSchedule(small_config(steps=200, checkpoint_minutes=0.0), 200, 0, clock)
    now[0] += 10_000.0
    assert off.due(9) is None and off.due(10) == "auto.ckpt"  # 0 minutes: by twentieths only


def test_a_run_checkpoints_by_time_on_a_fake_clock_and_keeps_only_the_newest(sample8, tmp_path):
    record = Record()
    # One second of "training time" per step; a checkpoint every 4 seconds.
    trainer = Trainer(small_config(steps=10, checkpoint_minutes=4 / 60), sample8, tmp_path, callbacks=record,
                      clock=lambda: float(trainer.step))
    result = trainer.run()
    assert result.status == "finished", result.reason
    assert record.saved == [("auto.ckpt", 4), ("auto.ckpt", 8), ("last.ckpt", 10)]
    assert record.removed == ["auto.ckpt"]  # superseded by last.ckpt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_a_run_killed_after_a_twentieth_resumes_from_its_automatic_checkpoint(project, sample8):
    from studio.services.training import create_run
    from studio.store import RunRecorder

    config = small_config(steps=40, checkpoint_minutes=0.0)  # by twentieths only: every 2 steps
    run = create_run(project, "sample", config)
    run_dir = project.run_dir(run.id)
    seconds_per_step = AUTO_CHECKPOINT_MIN_S + 1
    first, recorder = Record(), RunRecorder(project, run.id)
    trainer = Trainer(config, sample8, run_dir, callbacks=[recorder, first, KillAt(5)],
                      clock=lambda: seconds_per_step * trainer.step)
    with pytest.raises(Killed):
        trainer.run()
    recorder.close()
    assert first.saved == [("auto.ckpt", 2), ("auto.ckpt", 4)]
    assert sorted(p.name for p in run_dir.iterdir()) == ["auto.ckpt"]  # no last.ckpt: it was killed
    (ck,) = project.checkpoints(run.id)  # the newest automatic checkpoint only, in the database too
    assert ck.step == 4 and project.latest_checkpoint(run.id) == ck
    assert load_checkpoint(project.abs(ck.path))["step"] == 4

    control, second, recorder = TrainingControl(), Record(), RunRecorder(project, run.id)
    resumed = Trainer(config, sample8, run_dir, callbacks=[recorder, second, StopAt(control, 6)], control=control,
                      resume_from=project.abs(ck.path), clock=lambda: seconds_per_step * resumed.step)
    result = resumed.run()
    assert result.status == "stopped", result.reason
    assert second.info.start_step == 4 and min(second.loss) == 5
    assert second.loss[5] == pytest.approx(first.loss[5], abs=1e-4)  # the same step as before the kill
    assert second.saved[-1] == ("last.ckpt", result.steps) and second.removed == ["auto.ckpt"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["last.ckpt"]
    assert [(Path(c.path).name, c.step) for c in project.checkpoints(run.id)] == [("last.ckpt", result.steps)]


def test_sigkill_without_checkpoint_every_resumes_from_the_automatic_checkpoint(tmp_path):
    """End to end, with a real kill: the default settings alone (no --checkpoint-every) leave a
    checkpoint to resume from."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from studio.store import Project

    import sqlite3

    root = Path(__file__).resolve().parent.parent

    def recorded_auto_checkpoint(db: Path) -> bool:
        # Read as the GUI does while a run writes (WAL); the file is renamed into place a moment
        # before its row is written.
        if not db.exists():
            return False
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            return bool(c.execute("SELECT 1 FROM checkpoints WHERE path LIKE '%auto.ckpt'").fetchone())
    proj = tmp_path / "p"

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "studio", *args], cwd=root, capture_output=True, text=True, timeout=240)

    assert cli("init", str(proj)).returncode == 0
    assert cli("dataset", "add", str(proj), "sample").returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio", "train", str(proj), "--dataset", "sample", "--method", "simclr", "--backbone", "resnet18", "--steps", "80", "--batch-size", "8",
         "--image-size", "8", "--device", "cpu", "--monitor-every", "-1", "--checkpoint-minutes", "0.01", "--json"],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not recorded_auto_checkpoint(proj / "project.db"):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with Project.open(proj) as p:
        (run,) = p.runs()
        ck = p.latest_checkpoint(run.id)
        assert ck is not None and Path(ck.path).name == "auto.ckpt" and ck.step > 0
    done = cli("train", str(proj), "--resume", str(run.id), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["status"] == "finished"
    with Project.open(proj) as p:
        steps, _ = p.metric_curve(run.id, "loss", max_points=100_000)
        assert steps == list(range(1, 81))
        assert [Path(c.path).name for c in p.checkpoints(run.id)] == ["last.ckpt"], ([(c.path, c.step) for c in p.checkpoints(run.id)], sorted(x.name for x in (proj / "runs" / str(run.id)).iterdir()), done.stderr[-1500:])
