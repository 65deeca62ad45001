"""Training loops: the resumable :class:`Trainer` and the paper schemes built on it."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .trainer import HISTORY_KEYS, TrainConfig, Trainer, seed_everything

__all__ = ["Trainer", "TrainConfig", "seed_everything", "save_checkpoint", "load_checkpoint",
           "CheckpointError", "HISTORY_KEYS"]
