"""train --gpus N and the processes torchrun starts for it (moved out of cli.train as they were)."""

from __future__ import annotations

import argparse
from typing import Any

from studio.cli.train import ProgressPrinter, _announce, _decoding, report_result, stop_on_signals
from studio.status import RunStatus


def launch_gpus(args: argparse.Namespace, request: dict[str, Any]) -> int:
    """Store (or check) the run here, then have torchrun's processes train it by its id."""
    from studio.services.distributed import check_gpus, launch_torchrun
    from studio.services.training import prepare_run
    from studio.store import Project

    device = args.device or (request["new"][1].device if "new" in request else None)
    check_gpus(args.gpus, device)
    with Project.open(args.project) as project:
        prepared = prepare_run(project, **request, processes=args.gpus)
        _announce(prepared, args.gpus, "CPU, gloo" if device == "cpu" else "one per GPU, NCCL")
    forwarded = ["train", str(args.project), "--resume" if prepared.resume else "--run-id", str(prepared.run.id)]
    if device:
        forwarded += ["--device", device]
    if args.log_every is not None:
        forwarded += ["--log-every", str(args.log_every)]
    if args.json:
        forwarded.append("--json")
    code = launch_torchrun(args.gpus, forwarded)
    return 0 if code == 0 else 1


def train_rank(args: argparse.Namespace, env, request: dict[str, Any]) -> int:
    """One of the processes torchrun started: rank 0 records the run and prints; the others train."""
    from studio.engine.train import TrainingControl
    from studio.engine.train.distributed import init_distributed, shutdown_distributed
    from studio.services.distributed import PeerFailed, train_distributed

    ctx = init_distributed(env, args.device)
    control = TrainingControl()
    printer = ProgressPrinter(args.project)
    try:
        with stop_on_signals(control):
            outcome = train_distributed(ctx, args.project, request, control=control, progress=_decoding,
                                        callbacks=[printer])
    except PeerFailed:
        return 1  # rank 0 prints the reason
    finally:
        shutdown_distributed()
    result = outcome.result
    if not ctx.is_main:
        return 1 if result.status in (RunStatus.FAILED, RunStatus.DIVERGED) else 0
    return report_result(args, outcome.run_id, result, outcome.checkpoint,
                         f"torchrun ... -m studio train {args.project} --resume {outcome.run_id}",
                         processes=ctx.world_size)
