"""A default that changes a model's shape (DINO's head batch norm, on since 2026-12-04) does not
change runs stored before it: their configs, which do not name the setting, keep the former value
and their checkpoints still load; every config written since names it."""

from __future__ import annotations

import torch

from conftest import tiny_train_config


def _has_batch_norm(module: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.BatchNorm1d) for m in module.modules())


def test_a_new_config_names_the_setting_and_an_old_one_keeps_the_former_default():
    from studio.engine.train import TrainConfig

    new = tiny_train_config(method="dino", backbone="vit_tiny", backbone_options={"num_layers": 1, "patch_size": 4})
    stored = new.to_dict()
    assert stored["method_config"]["head_batch_norm"] is True
    assert TrainConfig.from_dict(stored).method_config["head_batch_norm"] is True  # round trip
    old = {**stored, "method_config": {}}  # as a run stored before the change was written
    assert TrainConfig.from_dict(old).method_config == {"head_batch_norm": False}
    chosen = {**stored, "method_config": {"head_batch_norm": False, "output_dim": 64}}
    assert TrainConfig.from_dict(chosen).method_config == {"head_batch_norm": False, "output_dim": 64}
    # Methods without such a change are untouched.
    simclr = tiny_train_config().to_dict()
    assert TrainConfig.from_dict(simclr).method_config == simclr["method_config"] == {}


def test_an_old_runs_checkpoint_still_loads():
    from studio.engine.train import TrainConfig
    from studio.engine.train.trainer import build_method

    cfg = tiny_train_config(method="dino", backbone="vit_tiny", image_size=8,
                            backbone_options={"num_layers": 1, "patch_size": 4},
                            method_config={"output_dim": 32, "hidden_dim": 16, "bottleneck_dim": 8})
    torch.manual_seed(0)
    old_model = build_method(TrainConfig.from_dict({**cfg.to_dict(), "method_config": {
        "output_dim": 32, "hidden_dim": 16, "bottleneck_dim": 8, "head_batch_norm": False}}))
    assert not _has_batch_norm(old_model.projection_head)
    # The stored config of that run does not name the setting: it builds the same model again.
    old_stored = {**cfg.to_dict(), "method_config": {"output_dim": 32, "hidden_dim": 16, "bottleneck_dim": 8}}
    again = build_method(TrainConfig.from_dict(old_stored))
    again.load_state_dict(old_model.state_dict(), strict=True)
    assert _has_batch_norm(build_method(cfg).projection_head)  # a new run gets the new default
