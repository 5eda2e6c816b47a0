"""The evaluation suite from the GUI: tick protocols in the Evaluate dialog, see every stored number
in Run details with its protocol's explanation, and the runs × tasks Evaluation view."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

pytestmark = pytest.mark.usefixtures("private_settings")

TINY = dict(image_size=16, knn_k=10, backbone="vit_tiny", backbone_options={"num_layers": 1, "patch_size": 4},
            steps=2, batch_size=8, monitor_every=-1)


@pytest.fixture
def project(tmp_path):
    """A project with only the small folder below (no sample: its decoding costs seconds)."""
    from studio.store import Project

    p = Project.create(tmp_path / "proj")
    yield p
    p.close()


@pytest.fixture
def shapes_runs(project, tmp_path):
    """Two finished tiny runs on a 3-class folder (36 images)."""
    from conftest import tiny_train_config, write_image_folder

    from studio.services.datasets import add_dataset
    from studio.services.training import create_run, execute_run

    add_dataset(project, str(write_image_folder(tmp_path / "imgs", classes=("a", "b", "c"), per_class=12, size=12)),
                name="shapes")
    ids = []
    for seed in (0, 1):
        run = create_run(project, "shapes", tiny_train_config(seed=seed, **TINY))
        assert execute_run(project, run.id).status == "finished"
        ids.append(run.id)
    return ids


def test_ticked_protocols_are_stored_and_run_details_show_every_number_with_its_protocol(
        make_window, project, shapes_runs, qtbot, monkeypatch):
    from studio.gui.evaluate_dialog import EvaluateDialog
    from studio.services.evaluation import PROTOCOLS

    monkeypatch.setattr(EvaluateDialog, "fast_options", {"finetune_steps": 1, "finetune_batch_size": 8,
                                                         "fewshot_draws": 2})
    run_id = shapes_runs[0]
    w = make_window(project.root)
    w.panel.select_run(run_id)
    w.show_page("Run details")
    qtbot.waitUntil(lambda: w.run_details.evaluate_button.isEnabled(), timeout=10_000)
    w.run_details.evaluate_button.click()
    dialog = w.evaluate_dialog
    image_only = [p for p in PROTOCOLS if not p.needs_text]  # an image-only run: no zero-shot to offer
    assert [dialog.checks[p.key].text() for p in image_only] == [p.label for p in image_only]
    assert not any(p.key in dialog.checks for p in PROTOCOLS if p.needs_text)
    assert "Wang & Isola" in dialog.checks["rank"].toolTip()
    chosen = ("fewshot", "finetune", "retrieval", "clustering", "rank")
    for key, box in dialog.checks.items():
        box.setChecked(key in chosen)
    assert dialog.protocols() == list(chosen)
    dialog.run_button.click()
    assert dialog.busy() and dialog.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: not dialog.busy(), timeout=120_000)
    text = dialog.status_label.text()
    assert text.startswith("Stored (step 2): ") and "1-shot " in text and "nmi " in text and "recall@1 " in text, text
    stored = {e.kind: e.metrics for e in project.evaluations(run_id)}
    assert sorted(stored) == sorted(chosen)

    table = w.run_details.evaluations_table
    qtbot.waitUntil(lambda: table.rowCount() == len(chosen), timeout=10_000)
    for row in range(table.rowCount()):
        kind = table.item(row, 0).text()
        results = table.item(row, 3).text()
        numbers = {k for k, v in stored[kind].items() if k != "settings" and isinstance(v, (int, float))}
        assert numbers and all(f"{k} " in results for k in numbers), (kind, results)
        tip = table.item(row, 3).toolTip()
        about = next(p for p in PROTOCOLS if p.key == kind).about
        assert about.split()[0] in tip and "Settings:" in tip, tip
    finetune_row = next(r for r in range(table.rowCount()) if table.item(r, 0).text() == "finetune")
    assert "100% scratch" in table.item(finetune_row, 3).text() and "1% pretrained" in table.item(finetune_row, 3).text()


def test_the_dialog_refuses_label_protocols_on_an_unlabelled_dataset_and_cancel_stops(
        make_window, project, shapes_runs, qtbot, tmp_path):
    from conftest import write_image_folder

    from studio.services.datasets import add_dataset

    add_dataset(project, str(write_image_folder(tmp_path / "flat", classes=("only",), per_class=6, size=12)),
                name="flat")
    w = make_window(project.root)
    dialog = w.open_evaluate_dialog(shapes_runs[0])
    dialog.dataset_combo.setCurrentIndex(dialog.dataset_combo.findData("flat"))
    assert not dialog.run_button.isEnabled() and "no labels; knn, linear need" in dialog.status_label.text()
    for key, box in dialog.checks.items():
        box.setChecked(key == "rank")
    assert dialog.run_button.isEnabled()
    dialog.dataset_combo.setCurrentIndex(dialog.dataset_combo.findData("shapes"))
    for key, box in dialog.checks.items():
        box.setChecked(key in ("knn", "finetune"))
    dialog.run_button.click()
    dialog.cancel()
    qtbot.waitUntil(lambda: not dialog.busy(), timeout=120_000)
    assert dialog.status_label.text().startswith("Cancelled")
    assert not [e for e in project.evaluations(shapes_runs[0]) if e.kind == "finetune"]
    dialog.close()


def test_the_evaluation_view_tabulates_runs_by_task_and_marks_the_best(make_window, project, shapes_runs):
    from studio.services.evaluation import evaluate_run, evaluation_summary, protocol

    for run_id in shapes_runs:
        evaluate_run(project, run_id, protocols=["rank", "clustering"], device="cpu")
    w = make_window(project.root)
    [action] = [a for a in w.page_actions if a.text() == "Evaluation"]  # View ▸ Evaluation
    action.trigger()
    assert w.current_page_title() == "Evaluation"
    view = w.page("Evaluation")
    titles = view.column_titles()
    assert titles == ["Run", "Method", "Backbone", "Dataset", "NMI", "ARI", "Effective rank", "Alignment", "Uniformity"]
    assert [view.table.item(r, 0).text() for r in range(2)] == [f"#{i}" for i in shapes_runs]
    summaries = [evaluation_summary(project, i) for i in shapes_runs]
    for title, key, pick in (("Effective rank", "effective_rank", max), ("Alignment", "alignment", min),
                             ("Uniformity", "uniformity", min)):
        values = [s[key] for s in summaries]
        assert len(set(values)) == 2, values  # two different encoders: one of them is better
        assert view.best_rows(title) == [values.index(pick(values))], title
        col = titles.index(title)
        assert view.table.item(view.best_rows(title)[0], col).font().bold()
        assert not view.table.item(1 - view.best_rows(title)[0], col).font().bold()
    assert view.best_rows("NMI") == [] or len({s["clustering_nmi"] for s in summaries}) == 2  # a tie marks none
    header = view.table.horizontalHeaderItem(titles.index("Alignment")).toolTip()
    assert "Lower is better" in header and protocol("rank").about.split(".")[0][:40] in header.replace("\n", " ")
