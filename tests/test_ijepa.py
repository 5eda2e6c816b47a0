"""I-JEPA: its loss against the paper's equation, its blocks, its momentum, and a short run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_train_config
from studio.engine.methods import METHODS, StepState, build_config

VIT = dict(backbone="vit_tiny", backbone_options={"num_layers": 2, "patch_size": 4})
SMALL = {"predictor_depth": 1, "predictor_dim": 48}


def _method(image_size=16, **config):
    from studio.engine.backbones import build_backbone

    cls = METHODS["ijepa"]
    backbone = build_backbone("vit_tiny", image_size, num_layers=2, patch_size=4)
    return cls(backbone, build_config(cls.config_class, {**SMALL, **config}))


def test_ijepa_loss_is_the_mean_distance_of_predicted_to_target_patch_representations():
    from studio.engine.methods.ijepa import ijepa_loss

    g = torch.Generator().manual_seed(0)
    blocks, b, k, d = 3, 2, 5, 4
    pred, target = torch.randn(blocks * b, k, d, generator=g), torch.randn(blocks * b, k, d, generator=g)
    # Eq. 1: 1/M sum over blocks i and their patches j of ||s^_y(j) - s_y(j)||^2, here per patch and dimension.
    total = 0.0
    for i in range(blocks * b):
        for j in range(k):
            total += sum((pred[i, j, c] - target[i, j, c]).item() ** 2 for c in range(d))
    assert ijepa_loss(pred, target, "l2").item() == pytest.approx(total / (blocks * b * k * d), rel=1e-5)
    huber = 0.0
    for diff in (pred - target).flatten().tolist():
        huber += 0.5 * diff**2 if abs(diff) < 1 else abs(diff) - 0.5
    assert ijepa_loss(pred, target, "smooth_l1").item() == pytest.approx(huber / pred.numel(), rel=1e-5)


def test_ijepa_context_and_targets_are_blocks_of_the_papers_scales_that_do_not_overlap():
    method = _method(image_size=32)  # an 8 x 8 grid of patches
    context, targets = method.masks.sample(16, step=5)
    assert len(context) == 1 and len(targets) == 4
    n = method.grid**2
    for t in targets:
        # 0.15-0.2 of 64 patches: a block of 9-12 (the batch keeps its smallest), the same size for every image.
        assert t.shape[0] == 16 and 6 <= t.shape[1] <= 12 and int(t.max()) < n
    for i in range(16):
        ctx = set(context[0][i].tolist())
        hidden = set().union(*(set(t[i].tolist()) for t in targets))
        assert ctx and not ctx & hidden, "the context must not show the patches it predicts"
    # Seeded by the step: a resumed run draws the same block sizes as an uninterrupted one.
    again = method.masks.sample(16, step=5)
    assert [t.shape for t in again[1]] == [t.shape for t in targets]


def test_ijepa_predicts_the_target_encoders_layer_normalised_patch_tokens():
    method = _method()
    images = torch.randn(4, 3, 16, 16)
    context, targets = method.masks.sample(4, step=0)
    pred, target = method.predict(images, context, targets)
    b, m = 4, len(targets)
    assert pred.shape == target.shape == (m * b, targets[0].shape[1], method.backbone.feature_dim)
    with torch.no_grad():
        tokens = method.target_encoder.encode(images)[:, 1:]
        tokens = F.layer_norm(tokens, (tokens.shape[-1],))
    # Block-major: block i of image j is row i * B + j.
    i, j = m - 1, 2
    assert torch.allclose(target[i * b + j], tokens[j, targets[i][j]], atol=1e-6)
    assert not target.requires_grad and pred.requires_grad


def test_ijepa_declares_its_target_encoder_and_raises_momentum_linearly_to_one():
    method = _method()
    pairs = method.momentum_pairs()
    assert pairs == [(method.backbone, method.target_backbone)]
    assert not any(p.requires_grad for p in method.target_backbone.parameters())
    total = 11
    values = [method.momentum(StepState(step=s, total_steps=total)) for s in range(total)]
    assert values[0] == pytest.approx(0.996) and values[-1] == pytest.approx(1.0)
    assert values[5] == pytest.approx(0.998)  # halfway: linear, not the cosine of BYOL and DINO


def test_ijepa_refuses_a_predictor_width_the_heads_do_not_divide():
    from studio.engine.errors import ConfigError

    with pytest.raises(ConfigError, match="attention heads"):
        _method(predictor_dim=50)  # vit_tiny has 3 heads


def test_ijepa_trains_end_to_end_on_the_cpu(tmp_path):
    from studio.engine.data import SampleSource, decode_images
    from studio.engine.train import Trainer, TrainingCallbacks

    losses = []

    class Recorder(TrainingCallbacks):
        def on_metrics(self, step, epoch, metrics):
            if "loss" in metrics:
                losses.append(metrics["loss"])

    cfg = tiny_train_config(method="ijepa", steps=12, batch_size=32, monitor_every=-1, method_config=SMALL,
                            optimizer="adamw", lr=1e-3, **VIT)
    result = Trainer(cfg, decode_images(SampleSource(limit=64), 16), tmp_path, callbacks=Recorder()).run()
    assert result.status == "finished", result.reason
    assert len(losses) == 12 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) < sum(losses[:3])


def test_the_view_preview_shows_the_context_block():
    from studio.engine.data import SampleSource
    from studio.services.preview import make_preview

    cfg = tiny_train_config(method="ijepa", method_config=SMALL, image_size=32, **VIT)
    preview = make_preview(SampleSource(limit=8), cfg, n=3)
    assert preview.labels == ["view 1 (global, 32 px)", "view 1: the context block"]
    method = _method(image_size=32)
    torch.manual_seed(0)
    hidden = method.context_mask(3)
    torch.manual_seed(0)
    context, targets = method.masks.sample(3, 0)
    assert hidden.shape == (3, 8, 8)
    for i in range(3):
        assert sorted(torch.nonzero(~hidden[i].flatten()).flatten().tolist()) == sorted(context[0][i].tolist())
        assert hidden[i].flatten()[targets[0][i]].all()  # what is predicted is not seen
    # The grey patches of the preview are the hidden ones: a masked patch differs from the view's.
    row = preview.rows[0]
    view, masked = row.views[0].astype(int), row.views[1].astype(int)
    shown = [(r, c) for r in range(8) for c in range(8) if (view[r * 4:(r + 1) * 4, c * 4:(c + 1) * 4]
                                                              == masked[r * 4:(r + 1) * 4, c * 4:(c + 1) * 4]).all()]
    assert 0 < len(shown) < 64
