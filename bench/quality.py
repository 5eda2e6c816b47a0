"""quality: is an encoder from the studio at least as good as lightly's own example recipe for the
same method, on the same torchvision backbone, images, batch and number of steps?

For each method and seed, two sides train on the same 80 % of the images (stratified split, fixed):
- studio: as a user would, through the command line: `ssl-studio dataset add` of a folder of the
  training images, `ssl-studio train` with the method's defaults (only backbone, image size,
  steps, batch and seed given), `ssl-studio export --format torchvision`; the exported weights are
  loaded into a fresh torchvision model as its model card says.
- lightly: the method's example from lightly's documentation (examples/pytorch/*.py), written here
  from lightly's parts: its transform, heads, loss, optimiser and momentum schedule, on the same
  torchvision model; the only change is the input size.
Both are scored the same way: the weighted kNN of Wu et al. (k=200, t=0.1 as in the issue; k is
capped by the number of training images) of the held-out 20 % from the 80 %, on features of the
centre-cropped, ImageNet-normalised images. The untrained model gives the 'random' line.

    python bench/quality.py                                   # sample, 16 px ViT-Tiny (2 layers, patch 2), 300 steps of 64, 3 seeds
    python bench/quality.py --backbone resnet18 --image-size 16
    python bench/quality.py --methods simclr,byol --seeds 0 --steps 50     # a quicker look
    python bench/quality.py --folder ~/photos --image-size 64 --steps 2000

One JSON line per (method, side, seed), then a table of mean +- spread (sample standard deviation)
and the verdict of issue 21: the studio's mean at least lightly's mean minus one spread, and above
random init. Run it on a quiet machine: other jobs change nothing but the time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import _common  # noqa: F401
import numpy as np
import torch
from torch import nn

RECIPES = ("simclr", "moco", "byol", "simsiam", "dino", "barlowtwins", "vicreg", "swav", "nnclr", "mae")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# -- data --------------------------------------------------------------------------------------

def load(folder: str | None, size: int):
    from studio.engine.data import FolderSource, SampleSource, decode_images

    return decode_images(FolderSource(folder) if folder else SampleSource(), size)


def split(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    return train_test_split(idx, test_size=0.2, stratify=labels, random_state=seed)


def write_folder(data, idx, root: Path) -> Path:
    """The training images as a folder with a sub-folder per class (what a user points at)."""
    from PIL import Image

    for n, i in enumerate(idx):
        cls = data.class_names[int(data.labels[i])]
        (root / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(data.images[i].transpose(1, 2, 0))).save(root / cls / f"{n:06d}.png")
    return root


@torch.no_grad()
def features(model: nn.Module, images: np.ndarray, size: int, batch: int = 256) -> torch.Tensor:
    import torch.nn.functional as F

    model.eval()
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    out = []
    for s in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[s:s + batch])).float() / 255
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(model((x - mean) / std).float())
    return torch.cat(out)


def knn_score(model, data, train_idx, test_idx, size) -> float:
    from studio.engine.eval import knn_top1

    f = features(model, data.images, size)
    k = min(200, len(train_idx))
    return knn_top1(f[train_idx], data.labels[train_idx], f[test_idx], data.labels[test_idx],
                    num_classes=len(data.class_names), k=k, temperature=0.1)


def torchvision_model(card_backbone: dict) -> nn.Module:
    """The bare torchvision model a card describes, its classifier removed (the features)."""
    import torchvision

    kwargs = dict(card_backbone.get("kwargs", {}))
    builder = card_backbone["builder"]
    if builder == "VisionTransformer":
        from torchvision.models.vision_transformer import VisionTransformer

        model = VisionTransformer(**kwargs)
        model.heads = nn.Identity()
    else:
        from studio.engine.backbones import small_image_stem

        model = getattr(torchvision.models, builder)(**kwargs)
        if card_backbone.get("small_image_stem"):
            small_image_stem(builder, model)  # what the card's small_image_stem_code says
        for name in ("fc", "classifier"):
            if hasattr(model, name):
                setattr(model, name, nn.Identity())
    return model


def backbone_card(backbone: str, size: int, vit_layers: int | None, patch: int | None) -> dict:
    """What the studio's card says for this backbone, so both sides build the same model."""
    from studio.engine.backbones import build_backbone

    options = {k: v for k, v in (("num_layers", vit_layers), ("patch_size", patch)) if v}
    bb = build_backbone(backbone, image_size=size, **(options if backbone.startswith("vit") else {}))
    return {"builder": bb.arch.get("builder"), "kwargs": dict(bb.arch.get("kwargs", {})),
            "small_image_stem": bool(bb.arch.get("small_image_stem")), "feature_dim": bb.feature_dim}


