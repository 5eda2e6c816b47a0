"""The evaluation suite through services and the CLI: any subset of protocols on a run's checkpoint
(step 0, the run's initial weights, so nothing trains here), every number stored with its settings."""

from __future__ import annotations

import json

import pytest

from conftest import tiny_train_config, write_image_folder


# A one-block ViT at 16 px: every protocol, fine-tuning included, in about a second.
TINY = dict(image_size=16, knn_k=10, backbone="vit_tiny", backbone_options={"num_layers": 1, "patch_size": 4})


@pytest.fixture
def suite_project(tmp_path):
    from studio.services.datasets import add_dataset
    from studio.services.training import create_run
    from studio.store import Project

    p = Project.create(tmp_path / "proj")
    add_dataset(p, str(write_image_folder(tmp_path / "imgs", classes=("a", "b", "c"), per_class=12, size=12)), name="shapes")
    add_dataset(p, str(write_image_folder(tmp_path / "other", classes=("x", "y"), per_class=10, size=12, seed=5)),
                name="other")
    flat = tmp_path / "flat"
    write_image_folder(flat, classes=("only",), per_class=8, size=12, seed=2)
    add_dataset(p, str(flat), name="unlabelled")
    run = create_run(p, "shapes", tiny_train_config(**TINY))
    yield p, run.id
    p.close()


FAST = dict(checkpoint_step=0, device="cpu", finetune_steps=1, finetune_batch_size=8, finetune_fractions=(0.1, 1.0),
            fewshot_draws=2)


def test_every_protocol_is_stored_with_its_settings_and_summarised(suite_project):
    from studio.services.evaluation import PROTOCOL_KEYS, evaluate_run, evaluation_summary, summary_columns

    project, run_id = suite_project
    stages = []
    out = evaluate_run(project, run_id, protocols=["all"], report=lambda s, d, t: stages.append(s), **FAST)
    evals = {e.kind: e for e in project.evaluations(run_id)}
    # "all" on an image-only run: every protocol but the image-text ones (zero-shot needs a text tower)
    assert set(evals) == set(PROTOCOL_KEYS) - {"zeroshot", "text_retrieval"} == {
        "knn", "linear", "fewshot", "finetune", "retrieval", "clustering", "rank"}
    assert all(e.checkpoint_step == 0 and e.dataset_id == project.dataset("shapes").id for e in evals.values())
    assert all("settings" in e.metrics for e in evals.values())

    # 36 images, 29 train: k = 10, 20 and 200 (capped to 29); the run's own k is 10.
    assert sorted(out["knn"]) == ["10", "20", "29"] and out["knn_top1"] == out["knn"]["10"]
    assert evals["knn"].metrics["settings"]["temperature"] == 0.1
    assert set(out["fewshot"]) == {"1", "5", "10"} and len(evals["fewshot"].metrics["settings"]["draw_scores"]["5"]) == 2
    assert set(out["finetune"]) == {"10%", "100%"} and set(out["finetune"]["10%"]) == {"pretrained", "scratch"}
    assert evals["finetune"].metrics["settings"]["labels_used"] == {"10%": 3, "100%": 29}
    assert set(out["retrieval"]) == {"recall@1", "recall@5", "recall@10", "map"}
    assert out["retrieval"]["recall@1"] <= out["retrieval"]["recall@5"] <= out["retrieval"]["recall@10"]
    assert set(out["clustering"]) == {"nmi", "ari"} and evals["clustering"].metrics["settings"]["k"] == 3
    rank = out["rank"]
    assert 1.0 <= rank["effective_rank"] <= 36 and 0.0 <= rank["alignment"] <= 4.0 and -4.0 <= rank["uniformity"] <= 0.0
    for key in ("knn_top1", "linear_top1", "finetune_top1", "finetune_random_top1"):
        assert 0.0 <= out[key] <= 1.0
    assert {"few-shot", "retrieval", "clustering", "diagnostics", "fine-tune scratch, 10% of the labels"} <= set(stages)

    summary = evaluation_summary(project, run_id)
    assert {c.key for p, c in summary_columns() if p.key != "baseline" and not p.needs_text} - {"finetune_1%"} <= set(summary)
    assert summary["fewshot_5"] == out["fewshot"]["5"] and summary["retrieval_map"] == out["retrieval"]["map"]
    assert summary["finetune_10%"] == out["finetune"]["10%"]["pretrained"]


