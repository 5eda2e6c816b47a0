"""Training: the Trainer loop, its config, schedules, checkpoints and control."""

from studio.engine.train.callbacks import CallbackList, RunInfo, TrainingCallbacks, TrainResult
from studio.engine.train.checkpoint import load_checkpoint, load_encoder, save_checkpoint
from studio.engine.train.config import TrainConfig
from studio.engine.train.control import TrainingControl
from studio.engine.train.trainer import Trainer, build_method

__all__ = [
    "CallbackList",
    "RunInfo",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingCallbacks",
    "TrainingControl",
    "build_method",
    "load_checkpoint",
    "load_encoder",
    "save_checkpoint",
]
