"""runs, metrics, label: what the project's runs are, how they went, and what a person calls them.

A run's title, its tags and the filter over runs are services.labels' rules (the GUI's too); this
module only translates them into options and lines."""

from __future__ import annotations

import argparse
import csv
import sys
from typing import Any

from studio.cli import emit_json, printable, say

NAME_SHOWN = 40  # characters of a run's name in the runs table; --json gives it whole


def run_json(project, run, queued: list[int] | None = None) -> dict[str, Any]:
    queued = project.queued_run_ids() if queued is None else queued
    return {
        "id": run.id,
        "name": run.name,
        "notes": run.notes,
        "tags": list(run.tags),
        "method": run.method,
        "backbone": run.backbone,
        "dataset": run.dataset,
        "status": run.status,
        "queue_position": queued.index(run.id) + 1 if run.id in queued else None,  # 1: the next to start
        "steps": run.steps,
        "total_steps": run.total_steps,
        "epochs": run.epochs,
        "final_loss": run.final_loss,
        "images_per_s": run.images_per_s,
        "reason": run.reason,
        "device": run.device,
        "created_at": run.created_at.isoformat(timespec="seconds") if run.created_at else None,
        "checkpoints": [ck.path for ck in project.checkpoints(run.id)],
    }


def _shortened(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _runs(args: argparse.Namespace) -> int:
    from studio.services.labels import run_matches
    from studio.store import Project

    with Project.open(args.project) as project:
        queued = project.queued_run_ids()
        runs = project.runs()
        rows = [run_json(project, r, queued) for r in runs if run_matches(r, args.filter or "")]
    if args.json:
        emit_json({"runs": rows})
        return 0
    if not rows:
        say(f"no run matches {args.filter!r} ({len(runs)} in all)" if runs and args.filter
            else "no runs yet; start one with 'ssl-studio train'")
        return 0
    table = [["id", "status", "method", "backbone", "dataset", "steps", "final loss", "name", "tags"]]
    for r in rows:
        status = f"queued ({r['queue_position']})" if r["queue_position"] else str(r["status"])
        loss = f"{r['final_loss']:.4f}" if r["final_loss"] is not None else "-"
        table.append([str(r["id"]), status, r["method"], r["backbone"], r["dataset"], f"{r['steps']}/{r['total_steps']}",
                      loss, _shortened(r["name"] or "-", NAME_SHOWN), ", ".join(r["tags"]) or "-"])
    table = [[printable(c) for c in row] for row in table]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    right = {0, 5, 6}  # numbers right, words left, in aligned columns; the last column unpadded
    for row in table:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row[:-1], widths))]
        print("  ".join(cells + [row[-1]]))
    return 0


def _label(args: argparse.Namespace) -> int:
    from studio.services.labels import parse_tags, relabel, run_title
    from studio.store import Project

    with Project.open(args.project) as project:
        run = relabel(project, args.run_id, name=args.name, notes=args.notes,
                      tags=None if args.tags is None else parse_tags(args.tags),
                      add_tags=args.add_tag or (), remove_tags=args.remove_tag or ())
    if args.json:
        emit_json({"id": run.id, "name": run.name, "notes": run.notes, "tags": list(run.tags)})
        return 0
    print(printable(run_title(run)))
    print(printable(f"tags: {', '.join(run.tags) or 'none'}"))
    if run.notes:
        print(printable("notes: " + run.notes.replace("\n", "\n       ")))
    return 0


def _metrics(args: argparse.Namespace) -> int:
    from studio.store import Project

    with Project.open(args.project) as project:
        project.run(args.run_id)  # a clear error for an unknown run
        raw = project.metric_series(args.run_id)
    series: dict[str, list[list[float]]] = {}
    for name in raw.names():
        pairs = sorted(zip(raw.steps[name], raw.values[name]), key=lambda p: p[0])
        series[name] = [[int(s), float(v)] for s, v in pairs]
    if args.json:
        emit_json({"run_id": args.run_id, "series": series})
    elif args.csv:
        # One row per step, one column per metric: what a spreadsheet wants.
        names = sorted(series)
        by_step: dict[int, dict[str, float]] = {}
        for name in names:
            for step, value in series[name]:
                by_step.setdefault(step, {})[name] = value
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(["step", *names])
        for step in sorted(by_step):
            out.writerow([step, *(repr(by_step[step][n]) if n in by_step[step] else "" for n in names)])
    else:
        if not series:
            say(f"run {args.run_id} has no metric points yet")
        width = max((len(n) for n in series), default=0)
        rows = [["metric", "points", "first", "last", "at step", "min", "max"]]
        for name, points in series.items():
            values = [v for _, v in points]
            rows.append([name, str(len(points)), f"{values[0]:.6g}", f"{values[-1]:.6g}", str(points[-1][0]),
                         f"{min(values):.6g}", f"{max(values):.6g}"])
        if series:
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            widths[0] = max(widths[0], width)
            for r in rows:  # names left, numbers right, in aligned columns
                print("  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]))
    return 0


def register(sub) -> None:
    r = sub.add_parser("runs", help="list the project's runs")
    r.add_argument("project")
    r.add_argument("--filter", metavar="WORDS",
                   help="only the runs whose number (#3), name, method, backbone, dataset, status or tags hold "
                        "every word (as the GUI's filter)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=_runs)

    m = sub.add_parser("metrics", help="a run's metric series (loss, lr, ...)")
    m.add_argument("project")
    m.add_argument("run_id", type=int, metavar="RUN_ID")
    fmt = m.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true", help="one row per step, one column per metric")
    m.set_defaults(func=_metrics)

    lb = sub.add_parser("label", help="name a run, write its notes, set its tags (or show them)",
                        description="Name, note and tag a run (any run, one that trains too). Without options, "
                                    "shows the run's title, tags and notes.")
    lb.add_argument("project")
    lb.add_argument("run_id", type=int, metavar="RUN_ID")
    lb.add_argument("--name", metavar="TEXT", help="the run's name (one line); --name '' clears it")
    lb.add_argument("--notes", metavar="TEXT", help="the run's notes; --notes '' clears them")
    lb.add_argument("--tags", metavar='"A, B"', help="replace the run's tags (comma-separated); --tags '' clears them")
    lb.add_argument("--add-tag", action="append", metavar="TAG", help="add a tag; repeat for several")
    lb.add_argument("--remove-tag", action="append", metavar="TAG", help="take a tag off; repeat for several")
    lb.add_argument("--json", action="store_true")
    lb.set_defaults(func=_label)
