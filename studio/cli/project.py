"""init, dataset add, dataset list."""

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
    return {"name": d.name, "kind": d.kind, "source": d.source, "images": d.images, "skipped": d.skipped, "classes": d.classes}


def _dataset_add(args: argparse.Namespace) -> int:
    from studio.services.datasets import add_dataset, same_source

    with Project.open(args.project) as project:
        before = same_source(project, args.source)
        def progress(done: int, total: int) -> None:
            if done == total or done % 1024 == 0:
                say(f"reading images {done}/{total}")

        d = add_dataset(project, args.source, name=args.name, download=args.download, progress=progress)
        if args.json:
            emit_json({"name": d.name, "images": d.images, "skipped": d.skipped, "classes": d.classes,
                       "skipped_files": [{"file": f, "reason": r} for f, r in d.skipped_files]})
        else:
            say(f"added dataset {d.name!r}: {d.images} images, {d.classes} classes, {d.skipped} skipped")
            if before is not None:
                say(f"note: dataset {before.name!r} already reads these images; {d.name!r} is a second copy "
                    f"(remove it, or give --name to name it yourself)")
            for f, r in d.skipped_files[:20]:
                say(f"  skipped {f}: {r}")
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

    ds = sub.add_parser("dataset", help="add or list the project's datasets")
    dsub = ds.add_subparsers(dest="dataset_command", metavar="add|list", required=True)
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
