"""`ssl-studio --self-test`: is this installation whole? Imports every layer, trains a few steps on
the built-in sample in a throw-away project, builds the main window offscreen, prints OK."""

from __future__ import annotations

import os
import sys
import tempfile
import time


def self_test(steps: int = 3) -> int:
    t0 = time.perf_counter()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        import torch  # noqa: F401

        from studio import __version__
        from studio.engine.methods import METHODS  # noqa: F401
        from studio.engine.train import TrainConfig
        from studio.services.datasets import ensure_sample_project
        from studio.services.training import create_run, execute_run

        with tempfile.TemporaryDirectory(prefix="ssl-studio-self-test-") as tmp:
            project = ensure_sample_project(os.path.join(tmp, "project"))
            try:
                config = TrainConfig(method="simclr", backbone="resnet18", steps=steps, batch_size=8, image_size=16,
                                     device="cpu", warmup_epochs=0.0, log_every=1, monitor_every=-1)
                run = create_run(project, "sample", config)
                result = execute_run(project, run.id)
                if result.status != "finished" or result.final_loss is None:
                    raise RuntimeError(f"the test run ended {result.status}: {result.reason}")
            finally:
                project.close()

            from studio.services.doctor import check_gui_libraries

            gui = check_gui_libraries(platform="xcb")
            if not gui.ok:
                # Offscreen still builds the window below; a real screen would not open.
                print(f"warning: {gui.message()}", file=sys.stderr)

            from PySide6.QtWidgets import QApplication

            from studio.gui.main_window import MainWindow
            from studio.gui.style import apply_style, app_icon

            app = QApplication.instance() or QApplication(sys.argv[:1])
            apply_style(app, "light")
            if app_icon().isNull():
                raise RuntimeError("the application icon is missing from studio/resources")
            window = MainWindow()  # built, never shown: no settings are written
            window.deleteLater()
    except Exception as exc:  # noqa: BLE001 - the self-test reports every failure as one line
        print(f"self-test FAILED: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"OK ssl-studio {__version__}: {steps} SimCLR steps on the sample, final loss {result.final_loss:.3f}, "
          f"GUI built ({time.perf_counter() - t0:.1f} s)")
    return 0
