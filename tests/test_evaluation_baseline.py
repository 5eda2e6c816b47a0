"""Comparing stored evaluations (services.evaluation_compare): the project's baseline run survives
reopening, differences to it, the label-efficiency curves, and the New run form's line on which
method suits which use (from the project's results, else the literature). No training: the
evaluations are written to the store directly."""

from __future__ import annotations

import pytest

FINETUNE = {"top1": 0.8, "random_init_top1": 0.5, "1% pretrained": 0.4, "1% scratch": 0.2,
            "10% pretrained": 0.6, "10% scratch": 0.3, "100% pretrained": 0.8, "100% scratch": 0.5,
            "settings": {"fractions": [0.01, 0.1, 1.0]}}


@pytest.fixture
def project(tmp_path):
    from studio.store import Project

    p = Project.create(tmp_path / "proj")
    ds = p.add_dataset("shapes", "folder", "imgs", images=30, classes=3)
    dino = p.create_run(ds.id, "dino", "resnet18", {})
    simclr = p.create_run(ds.id, "simclr", "resnet18", {})
    p.add_evaluation(dino.id, "knn", {"top1": 0.612})
    p.add_evaluation(dino.id, "retrieval", {"recall@1": 0.71, "map": 0.4})
    p.add_evaluation(dino.id, "fewshot", {"1-shot": 0.3, "5-shot": 0.45})
    p.add_evaluation(simclr.id, "knn", {"top1": 0.571})
    p.add_evaluation(simclr.id, "retrieval", {"recall@1": 0.65, "map": 0.42})
    p.add_evaluation(simclr.id, "fewshot", {"1-shot": 0.35, "5-shot": 0.55})
    p.add_evaluation(simclr.id, "finetune", FINETUNE)
    yield p, dino.id, simclr.id
    p.close()


def test_the_baseline_is_kept_in_the_project_and_read_back_after_reopening(project, tmp_path):
    from studio.services.evaluation_compare import BASELINE_KEY, baseline_run, set_baseline_run
    from studio.store import Project, ProjectError

    p, dino, simclr = project
    assert baseline_run(p) is None
    set_baseline_run(p, simclr)
    assert baseline_run(p) == simclr and p.meta(BASELINE_KEY) == str(simclr)
    p.close()
    with Project.open(tmp_path / "proj") as again:
        assert baseline_run(again) == simclr
        with pytest.raises(ProjectError):
            set_baseline_run(again, 99)
        set_baseline_run(again, None)
        assert baseline_run(again) is None and again.meta(BASELINE_KEY) is None
        set_baseline_run(again, None)  # clearing twice is fine


def test_differences_to_the_baseline_column_by_column(project):
    from studio.services.evaluation import evaluation_summary
    from studio.services.evaluation_compare import differences, with_difference

    p, dino, simclr = project
    summaries = {r.id: evaluation_summary(p, r.id) for r in p.runs()}
    diff = differences(summaries, simclr)
    assert diff[simclr] == {}
    assert diff[dino]["knn_top1"] == pytest.approx(0.612 - 0.571)
    assert diff[dino]["retrieval_recall@1"] == pytest.approx(0.06)
    assert "finetune_top1" not in diff[dino]  # only simclr has one
    assert differences(summaries, None) == {dino: {}, simclr: {}}
    assert with_difference(0.612, 0.041) == "0.612 (+0.041)"
    assert with_difference(0.571, -0.041) == "0.571 (−0.041)"
    assert with_difference(0.571) == "0.571"


def test_ratio_columns_leave_out_the_diagnostics_and_curves_come_from_finetuning(project):
    from studio.services.evaluation import evaluation_summary
    from studio.services.evaluation_compare import label_efficiency_curve, ratio_columns

    p, dino, simclr = project
    p.add_evaluation(dino, "rank", {"effective_rank": 12.0, "alignment": 0.5, "uniformity": -2.0})
    summaries = {r.id: evaluation_summary(p, r.id) for r in p.runs()}
    keys = [c.key for _, c in ratio_columns(summaries)]
    assert "knn_top1" in keys and "finetune_1%" in keys and "effective_rank" not in keys and "uniformity" not in keys
    curve = label_efficiency_curve(p, simclr)
    assert curve.fractions == (0.01, 0.1, 1.0)
    assert curve.pretrained == (0.4, 0.6, 0.8) and curve.scratch == (0.2, 0.3, 0.5)
    assert label_efficiency_curve(p, dino) is None


def test_the_suitability_line_names_the_projects_best_runs_else_the_literature(project, tmp_path):
    from studio.services.evaluation_compare import suitability
    from studio.store import Project

    p, dino, simclr = project
    line = suitability(p, "mae")
    assert line.startswith("In this project, DINO runs scored best on retrieval (recall@1 0.71)"), line
    assert "SimCLR on few-shot (0.55)" in line and "fine-tuning on 1 % of labels (0.40)" in line
    with Project.create(tmp_path / "empty") as empty:
        assert "Masked image modelling (MAE, SimMIM) suits fine-tuning" in suitability(empty, "mae")
        assert "weaker" in suitability(empty, "simmim")
        assert "retrieval" in suitability(empty, "dino") and "few labels" in suitability(empty, "simclr")
    assert "retrieval" in suitability(None, "byol")
