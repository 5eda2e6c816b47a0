"""`ssl-studio`: the studio without a screen (../shared/CLI.md is the contract).

Each command group lives in its own module with a `register(subparsers)` function; this module
only builds the parser, runs the command and turns errors into exit codes:
0 done, 1 an error a person can act on (one line on stderr), 2 wrong usage.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
from typing import Any, Sequence

from studio import __version__

COMMAND_MODULES = (
    "studio.cli.gui",
    "studio.cli.project",
    "studio.cli.train",
    "studio.cli.runs",
    "studio.cli.info",
    "studio.cli.evaluate",
    "studio.cli.export",
    "studio.cli.doctor",
)


class UsageError(Exception):
    """Wrong usage found after parsing (exit 2)."""


def emit_json(obj: dict[str, Any]) -> None:
    """The one JSON object a --json command prints on stdout."""
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Text that came from files (names, messages of a library reading them) made safe for a
    terminal: escape sequences dropped, other control characters shown as '?'."""
    return _CONTROLS.sub("?", _ESCAPES.sub("", str(text)))


def say(message: str) -> None:
    """Progress and human output that must not pollute --json stdout."""
    print(printable(message), file=sys.stderr, flush=True)


def whole_number(flag: str, minimum: int = 1, too_small: str = ""):
    """An argparse type for `flag`: a whole number of at least `minimum` (`too_small` says why
    a smaller one is refused, when the bound needs a reason). The one parser of the commands'
    counts and steps."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a whole number; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(too_small or f"{flag} must be at least {minimum}; got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssl-studio", description="Train self-supervised image encoders on your own images.")
    parser.add_argument("--version", action="version", version=f"ssl-studio {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--self-test", action="store_true",
                        help="check the installation: imports, one very short training on the sample (offscreen); prints OK")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that command group is not part of this build
                continue
            raise
        module.register(sub)
    _add_debug_everywhere(sub)
    return parser


def _add_debug_everywhere(sub: argparse._SubParsersAction) -> None:
    """`--debug` is accepted after the command too (`ssl-studio train ... --debug`)."""
    for command in sub.choices.values():
        if "-" not in command.prefix_chars:
            continue  # `gui` hands its arguments to the GUI's own parser, --debug included
        if "--debug" not in command._option_string_actions:
            command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_debug_everywhere(action)


def _one_line(exc: BaseException) -> str:
    return " ".join(printable(str(exc)).split()) or exc.__class__.__name__


def _known_failure(exc: BaseException, args: argparse.Namespace) -> str | None:
    """Errors of the machine rather than of the studio, in words a person can act on."""
    from sqlalchemy.exc import DatabaseError

    from studio.engine.train.checkpoint import is_disk_full

    if is_disk_full(exc):
        return "the disk is full: free some space and try again."
    if isinstance(exc, DatabaseError):
        where = getattr(args, "project", None) or "PROJECT"
        detail = str(getattr(exc, "orig", exc)).splitlines()[0][:200]
        if "readonly" in detail:
            return f"{where} is read-only: it can be viewed, not changed."
        return (f"the project database is damaged ({detail}); run 'ssl-studio repair {where}' to copy out what can "
                "still be read (the damaged file is kept).")
    return None


def _note_read_only(args: argparse.Namespace) -> None:
    project = getattr(args, "project", None)
    if not project or getattr(args, "command", None) in ("init", "repair"):
        return
    from studio.store.database import writable

    db = os.path.join(str(project), "project.db")
    if os.path.isfile(db) and not writable(__import__("pathlib").Path(db)):
        say(f"note: {project} is read-only; it is opened for viewing only.")


def _setting_hint(args: argparse.Namespace, exc: BaseException) -> str:
    """Errors below the front door name a setting; here it is named by the option that sets it."""
    setting = getattr(exc, "setting", None)
    if not setting or getattr(args, "command", None) != "train":
        return ""
    from studio.cli.train import flag_of

    flag = flag_of(setting)
    return f" ({flag})" if flag else f" (--set {setting}=...)"


def _self_test() -> int:
    """`--self-test` checks the whole installation, the window included: the command line hands
    over to it by name, as `gui` hands over to the GUI, so the CLI itself never imports Qt code."""
    return importlib.import_module("studio.selftest").self_test()


def main(argv: Sequence[str] | None = None) -> int:
    if list(sys.argv[1:] if argv is None else argv) == ["--version"]:
        # Answered before the command modules load (some import torch to list their choices).
        print(f"ssl-studio {__version__}")
        return 0
    if list(sys.argv[1:] if argv is None else argv) == ["--self-test"]:
        return _self_test()
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "self_test", False):
        return _self_test()
    if getattr(args, "func", None) is None:
        if args.command is None:
            args = parser.parse_args(["gui", *(() if argv is None else argv)])
        else:
            parser.print_help(sys.stderr)
            return 2
    from studio.engine.errors import StudioError
    from studio.store import ProjectError, SchemaVersionError

    try:
        _note_read_only(args)
        return int(args.func(args) or 0)
    except UsageError as exc:
        parser.error(str(exc))  # exits 2
        return 2
    except BrokenPipeError:
        # The reader went away (`ssl-studio metrics ... --csv | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (StudioError, ProjectError, SchemaVersionError, OSError) as exc:
        if args.debug:
            raise
        known = _known_failure(exc, args) if isinstance(exc, OSError) else None
        print(f"error: {known or _one_line(exc)}{_setting_hint(args, exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug still ends in one line; --debug shows where
        if args.debug:
            raise
        known = _known_failure(exc, args)
        if known:
            print(f"error: {known}", file=sys.stderr)
            return 1
        print(f"error: {exc.__class__.__name__}: {_one_line(exc)} (run again with --debug to see the traceback)", file=sys.stderr)
        return 1
