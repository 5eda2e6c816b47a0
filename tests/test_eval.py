"""Evaluation: kNN, linear probe, health and collapse, embeddings, cached maps, monitors, CLI."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from torch import nn

from conftest import tiny_train_config, write_image_folder
from studio.engine.train import TrainingCallbacks


# -- synthetic features ---------------------------------------------------------------------------
def _clusters(n_per=80, classes=5, dim=32, spread=6.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * spread
    y = np.repeat(np.arange(classes), n_per)
    x = centres[y] + rng.normal(size=(len(y), dim))
    return x.astype(np.float32), y


def test_knn_and_linear_probe_known_answers():
    from studio.engine.eval import knn_top1, linear_probe, split_indices

    x, y = _clusters()
    tr, te = split_indices(y, 0.25, seed=0)
    assert knn_top1(x[tr], y[tr], x[te], y[te], 5, k=20) > 0.97
    assert linear_probe(x[tr], y[tr], x[te], y[te])["top1"] > 0.97

    # Labels that carry no information about the features: both near chance (1/5).
    shuffled = np.random.default_rng(1).permutation(y)
    knn_chance = knn_top1(x[tr], shuffled[tr], x[te], shuffled[te], 5, k=20)
    lin_chance = linear_probe(x[tr], shuffled[tr], x[te], shuffled[te])["top1"]
    assert knn_chance < 0.38 and lin_chance < 0.38


def test_knn_weights_follow_wu_et_al():
    """One test point, two neighbours of different classes: the closer one wins only by its
    exp(s/τ) weight, so two far points of the other class can outvote it at high temperature."""
    from studio.engine.eval import knn_scores

    train = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.8, 0.6]])
    labels = torch.tensor([0, 1, 1])
    test = torch.tensor([[1.0, 0.0]])
    s = knn_scores(train, labels, test, 2, k=3, temperature=0.1)
    assert s[0, 0] == pytest.approx(np.exp(1.0 / 0.1), rel=1e-5)
    assert s[0, 1] == pytest.approx(2 * np.exp(0.8 / 0.1), rel=1e-5)


# -- health and collapse ----------------------------------------------------------------------------
class ConstantEncoder(nn.Module):
    """A collapsed encoder: every image maps to the same vector."""

    feature_dim = 16

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.ones(16))

    def forward(self, x):
        return self.anchor.expand(x.shape[0], -1) + 0 * x.mean()


def _decoded(n=48, size=16, classes=3, seed=0):
    from studio.engine.data.cache import DecodedImages

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.integers(0, 60, size=(n, 3, size, size), dtype=np.uint8)
    for c in range(classes):  # each class brightens its own channel
        images[labels == c, c] += 150
    return DecodedImages(images, labels.astype(np.int64), [f"img/{i}.png" for i in range(n)], [str(c) for c in range(classes)])


def test_collapse_indicator_flags_a_constant_encoder():
    from studio.engine.train.monitor import build_monitors

    images = _decoded()
    config = tiny_train_config(knn_k=10)
    monitors = build_monitors(config, images)
    assert len(monitors) == 2  # kNN (labelled) + health

    collapsed = {}
    for m in monitors:
        collapsed.update(m(ConstantEncoder(), 0))
    assert collapsed["collapse"] == 1.0
    assert collapsed["embedding_std"] < 1e-6
    assert collapsed["effective_rank"] < 1.5

    torch.manual_seed(0)
    healthy_encoder = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.Flatten(), nn.Linear(32 * 12 * 12, 64))
    healthy = {}
    for m in monitors:
        healthy.update(m(healthy_encoder, 0))
    assert healthy["collapse"] == 0.0
    assert healthy["embedding_std"] > 0.2 / np.sqrt(64)
    assert healthy["knn_top1"] > 0.9  # the classes differ by colour; random features see that
    assert set(healthy) >= {"knn_top1", "embedding_std", "effective_rank", "alignment", "uniformity", "collapse"}


def test_monitors_skip_knn_without_labels():
    from studio.engine.data.cache import DecodedImages
    from studio.engine.train.monitor import HealthMonitor, build_monitors

    d = _decoded()
    unlabelled = DecodedImages(d.images, np.full(len(d), -1), d.names, [])
    monitors = build_monitors(tiny_train_config(), unlabelled)
    assert [type(m) for m in monitors] == [HealthMonitor]
    assert build_monitors(tiny_train_config(monitor_every=-1), d) == []


class _Log(TrainingCallbacks):
    def __init__(self):
        self.health: list[tuple[int, float, float]] = []
        self.lines: list[tuple[str, str]] = []

    def on_metrics(self, step, epoch, metrics):
        if "collapse" in metrics:
            self.health.append((step, metrics["embedding_std_ratio"], metrics["collapse"]))

    def on_log(self, message, level="info"):
        self.lines.append((level, message))


def test_the_health_monitor_judges_the_methods_output_and_the_log_says_when_it_collapses(tmp_path):
    """SimSiam's collapse measure is on the projector's output, and so is the monitor: a ViT's
    class token has a part every image shares, so its own spread is low in a healthy run (SimCLR:
    measured 0.12 against the output's 0.92). DINO without the batch norm in its head (its default
    before 2026-12-04) collapses in 20 steps on the sample (the head gives every image one output),
    and the run's log says so once."""
    from studio.engine.data import SampleSource, decode_images
    from studio.engine.train import Trainer
    from studio.engine.train.monitor import HealthMonitor, build_monitors

    data = decode_images(SampleSource(limit=320), 16)
    vit = dict(backbone="vit_tiny", backbone_options={"num_layers": 2, "patch_size": 4},
               optimizer="adamw", lr=1e-3, weight_decay=1e-4, batch_size=32, monitor_every=10)
    runs = {
        "simclr": dict(vit, steps=40, method_config={"hidden_dim": 256, "temperature": 0.1}),
        "dino": dict(vit, steps=20, method_config={"hidden_dim": 256, "bottleneck_dim": 64, "output_dim": 64, "local_crops": 2,
                                                   "warmup_teacher_temp_epochs": 0, "center_momentum": 0.0,
                                                   "head_batch_norm": False}),
    }
    seen = {}
    for name, settings in runs.items():
        config = tiny_train_config(method=name, **settings)
        log = _Log()
        trainer = Trainer(config, data, tmp_path / name, callbacks=log, monitors=build_monitors(config, data))
        assert trainer.run().status == "finished"
        trainer.method.eval()
        with torch.no_grad():
            backbone = HealthMonitor(data, image_size=16)(trainer.method.backbone, 0)["embedding_std_ratio"]
        seen[name] = (log, backbone)

    log, backbone = seen["simclr"]
    assert [(s, c) for s, _, c in log.health] == [(0, 0.0), (10, 0.0), (20, 0.0), (30, 0.0), (40, 0.0)]  # from the untrained
    assert log.health[-1][1] > 0.5 > backbone  # the monitor measured the output, not the backbone
    assert not [m for _, m in log.lines if "collaps" in m]

    log, _ = seen["dino"]
    assert log.health[-1][2] == 1.0 and log.health[-1][1] < 0.1
    warnings = [m for level, m in log.lines if level == "warning" and "collapsing" in m]
    assert len(warnings) == 1 and warnings[0].startswith(f"step {log.health[1][0]}:")
    assert "teacher_temp" in warnings[0]  # DINO's own likely cause and change (DINO.collapse_advice)


