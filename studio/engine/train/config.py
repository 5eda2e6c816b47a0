"""A training run's settings: what the New run form and `ssl-studio train` fill in.

Each field describes itself (help, bounds, group, label; `studio.engine.settings.option`): the
form's Training and Advanced sections and the CLI's options are generated from these, and
`validate` checks every field against its description, so a bound lives here once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from studio.engine.errors import ConfigError
from studio.engine.settings import check_fields, config_fields, option

OPTIMIZERS = ("sgd", "adamw", "lars")
DEVICES = ("auto", "cpu", "cuda", "mps")
DEFAULT_EPOCHS = 100  # when neither epochs nor steps is set
MAX_MONITOR_CHECKS = 50  # monitor_every 0 ("each epoch") checks at most this often in a run


@dataclass
class TrainConfig:
    method: str = option("simclr", "the pretext method (see the method list)", group="structure")
    backbone: str = option("resnet18", "the encoder to train (see the backbone list)", group="structure")
    method_config: dict[str, Any] = option({}, "the method's own settings; unset ones keep the paper's defaults",
                                           group="structure", label="method settings")
    backbone_options: dict[str, Any] = option({}, "the backbone's options, e.g. patch_size=4 for a ViT",
                                              group="structure", label="backbone options")
    pretrained: bool = option(False, "start from ImageNet weights where torchvision has them",
                              group="structure", label="ImageNet weights")
    init_from: str | None = option(None, "a checkpoint of another run whose image encoder this run starts from "
                                         "(LiT: SSL on the images, then align text); the project's path to it",
                                   group="structure", label="start the image encoder from", none="its initialisation")

    epochs: int | None = option(None, f"passes over the dataset (neither epochs nor steps: {DEFAULT_EPOCHS} epochs)",
                                min=1, max=100_000, label="epochs", none=f"{DEFAULT_EPOCHS}")
    steps: int | None = option(None, "optimiser steps, instead of epochs", min=1, max=100_000_000, label="steps",
                               none="from epochs")
    batch_size: int = option(256, "images per optimiser step (over all processes)", min=2, max=65_536,
                             label="batch size")
    lr: float | None = option(None, "base learning rate; unset: the method's, scaled by batch/256", min=1e-8, max=100.0,
                              label="learning rate", none="the method's")
    image_size: int = option(32, "side of the training images", min=8, max=1024, label="image size", unit="px")
    device: str = option("auto", "where to train; auto: CUDA, then Apple MPS, then the CPU", choices=DEVICES,
                         label="device")
    seed: int = option(0, "seed of the data order, the augmentations and the initial weights", min=0,
                       max=2**32 - 1, label="seed")

    optimizer: str | None = option(None, "the optimiser; unset: the method's", choices=OPTIMIZERS, group="advanced",
                                   label="optimizer", none="the method's")
    weight_decay: float | None = option(None, "weight decay; unset: the method's", min=0.0, max=10.0,
                                        group="advanced", label="weight decay", none="the method's")
    warmup_epochs: float = option(10.0, "linear learning-rate warm-up before the cosine decay; at most a tenth of "
                                        "the run", min=0.0, max=10_000.0, group="advanced", label="warm-up epochs")
    max_grad_norm: float | None = option(None, "clip gradients to this norm; unset: no clipping", min=1e-6,
                                         max=1e6, group="advanced", label="gradient clipping", none="off")
    amp: bool = option(True, "mixed precision where the device has it (CUDA, MPS)", group="advanced",
                       label="mixed precision", flag="--no-amp")
    channels_last: bool | None = option(None, "channels-last memory layout; unset: on for CNNs on CUDA",
                                        group="advanced", label="channels-last layout", none="auto")
    compile: bool = option(False, "torch.compile the model (slow to start, faster steps on GPUs)", group="advanced",
                           label="compile the model")
    checkpoint_every: int = option(0, "also checkpoint every this many steps; 0: by time only", min=0,
                                   max=100_000_000, group="advanced", label="checkpoint every", unit="steps")
    checkpoint_minutes: float = option(10.0, "checkpoint at least this often, and at least every twentieth of the "
                                             "run (the newest is kept, and the newest a health check found healthy "
                                             "until the run ends healthy); 0: by twentieths only",
                                       min=0.0, max=10_000.0,
                                       group="advanced", label="checkpoint minutes", unit="min")
    log_every: int = option(10, "steps between metric points (and progress lines)", min=1, max=100_000,
                            group="advanced", label="log every", unit="steps")
    monitor_every: int = option(0, f"steps between kNN and health checks; 0: each epoch (at most {MAX_MONITOR_CHECKS} "
                                   "checks a run); -1: never", min=-1,
                                max=100_000_000, group="advanced", label="monitor every", unit="steps")
    knn_k: int = option(200, "neighbours of the kNN monitor", min=1, max=10_000, group="advanced", label="kNN k")
    knn_temperature: float = option(0.1, "temperature of the kNN monitor's weighted vote", min=1e-4, max=10.0,
                                    group="advanced", label="kNN temperature")

    def validate(self) -> "TrainConfig":
        if self.epochs is not None and self.steps is not None:
            raise ConfigError("set either the number of epochs or of steps, not both.", setting="steps")
        check_fields(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The config as stored (runs, checkpoints): the method's settings whose default once
        changed the model's shape are written out, so a later change of default cannot change
        what this config builds."""
        data = dataclasses.asdict(self)
        method_cls, former = _former_defaults(self.method)
        if former:
            fields = method_cls.config_class.__dataclass_fields__
            data["method_config"] = {**{k: fields[k].default for k in former}, **data["method_config"]}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """A stored config; one written before a shape-changing default changed (it does not name
        the setting) keeps the former default (Method.former_defaults)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        _, former = _former_defaults(values.get("method", "simclr"))
        if former:
            values["method_config"] = {**former, **dict(values.get("method_config") or {})}
        return cls(**values)

    @classmethod
    def fields(cls):
        """Every field's description (`FieldInfo`), in form order."""
        return config_fields(cls)


def _former_defaults(method: str) -> tuple[type | None, dict[str, Any]]:
    from studio.engine.methods import find_method  # late: the methods import the settings module

    cls = find_method(str(method))
    return cls, dict(getattr(cls, "former_defaults", {}) or {})


def check_batch_split(batch_size: int, processes: int) -> None:
    """Data-parallel training splits the (global) batch evenly over its processes."""
    if processes > 1 and batch_size % processes:
        raise ConfigError(f"the batch size {batch_size} does not split evenly over {processes} processes: it is the "
                          f"batch of all of them together, so choose a multiple of {processes}.", setting="batch_size")
