"""Training loops: the resumable :class:`Trainer` and the paper schemes built on it.

The schemes live in their own modules (``batched``, ``penalized``, ``unrolled``, ``packing``,
``progressive``, ``auction``, ``maem``, ``phased``, ``distill``); the most used names are
re-exported here.

The contract of every trainer
-----------------------------
What the public entry points accept and refuse (the tests in ``tests/test_contract.py`` sweep it):

* **Constructors** (``Trainer`` and its subclasses, ``PhasedTrainer``) check everything before a model
  is touched: the config's type (``TrainConfig``/``PhasedConfig``), every hyperparameter (numbers
  given as strings, e.g. ``"2e-4"`` from a YAML file, are *parsed*; anything else wrong is refused
  by name, see :mod:`ganlib.validation`), the networks (modules with parameters; a generator with
  ``sample_latent``), the callables, and the data source: anything with ``sample(n, generator)``;
  a raw tensor is refused with a pointer to ``ganlib.data.TensorSource``, whose data must be
  finite floats (NaN/inf rows are counted and refused up front).
* ``fit(steps)`` trains to ``steps`` steps in total (an integer >= 0; default ``config.steps``).
  ``sample(n)`` takes an integer ``n >= 1`` and draws in eval mode, restoring the mode it found.
* **Checkpoints** are written atomically (temporary file + rename; stale temporaries of killed
  writers are removed by the next save), carry a SHA-256 of their content, and are loaded with
  ``torch.load(weights_only=True)``. An empty, truncated, corrupt (checksum), foreign or incomplete
  file raises :class:`CheckpointError` naming the file and what is wrong.
* **Resume** (``fit`` finds a checkpoint in ``checkpoint_dir``, or ``load(path)``): every config
  setting except the loop's own (``Trainer.resume_free_settings``: steps, checkpointing, logging,
  progress bar) must match the checkpoint; otherwise ONE :class:`CheckpointError` lists each
  differing setting with both values and says how to proceed. Explicit opt-ins,
  ``fit(allow_changed=(...))`` or ``load(path, allow_changed=(...))`` with names from
  ``Trainer.resume_changeable_settings``: ``"lr_d"``/``"lr_g"`` set the new learning rates on the
  loaded optimizers (moments kept); ``"ema_decay"`` turns EMA on (initialised from the *loaded*
  generator), off, or changes its decay. Subclasses add their own settings to the same list
  (``Trainer.extra_resume_settings``: ``DGLTrainer``'s λ, ``MaEMTrainer``'s ``MaEMConfig``;
  ``ProgressiveTrainer``'s schedule is part of its config).
  Populations (:class:`ganlib.training.population.Population` and the classes built on it:
  ``SeedBatch``, ``AuctionPopulation``, ``MaEMEnsemble``...) write the same atomic, checksummed
  files, load them with ``weights_only=True``, refuse to resume when settings, members or
  architectures differ, and check their data sources (one, or one per member) like ``Trainer``.
* **Metrics** (``ganlib.metrics``) refuse non-finite features by argument name.
"""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .distill import DGLSeedBatch, DGLTrainer, count_macs, count_parameters, freeze_teacher, two_stage
from .phased import PhasedConfig, PhasedTrainer
from .config import OPTIMIZERS, TrainConfig, make_optimizer, seed_everything
from .trainer import HISTORY_KEYS, Trainer

__all__ = ["Trainer", "TrainConfig", "seed_everything", "make_optimizer", "OPTIMIZERS", "save_checkpoint",
           "load_checkpoint", "CheckpointError", "HISTORY_KEYS",
           "PhasedConfig", "PhasedTrainer",
           "DGLTrainer", "DGLSeedBatch", "freeze_teacher", "two_stage", "count_parameters", "count_macs"]
