"""Continue a run from one of its checkpoints as a new run with some settings changed.

The way out of a collapse: the health monitor says a run is collapsing, `engine.train.remedy`
says what to change, and the run goes on from its last checkpoint before the collapse with that
change, as a new run (the first one stays as it was, for comparison). The new run holds a copy of
the checkpoint with its own settings in it and the first run's points up to that step, and is
left stopped there: resuming it (`prepare_run(resume=...)`, the GUI's Resume) trains the rest.

Only settings that keep the model and its optimiser as they are can change: the learning rate,
weight decay, warm-up, clipping, the method's scalar settings (temperatures, momentum, loss
weights), the length. A setting that changes a layer's or a buffer's shape (a queue's size, a
head's width) or the optimiser needs a new run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from studio.engine.errors import CheckpointError, ConfigError
from studio.engine.train import TrainConfig
from studio.store import CheckpointRecord, Project, RunRecord

# What a continued run must share with the run it continues: what the weights and the optimiser
# state were made for.
FIXED = ("method", "backbone", "backbone_options", "image_size", "pretrained", "batch_size", "optimizer", "seed")


@dataclass(frozen=True)
class BranchPoint:
    """Where a run can be continued from: a checkpoint, and why that one."""

    checkpoint: CheckpointRecord
    why: str


def collapse_start(project: Project, run_id: int) -> int | None:
    """The first step at which the health monitor found the run collapsing, if it ever did."""
    from studio.engine.eval.health import COLLAPSE_METRIC_CUTOFF

    series = project.metric_series(run_id, ["collapse"])
    for step, value in zip(series.steps.get("collapse", []), series.values.get("collapse", [])):
        if value >= COLLAPSE_METRIC_CUTOFF:
            return step
    return None


def branch_point(project: Project, run: RunRecord, step: int | None = None) -> BranchPoint:
    """The checkpoint to continue `run` from: the one at `step`, else its newest from before the
    health monitor first saw a collapse, else its newest. Raises CheckpointError when none is on disk."""
    on_disk = [c for c in project.checkpoints(run.id) if project.abs(c.path).is_file()]
    if step is not None:
        chosen = [c for c in on_disk if c.step == step]
        if not chosen:
            raise CheckpointError(f"run {run.id} has no checkpoint at step {step} on disk.")
        return BranchPoint(chosen[-1], f"its checkpoint at step {step:,}")
    if not on_disk:
        raise CheckpointError(f"run {run.id} has no checkpoint on disk to continue from.")
    collapsed = collapse_start(project, run.id)
    if collapsed is None:
        ck = max(on_disk, key=lambda c: (c.step, c.id))
        return BranchPoint(ck, f"its newest checkpoint (step {ck.step:,})")
    before = [c for c in on_disk if c.step < collapsed]
    if not before:
        raise CheckpointError(f"run {run.id} collapsed at step {collapsed:,}, before its first checkpoint; start a new "
                              "run with the change instead.")
    ck = max(before, key=lambda c: (c.step, c.id))
    return BranchPoint(ck, f"its last checkpoint before the collapse at step {collapsed:,} (step {ck.step:,})")


def _shapes(config: TrainConfig) -> dict[str, tuple]:
    from studio.engine.train.trainer import build_method

    method = build_method(dataclasses.replace(config, pretrained=False))
    return {k: tuple(v.shape) for k, v in method.state_dict().items()}


def changed_config(run: RunRecord, changes: dict[str, Any]) -> TrainConfig:
    """The run's settings with `changes` (TrainConfig fields; method settings under
    "method_config", merged into the run's), checked: refused (ConfigError) where a change would
    not fit the checkpoint's weights or optimiser state."""
    from studio.engine.settings import field_info
    from studio.services.training import validate_config

    old = TrainConfig.from_dict(run.config)
    changes = dict(changes)
    fixed = sorted(n for n in changes if n in FIXED and changes[n] != getattr(old, n))
    if fixed:
        names = ", ".join(field_info(TrainConfig, n).label for n in fixed)
        raise ConfigError(f"{names} cannot change when a run continues from a checkpoint (the weights and the "
                          "optimiser were made for it); start a new run instead.", setting=fixed[0])
    if "method_config" in changes:
        from studio.engine.methods.combined import dotted_settings

        changes["method_config"] = {**old.method_config, **dotted_settings(old.method, changes["method_config"])}
    new = validate_config(dataclasses.replace(old, **changes))
    if new.to_dict() == old.to_dict():
        raise ConfigError("nothing changes: give at least one setting to change.")
    if new.method_config != old.method_config:
        before, after = _shapes(old), _shapes(new)
        if before != after:
            differ = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            names = ", ".join(k for k in new.method_config if new.method_config[k] != old.method_config.get(k))
            raise ConfigError(f"{names} changes the model's shape ({differ[0]}), so the checkpoint's weights do not fit "
                              "it; start a new run with it instead.")
    return new


