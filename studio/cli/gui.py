"""`ssl-studio gui`: hands over to the desktop app.

The GUI parses its own arguments (studio.gui.app.build_parser, one description for this command
and the `ssl-studio-gui` launcher). The command line and the GUI are two front doors that import
each other not at all (DESIGN.md rule 1): the app is started by its module name, so a machine
without Qt still runs every other command.
"""

from __future__ import annotations

import argparse
import importlib

GUI_MODULE = "studio.gui.app"


def _gui(args: argparse.Namespace) -> int:
    app = importlib.import_module(GUI_MODULE)
    forwarded = list(args.gui_args)
    if getattr(args, "debug", False) and "--debug" not in forwarded:
        forwarded.append("--debug")
    return int(app.main(forwarded, prog="ssl-studio gui"))


def register(sub) -> None:
    gui = sub.add_parser("gui", help="open the GUI ([PROJECT] [--screenshot PNG] [--page PAGE] [--theme THEME])",
                         add_help=False, prefix_chars="\0")
    gui.add_argument("gui_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    gui.set_defaults(func=_gui)
