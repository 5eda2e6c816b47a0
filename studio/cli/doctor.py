"""doctor: can this machine run the studio (window libraries, device, versions, free disk)?"""

from __future__ import annotations

import argparse

from studio.cli import emit_json


def _doctor(args: argparse.Namespace) -> int:
    from studio.services.doctor import doctor

    report = doctor(args.project)
    if args.json:
        emit_json(report.as_dict())
    else:
        for what, value, ok in report.lines:
            print(f"{'ok ' if ok else 'NO '} {what}: {value}")
    return 0 if report.ok else 1


def register(sub) -> None:
    p = sub.add_parser("doctor", help="check this machine: window libraries, device, versions, free disk",
                       description="Check what the studio needs from this machine, without starting Qt: the "
                                   "system libraries of Qt's window plugin (with the command that installs the "
                                   "missing ones), the training device, torch/CUDA versions and free disk space. "
                                   "Exit 1 when something blocks the studio.")
    p.add_argument("project", nargs="?", default=None, help="where free disk space matters (default: here)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_doctor)
