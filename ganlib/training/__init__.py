"""Training loops: the resumable :class:`Trainer` and the paper schemes built on it.

The schemes live in their own modules (``batched``, ``penalized``, ``unrolled``, ``packing``,
``progressive``, ``auction``, ``maem``, ``phased``, ``distill``); the most used names are
re-exported here.
"""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .distill import DGLSeedBatch, DGLTrainer, count_macs, count_parameters, freeze_teacher, two_stage
from .phased import PhasedConfig, PhasedTrainer
from .trainer import HISTORY_KEYS, OPTIMIZERS, TrainConfig, Trainer, make_optimizer, seed_everything

__all__ = ["Trainer", "TrainConfig", "seed_everything", "make_optimizer", "OPTIMIZERS", "save_checkpoint",
           "load_checkpoint", "CheckpointError", "HISTORY_KEYS",
           "PhasedConfig", "PhasedTrainer",
           "DGLTrainer", "DGLSeedBatch", "freeze_teacher", "two_stage", "count_parameters", "count_macs"]
