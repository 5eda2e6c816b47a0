"""export: a run's encoder as a torch.export program, TorchScript, ONNX, torchvision weights or
safetensors, or a dataset's embeddings as CSV, NPY or Parquet, each with its model card."""

from __future__ import annotations

import argparse

from studio.cli import emit_json, say
from studio.store import Project

# Written out (not built from studio.engine.export.card.FORMATS) so that building the parser does
# not import torch; a test holds it to that table.
FORMAT_HELP = ("exported-program (torch.export, .pt2) | torchscript | onnx | torchvision | safetensors: the encoder; "
               "embeddings-csv | embeddings-npy | embeddings-parquet: a dataset's embeddings (see --dataset)")


def _export(args: argparse.Namespace) -> int:
    from studio.services.export import export_run

    last = {"message": None, "tenth": -1}

    def progress(message: str, done: int, total: int) -> None:
        # One line per stage, and for long stages one per tenth: stderr stays readable in logs.
        tenth = done * 10 // total if total > 0 else -1
        if message != last["message"] or tenth > last["tenth"]:
            say(f"{message} {done}/{total}" if total > 0 else message)
        last["message"], last["tenth"] = message, tenth

    with Project.open(args.project) as project:
        result = export_run(
            project, args.run_id, args.format, out=args.out, checkpoint_step=args.checkpoint,
            with_heads=args.with_heads, dataset=args.dataset, batch_size=args.batch_size, device=args.device,
            progress=progress, force=args.force,
        )
        payload = result.to_json(project)
    if args.json:
        emit_json(payload)
    else:
        say(f"exported run {payload['run_id']} (step {payload['checkpoint_step']}) as {payload['format']}: {payload['path']}")
        say(f"model card: {payload['card']} and {payload['readme']}")
    return 0


def _format(text: str) -> str:
    # Imported here, when `export` is parsed, so that other commands do not pay for torch's import.
    from studio.engine.export.card import FORMATS

    if text not in FORMATS:
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(FORMATS)})")
    return text


def register(sub) -> None:
    p = sub.add_parser("export", help="export a run's encoder (or a dataset's embeddings) with a model card")
    p.add_argument("project")
    p.add_argument("run_id", type=int)
    p.add_argument("--format", required=True, type=_format, metavar="FORMAT", help=FORMAT_HELP)
    p.add_argument("--out", metavar="PATH",
                   help="a file, or a folder (gets encoder.<ext>, card.json, README.md); default: PROJECT/exports/run-N-step-S-FORMAT/")
    p.add_argument("--checkpoint", type=int, metavar="STEP", help="the step of the checkpoint to export (default: the newest)")
    p.add_argument("--with-heads", action="store_true", help="keep the method's heads (projection etc.) too")
    p.add_argument("--dataset", help="embeddings formats: the dataset to embed (default: the run's own)")
    p.add_argument("--batch-size", type=int, default=128, help="embeddings formats: images per batch")
    p.add_argument("--device", default="cpu", help="embeddings formats: auto | cpu | cuda | mps")
    p.add_argument("--force", action="store_true",
                   help="replace files that exist already (never the project's own database, checkpoints or cache)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_export)
