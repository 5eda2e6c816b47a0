"""The optimiser rule (studio.engine.train.optim): the paper's for its backbones, AdamW for ViTs,
the person's settings first, and the same answer in the Trainer and the cost estimate."""

import numpy as np
import pytest
import torch

from studio.engine.data.cache import DecodedImages
from studio.engine.methods import METHODS
from studio.engine.train import TrainConfig, Trainer
from studio.engine.train.optim import USUAL, VIT_LR, method_optimizer, resolve_optimizer


def test_a_cnn_keeps_the_papers_optimizer_and_a_vit_gets_adamw():
    byol = METHODS["byol"]
    assert method_optimizer(byol, "cnn").name == "lars" and method_optimizer(byol, "cnn").reason == ""
    vit = method_optimizer(byol, "vit")
    assert vit.name == "adamw" and vit.lr == VIT_LR and "LARS" in vit.reason and vit.scaling == "sqrt"
    assert vit.lr_at(64) == pytest.approx(VIT_LR / 2) and vit.describe_lr() == "0.001 × √(batch/256)"
    # A method whose paper uses AdamW, or SGD (which trains the small ViTs well), keeps its own.
    for name in ("mae", "simclr", "moco"):
        cls = METHODS[name]
        choice = method_optimizer(cls, "vit")
        assert (choice.name, choice.lr, choice.reason) == (cls.default_optimizer, cls.default_lr, ""), name
    # SimSiam's SGD was measured to leave a ViT below its untrained encoder: its own ViT choice.
    simsiam = METHODS["simsiam"]
    assert method_optimizer(simsiam, "cnn").name == "sgd"
    vit = method_optimizer(simsiam, "vit")
    assert (vit.name, vit.lr, vit.weight_decay, vit.scaling) == ("adamw", 5e-4, 0.04, "linear") and vit.reason
    assert vit.lr_at(64) == pytest.approx(1.25e-4)


def test_the_lr_scales_with_the_batch_and_the_persons_settings_win():
    simclr = METHODS["simclr"]
    assert resolve_optimizer(TrainConfig(), simclr, "cnn", 128) == ("sgd", pytest.approx(0.03), 5e-4)
    assert resolve_optimizer(TrainConfig(lr=0.5, weight_decay=0.1), simclr, "cnn", 128) == ("sgd", 0.5, 0.1)
    # Another optimiser than the method's brings its own usual lr, not SGD's 0.06 on AdamW.
    name, lr, wd = resolve_optimizer(TrainConfig(optimizer="adamw"), simclr, "cnn", 256)
    assert (name, lr, wd) == ("adamw", USUAL["adamw"].lr, USUAL["adamw"].weight_decay)


def test_the_trainer_builds_what_the_rule_says(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, size=(16, 3, 16, 16), dtype=np.uint8)
    images = DecodedImages(pixels, np.full(16, -1), [f"{i}.png" for i in range(16)], [])
    cfg = TrainConfig(method="byol", backbone="vit_tiny", backbone_options={"num_layers": 1, "patch_size": 4},
                      image_size=16, batch_size=8, steps=1, device="cpu", monitor_every=-1)
    trainer = Trainer(cfg, images, tmp_path / "run")
    t = trainer._setup()
    assert isinstance(t.optimizer, torch.optim.AdamW)
    assert t.optimizer.param_groups[0]["initial_lr"] == pytest.approx(VIT_LR * (8 / 256) ** 0.5)
