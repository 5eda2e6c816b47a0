"""train --queue, train --from-queue: the project's run queue from the command line.

`--queue` stores a new run at the end of the queue (services.labels.enqueue) instead of training
it; `--from-queue` trains the queue's runs one after another (services.labels.next_in_queue), each
started the way `--run-id` starts a stored run, until the queue is empty. Ctrl-C stops the run
under way with a checkpoint, as `train` does, and leaves the rest in the queue."""

from __future__ import annotations

import argparse
import sys

from studio.cli import UsageError, emit_json, printable, say

# A run is stored (--queue) or taken (--from-queue) as it is: these options pick another run.
_OTHER_RUN = ("resume", "run_id", "branch", "suggested", "gpus")


def _refuse_other_runs(args: argparse.Namespace, flag: str) -> None:
    for name in _OTHER_RUN:
        if getattr(args, name, None) not in (None, False):
            raise UsageError(f"--{name.replace('_', '-')} cannot be given with {flag}")


def _phrase(ids: list[int]) -> str:
    return f"run {ids[0]}" if len(ids) == 1 else f"runs {', '.join(map(str, ids[:-1]))} and {ids[-1]}"


def queue_run(args: argparse.Namespace) -> int:
    """--queue: the options describe a new run, checked as for training it, stored in the queue."""
    from studio.cli.train import _request
    from studio.services.labels import enqueue, method_words
    from studio.store import Project

    _refuse_other_runs(args, "--queue")
    dataset, config = _request(args)["new"]
    with Project.open(args.project) as project:
        run = enqueue(project, dataset, config)
        place = project.queue_place(run.id)
    if args.json:
        emit_json({"run_id": run.id, "queued": True, "place": place})
    else:
        print(printable(f"run {run.id} queued (place {place}): {method_words(run)}, dataset {run.dataset!r}"))
        say(f"train the queue with: ssl-studio train {args.project} --from-queue")
    return 0


def train_from_queue(args: argparse.Namespace) -> int:
    """--from-queue: the queue's runs trained in order, each reported as `train` reports a run.
    Non-zero when any run did not finish well (failed, diverged, or refused before it started)."""
    from studio.cli.train import _announce, stop_on_signals, stored_overrides, train_prepared
    from studio.engine.errors import DiskFullError, StudioError
    from studio.engine.train import TrainingControl
    from studio.services.labels import next_in_queue, not_started, put_back_first, queue_words
    from studio.services.training import prepare_run
    from studio.store import Project, ProjectError

    _refuse_other_runs(args, "--from-queue")
    overrides = stored_overrides(args, "--from-queue")
    results: list | None = [] if args.json else None
    trained: list[int] = []
    failed: dict[int, str] = {}  # run id -> 'run 4 failed', the summary's words
    control = TrainingControl()  # one for the whole queue: a stop ends the run under way and the queue
    with Project.open(args.project) as project, stop_on_signals(control):
        if not project.queued_run_ids():
            say(f"the queue is empty; add runs to it with 'ssl-studio train {args.project} ... --queue'")
        while not control.stop_requested and (run := next_in_queue(project)) is not None:
            try:
                prepared = prepare_run(project, queued=run.id, overrides=overrides)
            except (StudioError, ProjectError) as exc:  # refused: said, kept stored, and the queue goes on
                not_started(project, run.id, str(exc))
                print(printable(f"error: run {run.id} not started from the queue: {exc}"), file=sys.stderr)
                failed[run.id] = f"run {run.id} not started"
                if results is not None:
                    results.append(_untrained(run.id, str(run.status), str(exc)))
                continue
            if control.stop_requested:  # asked between two runs: this one has not begun
                put_back_first(project, run.id)
                break
            waiting = queue_words(project)
            say(f"from the queue: run {run.id}" + (f"; then {waiting}" if waiting else "; the last one"))
            _announce(prepared)
            try:
                code = train_prepared(args, project, prepared, control, results)
            except DiskFullError:
                if results is not None:
                    emit_json(_summary(results, [*failed, run.id], project.queued_run_ids()))
                raise
            except (StudioError, ProjectError) as exc:  # before its first step (its images unreadable, ...)
                print(printable(f"error: run {run.id} failed: {exc}"), file=sys.stderr)
                code = 1
                if results is not None:
                    results.append(_untrained(run.id, str(project.run(run.id).status), str(exc)))
            trained.append(run.id)
            if code:
                failed[run.id] = f"run {run.id} {project.run(run.id).status}"
        left = project.queued_run_ids()
    if results is not None:
        emit_json(_summary(results, failed, left))
    elif trained or failed:
        if left:
            say(f"{_phrase(left)} stay{'s' if len(left) == 1 else ''} in the queue; go on with: "
                f"ssl-studio train {args.project} --from-queue")
        else:
            say("the queue is empty")
    if failed:
        print(printable(f"error: {len(failed)} of the queue's runs did not end well: {', '.join(failed.values())}"),
              file=sys.stderr)
        return 1
    return 0


def _summary(results: list, failed, left: list[int]) -> dict:
    """The one JSON object of --from-queue: each run's result as `train --json` gives it, the ids
    of those that did not end well, and the runs still waiting (after a stop)."""
    return {"runs": results, "failed": list(failed), "still_queued": left}


def _untrained(run_id: int, status: str, reason: str) -> dict:
    """The JSON object of a run that ended before its first step (or never started: it is then
    still 'queued'), with the keys of `train --json`."""
    return {"run_id": run_id, "status": status, "steps": None, "epochs": None, "final_loss": None,
            "images_per_s": None, "checkpoint": None, "reason": reason}
