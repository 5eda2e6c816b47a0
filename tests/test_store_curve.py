"""Project.metric_curve: the downsampled read the plots use for long runs."""

from __future__ import annotations

import pytest


@pytest.fixture
def run_with_points(tmp_path):
    from studio.store import Project

    p = Project.create(tmp_path / "p")
    p.add_dataset(name="d", kind="sample", source="sample", images=1)
    run = p.create_run(p.dataset("d").id, "simclr", "resnet18", {})
    rows = [(run.id, s, s / 100, "loss", 1000.0 - s * 0.01, 0.0) for s in range(1, 50_001)]
    rows += [(run.id, s, s / 100, "knn_top1", s / 50_000, 0.0) for s in range(5_000, 50_001, 5_000)]
    p.add_metrics(rows)
    yield p, run.id
    p.close()


def test_short_series_is_returned_whole(run_with_points):
    p, run_id = run_with_points
    steps, values = p.metric_curve(run_id, "knn_top1", max_points=100)
    assert steps == list(range(5_000, 50_001, 5_000))
    assert values == pytest.approx([s / 50_000 for s in steps])


def test_long_series_is_thinned_evenly_and_keeps_both_ends(run_with_points):
    p, run_id = run_with_points
    steps, values = p.metric_curve(run_id, "loss", max_points=500)
    assert 450 <= len(steps) <= 501
    assert steps[0] == 1 and steps[-1] == 50_000
    assert steps == sorted(set(steps))
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    assert max(gaps) <= 2 * (50_000 // 500)
    # each value belongs to its own step, not to a neighbour's
    assert values == pytest.approx([1000.0 - s * 0.01 for s in steps])


def test_unknown_metric_gives_an_empty_curve(run_with_points):
    p, run_id = run_with_points
    assert p.metric_curve(run_id, "nope") == ([], [])
