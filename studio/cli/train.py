"""train, runs, metrics.

Progress goes to standard error; with --json the one result object goes to standard output.
Ctrl-C (SIGINT) or SIGTERM stop a run cleanly between two steps, with a checkpoint, as 'stopped';
a second Ctrl-C gives up at once (the run is then found 'interrupted' on the next open).
"""

from __future__ import annotations

import argparse
import csv
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from studio.cli import UsageError, emit_json, say

# Options whose value is taken from the stored run when resuming; giving them with --resume is
# refused rather than silently ignored.
_RUN_SETTINGS = (
    "dataset", "method", "backbone", "epochs", "steps", "batch_size", "lr", "image_size", "set",
    "backbone_option", "checkpoint_every", "seed", "optimizer", "weight_decay", "warmup_epochs",
    "pretrained", "no_amp", "compile", "max_grad_norm",
)


def _key_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def _option_value(text: str) -> Any:
    if text.lower() in ("", "none", "auto"):
        return None
    if text.lower() in ("true", "yes", "on", "false", "no", "off"):
        return text.lower() in ("true", "yes", "on")
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def config_from_args(args: argparse.Namespace):
    """The TrainConfig the options describe; anything not given keeps TrainConfig's default."""
    from studio.engine.backbones import backbone_spec
    from studio.engine.errors import ConfigError
    from studio.engine.train import TrainConfig

    missing = [f"--{name}" for name in ("dataset", "method", "backbone") if getattr(args, name) is None]
    if missing:
        raise UsageError(f"the following arguments are required: {', '.join(missing)} (or --resume RUN_ID, or --run-id RUN_ID)")
    backbone_options = {}
    if args.backbone_option:
        known = backbone_spec(args.backbone).options
        for name, value in args.backbone_option:
            if name not in known:
                raise ConfigError(f"{args.backbone} has no option {name!r} (options: {', '.join(known) or 'none'}).")
            backbone_options[name] = _option_value(value)
    values: dict[str, Any] = {
        "method": args.method.lower(),
        "backbone": args.backbone,
        "method_config": dict(args.set or []),  # build_config checks names and types
        "backbone_options": backbone_options,
        "epochs": args.epochs,
        "steps": args.steps,
    }
    for name in ("batch_size", "lr", "image_size", "device", "seed", "checkpoint_every", "optimizer",
                 "weight_decay", "warmup_epochs", "log_every", "max_grad_norm"):
        value = getattr(args, name)
        if value is not None:
            values[name] = value
    if args.pretrained:
        values["pretrained"] = True
    if args.no_amp:
        values["amp"] = False
    if args.compile:
        values["compile"] = True
    return TrainConfig(**values)


def _fmt_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


class ProgressPrinter:
    """Engine callbacks that write a line to stderr per metrics window (TrainConfig.log_every)."""

    def __init__(self, project, run_id: int):
        self.project = project
        self.run_id = run_id
        self.total = 0
        self.start_step = 0
        self.started = time.perf_counter()
        self.last: dict[str, float] = {}

    def on_start(self, info) -> None:
        self.total, self.start_step = info.total_steps, info.start_step
        self.started = time.perf_counter()
        amp = f", mixed precision {info.amp}" if info.amp else ""
        say(f"run {self.run_id}: {info.images} images, batch {info.batch_size}, {info.total_steps} steps "
            f"({info.steps_per_epoch} per epoch) on {info.device_name}{amp}; "
            f"{info.parameters / 1e6:.1f} M encoder parameters, features of {info.feature_dim}")
        if info.start_step:
            say(f"resuming at step {info.start_step}/{info.total_steps}")

    def on_metrics(self, step: int, epoch: float, metrics: dict[str, float]) -> None:
        if "images_per_s" not in metrics:
            self.last.update(metrics)
            return
        # The Trainer reports throughput once per window, right after that window's points.
        rate = metrics["images_per_s"]
        done = step - self.start_step
        elapsed = time.perf_counter() - self.started
        eta = elapsed / done * (self.total - step) if done > 0 else 0.0
        parts = [f"step {step}/{self.total}", f"epoch {epoch:.2f}"]
        if "loss" in self.last:
            parts.append(f"loss {self.last['loss']:.4f}")
        if "lr" in self.last:
            parts.append(f"lr {self.last['lr']:.3g}")
        parts += [f"{rate:.1f} images/s", f"eta {_fmt_eta(eta)}"]
        say("  ".join(parts))

    def on_checkpoint(self, path: str, step: int, epoch: float) -> None:
        say(f"checkpoint at step {step}: {self.project.rel(path)}")

    def on_status(self, status: str, reason: str | None = None) -> None:
        if status == "paused":
            say("paused")

    def on_log(self, message: str, level: str = "info") -> None:
        if level in ("warning", "error"):
            return say(f"{level}: {message}")
        say(message)

    def on_end(self, result) -> None: ...


