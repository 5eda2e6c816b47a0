"""The evaluation suite's protocols, each against a small case worked out by hand or directly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn


def _blobs(n_per=30, classes=4, dim=16, spread=8.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * spread
    y = np.repeat(np.arange(classes), n_per)
    return (centres[y] + rng.normal(size=(len(y), dim))).astype(np.float32), y


# -- kNN sweep ------------------------------------------------------------------------------------
def test_knn_sweep_matches_knn_top1_per_k_and_caps_k_by_the_training_set():
    from studio.engine.eval import knn_sweep, knn_top1

    x, y = _blobs(n_per=10, classes=3)
    rng = np.random.default_rng(3)
    noisy = np.where(rng.random(len(y)) < 0.3, rng.integers(0, 3, len(y)), y)  # so k matters
    tr, te = np.arange(0, 30, 2), np.arange(1, 30, 2)
    out = knn_sweep(x[tr], noisy[tr], x[te], y[te], 3, ks=(1, 5, 200))
    assert sorted(out["top1"]) == [1, 5, 15]  # 200 capped to the 15 training images
    for k, acc in out["top1"].items():
        assert acc == pytest.approx(knn_top1(x[tr], noisy[tr], x[te], y[te], 3, k=k))


def test_knn_sweep_by_hand():
    """Test point at (1, 0); neighbours: class 0 at cos 1, two class-1 points at cos 0.8.
    k=1 votes class 0; k=3 at τ=1 gives e^1 < 2e^0.8, so class 1 wins."""
    from studio.engine.eval import knn_sweep

    train = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.8, 0.6]])
    out = knn_sweep(train, torch.tensor([0, 1, 1]), torch.tensor([[1.0, 0.0]]), torch.tensor([0]), 2, ks=(1, 3),
                    temperature=1.0)
    assert out["top1"] == {1: 1.0, 3: 0.0}


# -- few-shot -------------------------------------------------------------------------------------
def test_few_shot_separable_blobs_score_high_and_random_labels_score_chance():
    from studio.engine.eval import few_shot

    x, y = _blobs(n_per=60)
    tr, te = np.arange(0, len(y), 2), np.arange(1, len(y), 2)
    out = few_shot(x[tr], y[tr], x[te], y[te], shots=(1, 5), draws=3)
    assert set(out) == {1, 5}
    assert out[1]["num_train"] == 4 and out[5]["num_train"] == 20 and len(out[5]["draws"]) == 3
    assert out[1]["mean"] > 0.9 and out[5]["mean"] > 0.9
    assert out[5]["std"] == pytest.approx(np.std(out[5]["draws"]))

    shuffled = np.random.default_rng(1).permutation(y)
    chance = few_shot(x[tr], shuffled[tr], x[te], shuffled[te], shots=(5,), draws=5)
    assert abs(chance[5]["mean"] - 0.25) < 0.12


def test_draw_shots_takes_n_of_each_class_and_all_of_a_small_one():
    from studio.engine.eval import draw_shots

    y = np.array([0] * 10 + [1] * 2)
    rows = draw_shots(y, 3, np.random.default_rng(0))
    assert (y[rows] == 0).sum() == 3 and (y[rows] == 1).sum() == 2


# -- retrieval ------------------------------------------------------------------------------------
def test_retrieval_recall_and_map_on_hand_made_features():
    """Gallery on the unit circle; query 0 (class 0) at 0°: ranking g0 (cls 1, 10°), g1 (cls 0, 20°),
    g2 (cls 1, 90°), g3 (cls 0, 180°). Relevant at ranks 2 and 4: AP = (1/2 + 2/4) / 2 = 0.5.
    Query 1 (class 1) at 90°: g2 first (relevant), then g1 (70°), g0 (80°), g3 (90°): AP = (1 + 2/3)/2."""
    from studio.engine.eval import retrieval_scores

    def at(*deg):
        r = np.deg2rad(deg)
        return np.stack([np.cos(r), np.sin(r)], 1)

    gallery, g_labels = at(10, 20, 90, 180), np.array([1, 0, 1, 0])
    query, q_labels = at(0, 90), np.array([0, 1])
    out = retrieval_scores(query, q_labels, gallery, g_labels, ks=(1, 2, 10))
    assert out["recall@1"] == 0.5  # query 0's nearest is of the other class
    assert out["recall@2"] == 1.0
    assert out["recall@10"] == 1.0  # k capped by the gallery
    assert out["map"] == pytest.approx((0.5 + (1 + 2 / 3) / 2) / 2)
    assert out["num_queries"] == 2 and out["skipped_queries"] == 0


# -- clustering -----------------------------------------------------------------------------------
def test_clustering_of_separated_blobs_is_perfect_and_of_random_labels_is_near_zero():
    from studio.engine.eval import clustering_scores, partition_scores

    x, y = _blobs(n_per=20, classes=3, spread=20.0)
    out = clustering_scores(x, y)
    assert out["k"] == 3
    assert out["nmi"] == pytest.approx(1.0) and out["ari"] == pytest.approx(1.0)
    # numbering does not matter; a split cluster does
    assert partition_scores([2, 2, 0, 0], [0, 0, 1, 1]) == {"nmi": pytest.approx(1.0), "ari": pytest.approx(1.0)}
    random = clustering_scores(x, np.random.default_rng(0).permutation(y))
    assert random["nmi"] < 0.15 and abs(random["ari"]) < 0.1


# -- diagnostics ----------------------------------------------------------------------------------
def test_rankme_of_an_identity_like_matrix_is_its_dimension():
    from studio.engine.eval import effective_rank

    assert effective_rank(np.eye(8) * 3.0) == pytest.approx(8.0, rel=1e-6)
    assert effective_rank(np.ones((8, 8))) == pytest.approx(1.0, rel=1e-6)


# -- label-efficient fine-tuning ------------------------------------------------------------------
def test_label_subset_is_class_balanced_with_one_of_each_class_at_least():
    from studio.engine.eval import fraction_name, label_subset

    labels = np.repeat([0, 1, 2], 50)
    train = np.arange(150)
    ten = label_subset(labels, train, 0.1)
    assert np.bincount(labels[ten]).tolist() == [5, 5, 5]
    assert np.bincount(labels[label_subset(labels, train, 0.01)]).tolist() == [1, 1, 1]
    assert label_subset(labels, train, 1.0).tolist() == train.tolist()
    assert [fraction_name(f) for f in (0.01, 0.1, 1.0)] == ["1%", "10%", "100%"]


def test_label_efficiency_trains_both_encoders_on_each_fraction_with_the_given_steps():
    from studio.engine.eval import finetune, label_efficiency

    rng = np.random.default_rng(0)
    labels = np.arange(40) % 2
    images = rng.integers(0, 60, size=(40, 3, 8, 8), dtype=np.uint8)
    images[labels == 1, 0] += 150

    def build():
        torch.manual_seed(1)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    pretrained = build()
    before = [p.detach().clone() for p in pretrained.parameters()]
    seen = []
    out = label_efficiency(pretrained, build, images, labels, np.arange(30), np.arange(30, 40), 2,
                           fractions=(0.1, 1.0), steps=3, batch_size=8, progress=lambda *a: seen.append(a))
    assert set(out) == {"10%", "100%"}
    assert out["10%"]["num_labels"] == 4 and out["100%"]["num_labels"] == 30
    assert all(0.0 <= out[f][w] <= 1.0 for f in out for w in ("pretrained", "scratch"))
    assert ("fine-tune scratch, 100% of the labels", 3, 3) in seen
    assert all(torch.equal(a, b) for a, b in zip(before, pretrained.parameters()))
    assert finetune(build(), images, labels, np.arange(30), np.arange(30, 40), 2, steps=5, batch_size=8)["steps"] == 5
