"""What a run is called and how it is labelled, and the project's run queue: the rules both front
doors ask (no Qt, no argparse).

A run's *title* is the person's name for it when it has one, else its method on its backbone;
tags are typed as one comma-separated line. The *queue* holds stored runs that start, one after
another, when the run before them ends: the GUI starts the next when its job ends, the CLI's
`train --from-queue` works through it."""

from __future__ import annotations

from studio.engine.methods import find_method
from studio.services.runs import Verdict, writable
from studio.status import RunStatus
from studio.store import Project, RunRecord


def method_words(run: RunRecord) -> str:
    cls = find_method(run.method)
    return f"{cls.title if cls else run.method} on {run.backbone}"


def run_title(run: RunRecord) -> str:
    """'Run 3: warm-up test' for a named run, 'Run 3: SimCLR on resnet18' otherwise."""
    return f"Run {run.id}: {run.name or method_words(run)}"


def parse_tags(text: str) -> list[str]:
    """'ablation, small lr' -> ['ablation', 'small lr'] (the store refuses over-long tags)."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def can_label(project: Project) -> Verdict:
    """Naming, noting and tagging a run: any run, even one that trains, of a writable project."""
    return writable(project)


def relabel(project: Project, run_id: int, *, name: str | None = None, notes: str | None = None,
            tags: list[str] | None = None, add_tags=(), remove_tags=()) -> RunRecord:
    """Change what is given of a run's labels (None: keep it; '' clears a name or notes): `tags`
    replaces them, then `add_tags` are added and `remove_tags` taken off. The store refuses a
    tag with a comma, an over-long name or tag, and an unknown run (ProjectError)."""
    from studio.store.run_labels import KEEP

    run = project.run(run_id)  # an unknown run is refused before anything is checked
    given = dict(name=KEEP if name is None else name, notes=KEEP if notes is None else notes)
    if tags is not None or add_tags or remove_tags:
        new = [t for t in [*(run.tags if tags is None else tags), *add_tags] if t.strip() not in
               {r.strip() for r in remove_tags}]
        given["tags"] = new
    if any(v is not KEEP for v in given.values()):
        can_label(project).check()
        project.label_run(run_id, **given)
    return project.run(run_id)


def run_matches(run: RunRecord, text: str) -> bool:
    """Whether a run answers a filter typed by a person: every word must be found in its number,
    name, method, backbone, dataset, status or tags (case-insensitive); '#3' finds run 3."""
    words = (text or "").lower().split()
    if not words:
        return True
    cls = find_method(run.method)
    hay = " ".join([f"#{run.id}", run.name or "", run.method, cls.title if cls else "", run.backbone,
                    run.dataset, str(run.status), *run.tags, *(f"#{t}" for t in run.tags)]).lower()
    return all(w in hay for w in words)


# -- the queue ---------------------------------------------------------------------------------

def enqueue(project: Project, dataset: str | int, config) -> RunRecord:
    """Store a new run (its config checked as for Start) at the end of the queue."""
    from studio.services.training import create_run

    writable(project).check()
    run = create_run(project, dataset, config)
    project.put_in_queue(run.id)
    project.log(run.id, f"queued: starts when the runs before it have ended (place {project.queue_place(run.id)})")
    return project.run(run.id)


def next_in_queue(project: Project) -> RunRecord | None:
    """The run the queue starts next, taken out of the queue (None: the queue is empty). A run
    that left the 'queued' state meanwhile (started by hand, deleted) is passed over."""
    for run_id in project.queued_run_ids():
        project.take_from_queue(run_id)
        try:
            run = project.run(run_id)
        except Exception:  # noqa: BLE001 - deleted meanwhile
            continue
        if RunStatus.of(run.status) is RunStatus.QUEUED:
            return run
    return None


def not_started(project: Project, run_id: int, reason: str) -> None:
    """A run the queue could not start (its settings refused, its run gone on): it stays stored,
    out of the queue, with the reason in its log."""
    project.log(run_id, f"not started from the queue: {reason}", level="error")


def put_back_first(project: Project, run_id: int) -> None:
    """Return a run taken from the queue before it started to the queue's head (a stop asked for
    between two runs)."""
    rest = project.queued_run_ids()
    project.put_in_queue(run_id)
    for other in rest:
        project.take_from_queue(other)
        project.put_in_queue(other)


def queue_words(project: Project) -> str:
    """'2 runs wait in the queue (4, 5)' or '' for an empty queue."""
    ids = project.queued_run_ids()
    if not ids:
        return ""
    runs = "1 run waits" if len(ids) == 1 else f"{len(ids)} runs wait"
    return f"{runs} in the queue ({', '.join(str(i) for i in ids)})"
