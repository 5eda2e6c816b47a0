"""Model cards: what an export is, how it was made, and ten lines that use it.

A card is plain JSON-able data; `readme` renders it as a short README.md. The snippet is written
for the folder that holds the export (file names without directories) and an image "image.png".
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from studio.engine.export.common import HEADS_PREFIX

# The one list of formats: the CLI's --format choices and the export dialog's menu read it, in
# this order (the first is the dialog's default: torch.export, which torch recommends).
MODEL_FORMATS = ("exported-program", "torchscript", "onnx", "torchvision", "safetensors")
EMBEDDING_FORMATS = ("embeddings-csv", "embeddings-npy", "embeddings-parquet")
FORMATS = MODEL_FORMATS + EMBEDDING_FORMATS
# The formats that hold a runnable graph (so an export with heads returns the projections too).
GRAPH_FORMATS = ("exported-program", "torchscript", "onnx")

FORMAT_TITLES = {
    "exported-program": "torch.export ExportedProgram",
    "torchscript": "TorchScript",
    "onnx": "ONNX",
    "torchvision": "torchvision weights",
    "safetensors": "safetensors weights",
    "embeddings-csv": "embeddings (CSV)",
    "embeddings-npy": "embeddings (NumPy)",
    "embeddings-parquet": "embeddings (Parquet)",
}

# What each format is for, in a few words (the export dialog's menu, after the title).
FORMAT_HINTS = {
    "exported-program": "the format torch recommends (.pt2)",
    "torchscript": "runs with torch.jit.load alone (deprecated in torch)",
    "onnx": "for onnxruntime, TensorRT, OpenVINO... (opset 17, any batch size)",
    "torchvision": "state dict for the torchvision/timm model of the same name",
    "safetensors": "the same weights, as safetensors",
    "embeddings-csv": "one row per image: path, label, features",
    "embeddings-npy": "an (N, D) array and an index of paths and labels",
    "embeddings-parquet": "path, label and an embedding column",
}

SNIPPET_IMAGE = "image.png"


def head_attribute(arch: Mapping[str, Any]) -> str | None:
    """The library model's classifier, which SSL never trains and a user replaces to get features."""
    if arch.get("library") == "timm":
        return None  # built with num_classes=0: the model already ends at the features
    builder = str(arch.get("builder", ""))
    if builder.startswith(("resnet", "resnext", "wide_resnet")):
        return "fc"
    if builder == "VisionTransformer" or builder.startswith("vit_"):
        return "heads"
    return "classifier"


def rebuild_lines(arch: Mapping[str, Any]) -> list[str]:
    """Python lines that build, from its own library, the model exactly as it was trained
    (before loading weights); they assume `import torch` and the import of `rebuild_imports`."""
    library, builder, kwargs = arch.get("library"), arch.get("builder"), dict(arch.get("kwargs") or {})
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    if library == "timm":
        return [f"model = timm.create_model({builder!r}, {args})"]
    if builder == "VisionTransformer":
        lines = [f"model = VisionTransformer({args})"]
    else:
        lines = [f"model = torchvision.models.{builder}({args})"]
    if arch.get("small_image_stem"):
        code = arch.get("small_image_stem_code") or "model.conv1.stride = (1, 1); model.maxpool = torch.nn.Identity()"
        lines.append(f"{code}  # the small-image stem it was trained with")
    return lines


def rebuild_imports(arch: Mapping[str, Any]) -> str:
    if arch.get("library") == "timm":
        return "import torch, timm, torchvision.transforms as T"
    if arch.get("builder") == "VisionTransformer":
        return "import torch, torchvision.transforms as T\nfrom torchvision.models.vision_transformer import VisionTransformer"
    return "import torch, torchvision, torchvision.transforms as T"


def _prep_lines(card: Mapping[str, Any], numpy: bool = False) -> list[str]:
    size = card["image_size"]
    mean, std = tuple(card["input"]["mean"]), tuple(card["input"]["std"])
    tail = ".numpy()" if numpy else ""
    return [
        f"prep = T.Compose([T.Resize({size}), T.CenterCrop({size}), T.ToTensor(), T.Normalize({mean}, {std})])",
        f'x = prep(Image.open("{SNIPPET_IMAGE}").convert("RGB")).unsqueeze(0){tail}',
    ]


