"""gui_stall: the longest the GUI's event loop goes unanswered while a run trains in the main
window (its worker thread, the live curves redrawn from the store, the runs list polling).
Target <= 50 ms. A 5 ms timer stamps the loop; the longest gap between stamps, less 5 ms, is the
stall. The first seconds (model build, decoded-image cache) count too."""

from __future__ import annotations

import argparse
import tempfile
import time

import _common  # noqa: F401


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=28)
    args = ap.parse_args()
    steps = args.steps or (15 if args.quick else 60)

    from PySide6.QtCore import QElapsedTimer, QTimer
    from PySide6.QtWidgets import QApplication

    from studio.engine.train import TrainConfig
    from studio.gui.main_window import MainWindow
    from studio.services.datasets import add_dataset
    from studio.store import Project

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        Project.create(f"{tmp}/p").close()
        with Project.open(f"{tmp}/p") as p:
            add_dataset(p, "sample", name="sample")
        window = MainWindow()
        window.resize(1280, 800)
        window.show()
        window.open_project(f"{tmp}/p")
        for _ in range(20):
            app.processEvents()

        clock = QElapsedTimer()
        gaps: list[float] = []
        ends: list[float] = []
        last = [0.0]

        first_step = [None]  # when the first training step was reported (ms on `clock`)

        def tick() -> None:
            now = clock.nsecsElapsed() / 1e6
            gaps.append(now - last[0])
            ends.append(now)
            last[0] = now

        timer = QTimer()
        timer.setInterval(5)
        timer.timeout.connect(tick)
        config = TrainConfig(method="simclr", backbone="resnet18", steps=steps, batch_size=args.batch_size,
                             image_size=args.image_size, device="auto", warmup_epochs=0.0, log_every=1, seed=0)
        clock.start()
        timer.start()
        t0 = time.perf_counter()
        run_id = window.start_run("sample", config)
        assert run_id is not None, window.new_run_page.error_label.text()
        job = window.jobs[run_id]
        job.progress.connect(lambda *_: first_step.__setitem__(0, first_step[0] or clock.nsecsElapsed() / 1e6))
        while job.is_running() or run_id in window.jobs and window.jobs[run_id].is_running():
            app.processEvents()
            time.sleep(0.001)
        for _ in range(50):
            app.processEvents()
        seconds = time.perf_counter() - t0
        timer.stop()
        status = window.project.run(run_id).status
        window.close()
        app.processEvents()
    # Split at the first reported step: before it, Start switches to the Run page (its first
    # paint) while the worker builds the model; after it, the run trains.
    cut = first_step[0] if first_step[0] is not None else float("inf")
    before = [g for g, e in zip(gaps[1:], ends[1:]) if e <= cut]
    during = sorted(g for g, e in zip(gaps[1:], ends[1:]) if e > cut)

    def stall(values) -> float:
        return round(max(0.0, max(values) - 5.0), 1) if values else float("nan")

    p99 = round(max(0.0, during[int(0.99 * (len(during) - 1))] - 5.0), 1) if during else float("nan")
    _common.emit("gui_stall", steps=steps, batch_size=args.batch_size, image_size=args.image_size,
                 run_status=status, seconds=round(seconds, 1), ticks=len(gaps),
                 longest_stall_ms=stall(before + during), start_stall_ms=stall(before),
                 training_stall_ms=stall(during), training_p99_stall_ms=p99, target_ms=50)


if __name__ == "__main__":
    main()
