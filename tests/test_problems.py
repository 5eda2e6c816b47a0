"""Near-duplicate groups and outliers (studio.engine.eval.problems, services.explore)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from conftest import tiny_train_config


def test_duplicate_groups_join_chains_and_ignore_the_rest():
    from studio.engine.eval.problems import near_duplicate_groups

    rng = np.random.default_rng(0)
    v = rng.normal(size=(300, 32)).astype(np.float32)
    v[10] = v[3]  # a pair
    v[50] = v[40] + 1e-3  # a chain 40 - 50 - 60 (each step a near copy)
    v[60] = v[50] + 1e-3
    v[299] = v[0] * 3  # the same direction: cosine 1
    groups = near_duplicate_groups(v, threshold=0.999, block=64)  # blocks smaller than N
    assert groups[0].indices.tolist() == [40, 50, 60]  # the largest first
    assert sorted(g.indices.tolist() for g in groups[1:]) == [[0, 299], [3, 10]]
    assert all(g.similarity > 0.999 for g in groups)
    assert near_duplicate_groups(rng.normal(size=(100, 32)), threshold=0.9) == []


def test_a_search_stops_between_blocks_when_cancelled():
    from studio.engine.eval.problems import SearchCancelled, kth_neighbour_distance

    asked = []

    def cancelled():
        asked.append(1)
        return len(asked) > 2

    with pytest.raises(SearchCancelled):
        kth_neighbour_distance(np.random.default_rng(0).normal(size=(100, 8)), k=3, block=10, cancelled=cancelled)
    assert len(asked) == 3


def test_a_lonely_point_has_the_largest_kth_neighbour_distance():
    from studio.engine.eval.problems import kth_neighbour_distance, outlier_ranking

    rng = np.random.default_rng(1)
    centre = rng.normal(size=16)
    v = centre + 0.05 * rng.normal(size=(200, 16))
    v[17] = -centre  # far from everyone
    d = kth_neighbour_distance(v, k=5, block=50)
    assert d.argmax() == 17 and d.shape == (200,)
    # compared with a direct computation
    z = v / np.linalg.norm(v, axis=1, keepdims=True)
    sims = z @ z.T
    np.fill_diagonal(sims, -np.inf)
    np.testing.assert_allclose(d, 1 - np.sort(sims, axis=1)[:, -5], atol=1e-5)
    order, dist = outlier_ranking(v, k=5)
    assert order[0] == 17 and np.all(np.diff(dist) <= 0)


@pytest.fixture
def planted_project(tmp_path):
    """Smooth images, three exact copies of two of them, and two images of noise."""
    from PIL import Image

    from studio.services.datasets import add_dataset
    from studio.services.training import create_run
    from studio.store import Project

    root = tmp_path / "planted"
    root.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16] / 15.0
    for i in range(24):
        a, b, c = rng.uniform(0.2, 1.0, size=3)
        img = np.stack([a * xx, b * yy, c * (1 - xx) * np.ones_like(yy)], -1)
        Image.fromarray((img * 255).astype(np.uint8)).save(root / f"smooth_{i:02d}.png")
    shutil.copy(root / "smooth_03.png", root / "copy_of_03.png")
    shutil.copy(root / "smooth_03.png", root / "another_copy_of_03.png")
    shutil.copy(root / "smooth_07.png", root / "copy_of_07.png")
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)).save(root / f"noise_{i}.png")
    p = Project.create(tmp_path / "proj")
    add_dataset(p, str(root), name="planted")
    run = create_run(p, "planted", tiny_train_config(image_size=16))
    yield p, run.id
    p.close()


def test_planted_copies_are_groups_and_noise_images_the_top_outliers(planted_project):
    from pathlib import Path

    from studio.services.evaluation import compute_embeddings
    from studio.services.explore import find_duplicates, find_outliers

    project, run_id = planted_project
    emb = compute_embeddings(project, run_id, checkpoint_step=0, device="cpu")
    names = [Path(n).name for n in emb.names]
    groups = find_duplicates(emb.vectors, threshold=0.999)
    found = sorted(sorted(names[i] for i in g.indices) for g in groups)
    assert ["another_copy_of_03.png", "copy_of_03.png", "smooth_03.png"] in found
    assert ["copy_of_07.png", "smooth_07.png"] in found
    outliers = find_outliers(emb.vectors, k=3)
    assert {names[int(i)] for i in outliers.indices[:2]} == {"noise_0.png", "noise_1.png"}
