"""Reading stored evaluations side by side: the project's baseline run and every run's difference to
it, which summary columns are ratios (one 0..1 axis), the label-efficiency curves of fine-tuning,
and which method families suit which use (from this project's results, else from the literature).

The rules the Evaluation view and the New run form ask for (DESIGN rule 8); no Qt here.
"""

from __future__ import annotations

from dataclasses import dataclass

from studio.engine.methods import find_method
from studio.services.protocols import Column, Protocol, summarize, summary_columns
from studio.services.runs import writable
from studio.store import Project, ProjectError

# The project's choice of baseline run lives in its key/value table (store.models.Meta).
BASELINE_KEY = "evaluation_baseline_run"

# Summary columns that are not shares of 0..1 (a rank, a squared distance, a log-expectation):
# they are left off the common 0..1 chart and read in the table.
NOT_RATIOS = frozenset({"effective_rank", "alignment", "uniformity"})


# -- the baseline run -----------------------------------------------------------------------------
def baseline_run(project: Project) -> int | None:
    """The run the project's evaluations are compared with, None when none is chosen (or the
    chosen run was deleted since)."""
    value = project.meta(BASELINE_KEY)
    if not value or not value.isdigit():
        return None
    run_id = int(value)
    return run_id if any(r.id == run_id for r in project.runs()) else None


def set_baseline_run(project: Project, run_id: int | None) -> None:
    """Make `run_id` the baseline (None clears it); kept in the project file, so it survives
    reopening. Refused on a read-only project and for an unknown run."""
    from studio.store import models as m

    writable(project).check()
    if run_id is not None:
        project.run(run_id)  # an unknown run is refused (ProjectError)
    with project.session() as s:
        row = s.get(m.Meta, BASELINE_KEY)
        if run_id is None:
            if row is not None:
                s.delete(row)
        else:
            s.merge(m.Meta(key=BASELINE_KEY, value=str(int(run_id))))


def differences(summaries: dict[int, dict[str, float]], baseline_id: int | None) -> dict[int, dict[str, float]]:
    """Each other run's number minus the baseline's, column by column where both have one
    ({} for the baseline itself, and for everyone when there is no baseline)."""
    base = summaries.get(baseline_id) if baseline_id is not None else None
    if not base:
        return {run_id: {} for run_id in summaries}
    return {run_id: ({} if run_id == baseline_id else
                     {k: v - base[k] for k, v in s.items() if k in base})
            for run_id, s in summaries.items()}


def with_difference(value: float, difference: float | None = None) -> str:
    """'0.612', or '0.612 (+0.041)' beside a baseline."""
    text = f"{value:.4g}"
    if difference is None:
        return text
    return f"{text} ({'+' if difference >= 0 else '−'}{abs(difference):.3f})"


def is_ratio(column: Column) -> bool:
    return column.key not in NOT_RATIOS


def ratio_columns(summaries: dict[int, dict[str, float]]) -> list[tuple[Protocol, Column]]:
    """The summary columns some run has a number for that share the 0..1 axis, in the table's order."""
    return [(p, c) for p, c in summary_columns() if is_ratio(c) and any(c.key in s for s in summaries.values())]


# -- label efficiency -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelCurve:
    """Fine-tuning accuracy against the share of the labels used (fractions 0..1, ascending)."""

    fractions: tuple[float, ...]
    pretrained: tuple[float, ...]
    scratch: tuple[float, ...]


def label_efficiency_curve(project: Project, run_id: int) -> LabelCurve | None:
    """The newest label-efficient fine-tuning result of a run as two curves, the pretrained
    encoder and the same backbone from scratch; None without one."""
    finetunes = [e for e in project.evaluations(run_id) if e.kind == "finetune"]
    if not finetunes:
        return None
    m = finetunes[-1].metrics or {}
    points = []
    for key, value in m.items():
        if key.endswith(" pretrained") and key.split()[0].endswith("%"):
            share = key.split()[0]
            scratch = m.get(f"{share} scratch")
            if isinstance(value, (int, float)) and isinstance(scratch, (int, float)):
                points.append((float(share.rstrip("%")) / 100.0, float(value), float(scratch)))
    if not points:
        return None
    points.sort()
    return LabelCurve(*(tuple(p[i] for p in points) for i in range(3)))


# -- which method suits which use -----------------------------------------------------------------
# (use, summary keys in order of preference, the number's words)
USES = (("retrieval", ("retrieval_recall@1", "retrieval_map"), ("recall@1", "mAP")),
        ("few-shot", ("fewshot_5", "fewshot_1", "fewshot_10"), ("5-shot", "1-shot", "10-shot")),
        ("fine-tuning on 1 % of labels", ("finetune_1%",), ("top-1",)))

LITERATURE = {
    "contrastive": "Contrastive methods (SimCLR, MoCo) learn frozen features that suit retrieval, kNN and few "
                   "labels.",
    "self-distillation": "Self-distillation (BYOL, DINO) gives frozen features that suit retrieval, kNN and "
                         "few labels; DINO's are among the best for retrieval.",
    "redundancy-reduction": "Redundancy reduction (Barlow Twins, VICReg) gives frozen features close to "
                            "contrastive ones: good for linear probes, kNN and few labels.",
    "clustering": "Clustering methods (SwAV) give frozen features that suit linear probes, few labels and "
                  "clustering.",
    "masked-image-modelling": "Masked image modelling (MAE, SimMIM) suits fine-tuning and reconstruction-like "
                              "uses; its frozen features are weaker for kNN, retrieval and few labels.",
    "combined": "Combined objectives (iBOT) aim at both: frozen features for retrieval and kNN, and a good "
                "start for fine-tuning.",
}


def _best_by_use(project: Project) -> list[tuple[str, str, str, float]]:
    """(use, method title, number's words, value) of the best run for each use with a result."""
    runs = {r.id: r for r in project.runs()}
    summaries: dict[int, dict[str, float]] = {}
    for ev in project.evaluations():
        if ev.run_id in runs:
            summaries.setdefault(ev.run_id, {}).update(summarize(ev.kind, ev.metrics))
    out = []
    for use, keys, words in USES:
        for key, word in zip(keys, words):
            scored = [(s[key], run_id) for run_id, s in summaries.items() if key in s]
            if scored:
                value, run_id = max(scored)
                cls = find_method(runs[run_id].method)
                out.append((use, cls.title if cls else runs[run_id].method, word, value))
                break
    return out


def suitability(project: Project | None, method: str) -> str:
    """One line for the New run form on what the chosen method suits: this project's best runs by
    use when it has evaluations, else what the literature says of the method's family."""
    best = _best_by_use(project) if project is not None else []
    if best:
        parts = [f"{title} runs scored best on {use} ({word} {value:.2f})" if i == 0 else
                 f"{title} on {use} ({value:.2f})" for i, (use, title, word, value) in enumerate(best)]
        return f"In this project, {', '.join(parts)}."
    cls = find_method(method)
    return LITERATURE.get(cls.family if cls else "", "")


__all__ = ["BASELINE_KEY", "LabelCurve", "NOT_RATIOS", "ProjectError", "baseline_run", "differences",
           "is_ratio", "label_efficiency_curve", "ratio_columns", "set_baseline_run", "suitability",
           "with_difference"]
