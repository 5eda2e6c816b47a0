"""Starting the studio: `ssl-studio gui [PROJECT] [--screenshot PNG] [--sample]`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

SCREENSHOT_DELAY_MS = 400
WINDOW_SIZE = (1280, 800)


def run_gui(project: str | os.PathLike | None = None, screenshot: str | os.PathLike | None = None,
            sample: bool = False, page: str | None = None, theme: str | None = None) -> int:
    """Open the main window on `project`, the sample project, the last project, or the welcome page.

    `page` picks the tab shown ("dataset", "new-run", "run", "run-details", "explorer", "compare", or
    "welcome"); `theme` overrides the remembered one ("system", "light", "dark") for this session.
    With `screenshot`, the window is shown, laid out and drawn from the store, saved as a PNG, and
    the function returns 0 (1 when the file could not be written)."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from studio.gui.main_window import MainWindow, settings
    from studio.gui.style import apply_style
    from studio.gui.tasks import wait_for_tasks

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("SSL Studio")
    app.setOrganizationName("ssl-studio")
    app.setApplicationDisplayName("SSL Studio")
    chosen = theme or settings().value("theme", "system", type=str)
    apply_style(app, chosen if chosen in ("system", "light", "dark") else "system")
    if screenshot is None:
        app.setDesktopFileName("io.github.sslstudio.SSLStudio")

    window = MainWindow()
    if sample:
        window.open_sample_project()
    elif project is not None:
        window.open_project(project)  # a ProjectError reaches the CLI, which prints it (exit 1)
    elif screenshot is None:
        last = settings().value("last_project", None, type=str)
        if last and (Path(last) / "project.db").is_file():
            try:
                window.open_project(last)
            except Exception:  # noqa: BLE001 - a damaged last project leaves the welcome page
                pass
    if theme:
        window.theme_actions[theme].setChecked(True)
    if screenshot is not None or not window.restore_layout():
        window.resize(*WINDOW_SIZE)
    if page:
        show_named_page(window, page)
        if screenshot is not None and window.current_page_title() == "New run" and window.project is not None:
            from studio.engine.train import TrainConfig

            form = window.new_run_page  # the picture shows what a small run on the sample would cost
            form.set_config(TrainConfig(epochs=20, batch_size=64, image_size=16), dataset=form.dataset())
            form.estimate()
    window.show()

    outcome = {"rc": 0}
    if screenshot is not None:
        target = Path(screenshot)

        deadline = {"tries": 0}

        def shoot() -> None:
            # A page still computing (the explorer's map) is shot once it has drawn, within a minute.
            page = window.page(window.current_page_title()) if window.tabs.count() else None
            busy = getattr(page, "busy", False)
            if (busy() if callable(busy) else busy) and deadline["tries"] < 200:
                deadline["tries"] += 1
                QTimer.singleShot(300, shoot)
                return
            # Read the store once more, synchronously, so what is saved does not depend on when
            # the timers happened to fire.
            window.refresh_now()
            wait_for_tasks(10_000)  # thumbnails and the like, delivered by the processEvents below
            app.processEvents()
            app.processEvents()
            target.parent.mkdir(parents=True, exist_ok=True)
            ok = window.grab().save(str(target), "PNG")
            outcome["rc"] = 0 if ok else 1
            if not ok:
                print(f"error: could not write {target}", file=sys.stderr)
            window.close()
            app.exit(outcome["rc"])

        QTimer.singleShot(SCREENSHOT_DELAY_MS, shoot)
    rc = app.exec()
    if window.isVisible():
        window.close()
    window.deleteLater()
    return outcome["rc"] if screenshot is not None else int(rc)


PAGE_NAMES = {"dataset": "Dataset", "new-run": "New run", "run": "Run", "run-details": "Run details",
              "explorer": "Explorer", "compare": "Compare"}


def show_named_page(window, name: str) -> None:
    """`--page NAME`: a tab by its command-line name, or the welcome page."""
    key = name.lower().replace(" ", "-").replace("_", "-")
    if key == "welcome":
        window.show_welcome()
        return
    if key not in PAGE_NAMES:
        raise ValueError(f"unknown page {name!r}; choose welcome, {', '.join(PAGE_NAMES)}")
    if key == "dataset":
        names = window.panel.dataset_names()
        if names:
            window.panel.select_dataset(window.panel.selected_dataset_name() or names[0])
        window.show_page("Dataset")
    elif key == "new-run":
        window.show_new_run(window.panel.selected_dataset_name() or next(iter(window.panel.dataset_names()), None))
    else:
        window.show_page(PAGE_NAMES[key])
    page = window.page(PAGE_NAMES[key])
    if key == "explorer" and hasattr(page, "has_runs") and page.has_runs():
        page.compute()  # a screenshot of the explorer shows a map, read back from the store if made before
    elif key == "compare" and hasattr(page, "check_all"):
        page.check_all()


def build_parser(prog: str = "ssl-studio gui"):
    """The GUI's arguments (CLI.md: `ssl-studio gui [PROJECT] [--screenshot PNG] [--page PAGE] [--theme ...]`),
    parsed here so that `ssl-studio gui` and the `ssl-studio-gui` launcher share one description."""
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description="Open the SSL Studio desktop app.")
    parser.add_argument("project", nargs="?", help="project folder to open")
    parser.add_argument("--screenshot", metavar="PNG", help="render the main window to PNG once shown, then exit")
    parser.add_argument("--sample", action="store_true", help="open (creating it if needed) the sample project")
    parser.add_argument("--page", metavar="NAME", choices=("welcome", *PAGE_NAMES),
                        help="the page to show: welcome, " + ", ".join(PAGE_NAMES))
    parser.add_argument("--theme", choices=("system", "light", "dark"), help="the colour theme for this session")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return parser


def display_problem() -> str | None:
    """Why no window can open here, or None: Qt aborts the process (exit 134) without a display,
    so the launcher says so first. An offscreen platform (tests, --screenshot) needs none."""
    if os.environ.get("QT_QPA_PLATFORM", "").split(":")[0] in ("offscreen", "minimal", "vnc", "eglfs", "linuxfb"):
        return None
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return ("no display found (neither DISPLAY nor WAYLAND_DISPLAY is set); run the studio on a desktop, "
                "under a virtual X server (xvfb-run ssl-studio gui), or use the command line (ssl-studio --help).")
    return None


def main(argv=None, prog: str = "ssl-studio-gui") -> int:
    """The GUI's entry point: `ssl-studio-gui` and `ssl-studio gui` both end here."""
    args = build_parser(prog).parse_args(sys.argv[1:] if argv is None else list(argv))
    problem = display_problem()
    if problem and args.screenshot:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # a screenshot needs no screen
    elif problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    from studio.engine.errors import StudioError
    from studio.store import ProjectError

    try:
        return run_gui(project=args.project, screenshot=args.screenshot, sample=args.sample, page=args.page,
                       theme=args.theme)
    except (StudioError, ProjectError, OSError) as exc:
        if args.debug:
            raise
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
