"""Combined objectives on one backbone: the weighted sum, shared views, each objective's momentum,
resume, the stored config and the command line."""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest
import torch

from conftest import tiny_train_config
from studio.engine.methods import METHODS, StepState, build_config, method_class

VIT = dict(backbone="vit_tiny", backbone_options={"num_layers": 2, "patch_size": 4})
SMALL_MAE = {"mae_decoder_dim": 32, "mae_decoder_depth": 1, "mae_decoder_heads": 4}


@pytest.fixture(scope="module")
def sample16():
    from studio.engine.data import SampleSource, decode_images

    return decode_images(SampleSource(limit=64), 16)


def _built(name, settings):
    from studio.engine.backbones import build_backbone

    cls = method_class(name)
    return cls(build_backbone("vit_tiny", 16, num_layers=2, patch_size=4), build_config(cls.config_class, settings))


class Collect:
    def __init__(self):
        self.metrics: dict[str, dict[int, float]] = {}

    def __getattr__(self, name):  # the other callbacks: nothing to record
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)

    def on_metrics(self, step, epoch, metrics):
        for k, v in metrics.items():
            self.metrics.setdefault(k, {})[step] = v


def test_a_combined_loss_is_the_weighted_sum_of_its_objectives_computed_separately():
    torch.manual_seed(0)
    method = _built("simclr+mae", {**SMALL_MAE, "simclr_weight": 0.3, "mae_weight": 2.0})
    specs = method.view_specs(16)
    from studio.engine.data.views import make_view

    x = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    views = [make_view(x, s) for s in specs]
    state = StepState(step=0, total_steps=10)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        out = method.training_step(views, state)
    # Each objective on its own, on the views it asks for, with the same random masks.
    simclr, mae = method.objectives["simclr"], method.objectives["mae"]
    with torch.random.fork_rng():
        torch.manual_seed(1)
        alone_simclr = simclr.training_step(views[:2], state)["loss"]
        alone_mae = mae.training_step(views[2:], state)["loss"]
    assert out["loss/simclr"].item() == pytest.approx(alone_simclr.item(), rel=1e-5)
    assert out["loss/mae"].item() == pytest.approx(alone_mae.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(0.3 * alone_simclr.item() + 2.0 * alone_mae.item(), rel=1e-5)
    # One backbone: both objectives train the very same modules.
    assert simclr.backbone is mae.backbone is method.backbone
    assert mae.encoder.vit is method.backbone.model


def test_views_of_the_same_spec_are_made_once_and_each_objective_keeps_its_momentum():
    method = _built("byol+dino", {"dino_local_crops": 2, "dino_output_dim": 64, "dino_hidden_dim": 64,
                                  "dino_bottleneck_dim": 32, "byol_hidden_dim": 64})
    specs = method.view_specs(16)
    byol, dino = method.objectives["byol"], method.objectives["dino"]
    # At 16 px BYOL's two views are DINO's global crops: 2 + 2 local crops, not 2 + 4.
    assert len(specs) == 4 and len(dino.view_specs(16)) == 4 and len(byol.view_specs(16)) == 2
    assert method._view_index == {"byol": [0, 1], "dino": [0, 1, 2, 3]}
    assert method.momentum_pairs() == byol.momentum_pairs() + dino.momentum_pairs()
    state = StepState(step=0, total_steps=10)
    assert [m for m, _ in method.momentum_updates(state)] == [byol.momentum(state), dino.momentum(state)] == [0.99, 0.996]


def test_the_trainer_moves_each_objectives_targets_by_its_own_momentum(sample16, tmp_path):
    from studio.engine.train import Trainer

    settings = {"dino_local_crops": 0, "dino_output_dim": 32, "dino_hidden_dim": 32, "dino_bottleneck_dim": 16,
                "byol_hidden_dim": 32, "byol_momentum": 0.5, "dino_momentum": 0.9}
    cfg = tiny_train_config(method="byol+dino", steps=1, batch_size=16, monitor_every=-1, method_config=settings,
                            optimizer="adamw", lr=1e-3, **VIT)
    before = {}

    class Before(Collect):
        def on_start(self, info):  # the method is built, the first step not taken
            before.update({k: v.clone() for k, v in trainer.method.backbone.state_dict().items()})

    trainer = Trainer(cfg, sample16, tmp_path, callbacks=Before())
    assert trainer.run().status == "finished"
    m = trainer.method
    after = m.backbone.state_dict()
    byol_target = m.objectives["byol"].backbone_momentum.state_dict()
    dino_target = m.objectives["dino"].teacher_backbone.state_dict()
    key = next(k for k, v in before.items() if v.is_floating_point() and not torch.equal(v, after[k]))
    # Both targets started as the online backbone; one step: target = m * before + (1 - m) * after.
    assert torch.allclose(byol_target[key], 0.5 * before[key] + 0.5 * after[key], atol=1e-6)
    assert torch.allclose(dino_target[key], 0.9 * before[key] + 0.1 * after[key], atol=1e-6)


def test_a_combined_run_trains_end_to_end_and_logs_every_term(sample16, tmp_path):
    from studio.engine.train import Trainer

    rec = Collect()
    cfg = tiny_train_config(method="simclr+mae", steps=8, batch_size=32, monitor_every=-1,
                            method_config={**SMALL_MAE, "simclr_temperature": 0.1}, optimizer="adamw", lr=1e-3, **VIT)
    result = Trainer(cfg, sample16, tmp_path, callbacks=rec).run()
    assert result.status == "finished", result.reason
    loss, simclr, mae = (list(rec.metrics[k].values()) for k in ("loss", "loss/simclr", "loss/mae"))
    assert len(loss) == 8 and all(math.isfinite(v) for v in loss)
    for total, a, b in zip(loss, simclr, mae):
        assert total == pytest.approx(a + b, rel=1e-4)
    assert sum(loss[-3:]) < sum(loss[:3])


def test_a_combined_run_resumes_from_a_checkpoint_to_the_same_losses(sample16, tmp_path):
    from studio.engine.train import Trainer

    cfg = tiny_train_config(method="simclr+mae", steps=6, checkpoint_every=3, batch_size=16, monitor_every=-1,
                            method_config={**SMALL_MAE, "mae_weight": 0.5}, optimizer="adamw", lr=1e-3, **VIT)
    whole = Collect()
    assert Trainer(cfg, sample16, tmp_path / "a", callbacks=whole).run().status == "finished"
    resumed = Collect()
    result = Trainer(cfg, sample16, tmp_path / "b", callbacks=resumed, resume_from=tmp_path / "a" / "step-3.ckpt").run()
    assert result.status == "finished"
    for key in ("loss", "loss/simclr", "loss/mae"):
        assert sorted(resumed.metrics[key]) == [4, 5, 6]
        for step in (4, 5, 6):
            assert resumed.metrics[key][step] == pytest.approx(whole.metrics[key][step], abs=1e-5), (key, step)


def test_a_combination_is_described_from_its_objectives():
    cls = method_class("mae+simclr")
    assert cls.name == "mae+simclr" and cls.family == "combined" and cls.combines == ("mae", "simclr")
    assert cls.backbone_kinds == ("vit",) and cls.default_optimizer == "adamw"  # MAE's: ViT only, its optimiser first
    names = [f.name for f in cls.fields()]
    assert names[0] == "mae_weight" and "simclr_temperature" in names and "mae_mask_ratio" in names
    temperature = next(f for f in cls.fields() if f.name == "simclr_temperature")
    assert temperature.label == "SimCLR temperature" and temperature.min == 1e-3 and temperature.default == 0.5
    assert "simclr_temperature" in cls.collapse_advice  # the advice names the combination's settings
    # After a collapse the first objective with a remedy gives it, under the combination's names.
    both = method_class("simclr+byol")
    assert both.collapse_change(build_config(both.config_class)) == {"byol_momentum": 0.996}
    assert both.collapse_change(build_config(both.config_class, {"byol_momentum": 0.996})) == {}
    recipe = METHODS["simclr+mae"]
    assert method_class("SimCLR+MAE") is recipe and recipe.title == "SimCLR + MAE" and recipe.default_lr == 1.5e-4
    from studio.engine.errors import ConfigError

    for bad, words in (("simclr+simclr", "only once"), ("mae+nope", "unknown method"),
                       ("simclr+ibot+dinov2", "ViT"), ("simclr+mae+byol+simclr", "only once")):
        try:
            method_class(bad).check_backbone("cnn", "resnet18")
        except ConfigError as exc:
            assert words in str(exc), (bad, str(exc))
        else:
            raise AssertionError(f"{bad} was accepted on a CNN")


def test_a_combined_runs_stored_config_keeps_its_objectives_former_defaults():
    from studio.engine.train import TrainConfig

    stored = {"method": "dino+mae", "method_config": {"mae_mask_ratio": 0.6}}
    config = TrainConfig.from_dict(stored)
    assert config.method_config == {"dino_head_batch_norm": False, "mae_mask_ratio": 0.6}
    written = TrainConfig(method="dino+mae").to_dict()["method_config"]
    assert written == {"dino_head_batch_norm": True}
    assert TrainConfig.from_dict({"method": "dino"}).method_config == {"head_batch_norm": False}  # as before


def test_objectives_and_their_settings_from_the_command_line():
    from studio.engine.methods.combined import objectives_setting, parse_objective

    assert parse_objective("MAE:0.5") == ("mae", 0.5) and parse_objective("simclr") == ("simclr", None)
    assert objectives_setting([("simclr", None)], {"simclr.temperature": "0.2"}) == ("simclr", {"temperature": "0.2"})
    method, settings = objectives_setting([("mae", 0.5)], {"simclr.temperature": "0.2", "mae.mask_ratio": "0.6"},
                                          method="simclr")
    assert method == "simclr+mae"
    assert settings == {"mae_weight": 0.5, "simclr_temperature": "0.2", "mae_mask_ratio": "0.6"}
    # The same names continue a stored run (--branch --set METHOD.FIELD=VALUE), single or combined.
    from studio.engine.methods.combined import dotted_settings

    assert dotted_settings("simclr", {"simclr.temperature": 0.2, "output_dim": 64}) == {"temperature": 0.2,
                                                                                        "output_dim": 64}
    assert dotted_settings("simclr+mae", {"mae.mask_ratio": 0.6, "simclr_temperature": 0.2}) == {
        "mae_mask_ratio": 0.6, "simclr_temperature": 0.2}


def test_train_with_objectives_on_the_command_line(tmp_path):
    from studio.cli import main

    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
        return code, out.getvalue(), err.getvalue()

    path = tmp_path / "proj"
    assert run("init", path)[0] == 0
    assert run("dataset", "add", path, "sample")[0] == 0
    code, out, err = run("train", path, "--dataset", "sample", "--backbone", "vit_tiny", "--backbone-option",
                         "num_layers=2", "--backbone-option", "patch_size=4", "--image-size", "16", "--device", "cpu",
                         "--objective", "simclr", "--objective", "mae:0.5", "--set", "mae.decoder_dim=32",
                         "--set", "mae.decoder_depth=1", "--set", "mae.decoder_heads=4", "--steps", "2",
                         "--batch-size", "16", "--log-every", "1", "--monitor-every", "-1", "--json")
    assert code == 0, err
    result = json.loads(out)
    code, out, err = run("metrics", path, str(result["run_id"]), "--json")
    series = json.loads(out)["series"]
    assert {"loss", "loss/simclr", "loss/mae"} <= set(series)
    assert series["loss"][-1][1] == pytest.approx(series["loss/simclr"][-1][1] + 0.5 * series["loss/mae"][-1][1],
                                                  rel=1e-4)
    code, _, err = run("train", path, "--dataset", "sample", "--backbone", "vit_tiny", "--objective", "simclr",
                       "--objective", "mae", "--set", "mae.nope=1", "--steps", "1")
    assert code == 1 and "nope" in err


def test_the_view_preview_shows_every_objectives_views_once():
    from studio.engine.data import SampleSource
    from studio.services.preview import make_preview

    cfg = tiny_train_config(method="byol+dino", method_config={"dino_local_crops": 2}, **VIT)
    preview = make_preview(SampleSource(limit=8), cfg, n=2)
    assert preview.labels == ["view 1 (global, 16 px)", "view 2 (global, 16 px)", "view 3 (local, 8 px)",
                              "view 4 (local, 8 px)"]  # BYOL's two views are DINO's global crops
    cfg = tiny_train_config(method="simclr+mae", **VIT)
    assert [label.split(" (")[1] for label in make_preview(SampleSource(limit=8), cfg, n=2).labels] == [
        "global, 16 px)"] * 3  # MAE's view beside SimCLR's two is no local crop
