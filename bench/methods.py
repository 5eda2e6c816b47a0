"""methods: every pretext method trained for the same budget on the same images, one JSON line
each with its training speed and the kNN top-1 of its backbone on a held-out split.

The images are split 80/20 (stratified); a method trains on the 80 % without labels, then the
backbone embeds both parts and the weighted kNN of Wu et al. (k=20) classifies the 20 % from the
80 %. Each backbone untrained gives a baseline line (method "random"). `output_spread` is the
health monitor's spread of the method's output on the held-out images (~1 healthy, < 0.1
collapsed).

    python bench/methods.py                       # the built-in sample, 32 px, 200 steps each
    python bench/methods.py --folder ~/photos --image-size 64 --steps 1000 --device cuda
    python bench/methods.py --backbone vit_tiny --vit-layers 2 --image-size 16 --steps 300 --batch-size 64
"""

from __future__ import annotations

import argparse
import tempfile

import _common  # noqa: F401
import numpy as np
import torch

ALL = ("simclr", "moco", "byol", "simsiam", "dino", "barlowtwins", "vicreg", "mae")


def load(folder: str | None, size: int):
    from studio.engine.data import FolderSource, SampleSource, decode_images

    return decode_images(FolderSource(folder) if folder else SampleSource(), size)


def subset(data, idx):
    from studio.engine.data import DecodedImages

    return DecodedImages(np.ascontiguousarray(data.images[idx]), data.labels[idx],
                         [data.names[i] for i in idx], data.class_names)


@torch.no_grad()
def embed(backbone, images: np.ndarray, size: int, device, batch: int = 256) -> torch.Tensor:
    from studio.engine.data.views import eval_view

    backbone.eval()
    out = []
    for start in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch])).to(device)
        out.append(backbone(eval_view(x, size)).float().cpu())
    return torch.cat(out)


def knn(backbone, data, train_idx, test_idx, size, device) -> float:
    from studio.engine.eval import knn_top1

    feats = embed(backbone, data.images, size, device)
    return knn_top1(feats[train_idx], data.labels[train_idx], feats[test_idx], data.labels[test_idx],
                    num_classes=len(data.class_names), k=20, temperature=0.1)


@torch.no_grad()
def output_spread(method, images: np.ndarray, size: int, device) -> float:
    """The health monitor's spread (std ratio) of the method's output (`Method.output`) on the
    given images: ~1 healthy, under 0.1 collapsed (studio.engine.eval.health)."""
    from studio.engine.data.views import eval_view
    from studio.engine.eval.health import health_report

    method.eval()
    z = method.output(eval_view(torch.from_numpy(np.ascontiguousarray(images)).to(device), size))
    return health_report(z)["std_ratio"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", help="an image folder with class sub-folders (default: the built-in sample)")
    parser.add_argument("--methods", default=",".join(ALL))
    parser.add_argument("--backbone", default="resnet18", help="backbone of every method that takes it")
    parser.add_argument("--vit-backbone", default="vit_tiny", help="backbone of the methods that need a ViT (MAE)")
    parser.add_argument("--vit-layers", type=int, default=None, help="ViT depth (default: the model's 12)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run for run_all: 16 px, 20 steps of batch 32, a 2-layer ViT for MAE")
    args = parser.parse_args()
    if args.quick:
        args.image_size, args.steps, args.batch_size, args.vit_layers = 16, 20, 32, args.vit_layers or 2

    from studio.engine.backbones import backbone_spec, build_backbone
    from studio.engine.eval import split_indices
    from studio.engine.methods import method_class
    from studio.engine.train import Trainer, TrainConfig

    data = load(args.folder, args.image_size)
    if not data.has_labels:
        raise SystemExit("the kNN score needs labels: give a folder with one sub-folder per class.")
    train_idx, test_idx = split_indices(data.labels, 0.2, seed=args.seed)
    train = subset(data, train_idx)
    vit_options = {"num_layers": args.vit_layers} if args.vit_layers else {}

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    names = args.methods.split(",")

    def backbone_for(name: str) -> tuple[str, dict]:
        backbone = args.backbone
        if backbone_spec(backbone).kind not in method_class(name).backbone_kinds:
            backbone = args.vit_backbone
        return backbone, (vit_options if backbone_spec(backbone).kind == "vit" else {})

    # The same backbones untrained, one line each: what training has to beat.
    for backbone, options in dict(backbone_for(n) for n in names).items():
        torch.manual_seed(args.seed)
        base = build_backbone(backbone, args.image_size, **options).to(device)
        _common.emit("methods", method="random", backbone=backbone, steps=0, images_per_s=None,
                     knn_top1=round(knn(base, data, train_idx, test_idx, args.image_size, device), 4))

    for name in names:
        backbone, options = backbone_for(name)
        config = TrainConfig(method=name, backbone=backbone, backbone_options=options, steps=args.steps,
                             batch_size=args.batch_size, image_size=args.image_size, device=args.device,
                             seed=args.seed, log_every=20, monitor_every=-1)
        with tempfile.TemporaryDirectory() as run_dir:
            trainer = Trainer(config, train, run_dir)
            result = trainer.run()
        fields = dict(method=name, backbone=backbone, steps=result.steps, status=result.status,
                      images_per_s=round(result.images_per_s, 1) if result.images_per_s else None,
                      final_loss=result.final_loss, knn_top1=None)
        if result.status == "finished":
            method = trainer.method
            device_of = next(method.parameters()).device
            fields["knn_top1"] = round(knn(method.backbone, data, train_idx, test_idx, args.image_size, device_of), 4)
            fields["output_spread"] = round(output_spread(method, data.images[test_idx[:512]], args.image_size, device_of), 3)
        else:
            fields["reason"] = result.reason
        _common.emit("methods", **fields)


if __name__ == "__main__":
    main()
