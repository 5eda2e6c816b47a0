"""pipeline: the studio's end-to-end images/s divided by the per-image PIL pipeline of the
reference libraries (lightly's SimCLRTransform in DataLoader workers) on the same model, loss,
optimiser, batch and images. Target >= 1.3 on 2 CPU cores; far more on a GPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import _common
import numpy as np
import torch


class PILImages(torch.utils.data.Dataset):
    """The same decoded images, handed out one at a time as PIL images, as a folder loader would."""

    def __init__(self, images: np.ndarray, transform):
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(np.ascontiguousarray(self.images[i].transpose(1, 2, 0))))


def reference_images_per_s(config, images, warmup: int, workers: int) -> float:
    from lightly.transforms import SimCLRTransform

    from studio.engine.methods import StepState
    from studio.engine.train.optim import build_optimizer
    from studio.engine.train.trainer import build_method

    torch.manual_seed(0)
    method = build_method(config)
    method.train()
    opt = build_optimizer("sgd", method, 0.06 * config.batch_size / 256, 5e-4)
    # The studio's SimCLR view at this size: crop 0.08-1, flip, jitter 0.8*0.5 (CIFAR strength), gray 0.2,
    # blur with p 0.5 from 64 px up (none below, as the papers' CIFAR settings).
    from studio.engine.data.views import SMALL_IMAGE

    blur = 0.5 if config.image_size >= SMALL_IMAGE else 0.0
    transform = SimCLRTransform(input_size=config.image_size, cj_strength=0.5, gaussian_blur=blur)
    loader = torch.utils.data.DataLoader(
        PILImages(np.asarray(images.images), transform), batch_size=config.batch_size, shuffle=True,
        num_workers=workers, drop_last=True, persistent_workers=workers > 0,
    )
    step, t0 = 0, None
    while step < config.steps:
        for views in loader:
            if step == warmup:
                t0 = time.perf_counter()
            loss = method.training_step(views, StepState(step, config.steps))["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step >= config.steps:
                break
    float(loss.detach())
    return (config.steps - warmup) * config.batch_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--image-size", type=int, default=28)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--backbone", default="resnet18")
    _common.add_stem_argument(ap)
    args = ap.parse_args()
    steps, rounds = (args.steps or 6, 1) if args.quick else (args.steps or 20, 2)
    warmup = 2

    with tempfile.TemporaryDirectory() as tmp:
        project, config, images = _common.simclr_project(tmp, steps, args.batch_size, args.image_size, args.backbone,
                                                         _common.STEMS[args.stem])
        studio, ref = [], []
        for _ in range(rounds):
            ref.append(reference_images_per_s(config, images, warmup, args.workers))
            studio.append(_common.studio_images_per_s(project, "sample", config, warmup))
        project.close()
    s, r = max(studio), max(ref)
    _common.emit("pipeline", method="simclr", backbone=args.backbone, stem=args.stem, image_size=args.image_size,
                 batch_size=args.batch_size, steps=steps, loader_workers=args.workers,
                 studio_images_per_s=round(s, 1), reference_images_per_s=round(r, 1), ratio=round(s / r, 3), target=1.3)


if __name__ == "__main__":
    main()
