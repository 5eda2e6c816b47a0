"""A training run's settings: what the GUI form and `ssl-studio train` fill in."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from studio.engine.errors import ConfigError

OPTIMIZERS = ("sgd", "adamw", "lars")


@dataclass
class TrainConfig:
    method: str = "simclr"
    backbone: str = "resnet18"
    method_config: dict[str, Any] = field(default_factory=dict)  # the method's fields, paper defaults elsewhere
    backbone_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"patch_size": 4}
    pretrained: bool = False  # start from ImageNet weights where torchvision has them
    epochs: int | None = None  # one of epochs or steps; neither: 100 epochs
    steps: int | None = None
    batch_size: int = 256
    lr: float | None = None  # None: the method's base lr x batch/256
    optimizer: str | None = None  # None: the method's
    weight_decay: float | None = None
    warmup_epochs: float = 10.0  # at most a tenth of the run
    image_size: int = 32
    device: str = "auto"
    amp: bool = True  # mixed precision where the device has it (CUDA, MPS)
    channels_last: bool | None = None  # None: on for CNNs on CUDA
    compile: bool = False  # torch.compile the model (slow to start, faster steps on GPUs)
    seed: int = 0
    checkpoint_every: int = 0  # steps; 0: at the end (and on stop) only
    log_every: int = 10  # steps between moves of the metrics off the device
    monitor_every: int = 0  # steps between kNN/health checks; 0: each epoch; -1: never
    knn_k: int = 200
    knn_temperature: float = 0.1
    max_grad_norm: float | None = None

    def validate(self) -> "TrainConfig":
        if self.epochs is not None and self.steps is not None:
            raise ConfigError("give --epochs or --steps, not both.")
        for name in ("epochs", "steps"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"{name} must be at least 1.")
        if self.batch_size < 2:
            raise ConfigError("the batch size must be at least 2 (two images make the smallest contrast).")
        if self.image_size < 8:
            raise ConfigError("the image size must be at least 8 px.")
        if self.lr is not None and not (self.lr > 0):
            raise ConfigError("the learning rate must be positive.")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}.")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
