"""Following a map across a run's checkpoints: the Procrustes alignment (engine) and the aligned
maps of every checkpoint (services.explore_steps)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import tiny_train_config, write_image_folder


def _rotation(theta: float) -> np.ndarray:
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


def test_a_rotated_scaled_shifted_copy_aligns_back_onto_the_original():
    from studio.engine.eval import procrustes_align

    rng = np.random.default_rng(0)
    original = rng.normal(size=(40, 2)) * [3.0, 1.0] + [5.0, -2.0]
    for theta, scale, shift, flip in ((0.7, 3.5, [10.0, -4.0], 1), (2.9, 0.02, [-300.0, 7.0], -1)):
        moved = scale * (original * [1, flip]) @ _rotation(theta) + shift  # a reflection too, once
        aligned = procrustes_align(moved, original)
        np.testing.assert_allclose(aligned, original, atol=1e-6)
    np.testing.assert_allclose(procrustes_align(original, original), original, atol=1e-12)


def test_alignment_keeps_the_targets_centre_and_spread_and_needs_equal_shapes():
    from studio.engine.eval import EvaluationError, align_chain, procrustes_align

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(30, 2)).astype(np.float32), rng.normal(size=(30, 2)) * 4 + 9
    out = procrustes_align(a, b)
    assert out.dtype == np.float32  # the source's dtype
    np.testing.assert_allclose(out.mean(axis=0), b.mean(axis=0), atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(out - out.mean(0)), np.linalg.norm(b - b.mean(0)), rtol=1e-5)
    # Distances within the map only scale: the shape is the source's.
    d = lambda x: np.linalg.norm(x[:, None] - x[None], axis=-1)  # noqa: E731
    ratio = d(out)[np.triu_indices(30, 1)] / d(a.astype(float))[np.triu_indices(30, 1)]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)
    with pytest.raises(EvaluationError):
        procrustes_align(a, b[:10])
    chain = align_chain([b, a, a * -2])
    np.testing.assert_array_equal(chain[0], b)
    np.testing.assert_allclose(chain[2], chain[1], atol=1e-4)  # the same map, flipped and scaled


def test_cluster_ids_are_matched_to_the_reference_clusters_they_overlap_most():
    from studio.engine.eval import match_clusters

    reference = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    renamed = np.array([5, 5, 5, 3, 3, 9, 9, 1])  # the same clusters, other ids, one point moved
    np.testing.assert_array_equal(match_clusters(renamed, reference), [0, 0, 0, 1, 1, 2, 2, 3])
    np.testing.assert_array_equal(match_clusters(reference, reference), reference)


def make_stepped_run(root, steps=6, every=2):
    """A labelled folder dataset (3 classes × 8 images, 12 px) and a finished run with a
    checkpoint every `every` steps (and its last)."""
    from studio.services.datasets import add_dataset
    from studio.services.training import create_run, execute_run
    from studio.store import Project

    folder = write_image_folder(root / "imgs", classes=("a", "b", "c"), per_class=8, size=12)
    p = Project.create(root / "proj")
    add_dataset(p, str(folder), name="shapes")
    # A one-layer ViT-Tiny at 8 px: its checkpoints cost less than a ResNet's.
    config = tiny_train_config(steps=steps, batch_size=8, checkpoint_every=every, monitor_every=-1, image_size=8,
                               backbone="vit_tiny", backbone_options={"num_layers": 1, "patch_size": 4})
    run = create_run(p, "shapes", config)
    assert execute_run(p, run.id).status == "finished"
    return p, run.id


@pytest.fixture(scope="module")
def stepped(tmp_path_factory):
    p, run_id = make_stepped_run(tmp_path_factory.mktemp("steps"))
    yield p, run_id
    p.close()


def test_every_checkpoints_map_is_computed_stored_and_aligned_onto_the_previous(stepped):
    from studio.engine.eval import procrustes_align
    from studio.services.evaluation import compute_embeddings, embedding_map
    from studio.services.explore_steps import checkpoint_steps, compute_step_maps, steps_unavailable

    project, run_id = stepped
    assert checkpoint_steps(project, run_id) == [2, 4, 6] and steps_unavailable([2, 4, 6]) is None
    reports = []
    maps = compute_step_maps(project, run_id, algorithm="pca", device="cpu", report=lambda *r: reports.append(r))
    assert maps.steps == [2, 4, 6] and len(maps.coords) == len(maps.vectors) == 3
    assert [r.checkpoint_step for r in maps.records] == [2, 4, 6]
    assert len(maps.labels) == len(maps.names) == 24 and maps.class_names == ["a", "b", "c"]
    for i, step in enumerate(maps.steps):
        emb = compute_embeddings(project, run_id, checkpoint_step=step, device="cpu")  # stored: read back
        np.testing.assert_array_equal(maps.vectors[i], emb.vectors)
        np.testing.assert_array_equal(maps.raw[i], embedding_map(project, emb, "pca"))
        assert maps.coords[i].shape == (24, 2) and maps.coords[i].dtype == np.float32
    np.testing.assert_array_equal(maps.coords[0], maps.raw[0])  # the first step is the reference
    for i in (1, 2):
        np.testing.assert_allclose(maps.coords[i], procrustes_align(maps.raw[i], maps.coords[i - 1]), atol=1e-5)
    # Progress says which map of how many, counts up to its total and ends there.
    stages = [s for s, _, _ in reports]
    assert "map 2 of 3: step 4" in stages and stages[-1] == "map 3 of 3: step 6"
    done = [d for _, d, _ in reports]
    assert done == sorted(done) and reports[-1][1] == reports[-1][2] == 300
    # A second time nothing is computed again: the same rows, the same maps.
    rows = [len(project.embedding_maps(r.id)) for r in maps.records]
    again = compute_step_maps(project, run_id, algorithm="pca", device="cpu")
    assert [len(project.embedding_maps(r.id)) for r in again.records] == rows == [1, 1, 1]
    for a, b in zip(maps.coords, again.coords):
        np.testing.assert_array_equal(a, b)
    x0, y0, x1, y1 = maps.bounds()
    every = np.concatenate(maps.coords)
    assert (x0, y0, x1, y1) == (every[:, 0].min(), every[:, 1].min(), every[:, 0].max(), every[:, 1].max())


def test_tsne_maps_are_aligned_too_and_cancelling_stops_between_maps(stepped):
    from studio.engine.eval import EmbeddingCancelled, procrustes_align
    from studio.services.explore_steps import compute_step_maps

    project, run_id = stepped
    maps = compute_step_maps(project, run_id, algorithm="tsne", device="cpu", steps=[2, 6])
    assert maps.steps == [2, 6] and maps.algorithm == "tsne"
    np.testing.assert_allclose(maps.coords[1], procrustes_align(maps.raw[1], maps.raw[0]), atol=1e-4)
    # Nearer its neighbour than the map as projected, only shifted and scaled (t-SNE's rotation is arbitrary).
    c0, r1 = maps.coords[0].astype(float), maps.raw[1].astype(float)
    unrotated = (r1 - r1.mean(0)) / np.linalg.norm(r1 - r1.mean(0)) * np.linalg.norm(c0 - c0.mean(0)) + c0.mean(0)
    assert np.linalg.norm(maps.coords[1] - c0) <= np.linalg.norm(unrotated - c0) + 1e-4
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 1  # the first map starts; the second is refused

    with pytest.raises(EmbeddingCancelled):
        compute_step_maps(project, run_id, algorithm="pca", device="cpu", cancelled=cancelled)


def test_one_checkpoint_or_none_says_why_there_is_nothing_to_follow():
    from studio.services.explore_steps import steps_unavailable

    assert "one checkpoint (step 1,200)" in steps_unavailable([1200])
    assert "no checkpoint" in steps_unavailable([])
