"""CLIP on the sample's templated captions: zero-shot top-1 on held-out images of CLIP from
scratch against LiT (the image encoder from a SimCLR run, locked or at a tenth of the learning
rate) at the same CLIP budget, and CLIP's training speed against a bare loop over the same towers.

    python bench/clip.py [--size 8] [--ssl-steps 150] [--clip-steps 30] [--batch 64]

Prints one JSON line: {"bench": "clip", "scratch": top1, "lit_locked": top1, "lit_unlocked":
top1, "chance": 0.1, "images_per_s": ..., "bare_images_per_s": ..., ...}.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on the path)
import torch

from _common import emit, sample_images

TEXT = {"text_tower": "tiny", "embed_dim": 64, "context_length": 16}


def _config(args, **overrides):
    from studio.engine.train import TrainConfig

    base = dict(method="clip", backbone=args.backbone, image_size=args.size, batch_size=args.batch, steps=args.clip_steps,
                lr=args.lr, warmup_epochs=0.0, device="cpu", monitor_every=-1, log_every=10, seed=0,
                method_config=dict(TEXT))
    base.update(overrides)
    return TrainConfig(**base)


def _zero_shot(method, data, test) -> float:
    from studio.engine.eval.zeroshot import zero_shot_scores

    return zero_shot_scores(method, data.images[test], data.labels[test], data.class_names)["top1"]


def _bare_speed(method, data, batch: int, steps: int) -> float:
    """Images/s of the towers' forward, backward and AdamW step on fixed batches: no views, no
    caption draw, no metrics (what the Trainer adds is the difference)."""
    from studio.engine.data.views import eval_view
    from studio.engine.methods import StepState

    opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-4)
    x = eval_view(torch.from_numpy(data.images[:batch].copy()))
    idx = torch.arange(batch)
    began = time.perf_counter()
    for step in range(steps):
        loss = method.training_step([x], StepState(step, steps, indices=idx))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--ssl-steps", type=int, default=150)
    parser.add_argument("--clip-steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args()
    torch.set_num_threads(2)

    from studio.engine.data.cache import DecodedImages
    from studio.engine.data.captions import read_captions
    from studio.engine.data import SampleSource
    from studio.engine.eval import split_indices
    from studio.engine.train import TrainConfig, Trainer

    full = sample_images(args.size)
    captions = read_captions(SampleSource()).by_image
    train, test = split_indices(full.labels, 0.2, seed=0)
    train = sorted(train)
    data = DecodedImages(full.images[train], full.labels[train], [full.names[i] for i in train], full.class_names,
                         captions=[captions[i] for i in train])
    out: dict = {"size": args.size, "backbone": args.backbone, "batch": args.batch, "clip_steps": args.clip_steps,
                 "ssl_steps": args.ssl_steps, "train_images": len(train), "test_images": len(test),
                 "chance": 1 / len(full.class_names), "text_tower": TEXT}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ssl = TrainConfig(method="simclr", backbone=args.backbone, image_size=args.size, batch_size=128, steps=args.ssl_steps,
                          optimizer="adamw", lr=1e-3, warmup_epochs=0.0, device="cpu", monitor_every=-1, seed=0,
                          method_config={"color_strength": 0.0})
        began = time.perf_counter()
        assert Trainer(ssl, data, tmp / "ssl").run().status == "finished"
        out["ssl_seconds"] = round(time.perf_counter() - began, 1)
        ckpt = str(tmp / "ssl" / "last.ckpt")
        runs = {"scratch": _config(args),
                "lit_locked": _config(args, init_from=ckpt, method_config={**TEXT, "lock_image": True}),
                "lit_unlocked": _config(args, init_from=ckpt, method_config={**TEXT, "image_lr_scale": 0.1})}
        for name, config in runs.items():
            trainer = Trainer(config, data, tmp / name)
            result = trainer.run()
            assert result.status == "finished", result.reason
            out[name] = round(_zero_shot(trainer.method, full, test), 4)
            out[f"{name}_images_per_s"] = round(result.images_per_s or 0.0, 1)
            if name == "scratch":
                out["images_per_s"] = out[f"{name}_images_per_s"]
                out["bare_images_per_s"] = round(_bare_speed(trainer.method.train(), data, args.batch, 10), 1)
    emit("clip", **out)


if __name__ == "__main__":
    main()