def test_the_log_says_when_collapsed_outputs_spread_again(tmp_path):
    from studio.engine.train import Trainer

    log = _Log()
    trainer = Trainer(tiny_train_config(), _decoded(), tmp_path, callbacks=log)
    for step, collapse in ((10, 0.0), (20, 1.0), (30, 1.0), (40, 0.0), (50, 0.0)):
        trainer._report_collapse(step, {"collapse": collapse, "embedding_std_ratio": 0.02 if collapse else 0.6})
    assert [(level, m.split(":")[0]) for level, m in log.lines] == [("warning", "step 20"), ("info", "step 40")]
    assert "spread 0.020" in log.lines[0][1] and "spread again (spread 0.600" in log.lines[1][1]

# -- embeddings and fine-tuning --------------------------------------------------------------------
def test_embed_images_matches_a_direct_forward_in_the_given_order():
    from studio.engine.data.views import eval_view
    from studio.engine.eval import embed_images

    images = _decoded(n=20).images
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten())
    enc.train()
    order = np.array([5, 1, 19, 0, 7])
    seen = []
    z = embed_images(enc, images, batch_size=2, indices=order, progress=lambda d, t: seen.append((d, t)))
    assert enc.training  # put back in the mode it came in
    enc.eval()
    with torch.no_grad():
        direct = enc(eval_view(torch.from_numpy(images[order]))).numpy()
    np.testing.assert_allclose(z, direct, rtol=1e-5, atol=1e-5)
    assert seen[-1] == (5, 5) and len(seen) == 3


