"""The Evaluation view's charts and baseline, and the New run form's line on which method suits
which use, from evaluations written to the store directly (nothing trains)."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

pytestmark = pytest.mark.usefixtures("private_settings")

FINETUNE = {"top1": 0.8, "random_init_top1": 0.5, "1% pretrained": 0.4, "1% scratch": 0.2,
            "10% pretrained": 0.6, "10% scratch": 0.3, "100% pretrained": 0.8, "100% scratch": 0.5}


@pytest.fixture
def project(tmp_path):
    """Two runs, a DINO and a SimCLR, with kNN, retrieval and rank results; SimCLR also fine-tuned."""
    from studio.store import Project

    p = Project.create(tmp_path / "proj")
    ds = p.add_dataset("shapes", "folder", "imgs", images=30, classes=3)
    dino = p.create_run(ds.id, "dino", "resnet18", {})
    simclr = p.create_run(ds.id, "simclr", "resnet18", {})
    p.label_run(dino.id, name="teacher test")
    for run_id, knn, recall, rank in ((dino.id, 0.612, 0.71, 20.0), (simclr.id, 0.571, 0.65, 14.0)):
        p.add_evaluation(run_id, "knn", {"top1": knn})
        p.add_evaluation(run_id, "retrieval", {"recall@1": recall, "map": recall - 0.3})
        p.add_evaluation(run_id, "rank", {"effective_rank": rank, "alignment": 0.5, "uniformity": -2.0})
    p.add_evaluation(simclr.id, "finetune", FINETUNE)
    yield p, dino.id, simclr.id
    p.close()


def _open_view(make_window, project):
    w = make_window(project.root)
    [action] = [a for a in w.page_actions if a.text() == "Evaluation"]
    action.trigger()
    return w, w.page("Evaluation")


def test_the_chart_puts_runs_side_by_side_and_the_curves_show_what_pretraining_buys(make_window, project):
    p, dino, simclr = project
    w, view = _open_view(make_window, p)
    chart = view.chart
    # Groups: kNN top-1, Fine-tune 1%, 10%, top-1, From scratch, Recall@1, Retrieval mAP (not effective rank).
    ticks = [t.replace("\n", " ") for _, t in chart.getPlotItem().getAxis("bottom")._tickLevels[0]]
    assert ticks == ["kNN top-1", "Fine-tune 1%", "Fine-tune 10%", "Fine-tune top-1", "From scratch", "Recall@1",
                     "Retrieval mAP"]
    assert chart.heights(dino) == pytest.approx([0.612, 0.71, 0.41])
    assert chart.heights(simclr) == pytest.approx([0.571, 0.4, 0.6, 0.8, 0.5, 0.65, 0.35])
    assert len(chart.bars) == 2 and chart.baseline_line is None
    legend = [label.text for _, label in chart.legend.items]
    assert legend == ["Run 1: teacher test", "Run 2: SimCLR on resnet18"]
    assert "ratio" in chart.getPlotItem().getAxis("left").labelText
    assert "Effective rank" in view.chart_note.text() and "not ratios" in view.chart_note.text()

    curves = view.curves
    assert set(curves.curves) == {(simclr, "pretrained"), (simclr, "scratch")}
    assert curves.points(simclr, "pretrained") == ([0.01, 0.1, 1.0], [0.4, 0.6, 0.8])
    assert curves.points(simclr, "scratch") == ([0.01, 0.1, 1.0], [0.2, 0.3, 0.5])
    assert curves.curves[(simclr, "scratch")].opts["pen"].style() != curves.curves[(simclr, "pretrained")].opts["pen"].style()
    assert curves.getPlotItem().getAxis("bottom").logMode


def test_a_baseline_run_shows_differences_in_the_table_and_a_line_on_the_chart(make_window, project):
    from studio.services.evaluation_compare import baseline_run

    p, dino, simclr = project
    w, view = _open_view(make_window, p)
    knn = view.column_titles().index("kNN top-1")
    assert view.table.item(0, knn).text() == "0.612"
    menu = view.row_menu(1)
    assert [a.text() for a in menu.actions()] == ["Use as baseline"]
    menu.actions()[0].trigger()
    assert baseline_run(p) == simclr
    assert view.table.item(0, knn).text() == "0.612 (+0.041)"
    assert view.table.item(1, knn).text() == "0.571" and "(baseline)" in view.table.item(1, 0).text()
    xs, ys = view.chart.baseline_line.getData()
    assert list(ys[:2]) == pytest.approx([0.571, 0.571])
    assert [a.text() for a in view.row_menu(1).actions()] == ["Clear baseline"]
    view.row_menu(1).actions()[0].trigger()
    assert baseline_run(p) is None and view.table.item(0, knn).text() == "0.612" and view.chart.baseline_line is None


def test_the_new_run_form_says_which_method_suits_which_use(make_window, project):
    p, dino, simclr = project
    w = make_window(p.root)
    page = w.new_run_page
    page.method_combo.setCurrentIndex(page.method_combo.findData("mae"))
    text = page.method_info.text()
    assert "In this project, DINO runs scored best on retrieval (recall@1 0.71)" in text, text
    page.set_project(None)
    assert "Masked image modelling (MAE, SimMIM) suits fine-tuning" in page.method_info.text()