def describe_changes(old: TrainConfig, new: TrainConfig) -> str:
    """'teacher_temp 0.07 → 0.04, learning rate 0.0005 → 0.00025' (unset values read as the method's)."""
    from studio.engine.backbones import backbone_spec
    from studio.engine.methods import build_config, method_class
    from studio.engine.settings import field_info
    from studio.engine.train.optim import resolve_optimizer

    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else ("the method's" if v is None else str(v))

    cls = method_class(old.method)
    mo, mn = build_config(cls.config_class, old.method_config), build_config(cls.config_class, new.method_config)
    parts = [f"{f.name} {fmt(getattr(mo, f.name))} → {fmt(getattr(mn, f.name))}"
             for f in cls.fields() if getattr(mo, f.name) != getattr(mn, f.name)]
    resolved = {}  # an unset learning rate or weight decay reads as what the run trains with
    for config in (old, new):
        _, lr, wd = resolve_optimizer(config, cls, backbone_spec(config.backbone).kind, config.batch_size)
        resolved[id(config)] = {"lr": lr, "weight_decay": wd}

    def value(config, name):
        v = getattr(config, name)
        return resolved[id(config)].get(name, v) if v is None else v

    for f in dataclasses.fields(TrainConfig):
        if f.name != "method_config" and getattr(old, f.name) != getattr(new, f.name):
            parts.append(f"{field_info(TrainConfig, f.name).label} {fmt(value(old, f.name))} → {fmt(value(new, f.name))}")
    return ", ".join(parts)


def branch_run(project: Project, run_id: int, changes: dict[str, Any], step: int | None = None,
               why: str = "") -> RunRecord:
    """A new run that continues `run_id` from `branch_point(step)` with `changes`, stopped there,
    ready to resume. Refused requests raise ConfigError/CheckpointError and change nothing."""
    from studio.engine.train.checkpoint import save_checkpoint
    from studio.services.runs import can_branch, verify_checkpoint

    run = project.run(run_id)
    can_branch(run).check()
    point = branch_point(project, run, step)
    new_config = changed_config(run, changes)
    state = verify_checkpoint(project, run, point.checkpoint)
    what = describe_changes(TrainConfig.from_dict(run.config), new_config)
    at = int(state["step"])
    from studio.engine.train.trainer import plan_steps

    _, _, total = plan_steps(new_config, project.dataset(run.dataset_id).images)
    if at >= total:
        raise ConfigError(f"the checkpoint at step {at:,} is already the end of a {total:,}-step run: give more steps "
                          "or epochs to continue it.", setting="steps")
    new = project.create_run(run.dataset_id, new_config.method, new_config.backbone, new_config.to_dict(),
                             total_steps=total, parent_run_id=run.id, parent_step=at)
    try:
        state = {**state, "config": new_config.to_dict(), "branched_from": {"run": run.id, "step": at}}
        path = save_checkpoint(project.run_dir(new.id) / f"from-run-{run.id}-step-{at}.ckpt", state)
        project.add_checkpoint(new.id, at, float(state.get("epoch", 0.0)), path)
        project.copy_metrics(run.id, new.id, at)
    except Exception:
        project.delete_run(new.id)
        raise
    message = f"continues run {run.id} from {point.why} with {what}" + (f" ({why})" if why else "")
    project.log(new.id, message)
    project.set_run_status(new.id, "stopped", message, steps=at, epochs=int(state.get("epoch", 0.0)))
    return project.run(new.id)


def can_branch_with_suggestion(project: Project, run: RunRecord, busy: bool = False):
    """The verdict of "continue with the suggested change": a run no process holds, that
    collapsed, of a method that can collapse, with a checkpoint from before the collapse."""
    from studio.engine.train.remedy import collapse_remedy
    from studio.services.runs import Verdict, can_branch

    verdict = can_branch(run, busy)
    if not verdict:
        return verdict
    collapsed = collapse_start(project, run.id)
    if collapsed is None:
        return Verdict(False, f"run {run.id} has not collapsed: there is no suggested change.")
    try:
        if collapse_remedy(TrainConfig.from_dict(run.config)) is None:
            return Verdict(False, f"{run.method} reconstructs pixels and does not collapse in this sense.")
        branch_point(project, run)
    except (CheckpointError, ConfigError) as exc:
        return Verdict(False, str(exc))
    return verdict


def suggested_branch(project: Project, run_id: int) -> tuple[dict[str, Any], str] | None:
    """The health monitor's suggested change for a run that collapsed, as `branch_run` changes
    and their words; None when the run never collapsed or its method cannot."""
    from studio.engine.train.remedy import collapse_remedy

    run = project.run(run_id)
    if collapse_start(project, run_id) is None:
        return None
    remedy = collapse_remedy(TrainConfig.from_dict(run.config))
    return None if remedy is None else (remedy.changes, remedy.text)
