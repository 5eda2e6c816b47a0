"""store: write 1,000,000 metric points the way a run does (RunRecorder-sized batches through
Project.add_metrics), then read that run's loss curve downsampled for drawing, as the GUI does
(Project.metric_curve). Target for the read: <= 200 ms."""

from __future__ import annotations

import argparse
import random
import tempfile
import time

import _common  # noqa: F401


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=5_000)
    args = ap.parse_args()

    from studio.store import Project

    with tempfile.TemporaryDirectory() as tmp:
        project = Project.create(f"{tmp}/bench")
        project.add_dataset(name="d", kind="sample", source="sample", images=1, skipped=0, classes=0,
                            class_names=[], skipped_files=[])
        run = project.create_run(project.dataset("d").id, "simclr", "resnet18", {})
        rng = random.Random(0)
        t0 = time.perf_counter()
        rows = []
        for step in range(1, args.points + 1):
            rows.append((run.id, step, step / 1000, "loss", 5.0 / (1 + step / 1e5) + rng.random() * 0.1, 0.0))
            if len(rows) == args.batch:
                project.add_metrics(rows)
                rows = []
        if rows:
            project.add_metrics(rows)
        write_s = time.perf_counter() - t0

        reads = []
        for _ in range(5):
            t0 = time.perf_counter()
            steps, values = project.metric_curve(run.id, "loss", max_points=4000)
            reads.append(time.perf_counter() - t0)
        project.close()
    read_ms = sorted(reads)[len(reads) // 2] * 1000
    _common.emit("store", points=args.points, write_s=round(write_s, 2),
                 write_points_per_s=round(args.points / write_s), read_curve_ms=round(read_ms, 1),
                 drawn_points=len(steps), last_step=steps[-1], target_read_ms=200)


if __name__ == "__main__":
    main()
