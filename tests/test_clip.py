"""CLIP: its losses against their equations, training on captions of every kind, zero-shot
classification rising above chance, and locked-image tuning from another run's checkpoint."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_train_config, write_image_folder
from test_captions import SCRIPTS

TINY_TEXT = {"text_tower": "tiny", "embed_dim": 32, "context_length": 16}
VIT1 = dict(backbone="vit_tiny", backbone_options={"num_layers": 1, "patch_size": 4})


def clip_config(**overrides):
    base = dict(method="clip", image_size=8, batch_size=12, lr=1e-3, monitor_every=-1, method_config=dict(TINY_TEXT), **VIT1)
    base.update(overrides)
    return tiny_train_config(**base)


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    """Twelve 8 px images of three colours in class folders: templated captions."""
    from studio.engine.data import FolderSource, decode_images
    from studio.engine.data.captions import read_captions

    root = write_image_folder(tmp_path_factory.mktemp("clip") / "colours", classes=("red", "green", "blue"), per_class=4, size=8)
    source = FolderSource(root)
    data = decode_images(source, 8)
    data.captions = read_captions(source).by_image
    return data


def test_clip_loss_is_the_symmetric_infonce_of_the_paper():
    from studio.engine.methods.clip import clip_loss, siglip_loss

    g = torch.Generator().manual_seed(0)
    img, txt = F.normalize(torch.randn(5, 8, generator=g), dim=1), F.normalize(torch.randn(5, 8, generator=g), dim=1)
    scale = torch.tensor(1 / 0.07)
    logits = scale * img @ txt.T
    labels = torch.arange(5)
    expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert torch.allclose(clip_loss(img, txt, scale), expected, atol=1e-5)
    bias = torch.tensor(-10.0)
    z = 2 * torch.eye(5) - 1  # +1 on matching pairs, -1 elsewhere
    sig = -F.logsigmoid(z * (10.0 * img @ txt.T + bias)).sum() / 5
    assert torch.allclose(siglip_loss(img, txt, torch.tensor(10.0), bias), sig, atol=1e-4)


def test_the_temperature_starts_at_0_07_and_the_logit_scale_is_clamped_at_100():
    from studio.engine.backbones import build_backbone
    from studio.engine.methods import StepState, build_config
    from studio.engine.methods.clip import CLIP, CLIPConfig

    method = CLIP(build_backbone("vit_tiny", 8, num_layers=1, patch_size=4), build_config(CLIPConfig, TINY_TEXT))
    assert method.logit_scale.exp().item() == pytest.approx(1 / 0.07)
    with torch.no_grad():
        method.logit_scale.fill_(10.0)
    method.on_after_step(StepState(0, 1))
    assert method.logit_scale.exp().item() == pytest.approx(100.0)


def test_clip_on_a_dataset_without_captions_fails_with_a_clear_reason(colours, tmp_path):
    from studio.engine.data.cache import DecodedImages
    from studio.engine.train import Trainer

    bare = DecodedImages(colours.images, colours.labels, colours.names, colours.class_names)
    result = Trainer(clip_config(steps=1), bare, tmp_path / "run").run()
    assert result.status == "failed" and "captions" in result.reason and "class" in result.reason


def test_captions_in_every_script_empty_and_10000_characters_train(colours, tmp_path):
    from studio.engine.data.cache import DecodedImages
    from studio.engine.train import Trainer

    captions = [[s] for s in SCRIPTS] + [[], ["x" * 10_000], ["<script>alert(1)</script>", "&lt;b&gt;"], [""]]
    data = DecodedImages(colours.images, colours.labels, colours.names, colours.class_names, captions=captions)
    losses = []

    class Losses:
        def __getattr__(self, name):
            return lambda *a, **k: None

        def on_metrics(self, step, epoch, metrics):
            if "loss" in metrics:
                losses.append(metrics["loss"])

    result = Trainer(clip_config(steps=3), data, tmp_path / "run", callbacks=Losses()).run()
    assert result.status == "finished", result.reason
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)


def test_zero_shot_top1_rises_clearly_above_chance(colours, tmp_path):
    from studio.engine.eval.zeroshot import zero_shot_scores
    from studio.engine.train import Trainer
    from studio.engine.train.trainer import build_method

    config = clip_config(steps=12)
    torch.manual_seed(config.seed)
    before = zero_shot_scores(build_method(config), colours.images, colours.labels, colours.class_names)["top1"]
    trainer = Trainer(config, colours, tmp_path / "run")
    result = trainer.run()
    assert result.status == "finished", result.reason
    after = zero_shot_scores(trainer.method, colours.images, colours.labels, colours.class_names)
    chance = 1 / 3
    assert after["top1"] >= chance + 0.3 and after["top1"] > before, (before, after["top1"])
    assert after["predictions"].shape == (12,)


def test_image_text_recall_counts_an_images_own_captions():
    from studio.engine.eval.zeroshot import image_text_recall

    img = np.eye(3, dtype=np.float32)
    # captions 0, 1 belong to image 0, caption 2 to image 1 (but looks like image 2), caption 3 to image 2
    txt = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 0, 1], [0, 0.2, 0.9]], dtype=np.float32)
    r = image_text_recall(img, txt, np.array([0, 0, 1, 2]), ks=(1, 2))
    # image 0 -> caption 0 (hit); image 1 -> caption 3 first (image 2's), its own caption 2 is third;
    # image 2 -> caption 2 (image 1's), its own caption 3 second
    assert r["image_to_text_recall@1"] == pytest.approx(1 / 3) and r["image_to_text_recall@2"] == pytest.approx(2 / 3)
    # caption 2 -> image 2 first (miss), image 1 not in its top 2 either
    assert r["text_to_image_recall@1"] == pytest.approx(3 / 4) and r["text_to_image_recall@2"] == pytest.approx(3 / 4)


def test_lit_starts_from_another_runs_encoder_and_keeps_it_locked(colours, tmp_path):
    from studio.engine.train import Trainer, load_checkpoint
    from studio.engine.train.optim import param_groups

    ssl = Trainer(tiny_train_config(image_size=8, batch_size=12, steps=2, monitor_every=-1, **VIT1), colours, tmp_path / "ssl")
    assert ssl.run().status == "finished"
    pretrained = {k[len("backbone."):]: v for k, v in load_checkpoint(tmp_path / "ssl" / "last.ckpt")["model"].items()
                  if k.startswith("backbone.")}
    locked = Trainer(clip_config(steps=3, init_from=str(tmp_path / "ssl" / "last.ckpt"),
                                 method_config={**TINY_TEXT, "lock_image": True}), colours, tmp_path / "lit")
    assert locked.run().status == "finished"
    after = locked.method.backbone.state_dict()
    assert all(torch.equal(after[k], v) for k, v in pretrained.items())  # not one weight moved
    assert not any(p.requires_grad for p in locked.method.backbone.parameters())
    assert not torch.equal(locked.method.text.token_embedding.weight, Trainer(clip_config(steps=1), colours, tmp_path / "x")
                           ._setup().method.text.token_embedding.weight)  # the text side trained

    unlocked = Trainer(clip_config(steps=1, init_from=str(tmp_path / "ssl" / "last.ckpt"),
                                   method_config={**TINY_TEXT, "image_lr_scale": 0.1}), colours, tmp_path / "lit2")
    t = unlocked._setup()
    lrs = sorted({g["lr"] for g in t.optimizer.param_groups})
    assert lrs == pytest.approx([1e-4, 1e-3])  # the image encoder at a tenth of the run's rate
    assert all(torch.equal(t.method.backbone.state_dict()[k], v) for k, v in pretrained.items())
    assert len(param_groups(t.method, 0.1)) == 4


def test_an_init_checkpoint_of_another_backbone_is_refused(colours, tmp_path):
    from studio.engine.train import Trainer

    ssl = Trainer(tiny_train_config(image_size=8, batch_size=12, steps=1, monitor_every=-1, **VIT1), colours, tmp_path / "ssl")
    assert ssl.run().status == "finished"
    result = Trainer(clip_config(steps=1, backbone="resnet18", backbone_options={}, init_from=str(tmp_path / "ssl" / "last.ckpt")),
                     colours, tmp_path / "lit").run()
    assert result.status == "failed" and "vit_tiny" in result.reason and "resnet18" in result.reason


def test_the_cost_estimate_measures_clip_steps_on_the_captions(colours):
    from studio.services.estimate import estimate_cost

    est = estimate_cost(clip_config(steps=10), colours, steps=2)
    assert est.seconds_per_step > 0 and est.total_steps == 10 and est.peak_memory_bytes > 0


def test_clip_combines_with_an_image_objective(colours, tmp_path):
    """CLIP + SimCLR on one backbone: the combination hands CLIP the captions (attach_data) and the
    batch's indices, and logs both terms."""
    from studio.engine.train import Trainer

    terms = []

    class Terms:
        def __getattr__(self, name):
            return lambda *a, **k: None

        def on_metrics(self, step, epoch, metrics):
            if "loss" in metrics:
                terms.append({k: v for k, v in metrics.items() if k.startswith("loss")})

    config = clip_config(method="clip+simclr", steps=2, method_config={f"clip_{k}": v for k, v in TINY_TEXT.items()})
    result = Trainer(config, colours, tmp_path / "run", callbacks=Terms()).run()
    assert result.status == "finished", result.reason
    assert terms and all(math.isfinite(t["loss/clip"]) and math.isfinite(t["loss/simclr"]) for t in terms)
    assert terms[-1]["loss"] == pytest.approx(terms[-1]["loss/clip"] + terms[-1]["loss/simclr"], rel=1e-5)
