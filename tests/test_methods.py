"""Every pretext method: its loss against the paper's equation written out in plain torch, its
schedules at the first and last step, and a short training on the sample that must lower the
loss, learn to match two views of an image, and not collapse the embeddings."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_train_config
from studio.engine.errors import ConfigError
from studio.engine.eval.health import STD_RATIO_COLLAPSE_THRESHOLD, health_report
from studio.engine.methods import METHODS, StepState, build_config
from studio.engine.train import TrainingCallbacks

ALL = ("simclr", "moco", "mocov3", "nnclr", "byol", "simsiam", "dino", "swav", "barlowtwins", "vicreg", "mae",
       "simmim", "ijepa", "ibot", "dinov2", "simclr+mae", "clip")
# The methods that learn from images alone, trained below on the sample without captions (CLIP's
# own training tests are in test_clip.py).
IMAGE_ONLY = tuple(n for n in ALL if n != "clip")


def test_methods_table_lists_every_method_and_describes_it():
    assert set(METHODS) == set(ALL)
    families = set()
    for name, cls in METHODS.items():
        d = json.loads(json.dumps(cls.describe()))  # what `methods --json` prints
        assert d["name"] == name and d["summary"] and d["paper"] and d["fields"]
        families.add(d["family"])
        for f in d["fields"]:
            assert f["help"], f"{name}.{f['name']} has no help text"
            assert f["type"] in ("int", "float", "bool", "str")
        build_config(cls.config_class)  # the defaults are valid
    assert families == {"contrastive", "self-distillation", "clustering", "redundancy-reduction",
                        "masked-image-modelling", "combined"}
    assert METHODS["dinov2"].describe()["combines"] == ["dino", "ibot", "koleo"]
    assert METHODS["mae"].describe()["backbones"] == ["vit"] and METHODS["simmim"].describe()["backbones"] == ["vit"]


def test_the_readme_lists_every_method():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Methods", 1)[1].split("\n## ", 1)[0]
    for name, cls in METHODS.items():
        assert f"| `{name}` ({cls.title}) | {cls.family}" in section, f"README's Methods table lacks {name}"


# -- losses against the papers' equations -----------------------------------------------------

def _patch(image: torch.Tensor, idx: int, p: int) -> torch.Tensor:
    """Patch `idx` (row-major) of a (3, H, W) image as its pixels in (row, column, channel) order."""
    r, col = divmod(idx, image.shape[-1] // p)
    return image[:, r * p:(r + 1) * p, col * p:(col + 1) * p].permute(1, 2, 0).reshape(-1)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_moco_loss_is_infonce_with_a_queue():
    from studio.engine.methods.moco import moco_loss

    g = _gen()
    q, k = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    queue = F.normalize(torch.randn(20, 8, generator=g), dim=1)
    tau = 0.2
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    pos = (qn * kn).sum(1) / tau
    neg = qn @ queue.T / tau
    # MoCo eq. 1: -log exp(q.k+/tau) / (exp(q.k+/tau) + sum_i exp(q.k_i/tau))
    expected = (-(pos - torch.logsumexp(torch.cat([pos[:, None], neg], 1), dim=1))).mean()
    assert torch.allclose(moco_loss(q, k, queue, tau), expected, atol=1e-5)


def test_moco_enqueues_the_keys_of_its_momentum_encoder_into_a_queue_that_starts_empty():
    from studio.engine.backbones import build_backbone
    from studio.engine.methods.moco import moco_loss

    torch.manual_seed(0)
    cls = METHODS["moco"]
    m = cls(build_backbone("vit_tiny", 16, num_layers=1, patch_size=4),
            build_config(cls.config_class, {"queue_size": 6, "hidden_dim": 32, "output_dim": 8}))
    x1, x2 = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    m.train()
    # The first step has no queued keys: its negatives are the batch's other keys, never the
    # random vectors lightly's bank starts with (a collapsed output beats those).
    with torch.no_grad():
        q, k = m.projection_head(m.backbone(x1)), m.keys(x2)
    first = m.training_step([x1, x2], StepState(0, 10))["loss"]
    assert torch.allclose(first, moco_loss(q, k, torch.zeros(0, 8), m.config.temperature), atol=1e-5)
    assert int(m.queue.filled) == 4
    assert torch.allclose(m.queue.bank[:4], F.normalize(k, dim=1), atol=1e-5)
    # The second step contrasts against those 4 keys only; then 2 more fill the queue and it wraps.
    with torch.no_grad():
        q2, k2 = m.projection_head(m.backbone(x2)), m.keys(x1)
    second = m.training_step([x2, x1], StepState(1, 10))["loss"]
    assert torch.allclose(second, moco_loss(q2, k2, F.normalize(k, dim=1), m.config.temperature), atol=1e-5)
    assert int(m.queue.filled) == 6 and len(m.queue(k2)) == 6
    assert m.momentum_pairs()[0][1] is m.backbone_momentum
    assert not any(p.requires_grad for p in m.backbone_momentum.parameters())


def test_byol_loss_is_the_papers_normalised_mse_rescaled():
    from studio.engine.methods.byol import byol_loss

    g = _gen(1)
    p1, z2, p2, z1 = (torch.randn(5, 7, generator=g) for _ in range(4))

    def paper(p, z):  # BYOL eq. 2: || p/|p| - z/|z| ||^2, averaged over the batch
        return ((p / p.norm(dim=1, keepdim=True) - z / z.norm(dim=1, keepdim=True)) ** 2).sum(1).mean()

    symmetric = paper(p1, z2) + paper(p2, z1)  # eq. 3
    loss = byol_loss(p1, z2, p2, z1)
    assert torch.allclose(4 + 4 * loss, symmetric, atol=1e-5)
    # stop-gradient on the target side
    p1.requires_grad_(True)
    z2.requires_grad_(True)
    byol_loss(p1, z2, p2, z1).backward()
    assert z2.grad is None and p1.grad is not None


def test_simsiam_loss_is_symmetric_negative_cosine_with_stop_gradient():
    from studio.engine.methods.simsiam import simsiam_loss

    g = _gen(2)
    p1, z2, p2, z1 = (torch.randn(5, 7, generator=g) for _ in range(4))

    def D(p, z):  # SimSiam eq. 1
        return -((p / p.norm(dim=1, keepdim=True)) * (z / z.norm(dim=1, keepdim=True))).sum(1).mean()

    assert torch.allclose(simsiam_loss(p1, z2, p2, z1), 0.5 * D(p1, z2) + 0.5 * D(p2, z1), atol=1e-6)


def test_dino_loss_is_cross_entropy_of_centred_sharpened_teacher_over_crops():
    from studio.engine.methods.dino import dino_loss

    g = _gen(3)
    k, b = 10, 4
    teacher = [torch.randn(b, k, generator=g) for _ in range(2)]
    student = [torch.randn(b, k, generator=g) for _ in range(4)]  # 2 global + 2 local
    center = torch.randn(k, generator=g) * 0.1
    tt, ts = 0.04, 0.1
    terms = []
    for i, t in enumerate(teacher):
        pt = torch.softmax((t - center) / tt, dim=1)
        for j, s in enumerate(student):
            if i == j:
                continue  # the same view is not compared with itself
            terms.append(-(pt * torch.log_softmax(s / ts, dim=1)).sum(1).mean())
    expected = torch.stack(terms).mean()
    assert torch.allclose(dino_loss(teacher, student, center, tt, ts), expected, atol=1e-5)


def test_dino_centre_moves_as_an_ema_of_the_teacher_output():
    from lightly.loss import DINOLoss

    crit = DINOLoss(output_dim=6, center_momentum=0.9)
    t = [torch.randn(3, 6), torch.randn(3, 6)]
    crit(t, [torch.randn(3, 6), torch.randn(3, 6)], teacher_temp=0.04)
    assert torch.allclose(crit.center.flatten(), 0.1 * torch.cat(t).mean(0), atol=1e-6)


def test_barlow_twins_loss_is_the_cross_correlation_objective():
    from studio.engine.methods.barlowtwins import barlow_twins_loss

    g = _gen(4)
    z1, z2 = torch.randn(16, 6, generator=g), torch.randn(16, 6, generator=g) * 3 + 1
    lam = 5e-3

    def standardise(z):  # over the batch, as the paper's batch norm without affine
        return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5)

    c = standardise(z1).T @ standardise(z2) / z1.shape[0]  # eq. 2
    on = ((1 - torch.diagonal(c)) ** 2).sum()
    off = (c ** 2).sum() - (torch.diagonal(c) ** 2).sum()
    assert torch.allclose(barlow_twins_loss(z1, z2, lam), on + lam * off, atol=1e-4)


def test_vicreg_loss_is_invariance_variance_covariance():
    from studio.engine.methods.vicreg import vicreg_loss

    g = _gen(5)
    z1, z2 = torch.randn(12, 5, generator=g) * 0.5, torch.randn(12, 5, generator=g) * 2
    n, d = z1.shape

    def v(z):  # variance hinge on the std of each dimension
        return F.relu(1 - torch.sqrt(z.var(0) + 1e-4)).mean()

    def c(z):  # squared off-diagonal covariances over d
        zc = z - z.mean(0)
        cov = zc.T @ zc / (n - 1)
        return ((cov ** 2).sum() - (torch.diagonal(cov) ** 2).sum()) / d

    s = ((z1 - z2) ** 2).sum(1).mean() / d  # mean squared distance per dimension
    expected = 25 * s + 25 * (v(z1) + v(z2)) / 2 + 1 * (c(z1) + c(z2))
    assert torch.allclose(vicreg_loss(z1, z2, 25, 25, 1), expected, atol=1e-5)


def test_mocov3_loss_is_scaled_infonce_against_the_batchs_keys():
    from studio.engine.methods.mocov3 import mocov3_loss

    g = _gen(11)
    q, k = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    tau = 0.2
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    # Algorithm 1: the positive of query i is key i, the batch's other keys its negatives, x 2 tau.
    expected = sum(-(qn[i] @ kn[i] / tau - torch.logsumexp(qn[i] @ kn.T / tau, 0)) for i in range(6)) / 6 * 2 * tau
    assert torch.allclose(mocov3_loss(q, k, tau), expected, atol=1e-5)


def test_mocov3_keeps_a_vits_random_patch_projection_fixed():
    from studio.engine.backbones import build_backbone
    from studio.engine.methods.mocov3 import MoCoV3, MoCoV3Config

    vit = build_backbone("vit_tiny", image_size=16, num_layers=1, patch_size=4)
    method = MoCoV3(vit, MoCoV3Config(hidden_dim=32, output_dim=16))
    patch = vit.model.conv_proj.weight.detach().clone()
    views = [torch.randn(4, 3, 16, 16, generator=_gen(1)) for _ in range(2)]
    method.training_step(views, StepState(0, 10))["loss"].backward()
    assert vit.model.conv_proj.weight.grad is None and torch.equal(vit.model.conv_proj.weight, patch)
    assert any(p.grad is not None for p in vit.model.encoder.parameters())
    free = MoCoV3(build_backbone("vit_tiny", image_size=16, num_layers=1, patch_size=4),
                  MoCoV3Config(hidden_dim=32, output_dim=16, freeze_patch_embedding=False))
    assert free.backbone.model.conv_proj.weight.requires_grad


def test_nnclr_loss_is_ntxent_with_the_neighbour_as_positive():
    from studio.engine.methods.banks import FilledMemoryBank
    from studio.engine.methods.nnclr import nearest_neighbours, nnclr_loss

    g = _gen(12)
    support = F.normalize(torch.randn(10, 8, generator=g), dim=1)
    bank = FilledMemoryBank(10, 8)
    assert len(bank(support[:4])) == 0  # it starts empty: no random neighbours
    bank.add(support[:6])
    bank.add(support[6:])
    z, p = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    held = bank(z, update=False)
    assert torch.equal(held, support)
    nn_z = nearest_neighbours(z, held)
    # NN(z_i): the support embedding of highest cosine similarity with z_i.
    assert torch.allclose(nn_z, support[(F.normalize(z, dim=1) @ support.T).argmax(1)])
    assert torch.equal(nearest_neighbours(z, held[:0]), z)  # an empty support set: itself
    tau = 0.1
    out = F.normalize(torch.cat([nn_z, p]), dim=1)
    sim = out @ out.T / tau
    n = len(z)
    expected = 0.0
    for i in range(2 * n):
        others = torch.cat([sim[i, :i], sim[i, i + 1:]])
        expected = expected - (sim[i, (i + n) % (2 * n)] - torch.logsumexp(others, 0))
    assert torch.allclose(nnclr_loss(nn_z, p, tau), expected / (2 * n), atol=1e-5)


def test_swav_loss_is_swapped_prediction_of_sinkhorn_codes():
    from studio.engine.backbones import build_backbone
    from studio.engine.methods.swav import SwAV, SwAVConfig, swav_loss

    def sinkhorn(scores, eps=0.05, iters=3):  # the paper's algorithm 1, in plain torch
        q = torch.exp(scores / eps).T
        q = q / q.sum()
        k, b = q.shape
        for _ in range(iters):
            q = q / q.sum(1, keepdim=True) / k
            q = q / q.sum(0, keepdim=True) / b
        return (q * b).T

    g = _gen(13)
    high = [torch.randn(6, 5, generator=g) for _ in range(2)]
    low = [torch.randn(6, 5, generator=g) for _ in range(3)]
    codes = [sinkhorn(h) for h in high]
    assert torch.allclose(codes[0].sum(1), torch.ones(6), atol=1e-5)  # each image's code is a distribution
    method = SwAV(build_backbone("resnet18", image_size=16), SwAVConfig(prototypes=5, hidden_dim=16, output_dim=8))
    assert torch.allclose(method.criterion(high, low), swav_loss(high + low, codes, 0.1), atol=1e-5)


def test_simmim_loss_is_l1_on_the_raw_pixels_of_masked_patches():
    from lightly.models.utils import patchify

    from studio.engine.methods.simmim import simmim_loss

    g = _gen(14)
    b, p, side = 2, 4, 8
    images = torch.randn(b, 3, side, side, generator=g)
    idx_mask = torch.tensor([[0, 3], [2, 1]])
    pred = torch.randn(b, 2, 3 * p * p, generator=g)
    total, count = 0.0, 0
    for i in range(b):
        for j, idx in enumerate(idx_mask[i].tolist()):
            target = _patch(images[i], idx, p)
            total += (pred[i, j] - target).abs().sum()
            count += target.numel()
    assert torch.allclose(simmim_loss(pred, patchify(images, p), idx_mask), total / count, atol=1e-6)


def test_ibot_patch_loss_is_cross_entropy_over_masked_patches_per_image():
    from studio.engine.methods.ibot import ibot_patch_loss

    g = _gen(15)
    mask = torch.zeros(2, 2, 2, dtype=torch.bool)
    mask[0, 0, 0] = mask[0, 1, 1] = mask[1, 0, 1] = True  # image 0: two patches, image 1: one
    t, s = torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    center = torch.randn(1, 6, generator=g)
    tt, ts = 0.07, 0.1
    ce = -(F.softmax((t - center) / tt, dim=1) * F.log_softmax(s / ts, dim=1)).sum(1)
    expected = (ce[:2].mean() + ce[2]) / 2  # mean over each image's masked patches, then over images
    assert torch.allclose(ibot_patch_loss(t, s, mask, center, tt, ts), expected, atol=1e-5)


@pytest.mark.parametrize("name", ["ibot", "dinov2"])
def test_a_combined_recipes_loss_is_the_weighted_sum_of_its_terms(name):
    from studio.engine.backbones import build_backbone

    cls = METHODS[name]
    torch.manual_seed(0)
    cfg = build_config(cls.config_class, {"hidden_dim": 32, "bottleneck_dim": 16, "output_dim": 32, "local_crops": 1,
                                          "mask_probability": 1.0, "ibot_weight": 0.7, "koleo_weight": 0.3})
    method = cls(build_backbone("vit_tiny", image_size=16, num_layers=1, patch_size=4), cfg)
    views = [torch.randn(4, 3, 16, 16, generator=_gen(2)) for _ in range(2)] + [torch.randn(4, 3, 8, 8, generator=_gen(3))]
    out = method.training_step(views, StepState(0, 10))
    assert {"loss/dino", "loss/ibot", "loss/koleo"} <= set(out)  # each term is logged as its own metric
    total = out["loss/dino"] + 0.7 * out["loss/ibot"] + 0.3 * out["loss/koleo"]
    assert torch.allclose(out["loss"], total)
    assert cls.describe()["family"] == "combined" and cls.describe()["backbones"] == ["vit"]


def test_mae_loss_is_mse_on_masked_patches_with_normalised_pixels():
    from lightly.models.utils import patchify

    from studio.engine.methods.mae import mae_loss

    g = _gen(6)
    b, p, side = 2, 4, 8
    images = torch.randn(b, 3, side, side, generator=g)
    patches = patchify(images, p)  # (b, 4, 48)
    idx_mask = torch.tensor([[0, 3, 2], [1, 2, 0]])
    pred = torch.randn(b, 3, 3 * p * p, generator=g)
    total, count = 0.0, 0
    for i in range(b):
        for j, idx in enumerate(idx_mask[i].tolist()):
            target = _patch(images[i], idx, p)
            target = (target - target.mean()) / torch.sqrt(target.var() + 1e-6)
            total += ((pred[i, j] - target) ** 2).sum()
            count += target.numel()
    assert torch.allclose(mae_loss(pred, patches, idx_mask, norm_pix_loss=True), total / count, atol=1e-5)
    # without normalisation the targets are the raw (normalised-image) pixels
    raw = ((pred - torch.gather(patches, 1, idx_mask[..., None].expand(-1, -1, 48))) ** 2).mean()
    assert torch.allclose(mae_loss(pred, patches, idx_mask, norm_pix_loss=False), raw)


# -- schedules ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,start", [("moco", 0.99), ("byol", 0.99), ("dino", 0.996)])
def test_momentum_follows_a_cosine_from_its_start_to_one(name, start):
    cls = METHODS[name]
    m = SimpleNamespace(config=build_config(cls.config_class))  # the schedule needs only the config
    total = 50
    assert cls.momentum(m, StepState(0, total)) == pytest.approx(start)
    assert cls.momentum(m, StepState(total - 1, total)) == pytest.approx(1.0)
    mid = cls.momentum(m, StepState((total - 1) // 2, total))
    assert mid == pytest.approx(start + (1 - start) / 2, abs=2e-4)


def test_dino_teacher_temperature_warms_up_linearly_over_its_epochs():
    cls = METHODS["dino"]
    m = SimpleNamespace(config=build_config(cls.config_class, {"warmup_teacher_temp_epochs": 2}))
    # 10 steps an epoch, 100 steps: warm-up over the first 20 steps
    temps = [cls.teacher_temperature(m, StepState(s, 100, s // 10, 10)) for s in range(100)]
    assert temps[0] == pytest.approx(0.04) and temps[19] == pytest.approx(0.07)
    assert temps[10] == pytest.approx(0.04 + 0.03 * 10 / 19)
    assert temps[-1] == pytest.approx(0.07)
    # a run shorter than the warm-up still ends at the final temperature
    short = [cls.teacher_temperature(m, StepState(s, 8, 0, 10)) for s in range(8)]
    assert short[0] == pytest.approx(0.04) and short[-1] == pytest.approx(0.07)
    assert all(a < b for a, b in zip(short, short[1:]))


def test_dino_freezes_its_last_layer_at_the_start_only():
    from studio.engine.backbones import build_backbone

    cls = METHODS["dino"]
    m = cls(build_backbone("vit_tiny", 16, num_layers=1, patch_size=4),
            build_config(cls.config_class, {"hidden_dim": 32, "bottleneck_dim": 8, "output_dim": 16, "local_crops": 2}))
    specs = m.view_specs(16)
    assert [s.size for s in specs] == [16, 16, 8, 8]  # local crops tile into the 4 px patches
    views = [torch.randn(4, 3, s.size, s.size) for s in specs]
    last = m.projection_head.last_layer.weight_v
    # 10 steps an epoch, 200 steps: one epoch of freeze = 10 steps (under a tenth of the run)
    for step, frozen in ((0, True), (9, True), (10, False)):
        m.zero_grad()
        m.training_step(views, StepState(step, 200, step // 10, 10))["loss"].backward()
        m.on_before_optimizer_step(StepState(step, 200, step // 10, 10))
        assert (last.grad is None) == frozen
        assert m.projection_head.layers[0].weight.grad is not None
    assert not any(p.requires_grad for p in m.teacher_head.parameters())


# -- refusing a backbone -----------------------------------------------------------------------

def test_mae_refuses_a_cnn_with_a_clear_message(tmp_path):
    from studio.engine.data import SampleSource, decode_images
    from studio.engine.train import Trainer, build_method

    vit_only = [n for n, cls in METHODS.items() if cls.backbone_kinds == ("vit",)]
    assert {"mae", "simmim", "ijepa", "ibot", "dinov2"} <= set(vit_only)
    for name in vit_only:
        with pytest.raises(ConfigError, match="needs a ViT backbone") as info:
            build_method(tiny_train_config(method=name, backbone="resnet18"))
        assert "resnet18 is a CNN" in str(info.value) and METHODS[name].title in str(info.value)
    result = Trainer(tiny_train_config(method="mae", backbone="resnet18"),
                     decode_images(SampleSource(limit=40), 16), tmp_path).run()
    assert result.status == "failed" and "ViT" in result.reason


# -- a short training on the sample ----------------------------------------------------------

# Three checks on one short run per method (batch 32 of the 640-image sample at 16 px, AdamW):
# - the loss falls (mean of the first five steps -> the last five);
# - learning: the backbone's features match two views of an image better than at step 0
#   (`view_matching_auc` on all 640 images, with the method's own views at 50-100 % crops);
# - no collapse: the loss-space outputs (`Method.output`, what the live health monitor measures) stay
#   spread (`spread`, 1 = healthy, 0 = one constant vector).
# A falling loss alone proves little here: with the positive pairs shuffled (views of different
# images) SimCLR's loss falls almost as much, 7.49 -> 6.22 against 6.49 -> 4.77 (seed 0). Spread
# alone neither: the shuffled run spreads its outputs too (0.18 -> 0.95), and so does a frozen one
# (lr 1e-12: 0.18 -> 0.70, the projector's batch-norm statistics move). View matching is what
# separates them. Measured with the settings below, seed 0 unless said ("AUC" is view matching,
# 0.5 = chance, at step 0 -> at the end; the 2-layer ViT's class token starts nearly constant,
# cosine 0.95-0.97 between images, spread ~0.18):
#   SimCLR, 50 steps, seeds 0/1/2: loss 6.49 -> 4.77, 6.36 -> 5.00, 6.58 -> 5.00; AUC 0.577 -> 0.663,
#     0.569 -> 0.615, 0.581 -> 0.635; spread 0.18 -> 0.79, 0.21 -> 0.85, 0.39 -> 0.91. Shuffled pairs:
#     AUC 0.577 -> 0.566, 0.569 -> 0.553; frozen: unchanged (0.577, 0.569).
#   MoCo, resnet18 (small-image stem), 25 steps, lr 1e-3, no queue, seeds 0/1/2: loss 4.27 -> 3.97,
#     4.36 -> 4.02, 4.37 -> 4.10; AUC 0.662 -> 0.758, 0.646 -> 0.741, 0.638 -> 0.682 (+0.096, +0.095,
#     +0.044); spread 0.14 -> 0.23, 0.16 -> 0.23, 0.16 -> 0.15. At lr 3e-4 it needs 40 steps (seed 0:
#     +0.10, spread 0.45), twice this budget; at 20 steps it does not (-0.022, -0.003, -0.018), at 22
#     seed 2 falls short (+0.069, +0.074, +0.032); with the stock stride-32 stem (16 px -> 4 x 4 after
#     the stem) 40 steps give +0.010 (seed 0). On the 2-layer ViT (40 steps, lr 3e-4): AUC 0.577 ->
#     0.607 (seed 0; on 256 images seeds 1 and 2 +0.002, +0.001),
#     spread 0.18 -> 0.13 (seed 1 on 256 images: 0.056, collapsed). With the queue on (ViT; 32 keys,
#     tau 0.07, lr 3e-4, 20 steps) the queries collapse: spread 0.17 -> 0.06, cosine between images
#     0.996, loss at log(K+1); it also did with 128 keys at tau 0.2 and momentum 0.9 (0.04), and at
#     momentum 0 (0.10, 40 steps): stale near-identical keys leave the query nothing to tell apart.
#     The collapse check fails on that state.
#   DINO: loss 5.04 -> 4.20 while the outputs collapse (spread 0.18 -> 0.006, cosine 1.000; the
#     teacher goes uniform, loss near log K); AUC 0.556 -> 0.539. Also at the paper's centre EMA 0.9
#     with teacher temperature 0.04 and momentum 0.9 (spread 0.003 after 40 steps). On resnet18 (20
#     steps) too: centre EMA 0.9 and teacher temperature 0.04, seed 2: AUC 0.603 -> 0.538, spread 0.007;
#     the same at lr 3e-4 and momentum 0.9, seed 0: 0.631 -> 0.565, spread 0.067; centre 0, momentum
#     0.9, lr 1e-3, seed 0: 0.631 -> 0.533, spread 0.013 (the loss rises in all three).
#     Not the studio's doing: lightly's own DINO example (examples/pytorch/dino.py: head 512-64-2048,
#     Adam lr 1e-3, teacher temperature 0.04, momentum 0.996 -> 1, last layer frozen one epoch), on
#     the same ViT, sample and views (batch 64, 2 local crops), goes the same way: loss at log K
#     (7.625) from step 150, kNN top-1 (k 20, held-out fifth) 0.63 -> 0.46, output spread 0.14 ->
#     0.003; at the paper's lr for the batch (1.25e-4) kNN 0.63 -> 0.55 after 200 steps, spread
#     0.06. The studio's DINO with the paper's lr (20 steps, batch 32): loss 3.7 -> 4.3, spread 0.05;
#     100 steps with centre EMA 0.9 and momentum 0.9, 0.99 or 0.996, teacher temperature 0.04 or
#     0.07, K 64 or 1024, with or without local crops: spread 0.001-0.033, loss at log K. It needs
#     a longer run on larger images than a test can afford.
#   BYOL: loss -0.21 -> -0.56, AUC 0.556 -> 0.551, spread 0.17 -> 0.18; on resnet18 (20 steps) the
#     matching falls: seeds 0/1/2 AUC 0.631 -> 0.524, 0.616 -> 0.536, 0.603 -> 0.544 (lr 3e-4 and
#     momentum 0.9, seed 0: 0.631 -> 0.540), spread 0.51-0.69. SimSiam: -0.007 -> -0.154,
#     AUC 0.577 -> 0.564, spread 0.19 -> 0.54. VICReg: 22.80 -> 21.90, AUC 0.556 -> 0.549, spread
#     0.17 -> 0.64 (resnet18, seed 0: 0.631 -> 0.612). SimSiam on resnet18, seed 0: 0.662 -> 0.576.
#     Barlow Twins (resnet18): 269 -> 166, AUC 0.631 -> 0.645, spread 0.12 -> 0.62; at 25 steps
#     seeds 0/1/2 +0.067, -0.057, +0.034.
#   MAE: loss 1.48 -> 0.87; AUC 0.656 -> 0.716; its class token narrows, spread 0.22 -> 0.08.
#     A passing phase (kNN top-1 k 20 on a held-out fifth, and spread, start -> end; lr 1e-3):
#     batch 32 for 20/40/60/100 steps 0.635 -> 0.669/0.618/0.607/0.577, spread 0.077/0.057/0.051/
#     0.059; batch 64 for 100 steps 0.599, 0.067 and for 200 steps 0.655, 0.179, spread again.
#     The mean of its patch tokens (what MAE's fine-tuning pools) narrows the same way (0.17 ->
#     0.04-0.06, back to 0.17 at 200 steps).
#   SimCLR + MAE (50 steps; SimCLR's settings above, MAE's decoder): loss 7.79 -> 5.97 (its SimCLR
#     term 7.17 -> 5.12, its MAE term 2.53 -> 0.85); AUC 0.555 -> 0.617 on SimCLR's views (+0.062,
#     SimCLR alone +0.086: MAE's share of the gradient is not spent on matching views); spread 0.36 ->
#     0.95, where MAE alone (50 steps) narrows to 0.05. I-JEPA (20 steps, a 2 x 96 predictor): AUC
#     0.663 -> 0.697, spread stays above the threshold.
# So within this budget SimCLR, MoCo (on resnet18) and MAE learn to match views; the others are
# listed below as not yet (strict xfail: the day one does, the test says so), and DINO as
# collapsing. Earlier settings (20 steps, seeds 0-2) had SimCLR's, MoCo's and DINO's losses fall
# with matching at chance.
CNN = dict(backbone="resnet18")
VIT = dict(backbone="vit_tiny", backbone_options={"num_layers": 2, "patch_size": 4})
ADAMW = dict(optimizer="adamw", lr=1e-3, weight_decay=1e-4)
TRAIN = {
    # tau 0.1 (the paper's ImageNet value): at the CIFAR 0.5 the loss stays flat (4.11 -> 4.07).
    "simclr": dict(VIT, steps=50, method_config={"hidden_dim": 256, "temperature": 0.1}, **ADAMW),
    # No queue: the keys of the batch are the negatives, both ways (MoCo v3's form). With a queue
    # (32 or 128 keys; tau 0.07, 0.1 or 0.2; momentum 0, 0.9 or 0.99) the queries collapsed (ViT),
    # when the queue started full of random keys. On resnet18: the ViT's class token starts nearly
    # the same for every image (cosine 0.95-0.97) and 40 steps on it moved view matching by +0.03
    # at most (the comment above). The head without batch norm, as measured before it became the
    # default: with it, 0.662 -> 0.610 here (25 AdamW steps); with a 256-key queue, 0.662 -> 0.629.
    "moco": dict(CNN, steps=25, method_config={"hidden_dim": 256, "queue_size": 0, "symmetric": True,
                                               "temperature": 0.1, "momentum": 0.9, "head_batch_norm": False}, **ADAMW),
    "byol": dict(VIT, method_config={"hidden_dim": 256}, **ADAMW),
    "simsiam": dict(VIT, method_config={"hidden_dim": 256, "output_dim": 256, "predictor_hidden_dim": 64}, **ADAMW),
    # A constant teacher temperature here: its warm-up raises the loss by design (tested above). The
    # centre likewise: an EMA at the paper's 0.9 is still growing over 20 steps and its centring
    # raises the loss throughout (5.53 -> 6.37 at K = 512); at 0 it is the last batch's mean, in full
    # effect from the second step. 64 prototypes for 10 digit classes: at 512 it fell 5 % (seed 0).
    "dino": dict(VIT, method_config={"hidden_dim": 256, "bottleneck_dim": 64, "output_dim": 64, "local_crops": 2,
                                     "warmup_teacher_temp_epochs": 0, "center_momentum": 0.0}, **ADAMW),
    # A 256-wide projector: the cross-correlation loss starts near D = 256 and falls within steps.
    "barlowtwins": dict(CNN, method_config={"hidden_dim": 256, "output_dim": 256}, **ADAMW),
    "vicreg": dict(VIT, method_config={"hidden_dim": 256, "output_dim": 256}, **ADAMW),
    "mae": dict(VIT, method_config={"decoder_dim": 64, "decoder_depth": 1, "decoder_heads": 4}, **ADAMW),
    # At the paper's tau 0.2 and momentum 0.99 the loss stays at chance over 50 steps (2.805 -> 2.741).
    "mocov3": dict(VIT, steps=50, method_config={"hidden_dim": 256, "temperature": 0.1, "momentum": 0.9}, **ADAMW),
    "nnclr": dict(CNN, method_config={"hidden_dim": 256, "predictor_hidden_dim": 256, "support_size": 256}, **ADAMW),
    "swav": dict(VIT, method_config={"hidden_dim": 256, "prototypes": 64, "local_crops": 2,
                                     "freeze_prototypes_epochs": 0}, **ADAMW),
    "simmim": dict(VIT, **ADAMW),
    "ijepa": dict(VIT, method_config={"predictor_depth": 2, "predictor_dim": 96}, **ADAMW),
    # DINO's settings above (its constant teacher temperature and last-batch centre), and the same
    # for the patch term's centre.
    "ibot": dict(VIT, method_config={"hidden_dim": 256, "bottleneck_dim": 64, "output_dim": 64, "local_crops": 2,
                                     "warmup_teacher_temp_epochs": 0, "center_momentum": 0.0}, **ADAMW),
    "dinov2": dict(VIT, method_config={"hidden_dim": 256, "bottleneck_dim": 64, "output_dim": 64, "local_crops": 2,
                                       "warmup_teacher_temp_epochs": 0, "center_momentum": 0.0}, **ADAMW),
    # SimCLR's and MAE's settings above.
    "simclr+mae": dict(VIT, steps=50, method_config={"simclr_hidden_dim": 256, "simclr_temperature": 0.1,
                                                     "mae_decoder_dim": 64, "mae_decoder_depth": 1,
                                                     "mae_decoder_heads": 4}, **ADAMW),
}
BATCH = 32
STEPS = 20  # unless TRAIN says otherwise
# The loss must fall by this fraction of its early level (BYOL's is negative: of its magnitude).
MARGIN = 0.02
# View matching (see `view_matching_auc`) must rise by this much over the same encoder at step 0:
# SimCLR's smallest rise over seeds 0-2 is +0.046; shuffled pairs or a frozen encoder give -0.016 to 0.
LEARN_MARGIN = 0.04
# The loss-space outputs' spread, as a fraction of a healthy one (see `spread`), must stay above
# the live monitor's collapse threshold.
MIN_SPREAD = STD_RATIO_COLLAPSE_THRESHOLD
PROBE_IMAGES = 640  # the whole sample: with 256 the measure moved by 0.03 between draws of the views
# Methods whose encoder does not yet learn to match views, or whose outputs collapse, in this
# budget (measured: the comment above). Strict: the day one starts to, the test says so.
NO_LEARNING_YET = {"byol", "simsiam", "dino", "barlowtwins", "vicreg",
                   # measured, seed 0: MoCo v3 0.556 -> 0.526 (ViT, 50 steps; resnet18 25 steps: 0.631 -> 0.538),
                   # NNCLR 0.631 -> 0.583 (its support set starts empty of real neighbours), SwAV
                   # 0.556 -> 0.533, SimMIM 0.648 -> 0.646; each one's loss falls meanwhile.
                   "mocov3", "nnclr", "swav", "simmim",
                   # I-JEPA 0.663 -> 0.697 (+0.034; loss and spread pass): its loss is on patch
                   # tokens, the class token is trained only through the shared layers
                   "ijepa",
                   # iBOT 0.556 -> 0.545 (it collapses like DINO), DINOv2 0.556 -> 0.556 (KoLeo keeps it spread)
                   "ibot", "dinov2"}
COLLAPSES_YET = {
    # DINO's collapsed here (the head gave every image one output) until its head had batch norm.
    # MAE's loss is on the patch tokens; the class token, the studio's embedding, narrows meanwhile
    # and spreads again after ~200 steps of batch 64 (the comment above).
    "mae": "its class token narrows for the first ~100 steps (spread 0.22 -> 0.08) while its view matching improves",
    # SimMIM's loss is on the masked patch tokens only; its class token is never asked for anything.
    "simmim": "its class token narrows while the patch loss falls (spread 0.165 -> 0.065 in 20 steps)",
    # iBOT inherited DINO's collapse (spread 0.183 -> 0.008) until the head's batch norm.
}


def first_judged_step(name: str) -> int:
    """MoCo's queue starts as random unit vectors (as the paper's code): nearly orthogonal to every
    query, they make the first steps' loss far below chance. Its early level is taken once the
    queue holds only keys (with no queue, from the start)."""
    if name == "moco":
        return math.ceil(TRAIN[name]["method_config"]["queue_size"] / BATCH)
    return 0


def spread(z: torch.Tensor) -> tuple[float, float]:
    """(the monitor's std ratio: per-dimension std of the L2-normalised outputs x sqrt(d), mean
    cosine between different images). The first is ~1 when healthy and 0 for a constant output
    (SimSiam's collapse measure, fig. 2); the second is ~1 when collapsed."""
    n = len(z)
    ratio = health_report(z)["std_ratio"]
    z = F.normalize(z.float(), dim=1)
    cos = z @ z.T
    return ratio, ((cos.sum() - cos.diagonal().sum()) / (n * (n - 1))).item()


def view_matching_auc(a: torch.Tensor, b: torch.Tensor) -> float:
    """How often view 2 of image i is closer (cosine) to view 1 of image i than view 2 of another
    image j is: 0.5 is chance, 1 a perfect match. A ranking measure, so it does not reward a mere
    shrinking or shifting of the embeddings."""
    sim = F.normalize(a.float(), dim=1) @ F.normalize(b.float(), dim=1).T
    pos = sim.diagonal()[:, None]
    off = ~torch.eye(len(sim), dtype=torch.bool)
    return ((pos > sim).float()[off].mean() + 0.5 * (pos == sim).float()[off].mean()).item()


def probe(method, images: torch.Tensor, image_size: int) -> dict[str, float]:
    """View matching on the backbone's features and the spread of the loss-space outputs, on fixed
    images and fixed views (the method's own two views, crops of 50-100 % of the image: its
    0.08-1 crops of a 16 px digit often share nothing to match), leaving the RNG as it was."""
    from dataclasses import replace

    from studio.engine.data.views import eval_view, make_view

    was_training = method.training
    method.eval()
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        specs = method.view_specs(image_size)
        s1, s2 = specs[0], specs[1] if len(specs) > 1 else specs[0]
        v1, v2 = (make_view(images, replace(s, scale=(0.5, 1.0))) for s in (s1, s2))
        auc = view_matching_auc(method.embed(v1), method.embed(v2))
        std, cos = spread(method.output(eval_view(images, image_size)))
    method.train(was_training)
    return {"auc": auc, "spread": std, "cosine": cos}


class _Recorder(TrainingCallbacks):
    """The metrics, and the probe of the encoder as built (on_start comes before the first step)."""

    def __init__(self, images: torch.Tensor, image_size: int):
        self.series: dict[str, list[float]] = {}
        self.images, self.image_size = images, image_size
        self.trainer = None
        self.start: dict[str, float] = {}

    def on_start(self, info):
        self.start = probe(self.trainer.method, self.images, self.image_size)

    def on_metrics(self, step, epoch, metrics):
        for k, v in metrics.items():
            self.series.setdefault(k, []).append(v)


class _ShuffledPairsTrainer:
    """Mixin: the second (and any further) view of each image goes with another image. The loss
    still has positives to pull together, but they are views of different images."""

    def make_views(self, x, specs):
        views = super().make_views(x, specs)
        perm = torch.randperm(len(x))
        return views[:1] + [v[perm] for v in views[1:]]


@pytest.fixture(scope="module")
def sample16():
    from studio.engine.data import SampleSource, decode_images

    return decode_images(SampleSource(limit=640), 16)


@pytest.fixture(scope="module")
def short_training(sample16, tmp_path_factory):
    """run(name, broken=None|"shuffled"|"frozen") -> (trainer, recorder, probe at the end), each
    training once per module: the loss, learning and collapse tests share it."""
    from studio.engine.train import Trainer

    done = {}

    def run(name: str, broken: str | None = None, seed: int = 0):
        key = (name, broken, seed)
        if key not in done:
            settings = dict(TRAIN[name])
            steps = settings.pop("steps", STEPS)
            if broken == "frozen":
                settings["lr"] = 1e-12  # the smallest the config takes: nothing moves
            # No kNN monitor: it is not what this checks, and it would cost a pass over the images.
            cfg = tiny_train_config(method=name, steps=steps, batch_size=BATCH, monitor_every=-1, seed=seed, **settings)
            images = torch.from_numpy(sample16.images[:PROBE_IMAGES])
            rec = _Recorder(images, cfg.image_size)
            cls = type("ShuffledTrainer", (_ShuffledPairsTrainer, Trainer), {}) if broken == "shuffled" else Trainer
            trainer = cls(cfg, sample16, tmp_path_factory.mktemp(name), callbacks=rec)
            rec.trainer = trainer
            result = trainer.run()
            assert result.status == "finished", result.reason
            done[key] = (trainer, rec, probe(trainer.method, images, cfg.image_size))
        return done[key]

    return run


@pytest.mark.parametrize("name", IMAGE_ONLY)
def test_short_training_lowers_the_loss(name, short_training):
    trainer, rec, _ = short_training(name)
    steps = trainer.config.steps
    loss = rec.series["loss"]
    assert len(loss) == steps and all(math.isfinite(v) for v in loss)
    first = first_judged_step(name)
    early, late = sum(loss[first:first + 5]) / 5, sum(loss[-5:]) / 5
    scale = 1.0 if name == "simsiam" else abs(early)
    assert late < early - MARGIN * scale, f"{name}: loss went {early:.4f} -> {late:.4f}, not falling"

    method = trainer.method
    if hasattr(method.config, "momentum"):
        m = rec.series["momentum"]
        assert m[0] == pytest.approx(method.config.momentum) and m[-1] == pytest.approx(1.0)
    if name == "dino":
        assert rec.series["teacher_temp"] == pytest.approx([0.07] * steps)


def _marked(names, reason):
    reasons = names if isinstance(names, dict) else dict.fromkeys(names, reason)
    return [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=reasons[n])) if n in reasons else n for n in IMAGE_ONLY]