def snippet(card: Mapping[str, Any]) -> str:
    """At most ten lines of Python that load the export and embed one image (or read the embeddings)."""
    fmt, file = card["format"], card["file"]
    dim, heads = card["feature_dim"], card.get("heads_included", False)
    arch = card["backbone"]
    if fmt == "exported-program":
        lines = ["import torch, torchvision.transforms as T", "from PIL import Image", *_prep_lines(card),
                 f'model = torch.export.load("{file}").module()  # torch.export: any batch size',
                 "with torch.no_grad():",
                 "    features, projections = model(x)" if heads else "    features = model(x)",
                 f"print(tuple(features.shape))  # (1, {dim})"]
    elif fmt == "torchscript":
        lines = ["import torch, torchvision.transforms as T", "from PIL import Image", *_prep_lines(card),
                 f'model = torch.jit.load("{file}").eval()  # TorchScript: deprecated in torch, loads while it lasts',
                 "with torch.no_grad():",
                 "    features, projections = model(x)" if heads else "    features = model(x)",
                 f"print(tuple(features.shape))  # (1, {dim})"]
    elif fmt == "onnx":
        lines = ["import onnxruntime as ort, torchvision.transforms as T", "from PIL import Image", *_prep_lines(card, numpy=True),
                 f'session = ort.InferenceSession("{file}", providers=["CPUExecutionProvider"])',
                 'features = session.run(["features"], {"images": x})[0]',
                 f"print(features.shape)  # (1, {dim})"]
    elif fmt in ("torchvision", "safetensors"):
        if fmt == "torchvision":
            load = f'torch.load("{file}", weights_only=True)'
            extra_import = []
        else:
            extra_import = ["from safetensors.torch import load_file"]
            load = (f'{{k: v for k, v in load_file("{file}").items() if not k.startswith("{HEADS_PREFIX}")}}'
                    if heads else f'load_file("{file}")')
        head = head_attribute(arch)
        lines = [*rebuild_imports(arch).splitlines(), *extra_import, "from PIL import Image", *_prep_lines(card),
                 *rebuild_lines(arch),
                 f"model.load_state_dict({load}, strict=True)"]
        if head:
            lines.append(f"model.{head} = torch.nn.Identity()  # drop the untrained classifier: the output is the features")
        lines.append(f"with torch.no_grad(): print(tuple(model.eval()(x).shape))  # (1, {dim})")
    elif fmt == "embeddings-npy":
        lines = ["import csv, numpy as np", f'features = np.load("{file}")',
                 f'index = list(csv.DictReader(open("{card["index_file"]}")))',
                 'print(features.shape, index[0]["path"], index[0]["label"])  # (N, ' + f"{dim})"]
    elif fmt == "embeddings-csv":
        lines = ["import csv, numpy as np", f'rows = list(csv.DictReader(open("{file}")))',
                 f'features = np.array([[float(r[f"f{{i}}"]) for i in range({dim})] for r in rows], dtype=np.float32)',
                 'print(features.shape, rows[0]["path"], rows[0]["label"])  # (N, ' + f"{dim})"]
    elif fmt == "embeddings-parquet":
        lines = ["import numpy as np, pyarrow.parquet as pq", f'table = pq.read_table("{file}")',
                 'features = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))',
                 'print(features.shape, table.column("path")[0], table.column("label")[0])  # (N, ' + f"{dim})"]
    else:
        raise ValueError(f"unknown export format {fmt!r}")
    return "\n".join(lines) + "\n"


def notes(card: Mapping[str, Any]) -> list[str]:
    arch, fmt = card["backbone"], card["format"]
    out = [
        f"Input: float32 RGB images (N, 3, {card['image_size']}, {card['image_size']}), pixel values / 255, "
        f"then normalised with mean {tuple(card['input']['mean'])} and std {tuple(card['input']['std'])}.",
    ]
    if fmt in MODEL_FORMATS:
        out.append(f"Output: features (N, {card['feature_dim']})"
                   + (" and the method's projections" if card.get("heads_included") and fmt in GRAPH_FORMATS else "") + ".")
    if fmt == "exported-program":
        out.append("torch.export is the format torch recommends for new work (TorchScript is deprecated): "
                   f"`torch.export.load(\"{card['file']}\").module()(x)` runs it with torch alone, for any batch size "
                   f"at {card['image_size']} px. Saved with torch {card['torch_version']}: torch does not yet promise "
                   "that other releases load it, so keep a safetensors export to rebuild it later.")
    elif fmt == "torchscript":
        out.append("TorchScript is deprecated in torch; the exported-program format (torch.export, `.pt2`) replaces it.")
    if arch.get("small_image_stem") and fmt in ("torchvision", "safetensors"):
        # Only weights are rebuilt by hand; a graph carries its stem, embeddings are computed.
        code = arch.get("small_image_stem_code") or "model.conv1.stride = (1, 1); model.maxpool = torch.nn.Identity()"
        out.append(f"Small-image stem: this model was trained with `{code}` (strides and pooling are not weights); "
                   "rebuild it so, or the embeddings will not match.")
    head = head_attribute(arch)
    if fmt in ("torchvision", "safetensors") and head:
        out.append(f"The weights include the model's `{head}` at its fresh initialisation (self-supervised training "
                   f"does not train it) so that load_state_dict(strict=True) works; replace `model.{head}` by "
                   "torch.nn.Identity() to get the features, or fine-tune it.")
    if card.get("heads_included"):
        if fmt == "safetensors":
            out.append(f"The method's heads are stored under the key prefix '{HEADS_PREFIX}'; filter them out to load the encoder strictly.")
        elif fmt == "torchvision":
            out.append(f"The method's heads are in {card.get('heads_file')} under the key prefix '{HEADS_PREFIX}'.")
    if fmt in EMBEDDING_FORMATS:
        out.append("Rows follow the dataset's order; label -1 (and an empty class) means the image has no label.")
    return out


