"""train (runs, metrics and label: cli.runs; the queue: cli.queue; many GPUs: cli.train_gpus).

Progress goes to standard error; with --json the one result object goes to standard output.
Ctrl-C (SIGINT) or SIGTERM stop a run cleanly between two steps, with a checkpoint, as 'stopped';
a second Ctrl-C gives up at once (the run is then found 'interrupted' on the next open).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from studio.cli import UsageError, emit_json, say, whole_number
from studio.status import RunStatus


def _rel(root: Path, path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)

# The run's own settings (TrainConfig's basic and advanced fields) become options generated from
# their descriptions; these are named by hand because they are not plain fields.
_STRUCTURE_OPTIONS = ("dataset", "method", "objective", "backbone", "set", "backbone_option", "pretrained", "init_from",
                      "lock_image")


def _key_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _objective(text: str) -> tuple[str, float | None]:
    from studio.engine.errors import ConfigError
    from studio.engine.methods.combined import parse_objective

    try:
        return parse_objective(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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


def config_options():
    """TrainConfig's fields that are plain options (`--batch-size`, `--no-amp`, ...)."""
    from studio.engine.train import TrainConfig

    return [f for f in TrainConfig.fields() if f.group != "structure"]


def flag_of(setting: str | None) -> str | None:
    """The option that sets a TrainConfig field, for error messages (`batch_size` -> `--batch-size`)."""
    from studio.engine.train import TrainConfig

    for f in TrainConfig.fields():
        if f.name == setting:
            return f.flag
    return None


def _add_config_option(parser: argparse.ArgumentParser, info) -> None:
    """One generated option: text in, checked against the field's description by TrainConfig."""
    unit = f" ({info.unit})" if info.unit else ""
    default = info.none if info.default is None and info.none else info.default
    helptext = f"{info.help}{unit}; default {default}"
    if info.type == "bool" and not info.optional:
        # --compile turns a default-off switch on; --no-amp a default-on one off.
        parser.add_argument(info.flag, dest=info.name, action="store_const", const=not info.default, default=None,
                            help=info.help)
        return
    metavar = "|".join(map(str, info.choices)) if info.choices else info.type.upper().replace("STR", "TEXT")
    if info.optional and info.type == "bool":
        metavar = "auto|true|false"
    parser.add_argument(info.flag, dest=info.name, metavar=metavar, default=None, help=helptext)


def config_from_args(args: argparse.Namespace):
    """The TrainConfig the options describe; anything not given keeps TrainConfig's default.
    Values arrive as text and are checked against each field's description."""
    from studio.engine.backbones import backbone_spec
    from studio.engine.errors import ConfigError
    from studio.engine.settings import parse_value
    from studio.engine.train import TrainConfig

    from studio.engine.methods.combined import objectives_setting

    missing = [f"--{name}" for name in ("dataset", "backbone") if getattr(args, name) is None]
    if args.method is None and not args.objective:
        missing.insert(1, "--method (or --objective)")
    if missing:
        raise UsageError(f"the following arguments are required: {', '.join(missing)} (or --resume RUN_ID, or --run-id RUN_ID)")
    backbone_options = {}
    if args.backbone_option:
        known = backbone_spec(args.backbone).options
        for name, value in args.backbone_option:
            if name not in known:
                raise ConfigError(f"{args.backbone} has no option {name!r} (options: {', '.join(known) or 'none'}).")
            backbone_options[name] = _option_value(value)
    # METHOD.FIELD settings name an objective's field; build_config checks names and types.
    method, method_config = objectives_setting(args.objective or [], dict(args.set or []), args.method)
    values: dict[str, Any] = {
        "method": method,
        "backbone": args.backbone,
        "method_config": method_config,
        "backbone_options": backbone_options,
    }
    if args.pretrained:
        values["pretrained"] = True
    if getattr(args, "lock_image", False):
        values["method_config"]["lock_image"] = "true"
    values.update(_given_settings(args))
    config = TrainConfig(**{k: (parse_value(_info(k), v) if k in _option_names() else v) for k, v in values.items()})
    if getattr(args, "init_from", None) is None:
        return config
    from studio.services.training import image_encoder_from
    from studio.store import Project

    with Project.open(args.project) as project:
        return image_encoder_from(project, config, *args.init_from)