def test_a_subset_on_another_dataset_and_diagnostics_without_labels(suite_project):
    from studio.engine.eval import EvaluationError
    from studio.services.evaluation import evaluate_run

    project, run_id = suite_project
    out = evaluate_run(project, run_id, dataset="other", protocols=["clustering", "retrieval"], **FAST)
    assert out["dataset"] == "other" and set(out) >= {"clustering", "retrieval"} and "knn_top1" not in out
    assert sorted(e.kind for e in project.evaluations(run_id)) == ["clustering", "retrieval"]
    assert {e.dataset_id for e in project.evaluations(run_id)} == {project.dataset("other").id}

    rank = evaluate_run(project, run_id, dataset="unlabelled", protocols=["rank"], **FAST)
    assert rank["rank"]["effective_rank"] >= 1.0
    with pytest.raises(EvaluationError, match="no labels; knn need"):
        evaluate_run(project, run_id, dataset="unlabelled", protocols=["knn", "rank"], **FAST)
    with pytest.raises(EvaluationError, match="unknown evaluation task zero"):
        evaluate_run(project, run_id, protocols=["zero"], **FAST)


def test_cancelling_stops_between_protocols_and_keeps_what_finished(suite_project):
    from studio.services.evaluation import evaluate_run

    project, run_id = suite_project
    done = []
    with pytest.raises(Exception, match="cancelled"):
        evaluate_run(project, run_id, protocols=["clustering", "knn", "retrieval"],  # run in the table's order
                     report=lambda s, d, t: done.append(s), cancelled=lambda: "retrieval" in done, **FAST)
    assert sorted(e.kind for e in project.evaluations(run_id)) == ["knn", "retrieval"]


def test_cli_eval_tasks_json(suite_project, capsys):
    from studio.cli import main

    project, run_id = suite_project
    root = str(project.root)
    assert main(["eval", root, str(run_id), "--step", "0", "--device", "cpu", "--tasks", "knn,fewshot,clustering",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run_id"] == run_id and set(out["fewshot"]) == {"1", "5", "10"} and set(out["clustering"]) == {"nmi", "ari"}
    assert "knn_top1" in out and "linear_top1" not in out
    # --protocol and --checkpoint are the same words (the brief's and CLI.md's spelling)
    assert main(["eval", root, str(run_id), "--checkpoint", "0", "--device", "cpu", "--protocol", "retrieval,rank",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"run_id", "checkpoint_step", "dataset", "retrieval", "rank"}
    with pytest.raises(SystemExit) as exc:
        main(["eval", root, str(run_id), "--step", "0", "--tasks", "knn,nonsense"])
    assert exc.value.code == 2
    assert "nonsense" in capsys.readouterr().err
    # an image-text task on a run of images alone: a clear error, nothing stored
    assert main(["eval", root, str(run_id), "--step", "0", "--tasks", "knn,zeroshot"]) == 1
    assert "zeroshot needs an image-text run" in capsys.readouterr().err
    assert sorted(e.kind for e in project.evaluations(run_id)) == ["clustering", "fewshot", "knn", "rank", "retrieval"]


def test_task_words_resolve_in_the_tables_order():
    from studio.services.evaluation import PROTOCOL_KEYS, protocol, resolve_protocols

    assert resolve_protocols(["rank,knn", " Fewshot "]) == ("knn", "fewshot", "rank")
    assert resolve_protocols("all") == PROTOCOL_KEYS
    assert all(protocol(k).about and protocol(k).columns for k in PROTOCOL_KEYS)
    assert [p for p in PROTOCOL_KEYS if not protocol(p).needs_labels] == ["rank", "text_retrieval"]
    # "all" on a run of images alone leaves the image-text protocols out
    assert resolve_protocols("all", image_text=False) == tuple(k for k in PROTOCOL_KEYS if k not in ("zeroshot", "text_retrieval"))