def build_card(
    *,
    format: str,
    file: str,
    run_id: int | None,
    checkpoint_step: int | None,
    method: str,
    method_config: Mapping[str, Any],
    backbone: str,
    backbone_kind: str,
    arch: Mapping[str, Any],
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    feature_dim: int,
    dataset: Mapping[str, Any] | None,
    steps: int | None,
    epochs: float | None,
    evaluations: Sequence[Mapping[str, Any]] = (),
    heads_included: bool = False,
    extra: Mapping[str, Any] | None = None,
    studio_version: str | None = None,
) -> dict[str, Any]:
    import torch

    if studio_version is None:
        from studio import __version__ as studio_version
    card: dict[str, Any] = {
        "format": format,
        "format_title": FORMAT_TITLES.get(format, format),
        "file": file,
        "run_id": run_id,
        "checkpoint_step": checkpoint_step,
        "method": method,
        "method_config": dict(method_config),
        "backbone": {"name": backbone, "kind": backbone_kind, **{k: v for k, v in arch.items()}},
        "image_size": int(image_size),
        "input": {"name": "images", "layout": "NCHW", "dtype": "float32", "channels": "RGB",
                  "scale": "pixel / 255", "mean": [float(v) for v in mean], "std": [float(v) for v in std]},
        "feature_dim": int(feature_dim),
        "heads_included": bool(heads_included),
        "dataset": dict(dataset) if dataset else None,
        "steps": steps,
        "epochs": epochs,
        "evaluations": [dict(e) for e in evaluations],
        "studio_version": studio_version,
        "torch_version": torch.__version__.split("+")[0],
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    card.update(extra or {})
    card["rebuild"] = rebuild_imports(arch).splitlines() + rebuild_lines(arch)
    card["notes"] = notes(card)
    card["snippet"] = snippet(card)
    return card


def _fmt_metrics(metrics: Mapping[str, Any]) -> str:
    parts = []
    for k, v in metrics.items():
        parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
    return ", ".join(parts)


def readme(card: Mapping[str, Any]) -> str:
    """A short README.md for the card."""
    b = card["backbone"]
    ds = card.get("dataset") or {}
    title = f"{b['name']} trained with {card['method']}"
    rows = [
        ("Format", f"{card['format_title']} (`{card['file']}`)"),
        ("Method", f"{card['method']}"),
        ("Backbone", f"{b['name']} ({b.get('library')} `{b.get('builder')}`" + (", small-image stem)" if b.get("small_image_stem") else ")")),
        ("Image size", f"{card['image_size']} px"),
        ("Normalisation", f"mean {tuple(card['input']['mean'])}, std {tuple(card['input']['std'])}"),
        ("Feature size", str(card["feature_dim"])),
        ("Dataset", f"{ds.get('name', '?')} ({ds.get('images', '?')} images, {ds.get('classes', 0)} classes)" if ds else "unknown"),
        ("Steps", f"{card.get('steps')} (checkpoint step {card.get('checkpoint_step')})"),
        ("Run", f"{card.get('run_id')}"),
        ("SSL Studio", f"{card['studio_version']} (torch {card['torch_version']})"),
    ]
    if card.get("embeddings"):
        e = card["embeddings"]
        rows.append(("Embeddings", f"{e['count']} images of {e['dataset']}, {e['dim']} dimensions"))
    lines = [f"# {title}", "", "| Property | Value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += ["", "## Evaluation", ""]
    if card.get("evaluations"):
        for e in card["evaluations"]:
            step = f" at step {e['checkpoint_step']}" if e.get("checkpoint_step") is not None else ""
            lines.append(f"- {e['kind']}{step}: {_fmt_metrics(e.get('metrics', {}))}")
    else:
        lines.append("No evaluation recorded for this run.")
    lines += ["", "## Use", "", "Run from the folder that holds the export, with an image `image.png`:", "",
              "```python", card["snippet"].rstrip("\n"), "```", "", "## Notes", ""]
    lines += [f"- {n}" for n in card["notes"]]
    return "\n".join(lines) + "\n"


def card_json(card: Mapping[str, Any]) -> str:
    return json.dumps(card, indent=2, default=str) + "\n"
