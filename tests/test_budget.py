"""A run sized to a budget of time: batch, image size and length from a measured estimate."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from studio.engine.errors import ConfigError
from studio.engine.train import TrainConfig
from studio.services.budget import BUDGETS, TRAIN_SHARE, size_for_budget


def _images(n: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, size=(n, 3, size, size), dtype=np.uint8)


def _measure(seconds_per_step: float):
    seen = []

    def measure(config, images, steps, cancelled=None):
        seen.append(config)
        per_epoch = len(images) // config.batch_size
        return SimpleNamespace(seconds_per_step=seconds_per_step, steps_per_epoch=per_epoch, device_name="CPU")
    return measure, seen


def test_five_minutes_on_a_cpu_gives_a_short_run_that_fits():
    config = TrainConfig(method="simclr", backbone="resnet18", image_size=64, batch_size=256, device="cpu")
    measure, seen = _measure(0.5)
    sized = size_for_budget(config, _images(1797), "5m", measure=measure)
    c = sized.config
    assert c.batch_size == 64 and c.image_size == 32  # the CPU's batch and view size
    assert seen[0].batch_size == 64 and seen[0].image_size == 32  # measured as it will train
    steps = c.steps if c.steps is not None else c.epochs * (1797 // 64)
    assert 0.8 * 300 * TRAIN_SHARE <= steps * 0.5 <= 300 * TRAIN_SHARE  # about the budget, never over it
    assert c.epochs == 17 and c.steps is None  # 480 steps of 28 an epoch: whole epochs
    assert any("batch 64" in r for r in sized.reasons) and any("about 5 minutes" in r for r in sized.reasons)
    c.validate()


def test_what_the_person_chose_stays_theirs():
    config = TrainConfig(method="simclr", backbone="resnet18", image_size=64, batch_size=200, steps=7, device="cpu")
    measure, seen = _measure(0.5)
    sized = size_for_budget(config, _images(500), "1h", keep={"batch_size", "steps", "image_size"}, measure=measure)
    assert (sized.config.batch_size, sized.config.steps, sized.config.image_size) == (200, 7, 64)
    assert seen == []  # nothing to measure: the length was theirs


def test_a_small_dataset_gets_several_steps_an_epoch_and_a_long_budget_the_papers_length():
    config = TrainConfig(method="byol", backbone="resnet18", image_size=16, device="cpu")
    measure, _ = _measure(0.01)
    sized = size_for_budget(config, _images(60), "8h", measure=measure)
    assert sized.config.batch_size == 8  # 60 images: batches of a quarter at most (a power of two)
    assert sized.config.epochs == 100 and "papers' length" in sized.summary()
    paper = size_for_budget(TrainConfig(steps=5, device="cpu"), _images(60), "paper")
    assert paper.config.steps is None and paper.config.epochs is None  # the default: 100 epochs
    with pytest.raises(ConfigError, match="unknown budget"):
        size_for_budget(config, _images(60), "2d")
    assert set(BUDGETS) == {"5m", "1h", "8h", "paper"}


def test_the_real_estimate_sizes_a_run_within_its_budget():
    """Through the real cost estimate (a few SimCLR steps on the CPU): the chosen length, at the
    measured speed, fits the budget's training share."""
    config = TrainConfig(method="simclr", backbone="resnet18", image_size=16, device="cpu", warmup_epochs=0.0)
    sized = size_for_budget(config, _images(128), "5m")
    c = sized.config
    per_epoch = 128 // c.batch_size
    steps = c.steps if c.steps is not None else c.epochs * per_epoch
    assert sized.seconds_per_step > 0 and steps * sized.seconds_per_step <= 300 * TRAIN_SHARE + sized.seconds_per_step * per_epoch
    assert c.batch_size == 32  # a quarter of 128 images


def test_the_estimate_plans_like_the_trainer_and_says_when_the_batch_is_lowered():
    from studio.engine.train.trainer import plan_steps
    from studio.services.estimate import estimate_cost

    config = TrainConfig(method="simclr", backbone="resnet18", image_size=16, batch_size=32, epochs=3, device="cpu")
    assert plan_steps(config, 20) == (20, 1, 3)  # the batch at most the images: one step an epoch
    est = estimate_cost(config, _images(20), steps=2)
    assert (est.batch_size, est.steps_per_epoch, est.total_steps) == plan_steps(config, 20)
    assert "more than the 20 images" in est.warnings[0]


def test_train_budget_sizes_the_stored_run_and_keeps_the_options_given(project, monkeypatch, capsys):
    """`ssl-studio train --budget 5m`: the run is stored sized (batch, length) with the reasons on
    stderr; an option given stays as given. (The training itself is left out: five minutes.)"""
    import studio.services.training as training
    from studio.cli import main

    monkeypatch.setattr(training, "execute_run", lambda project, run_id, **kw: SimpleNamespace(
        status="stopped", steps=0, epochs=0, final_loss=None, images_per_s=None, checkpoint=None, reason=""))
    code = main(["train", str(project.root), "--dataset", "sample", "--method", "simclr", "--backbone", "resnet18",
                 "--budget", "5m", "--image-size", "16", "--device", "cpu"])
    assert code == 0
    [run] = project.runs()
    assert run.config["batch_size"] == 64 and run.config["image_size"] == 16  # the CPU's batch; the size given
    assert (run.config["epochs"] or 0) + (run.config["steps"] or 0) > 0
    err = capsys.readouterr().err
    assert "budget about 5 minutes: batch 64" in err and "s a step measured on CPU" in err
    with pytest.raises(SystemExit) as refused:  # a usage error, as argparse exits
        main(["train", str(project.root), "--resume", str(run.id), "--budget", "1h"])
    assert refused.value.code == 2 and "--budget sizes a new run" in capsys.readouterr().err


def test_a_memory_bank_is_sized_to_the_dataset_unless_the_person_set_it():
    """MoCo's queue and NNCLR's support set hold fewer embeddings than the images (issue 21,
    item 3): 4096 keys over 1,000 images would compare each with its own older key."""
    measure, _ = _measure(0.5)
    moco = TrainConfig(method="moco", backbone="resnet18", image_size=16, device="cpu")
    sized = size_for_budget(moco, _images(1000), "5m", measure=measure)
    assert sized.config.method_config == {"queue_size": 512}  # the power of two under 1000 - 64
    assert any(r.startswith("queue_size 512: the queue holds fewer embeddings than the 1,000 images") for r in sized.reasons)
    nnclr = size_for_budget(TrainConfig(method="nnclr", backbone="resnet18", image_size=16, device="cpu"),
                            _images(3000), "5m", measure=measure)
    assert nnclr.config.method_config == {"support_size": 2048}
    big = size_for_budget(moco, _images(9000), "5m", measure=measure)
    assert big.config.method_config == {} and not any("queue" in r for r in big.reasons)  # 4096 fits
    own = dataclasses.replace(moco, method_config={"queue_size": 4096})
    assert size_for_budget(own, _images(1000), "5m", measure=measure).config.method_config == {"queue_size": 4096}
    # A value the last sizing chose (and the person left) is sized again: here for more images.
    again = size_for_budget(sized.config, _images(3000), "5m", measure=measure, resize={"queue_size"})
    assert again.config.method_config == {"queue_size": 2048}
