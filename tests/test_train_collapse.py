"""The collapse verdict lives once, in studio.engine.eval.health: the Trainer's log and the Run
page ask `collapse_verdict` for the decision and its wording, from a health report or from the
health monitor's stored metrics alike."""

from __future__ import annotations

import numpy as np
import torch
from conftest import tiny_train_config

from studio.engine.eval.health import STD_RATIO_COLLAPSE_THRESHOLD, collapse_verdict, health_report


def test_a_health_report_and_the_stored_metrics_get_the_same_verdict_and_words():
    rng = np.random.default_rng(0)
    healthy = rng.normal(size=(64, 16))
    collapsed = np.ones((64, 16)) + 1e-6 * rng.normal(size=(64, 16))
    for z, expected in ((healthy, False), (collapsed, True)):
        report = health_report(z)
        verdict, message = collapse_verdict(report)
        assert verdict is expected
        stored = {"collapse": 1.0 if report["collapsed"] else 0.0, "embedding_std_ratio": report["std_ratio"]}
        assert collapse_verdict(stored) == (verdict, message)
    verdict, message = collapse_verdict({"collapse": 1.0, "embedding_std_ratio": 0.02})
    assert verdict and "spread 0.020" in message and f"under {STD_RATIO_COLLAPSE_THRESHOLD} counts as collapse" in message
    assert "lower learning rate" in message
    assert collapse_verdict({"collapse": 1.0})[1].count("spread not finite") == 1  # non-finite spreads are not stored
    assert collapse_verdict({"collapse": 0.0, "embedding_std_ratio": 0.8})[0] is False


def test_every_methods_collapse_advice_names_only_settings_it_has():
    """The advice ends the warning a person acts on: a setting it names must be one they can set."""
    import re

    from studio.engine.methods import METHODS
    from studio.engine.train import TrainConfig

    run_settings = {f.name for f in TrainConfig.fields()}
    for name, cls in METHODS.items():
        assert cls.collapse_advice, name
        own = {f.name for f in cls.fields()}
        named = set(re.findall(r"\b[a-z]+(?:_[a-z]+)+\b", cls.collapse_advice))
        assert named <= own | run_settings, (name, named - own - run_settings)
        assert cls.collapse_advice in collapse_verdict({"collapse": 1.0, "embedding_std_ratio": 0.01},
                                                       cls.collapse_advice)[1]


class _Lines:
    def __init__(self):
        self.lines = []

    def on_log(self, message, level="info"):
        self.lines.append((level, message))


def test_the_log_says_when_knn_falls_below_the_untrained_encoder_and_when_the_run_ends_there(tmp_path):
    """The monitors' check at step 0 is the baseline; a check under it (by more than the margin)
    warns once, a check back above it says so, and a run that ends under it says that at the end."""
    from studio.engine.data.cache import DecodedImages
    from studio.engine.eval.health import BELOW_BASELINE_MARGIN, baseline_verdict
    from studio.engine.train import Trainer, TrainingCallbacks

    class Log(_Lines, TrainingCallbacks):
        pass

    pixels = np.random.default_rng(0).integers(0, 255, size=(8, 3, 8, 8), dtype=np.uint8)
    data = DecodedImages(pixels, np.arange(8) % 2, [f"{i}.png" for i in range(8)], ["a", "b"])
    log = Log()
    trainer = Trainer(tiny_train_config(image_size=8), data, tmp_path, callbacks=log)
    trainer.method = None  # the Trainer's own _run_monitors, fed a stub monitor and a stub method
    knn = iter([0.50, 0.495, 0.40, 0.45, 0.55, 0.30])
    trainer.monitors = [lambda encoder, step: {"knn_top1": next(knn)}]

    class _Stub(torch.nn.Module):
        backbone = torch.nn.Identity()

        def output(self, x):
            return x

    stub = _Stub()
    for step, last in ((0, False), (10, False), (20, False), (30, False), (40, False), (50, True)):
        trainer._run_monitors(stub, step, 10, last=last)
    assert trainer.knn_baseline == 0.50
    said = [(level, m.split(":")[0]) for level, m in log.lines]
    # 0.495 is within the margin; 0.40 warns; 0.45 stays below (no repeat); 0.55 is back above;
    # 0.30 at the last step warns, and the end says it.
    assert said == [("warning", "step 20"), ("info", "step 40"), ("warning", "step 50"),
                    ("warning", "the run ended below random init")]
    assert "below the untrained encoder's 0.500" in log.lines[0][1]
    assert baseline_verdict(0.5 - BELOW_BASELINE_MARGIN / 2, 0.5)[0] is False
    assert baseline_verdict(0.2, None) == (False, "")


def test_a_dataset_of_one_batch_still_reports_its_speed_and_is_not_all_monitor_checks(tmp_path, monkeypatch):
    """60 images of batch 32 is one step an epoch: the monitors ran at every step, the speed was
    never reported (its window restarted at each check) and the Run page showed no images/s or
    ETA. Now 'each epoch' is at most MAX_MONITOR_CHECKS checks a run, and the speed is measured
    over log_every steps with the checks' time left out."""
    from studio.engine.data.cache import DecodedImages
    from studio.engine.train import Trainer, TrainingCallbacks, trainer as trainer_module

    monkeypatch.setattr(trainer_module, "MAX_MONITOR_CHECKS", 4)  # the rule, at a size CI runs quickly

    class Log(TrainingCallbacks):
        def __init__(self):
            self.speed, self.checks = [], []

        def on_metrics(self, step, epoch, metrics):
            if "images_per_s" in metrics:
                self.speed.append(step)
            if "knn_top1" in metrics:
                self.checks.append(step)

    pixels = np.random.default_rng(0).integers(0, 255, size=(8, 3, 8, 8), dtype=np.uint8)
    data = DecodedImages(pixels, np.arange(8) % 2, [f"{i}.png" for i in range(8)], ["a", "b"])
    log = Log()
    steps = 8
    config = tiny_train_config(image_size=8, batch_size=8, steps=steps, log_every=3)
    trainer = Trainer(config, data, tmp_path, callbacks=log,
                      monitors=[lambda encoder, step: {"knn_top1": 0.5}])
    assert trainer.run().status == "finished"
    assert log.checks == [0, 2, 4, 6, 8]  # step 0, then every other step: 4 checks
    assert log.speed == [3, 6, 8]