def test_finetune_learns_a_learnable_task():
    from studio.engine.eval import finetune, split_indices

    d = _decoded(n=60)
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    before = [p.detach().clone() for p in enc.parameters()]
    tr, te = split_indices(d.labels, 0.25)
    result = finetune(enc, d.images, d.labels, tr, te, 3, epochs=8, batch_size=16, lr=1e-2)
    assert result["top1"] > 0.9
    assert result["steps"] == 8 * (len(tr) // 16)
    # The caller's encoder is left as it was.
    assert all(torch.equal(a, b) for a, b in zip(before, enc.parameters()))


# -- stored embeddings and maps (no training: step 0 = the run's initial weights) ---------------------
@pytest.fixture
def small_project(tmp_path):
    from studio.services.datasets import add_dataset
    from studio.services.training import create_run
    from studio.store import Project

    folder = write_image_folder(tmp_path / "imgs", classes=("a", "b", "c"), per_class=12, size=12)
    p = Project.create(tmp_path / "proj")
    add_dataset(p, str(folder), name="shapes")
    run = create_run(p, "shapes", tiny_train_config(image_size=16, knn_k=10))
    yield p, run.id
    p.close()


@pytest.mark.timeout(900)  # umap-learn's first call compiles with numba: slow on a loaded machine
def test_each_map_is_one_point_per_image_and_read_back_without_recomputing(small_project, monkeypatch):
    import studio.engine.eval as ev
    from studio.services.evaluation import compute_embeddings, embedding_map

    project, run_id = small_project
    emb = compute_embeddings(project, run_id, checkpoint_step=0, device="cpu")
    assert emb.vectors.shape == (36, 512) and emb.has_labels
    assert (project.root / emb.record.path).is_file() and not emb.record.path.startswith("/")

    first = {alg: embedding_map(project, emb, alg) for alg in ("pca", "tsne", "umap")}
    for alg, coords in first.items():
        assert coords.shape == (36, 2), alg
        assert np.isfinite(coords).all()

    def boom(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr(ev, "project_2d", boom)
    monkeypatch.setattr(ev, "embed_images", boom)
    again = compute_embeddings(project, run_id, checkpoint_step=0, device="cpu")
    np.testing.assert_array_equal(again.vectors, emb.vectors)
    for alg in first:
        np.testing.assert_array_equal(embedding_map(project, again.record, alg), first[alg])
    assert sorted(m.algorithm for m in project.embedding_maps(emb.record.id)) == ["pca", "tsne", "umap"]
    # Other parameters are another map: computing it now reaches the (patched) projection.
    with pytest.raises(AssertionError, match="recomputed"):
        embedding_map(project, emb, "pca", params={"whiten": True})


def test_evaluate_run_stores_results_and_refuses_unlabelled(small_project, tmp_path):
    from studio.engine.eval import EvaluationError
    from studio.services.datasets import add_dataset
    from studio.services.evaluation import evaluate_run, evaluation_summary

    project, run_id = small_project
    out = evaluate_run(project, run_id, checkpoint_step=0, knn=True, linear=True, finetune=True,
                       finetune_epochs=1, finetune_batch_size=16, finetune_fractions=(1.0,), device="cpu")
    assert {"knn_top1", "linear_top1", "finetune_top1", "finetune_random_top1"} <= set(out)
    assert all(0.0 <= out[k] <= 1.0 for k in ("knn_top1", "linear_top1", "finetune_top1"))
    kinds = sorted(e.kind for e in project.evaluations(run_id))
    assert kinds == ["finetune", "knn", "linear"]
    assert evaluation_summary(project, run_id)["knn_top1"] == out["knn_top1"]

    flat = tmp_path / "flat"
    flat.mkdir()
    write_image_folder(flat / "only", classes=("x",), per_class=5)
    add_dataset(project, str(flat), name="unlabelled")
    with pytest.raises(EvaluationError, match="no labels"):
        evaluate_run(project, run_id, dataset="unlabelled", checkpoint_step=0, device="cpu")


# -- a real training run: monitors in the store, trained beats random init, the CLI ------------------
def write_stripes_folder(root, per_class=200, size=16, seed=0):
    """Three classes by pattern (horizontal stripes, vertical stripes, checks), each image in two
    random colours. Colour is a nuisance the random-init encoder's features are dominated by,
    while SimCLR's colour jitter and grey-scale views teach it to look past colour: a setting
    where a short run reliably beats its own initialisation in kNN."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for c, name in enumerate(("horizontal", "vertical", "checks")):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            period, phase = rng.uniform(3, 6), rng.uniform(0, 2 * np.pi)
            h = np.sin(2 * np.pi * yy / period + phase) > 0
            v = np.sin(2 * np.pi * xx / period + phase) > 0
            mask = (h, v, h ^ v)[c]
            a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            Image.fromarray(np.where(mask[..., None], a, b).astype(np.uint8)).save(d / f"{i:03d}.png")
    return root


TRAIN_STEPS = 40
TRAIN_SIZE = 16
TRAIN_OPTIONS: dict = {"lr": 0.002, "optimizer": "adamw"}
TRAIN_IMAGES = 600


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A short SimCLR run (resnet18, 16 px, batch 64) with monitors, through execute_run."""
    import studio.engine.train.monitor as monitor
    from studio.services.datasets import add_dataset
    from studio.services.training import create_run, execute_run
    from studio.store import Project

    old = monitor.MAX_BANK, monitor.MAX_HELDOUT
    monitor.MAX_BANK, monitor.MAX_HELDOUT = 256, 64  # keep the checks cheap in CI
    base = tmp_path_factory.mktemp("trained")
    folder = write_stripes_folder(base / "stripes", per_class=TRAIN_IMAGES // 3, size=TRAIN_SIZE)
    project = Project.create(base / "proj")
    add_dataset(project, str(folder), name="stripes")
    config = tiny_train_config(steps=TRAIN_STEPS, batch_size=64, image_size=TRAIN_SIZE, monitor_every=TRAIN_STEPS // 2,
                               log_every=10, **TRAIN_OPTIONS)
    run = create_run(project, "stripes", config)
    try:
        result = execute_run(project, run.id)
    finally:
        monitor.MAX_BANK, monitor.MAX_HELDOUT = old
    assert result.status == "finished", result.reason
    yield project, run.id
    project.close()


@pytest.mark.timeout(1800)  # the shared module fixture trains; slow on a loaded 2-core machine
def test_monitor_metrics_are_written_during_a_run(trained):
    project, run_id = trained
    names = set(project.metric_names(run_id))
    assert {"knn_top1", "embedding_std", "effective_rank", "alignment", "uniformity", "collapse"} <= names
    series = project.metric_series(run_id, ["knn_top1", "collapse"])
    # The untrained encoder's check at step 0 starts the curves (the baseline a run must beat).
    assert series.steps["knn_top1"] == [0, TRAIN_STEPS // 2, TRAIN_STEPS]
    assert all(0.0 <= v <= 1.0 for v in series.values["knn_top1"])
    assert series.values["collapse"] == [0.0, 0.0, 0.0]


@pytest.mark.timeout(1800)  # the shared module fixture trains; slow on a loaded 2-core machine
def test_evaluate_run_scores_the_same_encoder_at_random_init_beside_the_trained_one(trained):
    # The comparison itself: both scores, on the same held-out split, stored with the run (that
    # training beats random init is the test below, on the sample).
    from studio.services.evaluation import evaluate_run

    project, run_id = trained
    out = evaluate_run(project, run_id, knn=True, linear=False, baseline=True, device="cpu")
    assert out["checkpoint_step"] == TRAIN_STEPS
    assert 0.0 <= out["knn_top1"] <= 1.0 and 0.0 <= out["knn_random_top1"] <= 1.0
    assert out["knn_top1"] != out["knn_random_top1"]  # two different encoders, not one scored twice
    evals = project.evaluations(run_id)
    knn = [e for e in evals if e.kind == "knn"]
    baseline = [e for e in evals if e.kind == "baseline"]
    assert knn and knn[-1].metrics["top1"] == pytest.approx(out["knn_top1"])
    assert baseline and baseline[-1].metrics["knn_random_top1"] == pytest.approx(out["knn_random_top1"])


# Issue 4: a short run on the built-in sample must beat its own random init in kNN top-1. Random
# ResNet features on the digits already score 0.83-0.96 (k 200-20), and short runs barely move
# them; a 2-layer ViT's random features are weak (0.33-0.51 at k 200), so that is the encoder here.
# With these settings the trained encoder led by +0.13 to +0.15 at the default k=200 over seeds
# 0, 3 and 7 (30 steps: +0.07 to +0.24 over seeds 0-7); before the tiny-image crops of views.py,
# 30 steps gave only +0.01 to +0.03.
SAMPLE_RUN = dict(method="simclr", backbone="vit_tiny", backbone_options={"num_layers": 2, "patch_size": 4},
                  image_size=16, steps=60, batch_size=128, lr=1e-3, optimizer="adamw",
                  method_config={"temperature": 0.2}, monitor_every=-1, log_every=10)
SAMPLE_MARGIN = 0.08


@pytest.mark.timeout(900)
def test_a_short_run_on_the_sample_beats_the_same_encoder_at_random_init_in_knn(project):
    from studio.services.evaluation import evaluate_run
    from studio.services.training import create_run, execute_run

    run = create_run(project, "sample", tiny_train_config(**SAMPLE_RUN))
    result = execute_run(project, run.id)
    assert result.status == "finished", result.reason
    out = evaluate_run(project, run.id, knn=True, linear=False, baseline=True, device="cpu")
    assert out["checkpoint_step"] == SAMPLE_RUN["steps"]
    assert out["knn_random_top1"] < 0.6  # the weak random features this test relies on
    assert out["knn_top1"] > out["knn_random_top1"] + SAMPLE_MARGIN, out


@pytest.mark.timeout(1800)  # the shared module fixture trains; slow on a loaded 2-core machine
def test_cli_eval_and_embed_json(trained, capsys):
    from studio.cli import main

    project, run_id = trained
    assert main(["eval", str(project.root), str(run_id), "--knn", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run_id"] == run_id and 0.0 <= out["knn_top1"] <= 1.0 and "linear_top1" not in out

    assert main(["embed", str(project.root), str(run_id), "--map", "pca", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {**out, "run_id": run_id, "points": TRAIN_IMAGES, "dim": 512, "map": "pca"}
    emb = project.find_embedding(run_id, TRAIN_STEPS, project.dataset("stripes").id)
    assert [m.algorithm for m in project.embedding_maps(emb.id)] == ["pca"]

    assert main(["eval", str(project.root), "999", "--json"]) == 1
    assert "no run 999" in capsys.readouterr().err


def test_engine_eval_imports_without_qt(monkeypatch):
    monkeypatch.setitem(sys.modules, "PySide6", None)
    for name in [m for m in sys.modules if m.startswith("studio.engine.eval") or m == "studio.engine.train.monitor"]:
        monkeypatch.delitem(sys.modules, name)
    import studio.engine.eval  # noqa: F401
    import studio.engine.train.monitor  # noqa: F401