def _option_names() -> set[str]:
    return {f.name for f in config_options()}


def _info(name: str):
    return next(f for f in config_options() if f.name == name)


def _given_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {f.name: getattr(args, f.name) for f in config_options() if getattr(args, f.name, None) is not None}


def _fmt_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


RESUMED_PREFIX = "resumed at step "  # the Trainer's line in the run's log


class ProgressPrinter:
    """Engine callbacks that write a line to stderr per metrics window (TrainConfig.log_every)."""

    def __init__(self, project_root, run_id: int | None = None):
        self.root = Path(project_root)
        self.run_id = run_id
        self.total = 0
        self.start_step = 0
        self.started = time.perf_counter()
        self.last: dict[str, float] = {}

    def on_start(self, info) -> None:
        self.total, self.start_step = info.total_steps, info.start_step
        self.started = time.perf_counter()
        amp = f", mixed precision {info.amp}" if info.amp else ""
        say(f"{'run ' + str(self.run_id) + ': ' if self.run_id else ''}{info.images} images, batch {info.batch_size}, {info.total_steps} steps "
            f"({info.steps_per_epoch} per epoch) on {info.device_name}{amp}; "
            f"{info.parameters / 1e6:.1f} M encoder parameters, features of {info.feature_dim}")

    def on_metrics(self, step: int, epoch: float, metrics: dict[str, float]) -> None:
        if "images_per_s" not in metrics:
            self.last.update(metrics)
            return
        # The Trainer reports throughput once per window, right after that window's points.
        rate = metrics["images_per_s"]
        done = step - self.start_step
        elapsed = time.perf_counter() - self.started
        # The engine's ETA counts the monitor checks left; the wall-clock one is the fallback.
        eta = metrics.get("eta_s", elapsed / done * (self.total - step) if done > 0 else 0.0)
        parts = [f"step {step}/{self.total}", f"epoch {epoch:.2f}"]
        if "loss" in self.last:
            parts.append(f"loss {self.last['loss']:.4f}")
        if "lr" in self.last:
            parts.append(f"lr {self.last['lr']:.3g}")
        parts += [f"{rate:.1f} images/s", f"eta {_fmt_eta(eta)}"]
        say("  ".join(parts))

    def on_checkpoint(self, path: str, step: int, epoch: float) -> None:
        say(f"checkpoint at step {step}: {_rel(self.root, path)}")

    def on_status(self, status: str, reason: str | None = None) -> None:
        held, self.held_error = getattr(self, "held_error", None), None
        if held and held != reason:
            say(f"error: {held}")
        if status == RunStatus.PAUSED:
            say("paused")

    def on_log(self, message: str, level: str = "info") -> None:
        if message.startswith(RESUMED_PREFIX):
            return  # said already, with the step, as the run started (services.training.describe_start)
        if level == "error":
            # Held until the status that follows: the run's ending reason is said once, by the
            # result line, not also here.
            self.held_error = message
            return
        if level == "warning":
            return say(f"{level}: {message}")
        say(message)

    def on_end(self, result) -> None: ...