@pytest.mark.parametrize("name", _marked(NO_LEARNING_YET, "does not learn to match views in this budget"))
def test_short_training_learns_to_match_views(name, short_training):
    """Training must make two views of an image closer than views of different images, more than
    the same encoder did at step 0: what lowering the loss is for (MAE too, though it is not
    trained on view pairs: its encoder learns what a digit is from its patches)."""
    _, rec, end = short_training(name)
    before, after = rec.start["auc"], end["auc"]
    assert after >= before + LEARN_MARGIN, f"{name}: view matching {before:.3f} -> {after:.3f}"


@pytest.mark.parametrize("name", _marked(COLLAPSES_YET, ""))
def test_short_training_does_not_collapse_the_outputs(name, short_training):
    _, rec, end = short_training(name)
    assert end["spread"] >= MIN_SPREAD, (
        f"{name}: outputs collapsed: spread {rec.start['spread']:.3f} -> {end['spread']:.3f} of a healthy one, "
        f"mean cosine between images {rec.start['cosine']:.3f} -> {end['cosine']:.3f}")


def test_the_checks_fail_on_broken_training(short_training):
    """Each check can fail: SimCLR with its positive pairs shuffled lowers its loss but learns no
    view matching (frozen, broken="frozen", neither: the comment above); an encoder whose output is
    one constant vector fails the collapse check, as do MoCo's queries when its queue is on."""
    _, rec, end = short_training("simclr", broken="shuffled")
    loss = rec.series["loss"]
    assert sum(loss[-5:]) < sum(loss[:5]) - MARGIN * 5 * abs(loss[0])  # the loss check alone passes
    assert end["auc"] < rec.start["auc"] + LEARN_MARGIN
    assert spread(torch.ones(64, 16) + 1e-6 * torch.randn(64, 16))[0] < MIN_SPREAD
    assert spread(torch.randn(64, 16))[0] > 0.9  # and a spread one passes


@pytest.mark.parametrize("head_batch_norm, collapses", [(True, False), (False, True)])
def test_moco_keeps_a_vits_outputs_apart_with_its_defaults(sample16, tmp_path, head_batch_norm, collapses):
    """MoCo v2's defaults (SGD, a queue that starts empty, batch norm in the head) on the 2-layer
    ViT of bench/quality.py at patch 2: the outputs stay spread. Without the head's batch norm they
    collapse within a few steps (spread 0.46 -> 0.035 by step 8 in 48 steps of 64), which is what
    makes this check able to fail."""
    from studio.engine.train import Trainer

    cfg = tiny_train_config(method="moco", backbone="vit_tiny", backbone_options={"num_layers": 2, "patch_size": 2},
                            steps=16, batch_size=64, monitor_every=-1, method_config={"head_batch_norm": head_batch_norm})
    images = torch.from_numpy(sample16.images[:PROBE_IMAGES])
    trainer = Trainer(cfg, sample16, tmp_path)
    assert trainer.run().status == "finished"
    end = probe(trainer.method, images, cfg.image_size)
    assert (end["spread"] < MIN_SPREAD) == collapses, f"spread {end['spread']:.3f} with head_batch_norm={head_batch_norm}"
