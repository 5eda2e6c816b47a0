"""init, repair, dataset add, dataset list, dataset rename, dataset remove."""

from __future__ import annotations

import argparse

from studio.cli import emit_json, say
from studio.store import Project


def _init(args: argparse.Namespace) -> int:
    project = Project.create(args.project)
    if args.json:
        emit_json({"project": str(project.root), "database": project.rel(project.db_path)})
    else:
        say(f"created project {project.root}")
    project.close()
    return 0


def dataset_json(d) -> dict:
    return {"name": d.name, "kind": d.kind, "source": d.source, "images": d.images, "skipped": d.skipped, "classes": d.classes,
            "captions": d.captions, "caption_kind": d.caption_kind}


def _dataset_add(args: argparse.Namespace) -> int:
    from studio.services.datasets import add_dataset, caption_issue_lines, same_source

    with Project.open(args.project) as project:
        before = same_source(project, args.source)
        def progress(done: int, total: int) -> None:
            if done == total or done % 1024 == 0:
                say(f"reading images {done}/{total}")

        d = add_dataset(project, args.source, name=args.name, download=args.download, progress=progress)
        if args.json:
            emit_json({"name": d.name, "images": d.images, "skipped": d.skipped, "classes": d.classes,
                       "skipped_files": [{"file": f, "reason": r} for f, r in d.skipped_files],
                       "captions": d.captions, "caption_kind": d.caption_kind,
                       "caption_issues": [{"file": f, "reason": r} for f, r in d.caption_issues]})
        else:
            say(f"added dataset {d.name!r}: {d.images} images, {d.classes} classes, {d.skipped} skipped")
            if before is not None:
                say(f"note: dataset {before.name!r} already reads these images; {d.name!r} is a second copy "
                    f"(remove it, or give --name to name it yourself)")
            for f, r in d.skipped_files[:20]:
                say(f"  skipped {f}: {r}")
            for line in caption_issue_lines(d):
                say(line)
    return 0


def _dataset_list(args: argparse.Namespace) -> int:
    with Project.open(args.project) as project:
        datasets = project.datasets()
    if args.json:
        emit_json({"datasets": [dataset_json(d) for d in datasets]})
    else:
        rows = [["name", "kind", "images", "classes", "skipped", "source"]]
        rows += [[d.name, d.kind, f"{d.images:,}", str(d.classes), str(d.skipped), d.source] for d in datasets]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        for r in rows:
            print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r[:5], widths))) + "  " + r[5])
    return 0


def _dataset_rename(args: argparse.Namespace) -> int:
    from studio.services.datasets import rename_dataset

    with Project.open(args.project) as project:
        old = project.dataset(args.old)
        d = rename_dataset(project, old.id, args.new)
    if args.json:
        emit_json({"name": d.name, "was": old.name})
    else:
        say(f"renamed dataset {old.name!r} to {d.name!r}")
    return 0


def _dataset_remove(args: argparse.Namespace) -> int:
    from studio.engine.errors import DatasetError
    from studio.services.datasets import can_remove_dataset, remove_dataset, removal_plan

    with Project.open(args.project) as project:
        plan = removal_plan(project, args.name)
        verdict = can_remove_dataset(project, plan, with_runs=args.with_runs)
        if not verdict:
            hint = " (--with-runs removes them too)" if plan.runs and not args.with_runs else ""
            raise DatasetError(verdict.reason + hint)
        done = remove_dataset(project, plan.dataset.id, with_runs=args.with_runs)
    if args.json:
        emit_json({"removed": done.dataset.name, "runs": done.run_ids, "files": list(done.files),
                   "kept": list(done.kept), "embeddings": done.embeddings, "evaluations": done.evaluations,
                   "tags": done.tags})
    else:
        say(f"removed dataset {done.dataset.name!r}" + (f" and {done.runs_phrase()}" if done.runs else "")
            + (f"; {len(done.files)} files and folders deleted" if done.files else ""))
        for rel in done.kept:
            say(f"  kept {rel} (outside the project folder)")
    return 0


def _repair(args: argparse.Namespace) -> int:
    report = Project.repair(args.project)
    payload = {"database": report.database.name, "damaged": report.damaged.name, "rows": report.rows,
               "lost": report.lost}
    if args.json:
        emit_json(payload)
    else:
        copied = sum(report.rows.values())
        lost = sum(report.lost.values())
        say(f"repaired {report.database}: {copied} rows copied" + (f", {lost} unreadable rows lost" if lost else ""))
        say(f"the damaged file is kept as {report.damaged.name}")
    return 0


def register(sub) -> None:
    r = sub.add_parser("repair", help="copy what can still be read of a damaged project database into a new one")
    r.add_argument("project")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=_repair)

    p = sub.add_parser("init", help="create a project folder")
    p.add_argument("project")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_init)

    ds = sub.add_parser("dataset", help="add, list, rename or remove the project's datasets")
    dsub = ds.add_subparsers(dest="dataset_command", metavar="add|list|rename|remove", required=True)
    a = dsub.add_parser("add", help="add a folder of images, the sample, or torchvision:NAME[@ROOT]")
    a.add_argument("project")
    a.add_argument("source", help="a folder (class sub-folders give labels) | sample | torchvision:NAME[@ROOT]")
    a.add_argument("--name")
    a.add_argument("--download", action="store_true", help="download a torchvision dataset if it is not in ROOT")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_dataset_add)
    ls = dsub.add_parser("list", help="list the datasets")
    ls.add_argument("project")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_dataset_list)
    rn = dsub.add_parser("rename", help="give a dataset another name (its runs follow it)")
    rn.add_argument("project")
    rn.add_argument("old", help="the dataset's name (or id)")
    rn.add_argument("new", help="its new name")
    rn.add_argument("--json", action="store_true")
    rn.set_defaults(func=_dataset_rename)
    rm = dsub.add_parser("remove", help="remove a dataset from the project (its images stay where they are)")
    rm.add_argument("project")
    rm.add_argument("name", help="the dataset's name (or id)")
    rm.add_argument("--with-runs", action="store_true",
                    help="also remove the runs trained on it, with their metrics, checkpoints and exports inside the project")
    rm.add_argument("--json", action="store_true")
    rm.set_defaults(func=_dataset_remove)