@contextmanager
def stop_on_signals(control) -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP (the terminal closed) ask the run to stop between steps, with a
    checkpoint; a second Ctrl-C aborts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if control.stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not control.stop_requested:
            try:
                say("stopping after this step and writing a checkpoint (Ctrl-C again to abort)")
            except OSError:  # the terminal is gone (SIGHUP): stop all the same
                pass
        control.stop()

    signals = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _branch_point(text: str) -> tuple[int, int | None]:
    run, _, step = text.partition("@")
    try:
        return int(run), (int(step) if step else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected RUN_ID or RUN_ID@STEP, got {text!r}") from None


def _branch(args: argparse.Namespace) -> dict[str, Any]:
    """--branch: a new run continuing a stored one from a checkpoint with the given changes
    (services.branch), then resumed like any stopped run."""
    from studio.services.branch import branch_run, suggested_branch
    from studio.store import Project

    run_id, step = args.branch
    for name in ("dataset", "method", "objective", "backbone", "backbone_option", "pretrained", "budget", "resume",
                 "run_id", "gpus"):
        if getattr(args, name, None) not in (None, False, []):
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} cannot be given with --branch: the new run continues run {run_id} as it is, "
                             "with only the settings given changed")
    from studio.engine.settings import parse_value

    changes: dict[str, Any] = {k: parse_value(_info(k), v) for k, v in _given_settings(args).items()}
    if args.set:
        changes["method_config"] = dict(args.set)
    why = ""
    with Project.open(args.project) as project:
        if args.suggested:
            suggested = suggested_branch(project, run_id)
            if suggested is None:
                raise UsageError(f"run {run_id} did not collapse (or its method cannot), so there is no suggested change; "
                                 "give the settings to change instead")
            own, why = suggested
            changes = {**own, **changes}
            why = f"the health monitor's suggestion: {why}"
        new = branch_run(project, run_id, changes, step, why=why)
        say(f"run {new.id}: {new.reason}")
    return {"resume": new.id}


def _request(args: argparse.Namespace) -> dict[str, Any]:
    """What `prepare_run` is asked for: a new run from the options, or a stored one to continue
    (`--resume`) or start (`--run-id`), given only the settings a stored run may take anew."""
    if getattr(args, "branch", None) is not None:
        return _branch(args)
    if getattr(args, "suggested", False):
        raise UsageError("--suggested goes with --branch RUN_ID")
    resume, stored = args.resume is not None, args.run_id is not None
    if resume and stored:
        raise UsageError("--run-id and --resume cannot be combined: --run-id starts a queued run, --resume continues one")
    if not (resume or stored):
        config = config_from_args(args)
        if getattr(args, "budget", None):
            config = _sized(args, config)
        return {"new": (args.dataset, config)}
    overrides = stored_overrides(args, "--resume" if resume else "--run-id")
    if resume:
        return {"resume": args.resume, "overrides": overrides}
    return {"queued": args.run_id, "overrides": overrides}


def stored_overrides(args: argparse.Namespace, flag: str) -> dict[str, Any]:
    """The settings a stored run may take anew on `flag` (services.training.RUNTIME_SETTINGS);
    any other setting given is refused: the run keeps its own."""
    from studio.services.training import RUNTIME_SETTINGS

    if getattr(args, "budget", None):
        raise UsageError(f"--budget sizes a new run; {flag} keeps the run's own length")
    given = [n for n in _STRUCTURE_OPTIONS if getattr(args, n) not in (None, False, [])]
    given += [n for n in _given_settings(args) if n not in RUNTIME_SETTINGS]
    if given:
        flags = [flag_of(n) or f"--{n.replace('_', '-')}" for n in given]
        raise UsageError(f"{', '.join(flags)} cannot be changed on {flag}: the run keeps its own settings")
    return {n: v for n, v in _given_settings(args).items() if n in RUNTIME_SETTINGS}


def _sized(args: argparse.Namespace, config):
    """The config sized to --budget (services.budget), the reasons said on stderr."""
    from studio.services.budget import BUDGETS, SIZED, size_for_dataset

    sized = size_for_dataset(args.project, args.dataset, config, args.budget, keep=set(_given_settings(args)) & set(SIZED))
    for reason in sized.reasons:
        say(f"budget {BUDGETS[args.budget][0]}: {reason}")
    return sized.config


def _decoding(done: int, total: int) -> None:
    if done == total or done % 4096 == 0:
        say(f"preparing images {done}/{total}")


def _announce(prepared, processes: int = 1, backend: str = "") -> None:
    from studio.services.training import describe_start

    for line in describe_start(prepared, processes, backend):
        say(line)


