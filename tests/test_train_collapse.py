"""The collapse verdict lives once, in studio.engine.eval.health: the Trainer's log and the Run
page ask `collapse_verdict` for the decision and its wording, from a health report or from the
health monitor's stored metrics alike."""

from __future__ import annotations

import numpy as np

from studio.engine.eval.health import STD_RATIO_COLLAPSE_THRESHOLD, collapse_verdict, health_report


def test_a_health_report_and_the_stored_metrics_get_the_same_verdict_and_words():
    rng = np.random.default_rng(0)
    healthy = rng.normal(size=(64, 16))
    collapsed = np.ones((64, 16)) + 1e-6 * rng.normal(size=(64, 16))
    for z, expected in ((healthy, False), (collapsed, True)):
        report = health_report(z)
        verdict, message = collapse_verdict(report)
        assert verdict is expected
        stored = {"collapse": 1.0 if report["collapsed"] else 0.0, "embedding_std_ratio": report["std_ratio"]}
        assert collapse_verdict(stored) == (verdict, message)
    verdict, message = collapse_verdict({"collapse": 1.0, "embedding_std_ratio": 0.02})
    assert verdict and "spread 0.020" in message and f"under {STD_RATIO_COLLAPSE_THRESHOLD} counts as collapse" in message
    assert "lower learning rate" in message
    assert collapse_verdict({"collapse": 1.0})[1].count("spread not finite") == 1  # non-finite spreads are not stored
    assert collapse_verdict({"collapse": 0.0, "embedding_std_ratio": 0.8})[0] is False