# -- the studio side, through its command line ------------------------------------------------

def cli(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "studio", *args, "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"ssl-studio {' '.join(args[:1])} failed: {out.stderr.strip()[-400:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def studio_side(method, project, args, seed) -> tuple[nn.Module, dict]:
    options = []
    if args.backbone.startswith("vit"):
        options = ["--backbone-option", f"num_layers={args.vit_layers}", "--backbone-option", f"patch_size={args.patch}"]
    run = cli("train", str(project), "--dataset", "train", "--method", method, "--backbone", args.backbone, *options,
              "--image-size", str(args.image_size), "--steps", str(args.steps), "--batch-size", str(args.batch_size),
              "--seed", str(seed), "--device", args.device, *shlex.split(args.studio_args))
    if run["status"] != "finished":
        raise RuntimeError(f"studio {method} seed {seed}: {run['status']}: {run['reason']}")
    out = Path(project) / "bench-exports" / f"run-{run['run_id']}"
    exported = cli("export", str(project), str(run["run_id"]), "--format", "torchvision", "--out", str(out))
    where = lambda p: Path(p) if Path(p).is_absolute() else Path(project) / p  # noqa: E731 - relative to the project
    card = json.loads(where(exported["card"]).read_text())
    model = torchvision_model(card["backbone"])
    model.load_state_dict({k: v for k, v in torch.load(where(exported["path"]), weights_only=True).items()
                           if not k.startswith(("heads.", "fc.", "classifier."))}, strict=True)
    series = cli("metrics", str(project), str(run["run_id"]))["series"]
    last = lambda name: round(series[name][-1][1], 4) if series.get(name) else None  # noqa: E731
    # The health monitor's output spread at the end (under 0.1: collapsed) and its kNN monitor's
    # check of the untrained encoder at step 0, as the Run page shows them.
    monitor = {"output_spread": last("embedding_std_ratio"), "collapsed": last("collapse") == 1.0,
               "monitor_knn_step0": round(series["knn_top1"][0][1], 4) if series.get("knn_top1") else None,
               "monitor_knn_end": last("knn_top1")}
    return model, {"final_loss": run["final_loss"], "images_per_s": run["images_per_s"], **monitor}


# -- lightly's example recipes ---------------------------------------------------------------

class _Views(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, transform):
        from PIL import Image

        self.pil = [Image.fromarray(np.ascontiguousarray(im.transpose(1, 2, 0))) for im in images]
        self.transform = transform

    def __len__(self):
        return len(self.pil)

    def __getitem__(self, i):
        return self.transform(self.pil[i])


class _AnySizeViT(nn.Module):
    def __init__(self, masked):
        super().__init__()
        self.masked = masked

    def forward(self, x):
        return self.masked(images=x)


def _cosine(step, total, start, end):
    return end - (end - start) * (math.cos(math.pi * step / max(1, total)) + 1) / 2


def lightly_recipe(method: str, backbone: nn.Module, dim: int, size: int, vit: bool):
    """(transform, model, loss_fn(model, views, step, total), optimizer) as lightly's example."""
    import copy

    from lightly import loss as L
    from lightly import transforms as T
    from lightly.models import utils
    from lightly.models.modules import heads as H

    def frozen(m, make=None):
        """The momentum copy; a weight-normalised head cannot be deep-copied, so it is rebuilt."""
        if make is None:
            m = copy.deepcopy(m)
        else:
            fresh = make()
            fresh.load_state_dict(m.state_dict())
            m = fresh
        utils.deactivate_requires_grad(m)
        return m

    if vit:
        # lightly's examples run ViTs through its masked ViT, which takes crops of any size (the
        # local crops of DINO and SwAV) by interpolating the position embedding; weights untouched.
        from lightly.models.modules import MaskedVisionTransformerTorchvision

        backbone = _AnySizeViT(MaskedVisionTransformerTorchvision(
            vit=backbone, weight_initialization="skip", pos_embed_initialization="skip")) if method != "mae" else backbone

    sgd = lambda params: torch.optim.SGD(params, lr=0.06)  # noqa: E731 - the examples' optimiser
    model = nn.ModuleDict({"backbone": backbone})
    if method == "simclr":
        model["head"] = H.SimCLRProjectionHead(dim, dim, 128)
        crit = L.NTXentLoss()

        def step(views, i, n):
            z = [model["head"](model["backbone"](v)) for v in views]
            return crit(z[0], z[1])
        return T.SimCLRTransform(input_size=size), model, step, sgd(model.parameters())
    if method == "moco":
        model["head"] = H.MoCoProjectionHead(dim, dim, 128)
        model["backbone_m"], model["head_m"] = frozen(backbone), frozen(model["head"])
        crit = L.NTXentLoss(memory_bank_size=(4096, 128))

        def step(views, i, n):
            m = _cosine(i, n, 0.996, 1.0)
            utils.update_momentum(model["backbone"], model["backbone_m"], m)
            utils.update_momentum(model["head"], model["head_m"], m)
            q = model["head"](model["backbone"](views[0]))
            k = model["head_m"](model["backbone_m"](views[1])).detach()
            return crit(q, k)
        return T.MoCoV2Transform(input_size=size), model, step, sgd(model.parameters())
    if method in ("byol", "simsiam"):
        if method == "byol":
            model["head"] = H.BYOLProjectionHead(dim, 1024, 256)
            model["pred"] = H.BYOLPredictionHead(256, 1024, 256)
            model["backbone_m"], model["head_m"] = frozen(backbone), frozen(model["head"])
        else:
            model["head"] = H.SimSiamProjectionHead(dim, dim, 128)
            model["pred"] = H.SimSiamPredictionHead(128, 64, 128)
        crit = L.NegativeCosineSimilarity()

        def step(views, i, n):
            x0, x1 = views[0], views[1]
            p0, p1 = (model["pred"](model["head"](model["backbone"](x))) for x in (x0, x1))
            if method == "byol":
                m = _cosine(i, n, 0.996, 1.0)
                utils.update_momentum(model["backbone"], model["backbone_m"], m)
                utils.update_momentum(model["head"], model["head_m"], m)
                z0, z1 = (model["head_m"](model["backbone_m"](x)).detach() for x in (x0, x1))
            else:
                z0, z1 = (model["head"](model["backbone"](x)).detach() for x in (x0, x1))
            return 0.5 * (crit(p0, z1) + crit(p1, z0))
        transform = T.BYOLTransform(view_1_transform=T.BYOLView1Transform(input_size=size),
                                    view_2_transform=T.BYOLView2Transform(input_size=size)) \
            if method == "byol" else T.SimSiamTransform(input_size=size)
        return transform, model, step, sgd(model.parameters())
    if method == "dino":
        make = lambda: H.DINOProjectionHead(dim, 512, 64, 2048, freeze_last_layer=1)  # noqa: E731
        model["head"] = make()
        model["backbone_m"], model["head_m"] = frozen(backbone), frozen(model["head"], make)
        crit = L.DINOLoss(output_dim=2048, warmup_teacher_temp_epochs=5)
        local = max(8, (size * 96 // 224) // (2 if vit else 1) * (2 if vit else 1))

        def step(views, i, n):
            m = _cosine(i, n, 0.996, 1.0)
            utils.update_momentum(model["backbone"], model["backbone_m"], m)
            utils.update_momentum(model["head"], model["head_m"], m)
            teacher = [model["head_m"](model["backbone_m"](v)) for v in views[:2]]
            student = [model["head"](model["backbone"](v)) for v in views]
            return crit(teacher, student, epoch=0)
        transform = T.DINOTransform(global_crop_size=size, local_crop_size=local)
        return transform, model, step, torch.optim.Adam(model.parameters(), lr=0.001)
    if method == "barlowtwins":
        model["head"] = H.BarlowTwinsProjectionHead(dim, 2048, 2048)
        crit = L.BarlowTwinsLoss()

        def step(views, i, n):
            z = [model["head"](model["backbone"](v)) for v in views[:2]]
            return crit(z[0], z[1])
        transform = T.BYOLTransform(view_1_transform=T.BYOLView1Transform(input_size=size),
                                    view_2_transform=T.BYOLView2Transform(input_size=size))
        return transform, model, step, sgd(model.parameters())
    if method == "vicreg":
        model["head"] = H.BarlowTwinsProjectionHead(dim, 2048, 2048)
        crit = L.VICRegLoss()

        def step(views, i, n):
            z = [model["head"](model["backbone"](v)) for v in views[:2]]
            return crit(z[0], z[1])
        return T.VICRegTransform(input_size=size), model, step, sgd(model.parameters())
    if method == "swav":
        model["head"] = H.SwaVProjectionHead(dim, dim, 128)
        model["proto"] = H.SwaVPrototypes(128, n_prototypes=512)
        crit = L.SwaVLoss()
        local = max(8, size * 96 // 224)

        def step(views, i, n):
            model["proto"].normalize()
            out = [model["proto"](nn.functional.normalize(model["head"](model["backbone"](v)), dim=1)) for v in views]
            return crit(out[:2], out[2:])
        transform = T.SwaVTransform(crop_sizes=(size, local))
        return transform, model, step, torch.optim.Adam(model.parameters(), lr=0.001)
    if method == "nnclr":
        model["head"] = H.NNCLRProjectionHead(dim, dim, 128)
        model["pred"] = H.NNCLRPredictionHead(128, dim, 128)
        from lightly.models.modules import NNMemoryBankModule

        bank = NNMemoryBankModule(size=(4096, 128))
        crit = L.NTXentLoss()

        def step(views, i, n):
            z0, z1 = (model["head"](model["backbone"](v)) for v in views[:2])
            p0, p1 = model["pred"](z0), model["pred"](z1)
            z0, z1 = bank(z0.detach(), update=False), bank(z1.detach(), update=True)
            return 0.5 * (crit(z0, p1) + crit(z1, p0))
        return T.SimCLRTransform(input_size=size), model, step, sgd(model.parameters())
    if method == "mae":
        from lightly.models.modules import MAEDecoder, MaskedVisionTransformerTorchvision

        vitm = backbone
        enc = MaskedVisionTransformerTorchvision(vit=vitm)
        model["enc"] = enc
        model["dec"] = MAEDecoder(seq_length=vitm.seq_length, num_layers=1, num_heads=16, embed_input_dim=vitm.hidden_dim,
                                  hidden_dim=512, mlp_dim=2048, out_dim=vitm.patch_size**2 * 3)
        model["mask"] = nn.ParameterList([nn.Parameter(torch.zeros(1, 1, 512))])
        crit = nn.MSELoss()
        seq, patch = vitm.seq_length, vitm.patch_size

        def step(views, i, n):
            x = views[0]
            b = x.shape[0]
            keep, mask = utils.random_token_mask(size=(b, seq), mask_ratio=0.75, device=x.device)
            e = model["dec"].embed(enc.encode(x, idx_keep=keep))
            full = utils.set_at_index(utils.repeat_token(model["mask"][0], (b, seq)), keep, e)
            pred = model["dec"].predict(utils.get_at_index(model["dec"].decode(full), mask))
            target = utils.get_at_index(utils.patchify(x, patch), mask - 1)
            return crit(pred, target)
        return T.MAETransform(input_size=size), model, step, torch.optim.AdamW(model.parameters(), lr=1.5e-4)
    raise SystemExit(f"no lightly recipe for {method}")


def lightly_side(method, data, train_idx, args, seed) -> tuple[nn.Module, dict]:
    card = backbone_card(args.backbone if method != "mae" else args.vit_backbone, args.image_size,
                         args.vit_layers, args.patch)
    torch.manual_seed(seed)
    np.random.seed(seed)
    backbone = torchvision_model(card)
    transform, model, step, opt = lightly_recipe(method, backbone, card["feature_dim"], args.image_size,
                                                 vit=card["builder"] == "VisionTransformer")
    loader = torch.utils.data.DataLoader(_Views(data.images[train_idx], transform), batch_size=args.batch_size,
                                         shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(seed))
    model.train()
    losses, i = [], 0
    while i < args.steps:
        for views in loader:
            views = views if isinstance(views, (list, tuple)) else [views]
            loss = step(list(views), i, args.steps)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            i += 1
            if i >= args.steps:
                break
    return backbone, {"final_loss": float(np.mean(losses[-10:])), "first_loss": losses[0]}


# -- the run ----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", help="an image folder with class sub-folders (default: the built-in sample)")
    parser.add_argument("--methods", default=",".join(RECIPES))
    parser.add_argument("--sides", default="studio,lightly")
    parser.add_argument("--backbone", default="vit_tiny")
    parser.add_argument("--vit-backbone", default="vit_tiny", help="the backbone of ViT-only methods (MAE)")
    parser.add_argument("--vit-layers", type=int, default=2)
    parser.add_argument("--patch", type=int, default=2, help="ViT patch size")
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--studio-args", default="", help="more `ssl-studio train` options for the studio side, "
                        "to try a setting against the defaults (e.g. \"--optimizer adamw --lr 5e-4\")")
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    data = load(args.folder, args.image_size)
    train_idx, test_idx = split(data.labels)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="ssl-quality-") as tmp:
        project = Path(tmp) / "project"
        sides = args.sides.split(",")
        if "studio" in sides:
            cli("init", str(project))
            folder = write_folder(data, train_idx, Path(tmp) / "train")
            cli("dataset", "add", str(project), str(folder), "--name", "train")
        for backbone in sorted({args.backbone, args.vit_backbone} if "mae" in args.methods else {args.backbone}):
            card = backbone_card(backbone, args.image_size, args.vit_layers, args.patch)
            for seed in seeds:
                torch.manual_seed(seed)
                score = knn_score(torchvision_model(card), data, train_idx, test_idx, args.image_size)
                rows.setdefault((f"random ({backbone})", "random"), []).append(score)
                _common.emit("quality", method="random", backbone=backbone, side="random", seed=seed, knn_top1=score)
        for method in args.methods.split(","):
            for side in sides:
                for seed in seeds:
                    try:
                        if side == "studio":
                            model, info = studio_side(method, project, args, seed)
                        else:
                            model, info = lightly_side(method, data, train_idx, args, seed)
                        score = knn_score(model, data, train_idx, test_idx, args.image_size)
                    except Exception as exc:  # noqa: BLE001 - one failing recipe is a finding, not the end
                        _common.emit("quality", method=method, side=side, seed=seed, error=str(exc)[:300])
                        continue
                    rows.setdefault((method, side), []).append(score)
                    if info.get("output_spread") is not None:
                        rows.setdefault((method, "spread"), []).append(info["output_spread"])
                    _common.emit("quality", method=method, side=side, seed=seed, knn_top1=round(score, 4),
                                 steps=args.steps, batch_size=args.batch_size, image_size=args.image_size,
                                 backbone=args.backbone if method != "mae" else args.vit_backbone,
                                 **({"studio_args": args.studio_args} if side == "studio" and args.studio_args else {}), **info)
    print_table(rows, args)


def _stats(v: list[float]) -> tuple[float, float]:
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def print_table(rows, args) -> None:
    from studio.engine.eval.health import STD_RATIO_COLLAPSE_THRESHOLD

    print(f"\nkNN top-1 (k=200, t=0.1), {args.backbone}, {args.image_size} px, {args.steps} steps of {args.batch_size}, "
          f"seeds {args.seeds}", file=sys.stderr)
    print("| method | random init | studio | lightly's recipe | verdict | studio's output spread |\n"
          "|---|---|---|---|---|---|", file=sys.stderr)
    random = {k[0]: _stats(v) for k, v in rows.items() if k[1] == "random"}
    for method in dict.fromkeys(k[0] for k in rows if k[1] not in ("random", "spread")):
        bb = args.vit_backbone if method == "mae" else args.backbone
        r = random.get(f"random ({bb})", (float("nan"), 0.0))
        cells, st, li = [], rows.get((method, "studio")), rows.get((method, "lightly"))
        for v in (st, li):
            cells.append("-" if not v else "%.3f +- %.3f" % _stats(v))
        verdict = ""
        if st and li:
            (sm, _), (lm, ls) = _stats(st), _stats(li)
            verdict = "ok" if sm >= lm - ls and sm > r[0] else ("below random" if sm <= r[0] else "behind lightly")
        spread = rows.get((method, "spread"))
        spread = "-" if not spread else (f"{min(spread):.2f}-{max(spread):.2f}"
                                         + (" (collapsed)" if min(spread) < STD_RATIO_COLLAPSE_THRESHOLD else ""))
        print(f"| {method} | {r[0]:.3f} | {cells[0]} | {cells[1]} | {verdict} | {spread} |", file=sys.stderr)


if __name__ == "__main__":
    main()