def _train(args: argparse.Namespace) -> int:
    from studio.engine.train import TrainingControl
    from studio.engine.train.distributed import torchrun_env
    from studio.services.training import prepare_run
    from studio.store import Project

    if args.queue or args.from_queue:
        from studio.cli import queue

        return queue.train_from_queue(args) if args.from_queue else queue.queue_run(args)
    request = _request(args)
    env = torchrun_env()
    if env is not None:
        from studio.cli import train_gpus

        return train_gpus.train_rank(args, env, request)
    if args.gpus and args.gpus > 1:
        from studio.cli import train_gpus

        return train_gpus.launch_gpus(args, request)

    with Project.open(args.project) as project:
        try:
            prepared = prepare_run(project, **request)
        except Exception as exc:
            _report_disk_full(args, None, exc)
            raise
        _announce(prepared)
        control = TrainingControl()
        with stop_on_signals(control):
            return train_prepared(args, project, prepared, control)


def train_prepared(args: argparse.Namespace, project, prepared, control, results: list | None = None) -> int:
    """Train a prepared run in this process and report its result as `train` does (`results`:
    collect the JSON objects instead of printing them); the exit code."""
    from studio.services.training import execute_run

    run = prepared.run
    try:
        printer = ProgressPrinter(project.root, run.id)
        result = execute_run(project, run.id, control=control, callbacks=[printer], resume=prepared.resume,
                             checkpoint_step=prepared.checkpoint_step, progress=_decoding)
        checkpoint = project.rel(result.checkpoint) if result.checkpoint else None
    except Exception as exc:
        _report_disk_full(args, run.id, exc, results)
        raise
    return report_result(args, run.id, result, checkpoint, f"ssl-studio train {args.project} --resume {run.id}",
                         results=results)


def _report_disk_full(args: argparse.Namespace, run_id: int | None, exc: BaseException, results: list | None = None) -> None:
    """A full disk before the run's result exists: --json still prints its one object, and the
    error is said in the studio's words rather than SQLite's."""
    from studio.engine.errors import DiskFullError
    from studio.engine.train.checkpoint import is_disk_full
    from studio.services.training import DISK_FULL

    if not is_disk_full(exc):
        return
    payload = {"run_id": run_id, "status": RunStatus.FAILED.value, "steps": None, "epochs": None,
               "final_loss": None, "images_per_s": None, "checkpoint": None, "reason": DISK_FULL}
    if results is not None:
        results.append(payload)
    elif args.json:
        emit_json(payload)
    raise DiskFullError(DISK_FULL) from exc


def report_result(args: argparse.Namespace, run_id: int, result, checkpoint: str | None, resume_hint: str,
                  results: list | None = None, **extra: Any) -> int:
    """The end of `train`: the JSON object (or a human line) and the exit code. With `results`,
    the object is added there (one command, several runs) instead of printed."""
    payload = {
        "run_id": run_id,
        "status": result.status,
        "steps": result.steps,
        # Epochs as done, not whole ones: 9 steps of 112 an epoch are 0.08 epochs, not 0.
        "epochs": round(result.epochs_done, 2) if getattr(result, "epochs_done", None) is not None else result.epochs,
        "final_loss": result.final_loss,
        "images_per_s": round(result.images_per_s, 1) if result.images_per_s is not None else None,
        "checkpoint": checkpoint,
        "reason": result.reason,
        **extra,
    }
    if results is not None:
        results.append(payload)
    elif args.json:
        emit_json(payload)
    from studio.cli import printable

    if RunStatus.of(result.status).is_error:
        print(printable(f"error: run {run_id} {result.status}: {result.reason}"), file=sys.stderr)
        return 1
    if not args.json:
        from studio.engine.train.callbacks import final_loss_meaning

        loss = (f", final loss {result.final_loss:.4f} ({final_loss_meaning(getattr(args, 'log_every', None))})"
                if result.final_loss is not None else "")
        # The result is the command's output (stdout); progress and hints are stderr's.
        print(printable(f"run {run_id} {result.status} at step {result.steps}{loss}; checkpoint {checkpoint}"))
        if result.status == RunStatus.STOPPED:
            say(f"continue it with: {resume_hint}")
    return 0