@contextmanager
def stop_on_signals(control) -> Iterator[None]:
    """Ctrl-C / SIGTERM ask the run to stop between steps; a second Ctrl-C aborts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if control.stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        say("stopping after this step and writing a checkpoint (Ctrl-C again to abort)")
        control.stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def queued_run(project, run_id: int):
    """A stored run that has not started yet (created by the GUI, or another script), for --run-id."""
    from studio.engine.errors import ConfigError

    run = project.run(run_id)
    if run.status != "queued":
        hint = (" Continue it with --resume instead." if run.status in ("stopped", "interrupted")
                else " Start a new run instead.")
        raise ConfigError(f"run {run_id} is {run.status}; --run-id trains a run that has not started yet (queued).{hint}")
    return run


def _train(args: argparse.Namespace) -> int:
    from studio.engine.train import TrainingControl
    from studio.services.training import check_resumable, create_run, execute_run
    from studio.store import Project

    resume = args.resume is not None
    stored = getattr(args, "run_id", None) is not None
    if resume and stored:
        raise UsageError("--run-id and --resume cannot be combined: --run-id starts a queued run, --resume continues one")
    if resume or stored:
        given = [f"--{n.replace('_', '-')}" for n in _RUN_SETTINGS if getattr(args, n) not in (None, False, [])]
        if given:
            raise UsageError(f"{', '.join(given)} cannot be changed on {'--resume' if resume else '--run-id'}: "
                             "the run keeps its own settings")

    from studio.engine.train.distributed import torchrun_env

    env = torchrun_env()
    if env is not None:
        return _train_distributed(args, env)
    if getattr(args, "gpus", None) and args.gpus > 1:
        return _launch_gpus(args)

    with Project.open(args.project) as project:
        if resume or stored:
            run = check_resumable(project, args.resume) if resume else queued_run(project, args.run_id)
            if args.device is not None and args.device != run.config.get("device"):
                project.update_run(run.id, config={**run.config, "device": args.device})
            if args.log_every is not None:
                project.update_run(run.id, config={**project.run(run.id).config, "log_every": args.log_every})
        else:
            run = create_run(project, args.dataset, config_from_args(args))
            say(f"run {run.id}: {run.method} on {run.backbone}, dataset {run.dataset!r}")

        def decoding(done: int, total: int) -> None:
            if done == total or done % 4096 == 0:
                say(f"preparing images {done}/{total}")

        control = TrainingControl()
        printer = ProgressPrinter(project, run.id)
        with stop_on_signals(control):
            result = execute_run(project, run.id, control=control, callbacks=[printer], resume=resume, progress=decoding)

        checkpoint = project.rel(result.checkpoint) if result.checkpoint else None
    return report_result(args, run.id, result, checkpoint, f"ssl-studio train {args.project} --resume {run.id}")


def report_result(args: argparse.Namespace, run_id: int, result, checkpoint: str | None, resume_hint: str,
                  **extra: Any) -> int:
    """The end of `train`: the JSON object (or a human line) and the exit code."""
    payload = {
        "run_id": run_id,
        "status": result.status,
        "steps": result.steps,
        "epochs": result.epochs,
        "final_loss": result.final_loss,
        "images_per_s": round(result.images_per_s, 1) if result.images_per_s is not None else None,
        "checkpoint": checkpoint,
        "reason": result.reason,
        **extra,
    }
    if args.json:
        emit_json(payload)
    if result.status in ("failed", "diverged"):
        print(f"error: run {run_id} {result.status}: {result.reason}", file=sys.stderr)
        return 1
    if not args.json:
        loss = f", final loss {result.final_loss:.4f}" if result.final_loss is not None else ""
        say(f"run {run_id} {result.status} at step {result.steps}{loss}; checkpoint {checkpoint}")
        if result.status == "stopped":
            say(f"continue it with: {resume_hint}")
    return 0


def run_json(project, run) -> dict[str, Any]:
    return {
        "id": run.id,
        "method": run.method,
        "backbone": run.backbone,
        "dataset": run.dataset,
        "status": run.status,
        "steps": run.steps,
        "total_steps": run.total_steps,
        "epochs": run.epochs,
        "final_loss": run.final_loss,
        "images_per_s": run.images_per_s,
        "reason": run.reason,
        "device": run.device,
        "created_at": run.created_at.isoformat(timespec="seconds") if run.created_at else None,
        "checkpoints": [ck.path for ck in project.checkpoints(run.id)],
    }


def _runs(args: argparse.Namespace) -> int:
    from studio.store import Project

    with Project.open(args.project) as project:
        rows = [run_json(project, r) for r in project.runs()]
    if args.json:
        emit_json({"runs": rows})
        return 0
    if not rows:
        say("no runs yet; start one with 'ssl-studio train'")
        return 0
    print(f"{'id':>4}  {'status':<11} {'method':<10} {'backbone':<12} {'dataset':<14} {'steps':>13}  final loss")
    for r in rows:
        steps = f"{r['steps']}/{r['total_steps']}"
        loss = f"{r['final_loss']:.4f}" if r["final_loss"] is not None else "-"
        print(f"{r['id']:>4}  {r['status']:<11} {r['method']:<10} {r['backbone']:<12} {r['dataset']:<14} {steps:>13}  {loss}")
    return 0


def _metrics(args: argparse.Namespace) -> int:
    from studio.store import Project

    with Project.open(args.project) as project:
        project.run(args.run_id)  # a clear error for an unknown run
        raw = project.metric_series(args.run_id)
    series: dict[str, list[list[float]]] = {}
    for name in raw.names():
        pairs = sorted(zip(raw.steps[name], raw.values[name]), key=lambda p: p[0])
        series[name] = [[int(s), float(v)] for s, v in pairs]
    if args.json:
        emit_json({"run_id": args.run_id, "series": series})
    elif args.csv:
        # One row per step, one column per metric: what a spreadsheet wants.
        names = sorted(series)
        by_step: dict[int, dict[str, float]] = {}
        for name in names:
            for step, value in series[name]:
                by_step.setdefault(step, {})[name] = value
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(["step", *names])
        for step in sorted(by_step):
            out.writerow([step, *(repr(by_step[step][n]) if n in by_step[step] else "" for n in names)])
    else:
        if not series:
            say(f"run {args.run_id} has no metric points yet")
        for name, points in series.items():
            values = [v for _, v in points]
            print(f"{name:<16} {len(points):>6} points  first {values[0]:.6g}  last {values[-1]:.6g} (step {points[-1][0]})"
                  f"  min {min(values):.6g}  max {max(values):.6g}")
    return 0


def register(sub) -> None:
    t = sub.add_parser("train", help="train a method on a dataset (or --resume a run)",
                       description="Train a self-supervised method on one of the project's datasets.")
    t.add_argument("project")
    t.add_argument("--dataset", help="dataset name (see 'dataset list')")
    t.add_argument("--method", help="pretext method (see 'methods')")
    t.add_argument("--backbone", help="encoder (see 'backbones')")
    length = t.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=_positive_int, help="passes over the dataset (default 100)")
    length.add_argument("--steps", type=_positive_int, help="optimiser steps instead of epochs")
    t.add_argument("--batch-size", type=_positive_int)
    t.add_argument("--lr", type=float, help="base learning rate (default: the method's, scaled by batch/256)")
    t.add_argument("--image-size", type=_positive_int, help="side of the training images in px (default 32)")
    t.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), help="default auto: CUDA, then MPS, then CPU")
    t.add_argument("--set", action="append", type=_key_value, metavar="FIELD=VALUE",
                   help="a field of the method's config (see 'methods'); repeat for several")
    t.add_argument("--backbone-option", action="append", type=_key_value, metavar="NAME=VALUE",
                   help="a backbone option, e.g. num_layers=4 or patch_size=4 for ViTs")
    t.add_argument("--checkpoint-every", type=int, metavar="STEPS", help="also checkpoint every STEPS steps")
    t.add_argument("--seed", type=int)
    t.add_argument("--optimizer", choices=("sgd", "adamw", "lars"), help="default: the method's")
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--warmup-epochs", type=float, help="linear warm-up before the cosine decay (at most a tenth of the run)")
    t.add_argument("--max-grad-norm", type=float, help="clip gradients to this norm")
    t.add_argument("--pretrained", action="store_true", help="start from ImageNet weights where they exist")
    t.add_argument("--no-amp", action="store_true", help="train in float32 even where mixed precision is available")
    t.add_argument("--compile", action="store_true", help="torch.compile the model")
    t.add_argument("--log-every", type=_positive_int, metavar="STEPS", help="steps between progress lines and metric points (default 10)")
    t.add_argument("--resume", type=int, metavar="RUN_ID", help="continue a stopped or interrupted run from its latest checkpoint")
    t.add_argument("--run-id", type=int, metavar="RUN_ID",
                   help="train a run already stored in the project and not started yet (queued), with its own settings "
                        "(the GUI starts its multi-GPU runs this way)")
    t.add_argument("--json", action="store_true", help="print the result as one JSON object")
    t.add_argument("--gpus", type=_positive_int, metavar="N",
                   help="data-parallel training on N GPUs of this machine (starts torchrun; "
                        "--batch-size is the global batch); with --device cpu, N processes on the CPU")
    t.set_defaults(func=_train)
    global _TRAIN_PARSER
    _TRAIN_PARSER = t

    r = sub.add_parser("runs", help="list the project's runs")
    r.add_argument("project")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=_runs)

    m = sub.add_parser("metrics", help="a run's metric series (loss, lr, ...)")
    m.add_argument("project")
    m.add_argument("run_id", type=int, metavar="RUN_ID")
    fmt = m.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true", help="one row per step, one column per metric")
    m.set_defaults(func=_metrics)


# -- many GPUs (torchrun) ---------------------------------------------------------------------
_TRAIN_PARSER: argparse.ArgumentParser | None = None


def _forwarded_args(args: argparse.Namespace) -> list[str]:
    """The `train` command line again, without --gpus: what each torchrun process runs."""
    assert _TRAIN_PARSER is not None
    out = ["train"]
    for action in _TRAIN_PARSER._actions:
        dest = action.dest
        if dest in ("help", "gpus") or not hasattr(args, dest):
            continue
        value = getattr(args, dest)
        if not action.option_strings:
            out.append(str(value))
            continue
        flag = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            if value:
                out.append(flag)
        elif isinstance(action, argparse._AppendAction):
            for item in value or []:
                out += [flag, "=".join(map(str, item)) if isinstance(item, tuple) else str(item)]
        elif value is not None:
            out += [flag, str(value)]
    return out


def _launch_gpus(args: argparse.Namespace) -> int:
    from studio.services.distributed import check_gpus, launch_torchrun

    check_gpus(args.gpus, args.device)
    say(f"starting {args.gpus} processes with torchrun ({'CPU, gloo' if args.device == 'cpu' else 'one per GPU, NCCL'})")
    code = launch_torchrun(args.gpus, _forwarded_args(args))
    return 0 if code == 0 else 1


def _train_distributed(args: argparse.Namespace, env) -> int:
    """One of the processes torchrun started: rank 0 records the run and prints; the others train."""
    from studio.engine.train import TrainingControl
    from studio.engine.train.distributed import init_distributed, shutdown_distributed
    from studio.services.distributed import PeerFailed, train_distributed
    from studio.services.training import check_resumable, create_run

    resume = args.resume is not None
    stored = getattr(args, "run_id", None) is not None
    ctx = init_distributed(env, args.device)

    def prepare(project):
        if resume or stored:
            run = check_resumable(project, args.resume) if resume else queued_run(project, args.run_id)
            if args.log_every is not None:
                project.update_run(run.id, config={**run.config, "log_every": args.log_every})
                run = project.run(run.id)
            if stored:
                say(f"run {run.id}: {run.method} on {run.backbone}, dataset {run.dataset!r}, "
                    f"{ctx.world_size} processes ({ctx.backend}), global batch {run.config.get('batch_size')}")
            return run
        run = create_run(project, args.dataset, config_from_args(args))
        say(f"run {run.id}: {run.method} on {run.backbone}, dataset {run.dataset!r}, "
            f"{ctx.world_size} processes ({ctx.backend}), global batch {run.config.get('batch_size')}")
        return run

    def decoding(done: int, total: int) -> None:
        if done == total or done % 4096 == 0:
            say(f"preparing images {done}/{total}")

    control = TrainingControl()
    try:
        with stop_on_signals(control):
            outcome = train_distributed(
                ctx, args.project, prepare, resume=resume, control=control, progress=decoding,
                callbacks_factory=lambda project, run: [ProgressPrinter(project, run.id)],
            )
    except PeerFailed:
        return 1  # rank 0 prints the reason
    finally:
        shutdown_distributed()
    result = outcome.result
    if not ctx.is_main:
        return 1 if result.status in ("failed", "diverged") else 0
    return report_result(args, outcome.run_id, result, outcome.checkpoint,
                         f"torchrun ... -m studio train {args.project} --resume {outcome.run_id}",
                         processes=ctx.world_size)
