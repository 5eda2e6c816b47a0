"""What the benchmarks share: one JSON line out, the machine they ran on, small data made here."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def machine() -> dict:
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {"cores": os.cpu_count(), "device": device, "torch": torch.__version__, "python": platform.python_version()}


def emit(name: str, **fields) -> None:
    """The one JSON line a benchmark prints on stdout."""
    print(json.dumps({"bench": name, **fields, "machine": machine()}), flush=True)


def sample_images(size: int):
    """The built-in sample decoded at `size` px (uint8 N x 3 x S x S) with its labels."""
    from studio.engine.data import SampleSource, decode_images

    return decode_images(SampleSource(), size)


STEMS = {"auto": None, "small": True, "standard": False}  # --stem -> the CNN backbones' small_stem option


def add_stem_argument(parser) -> None:
    parser.add_argument("--stem", choices=tuple(STEMS), default="auto",
                        help="a CNN's stem: small (stride 1, the default under 64 px) or torchvision's standard one")


def simclr_project(tmp: str, steps: int, batch_size: int, image_size: int, backbone: str = "resnet18",
                   small_stem: bool | None = None):
    """A project holding the sample, a SimCLR config for the speed benchmarks, and the decoded images.

    The kNN/health monitors are off: they are evaluation, which the bare loops do not do, and
    the studio's pipeline and bookkeeping are what these benchmarks weigh."""
    from studio.engine.train import TrainConfig
    from studio.services.datasets import add_dataset, load_images
    from studio.store import Project

    project = Project.create(f"{tmp}/bench")
    add_dataset(project, "sample", name="sample")
    config = TrainConfig(method="simclr", backbone=backbone, backbone_options={"small_stem": small_stem},
                         steps=steps, batch_size=batch_size,
                         image_size=image_size, device="auto", warmup_epochs=0.0, log_every=10,
                         monitor_every=-1, seed=0)
    images = load_images(project, project.dataset("sample"), image_size)
    return project, config, images


def studio_images_per_s(project, dataset: str, config, warmup: int) -> float:
    """End-to-end images/s of a stored run (data pipeline, views, bookkeeping, database writes).

    The clock starts when step `warmup` begins making its views and stops when the last step's
    metrics reach the recorder: everything the studio does per step is inside the window."""
    import time

    from studio.engine.train import Trainer, TrainingCallbacks
    from studio.services.training import create_run, execute_run

    marks: dict[str, float] = {}

    class ClockedTrainer(Trainer):
        steps_begun = 0

        def make_views(self, x, specs):
            if self.steps_begun == warmup:
                marks["start"] = time.perf_counter()
            self.steps_begun += 1
            return super().make_views(x, specs)

    class Clock(TrainingCallbacks):
        def on_metrics(self, step, epoch, metrics):
            if step == config.steps and "loss" in metrics:
                marks.setdefault("end", time.perf_counter())

    run = create_run(project, dataset, config)
    result = execute_run(project, run.id, callbacks=[Clock()], trainer_factory=ClockedTrainer)
    assert result.status == "finished", result.reason
    return (config.steps - warmup) * config.batch_size / (marks["end"] - marks["start"])
