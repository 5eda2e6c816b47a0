"""overhead: the studio's end-to-end training images/s (data pipeline, views, bookkeeping, store
writes and all) divided by a bare PyTorch loop doing the same model, loss, optimiser and batch on
view tensors already in memory: the physical floor. Target >= 0.90.

Both loops run the same number of steps after the same warm-up, in one process, alternating
twice so that drift of the machine's speed falls on both alike.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import _common  # (also puts the repository on sys.path)
import torch


def bare_images_per_s(config, images, warmup: int) -> float:
    from studio.engine.data.views import make_view
    from studio.engine.methods import StepState
    from studio.engine.train.optim import build_optimizer
    from studio.engine.train.trainer import build_method

    torch.manual_seed(0)
    method = build_method(config)
    method.train()
    opt = build_optimizer("sgd", method, 0.06 * config.batch_size / 256, 5e-4)
    x = torch.from_numpy(images.images[: config.batch_size].copy())
    specs = method.view_specs(config.image_size)
    views = [make_view(x, s) for s in specs]  # made once: the floor has no data pipeline
    t0 = None
    for step in range(config.steps):
        if step == warmup:
            t0 = time.perf_counter()
        loss = method.training_step(views, StepState(step, config.steps))["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    float(loss.detach())  # wait for the last step to finish
    return (config.steps - warmup) * config.batch_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--image-size", type=int, default=28)
    ap.add_argument("--backbone", default="resnet18")
    _common.add_stem_argument(ap)
    args = ap.parse_args()
    steps, rounds = (args.steps or 6, 1) if args.quick else (args.steps or 20, 2)
    warmup = 2

    with tempfile.TemporaryDirectory() as tmp:
        project, config, images = _common.simclr_project(tmp, steps, args.batch_size, args.image_size, args.backbone,
                                                         _common.STEMS[args.stem])
        studio, bare = [], []
        for _ in range(rounds):
            bare.append(bare_images_per_s(config, images, warmup))
            studio.append(_common.studio_images_per_s(project, "sample", config, warmup))
        project.close()
    s, b = max(studio), max(bare)
    _common.emit("overhead", method="simclr", backbone=args.backbone, stem=args.stem, image_size=args.image_size,
                 batch_size=args.batch_size, steps=steps, studio_images_per_s=round(s, 1),
                 bare_images_per_s=round(b, 1), ratio=round(s / b, 3), target=0.90)


if __name__ == "__main__":
    main()
