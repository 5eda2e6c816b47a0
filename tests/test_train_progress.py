"""Between steps a run says what it does, and its ETA counts the monitor checks left (issue 16,
item 5): a run that sat at "step 28 / 40" for 50 s with a frozen ETA said neither."""

from __future__ import annotations

import pytest
from conftest import tiny_train_config

from studio.engine.data import SampleSource, decode_images
from studio.engine.train import Trainer, TrainingCallbacks
from studio.engine.train.trainer import MONITOR_ACTIVITY


class Seen(TrainingCallbacks):
    def __init__(self):
        self.activity: list[str | None] = []
        self.eta: dict[int, float] = {}

    def on_activity(self, text):
        self.activity.append(text)

    def on_metrics(self, step, epoch, metrics):
        if "eta_s" in metrics:
            self.eta[step] = metrics["eta_s"]


def test_each_monitor_check_is_announced_and_the_eta_counts_the_checks_left(tmp_path):
    data = decode_images(SampleSource(), 8)
    seen = Seen()
    checks = []
    trainer = Trainer(tiny_train_config(image_size=8, batch_size=8, steps=12, monitor_every=4, log_every=2), data,
                      tmp_path, callbacks=seen, monitors=[lambda encoder, step: checks.append(step) or {"x": 1.0}])
    assert trainer.run().status == "finished"
    assert checks == [0, 4, 8, 12]
    assert seen.activity == ["measuring the untrained encoder (the baseline)", None] + [MONITOR_ACTIVITY, None] * 3
    assert sorted(seen.eta) == [2, 4, 6, 8, 10, 12] and seen.eta[12] == 0.0
    # The ETA holds the checks still to come: at step 2, three (at 4, 8 and 12).
    assert trainer.monitor_checks_left(2, 12) == 3 and trainer.monitor_checks_left(4, 12) == 2
    assert seen.eta[2] >= 3 * min(trainer.monitor_seconds) > 0


@pytest.mark.parametrize("every, total", [(4, 12), (5, 12), (7, 50), (1, 3)])
def test_the_checks_left_are_the_due_steps_left(tmp_path, every, total):
    trainer = Trainer(tiny_train_config(monitor_every=every), decode_images(SampleSource(), 8), tmp_path,
                      monitors=[lambda encoder, step: {}])
    trainer.steps_per_epoch = 3
    for step in range(total + 1):
        due = sum(trainer._monitor_due(s, 3, total) for s in range(step + 1, total + 1))
        assert trainer.monitor_checks_left(step, total) == due, step
