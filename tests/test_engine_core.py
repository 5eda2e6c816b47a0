"""The engine's core: the NT-Xent loss against SimCLR's equation, the Trainer's loop, schedule,
checkpoints, control, divergence and seeding.

Training runs use the sample at its native 8 x 8 px: resnet18's small-image stem keeps full
resolution through layer1, so 16 px costs four times as much and 30 steps of a batch of 64 would
take minutes on two shared cores."""

from __future__ import annotations

import math
import threading
import time

import pytest
import torch

from conftest import tiny_train_config
from studio.engine.data import DecodedImages, SampleSource, decode_images
from studio.engine.device import resolve_device
from studio.engine.methods.simclr import SimCLR, nt_xent_loss
from studio.engine.train import Trainer, TrainingCallbacks, TrainingControl, load_checkpoint
from studio.engine.train.schedules import warmup_cosine


SIZE = 8


@pytest.fixture(scope="module")
def sample8():
    return decode_images(SampleSource(), SIZE)


def small_config(**overrides):
    return tiny_train_config(**{"image_size": SIZE, **overrides})


class Collect(TrainingCallbacks):
    """Every report of a run, as plain lists."""

    def __init__(self):
        self.metrics: dict[str, dict[int, float]] = {}
        self.statuses: list[str] = []
        self.checkpoints: list[tuple[str, int]] = []
        self.info = None
        self.new_step = threading.Event()
        self.paused = threading.Event()

    def on_start(self, info):
        self.info = info

    def on_metrics(self, step, epoch, metrics):
        for name, value in metrics.items():
            self.metrics.setdefault(name, {})[step] = value
        if "loss" in metrics:
            self.new_step.set()

    def on_checkpoint(self, path, step, epoch):
        self.checkpoints.append((path, step))

    def on_status(self, status, reason=None):
        self.statuses.append(status)
        if status == "paused":
            self.paused.set()

    def losses(self) -> list[float]:
        series = self.metrics.get("loss", {})
        return [series[s] for s in sorted(series)]