def register(sub) -> None:
    t = sub.add_parser("train", help="train a method on a dataset (or --resume a run)",
                       description="Train a self-supervised method on one of the project's datasets. "
                                   "Every setting below is checked against its bounds before a run is stored.")
    t.add_argument("project")
    t.add_argument("--dataset", help="dataset name (see 'dataset list')")
    t.add_argument("--method", help="pretext method (see 'methods'); several joined by + train together on one "
                                    "backbone (simclr+mae)")
    t.add_argument("--backbone", help="encoder (see 'backbones')")
    t.add_argument("--objective", action="append", type=_objective, metavar="METHOD[:WEIGHT]",
                   help="an objective of a combined run, with its loss's weight (default 1); repeat for several, "
                        "all on one backbone (--method, if given, is the first)")
    t.add_argument("--set", action="append", type=_key_value, metavar="FIELD=VALUE",
                   help="a field of the method's config (see 'methods'), or METHOD.FIELD=VALUE for one objective's; "
                        "repeat for several")
    t.add_argument("--backbone-option", action="append", type=_key_value, metavar="NAME=VALUE",
                   help="a backbone option, e.g. num_layers=4 or patch_size=4 for ViTs, small_stem=true for CNNs")
    t.add_argument("--pretrained", action="store_true", help="start from ImageNet weights where they exist")
    t.add_argument("--init-from", type=_branch_point, metavar="RUN_ID[@STEP]",
                   help="start the image encoder from another run's checkpoint (its newest, or the one at STEP), "
                        "trained by any method on the same backbone and image size: LiT for --method clip")
    t.add_argument("--lock-image", action="store_true",
                   help="with --init-from and --method clip: keep the image encoder locked, train the text side only")
    basic = t.add_argument_group("training settings")
    advanced = t.add_argument_group("advanced settings")
    length = basic.add_mutually_exclusive_group()  # a run's length is one or the other
    for info in config_options():
        group = length if info.name in ("epochs", "steps") else basic if info.group == "basic" else advanced
        _add_config_option(group, info)
    from studio.services.budget import BUDGETS

    basic.add_argument("--budget", choices=list(BUDGETS), metavar="|".join(BUDGETS),
                       help="size the run to the time you have (" + ", ".join(f"{k}: {v[0]}" for k, v in BUDGETS.items())
                            + "): batch size, image size and length chosen for the device and dataset from a few "
                              "measured steps; the ones you give stay yours")
    t.add_argument("--resume", type=int, metavar="RUN_ID", help="continue a stopped, interrupted, failed or diverged "
                   "run from its latest checkpoint")
    t.add_argument("--branch", type=_branch_point, metavar="RUN_ID[@STEP]",
                   help="continue a run as a new run from its checkpoint at STEP (default: its last one before the "
                        "health monitor saw a collapse, else its newest) with the settings given here changed (--set, "
                        "--lr, ...); the first run stays as it was")
    t.add_argument("--suggested", action="store_true",
                   help="with --branch: the change the health monitor suggests for a collapsed run")
    t.add_argument("--run-id", type=int, metavar="RUN_ID",
                   help="train a run already stored in the project and not started yet (queued), with its own settings "
                        "(the GUI starts its multi-GPU runs this way)")
    queue = t.add_mutually_exclusive_group()
    queue.add_argument("--queue", action="store_true",
                       help="store the new run at the end of the project's queue instead of training it now")
    queue.add_argument("--from-queue", action="store_true",
                       help="train the queue's runs one after another, each with its own settings, until it is empty "
                            "(Ctrl-C stops the run under way with a checkpoint; the rest stay queued)")
    t.add_argument("--json", action="store_true", help="print the result as one JSON object")
    t.add_argument("--gpus", type=whole_number("--gpus"), metavar="N",
                   help="data-parallel training on N GPUs of this machine (starts torchrun; "
                        "--batch-size is the global batch); with --device cpu, N processes on the CPU")
    t.set_defaults(func=_train)