# -- NT-Xent ------------------------------------------------------------------------------------
def nt_xent_by_the_equation(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """SimCLR (Chen et al. 2020) eq. 1 written out: views 2k and 2k+1 are a positive pair,
    l(i, j) = -log exp(sim(z_i, z_j)/tau) / sum_{k != i} exp(sim(z_i, z_k)/tau), and the loss is
    the mean of l(2k, 2k+1) + l(2k+1, 2k) over the N pairs, divided by 2."""
    n = z1.shape[0]
    z = []
    for k in range(n):
        z += [z1[k].double(), z2[k].double()]

    def sim(u, v):
        return float(u @ v) / (math.sqrt(float(u @ u)) * math.sqrt(float(v @ v)))

    def l(i, j):
        den = sum(math.exp(sim(z[i], z[k]) / tau) for k in range(2 * n) if k != i)
        return -math.log(math.exp(sim(z[i], z[j]) / tau) / den)

    return sum(l(2 * k, 2 * k + 1) + l(2 * k + 1, 2 * k) for k in range(n)) / (2 * n)


@pytest.mark.parametrize("tau", [0.07, 0.1, 0.5, 1.0])
def test_nt_xent_equals_simclr_equation_1(tau):
    g = torch.Generator().manual_seed(7)
    z1 = torch.randn(6, 5, generator=g)
    z2 = z1 + 0.5 * torch.randn(6, 5, generator=g)  # related pairs, so the positives matter
    got = float(nt_xent_loss(z1, z2, tau))
    want = nt_xent_by_the_equation(z1, z2, tau)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_nt_xent_is_low_for_matching_pairs_and_scale_free():
    z = torch.eye(4)
    assert float(nt_xent_loss(z, z, 0.1)) < 0.01  # each view's positive is its only similar vector
    assert float(nt_xent_loss(z, z.roll(1, 0), 0.1)) > 5  # positives orthogonal, one negative identical
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    assert float(nt_xent_loss(3 * a, 0.5 * b, 0.5)) == pytest.approx(float(nt_xent_loss(a, b, 0.5)), rel=1e-5)


# -- schedule -----------------------------------------------------------------------------------
def test_warmup_cosine_first_middle_last():
    total, warmup = 110, 10
    assert warmup_cosine(0, total, warmup) == pytest.approx(0.1)  # first step: 1/warmup of the lr
    assert warmup_cosine(4, total, warmup) == pytest.approx(0.5)
    assert warmup_cosine(9, total, warmup) == pytest.approx(1.0)  # end of warm-up: the full lr
    assert warmup_cosine(10, total, warmup) == pytest.approx(1.0)  # cosine starts at its top
    assert warmup_cosine(60, total, warmup) == pytest.approx(0.5)  # half way down the cosine
    last = warmup_cosine(total - 1, total, warmup)
    assert last == pytest.approx(0.5 * (1 + math.cos(math.pi * 99 / 100)))
    assert 0 < last < 1e-3
    assert warmup_cosine(total, total, warmup) == pytest.approx(0.0)
    values = [warmup_cosine(s, total, warmup) for s in range(warmup, total)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # decays monotonically after warm-up
    assert warmup_cosine(0, 100, 0) == pytest.approx(1.0)  # no warm-up: starts at the full lr


# -- the Trainer --------------------------------------------------------------------------------
def test_simclr_loss_falls_over_30_steps(sample8, tmp_path):
    # 32 digits of the sample in a batch of 32: every step contrasts the same images under new
    # views, so 30 steps are enough to show learning above the step-to-step noise (on the whole
    # sample the loss first wanders for longer than a test can wait). AdamW at a modest rate and
    # no colour jitter, which on grey digits only scrambles their brightness.
    subset = DecodedImages(sample8.images[:32], sample8.labels[:32], sample8.names[:32], sample8.class_names)
    cb = Collect()
    config = small_config(steps=30, batch_size=32, optimizer="adamw", lr=5e-4, method_config={"color_strength": 0.0})
    result = Trainer(config, subset, tmp_path / "run", callbacks=cb).run()
    assert result.status == "finished", result.reason
    losses = cb.losses()
    assert len(losses) == 30 and all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    # ln(2*32 - 1) = 4.14 is the loss of an encoder that cannot tell the images apart.
    assert first > 3.9
    assert last < first - 0.1, (first, last, losses)
    assert result.final_loss == pytest.approx(losses[-1])
    assert (tmp_path / "run" / "last.ckpt").is_file()


def test_trainer_lr_follows_the_schedule(sample8, tmp_path):
    cb = Collect()
    config = small_config(steps=6, lr=0.1, optimizer="sgd", batch_size=4)
    result = Trainer(config, sample8, tmp_path / "run", callbacks=cb).run()
    assert result.status == "finished"
    lrs = cb.metrics["lr"]
    assert sorted(lrs) == [1, 2, 3, 4, 5, 6]
    for step, lr in lrs.items():
        assert lr == pytest.approx(0.1 * warmup_cosine(step - 1, 6, 0))
    assert lrs[1] == pytest.approx(0.1) and lrs[6] < lrs[4] < lrs[1]


def test_the_final_loss_is_the_mean_of_the_last_logged_window_and_says_so(sample8, tmp_path):
    """One definition everywhere (one step's loss is noisy; the header disagreed with the plot):
    the mean of the last log_every steps, named by final_loss_meaning beside every figure."""
    from studio.engine.train.callbacks import final_loss_meaning

    cb = Collect()
    result = Trainer(small_config(steps=7, batch_size=4, log_every=3), sample8, tmp_path / "run", callbacks=cb).run()
    losses = cb.losses()
    assert len(losses) == 7 and result.final_loss == pytest.approx(sum(losses[-3:]) / 3)
    assert final_loss_meaning(3) == "mean of the last 3 steps" and final_loss_meaning(None) == "mean of the last 10 steps"


def test_resume_from_a_checkpoint_repeats_the_uninterrupted_run(sample8, tmp_path):
    config = small_config(steps=8, checkpoint_every=4, batch_size=8)
    whole = Collect()
    result = Trainer(config, sample8, tmp_path / "a", callbacks=whole).run()
    assert result.status == "finished"
    assert [s for _, s in whole.checkpoints] == [4, 8]
    step4 = tmp_path / "a" / "step-4.ckpt"
    state = load_checkpoint(step4)
    assert state["step"] == 4 and {"torch", "python", "numpy"} <= set(state["rng"])

    resumed = Collect()
    result2 = Trainer(config, sample8, tmp_path / "b", callbacks=resumed, resume_from=step4).run()
    assert result2.status == "finished"
    assert result2.steps == 8 and resumed.info.start_step == 4
    assert sorted(resumed.metrics["loss"]) == [5, 6, 7, 8]
    for step in (5, 6, 7, 8):
        assert resumed.metrics["loss"][step] == pytest.approx(whole.metrics["loss"][step], abs=1e-4)
        assert resumed.metrics["lr"][step] == pytest.approx(whole.metrics["lr"][step])
    assert result2.final_loss == pytest.approx(result.final_loss, abs=1e-4)


def test_pause_resume_stop_from_another_thread(sample8, tmp_path):
    cb = Collect()
    control = TrainingControl()
    trainer = Trainer(small_config(steps=10_000, batch_size=4), sample8, tmp_path / "run", callbacks=cb, control=control)
    results = []
    worker = threading.Thread(target=lambda: results.append(trainer.run()))
    worker.start()
    try:
        assert cb.new_step.wait(60), "no step was reported"
        control.pause()
        assert cb.paused.wait(30), "the trainer did not pause"
        steps_at_pause = max(cb.metrics["loss"])
        time.sleep(0.6)
        assert max(cb.metrics["loss"]) == steps_at_pause  # no step while paused
        cb.new_step.clear()
        control.resume()
        assert cb.new_step.wait(30), "no step after resume"
        assert max(cb.metrics["loss"]) > steps_at_pause
    finally:
        control.stop()
        worker.join(60)
    assert not worker.is_alive()
    (result,) = results
    assert result.status == "stopped"
    assert cb.statuses[0] == "paused" and "running" in cb.statuses and cb.statuses[-1] == "stopped"
    last = tmp_path / "run" / "last.ckpt"
    assert last.is_file() and result.checkpoint == str(last)
    assert load_checkpoint(last)["step"] == result.steps < 10_000


def test_nan_loss_ends_the_run_as_diverged_with_its_step(sample8, tmp_path, monkeypatch):
    original = SimCLR.training_step

    def poisoned(self, views, state):
        out = original(self, views, state)
        if state.step >= 2:  # the third step (1-based: step 3)
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(SimCLR, "training_step", poisoned)
    cb = Collect()
    result = Trainer(small_config(steps=6, batch_size=4), sample8, tmp_path / "run", callbacks=cb).run()
    assert result.status == "diverged"
    assert "step 3" in result.reason and "learning rate" in result.reason
    assert result.steps == 3
    assert cb.statuses[-1] == "diverged"


def test_auto_device_is_cpu_here_and_seeds_repeat(sample8, tmp_path):
    assert resolve_device("auto").type == "cpu"
    firsts = []
    for i, seed in enumerate((3, 3, 4)):
        cb = Collect()
        result = Trainer(small_config(steps=1, batch_size=4, seed=seed, device="auto"), sample8, tmp_path / str(i), callbacks=cb).run()
        assert result.status == "finished"
        assert cb.info.device_type == "cpu"
        firsts.append(cb.metrics["loss"][1])
    assert firsts[0] == firsts[1]  # same seed: the same weights, order and views
    assert firsts[2] != firsts[0]


def test_every_listener_wrapper_hands_on_every_callback():
    """A wrapper of listeners (the services' path and resume wrappers, the engine's list) that
    misses a callback silently drops it: a resumed run's removed auto.ckpt stayed in the database."""
    import inspect

    from studio.engine.train.callbacks import CallbackList, TrainingCallbacks
    from studio.services import training

    names = [n for n, f in inspect.getmembers(TrainingCallbacks, inspect.isfunction) if n.startswith("on_")]
    wrappers = [CallbackList] + [c for _, c in inspect.getmembers(training, inspect.isclass)
                                 if issubclass(c, TrainingCallbacks) and c is not TrainingCallbacks]
    assert len(wrappers) >= 3
    for cls in wrappers:
        missing = [n for n in names if getattr(cls, n) is getattr(TrainingCallbacks, n)]
        assert not missing, f"{cls.__name__} does not hand on {missing}"
