"""Settings and the pieces every trainer shares: :class:`TrainConfig`, the optimizers it asks for
(:func:`make_optimizer`), one optimizer step with its gradient norm (:func:`descend`) and
:func:`seed_everything`. Used by :class:`~ganlib.training.Trainer`, its paper subclasses and the
population core (:mod:`ganlib.training.population`)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import torch

from ..losses import get_loss
from ..validation import as_float, as_int

OPTIMIZERS = ("adam", "rmsprop")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass
    torch.manual_seed(seed)


@dataclass
class TrainConfig:
    """Hyperparameters of a :class:`Trainer` run (defaults: DCGAN's Adam settings).

    ``optimizer`` is ``"adam"`` or ``"rmsprop"`` (see :func:`make_optimizer`).
    ``amp_dtype="bf16"`` runs forward passes under bfloat16 autocast (no loss scaling
    needed). ``channels_last=True`` stores conv nets' weights and image batches in NHWC
    layout (faster convolutions on tensor-core GPUs; same results). ``cuda_graph=True``
    captures the whole training step in a CUDA graph after ``graph_warmup`` eager steps and
    replays it (CUDA only; static shapes; see :meth:`Trainer._graphed_step`).
    ``checkpoint_every=0`` saves only at the end of :meth:`Trainer.fit`.

    Every value is checked here, before a model is touched: numbers given as strings (``"2e-4"``,
    what a YAML file gives) are parsed; anything else out of range or of the wrong kind is refused
    with a ``ValueError``/``TypeError`` naming the field (see :mod:`ganlib.validation`).
    """

    steps: int = 1000
    batch_size: int = 64
    n_critic: int = 1
    lr_d: float = 2e-4
    lr_g: float = 2e-4
    betas_d: tuple = (0.5, 0.999)
    betas_g: tuple = (0.5, 0.999)
    optimizer: str = "adam"
    loss: str = "ns"
    ema_decay: float | None = None
    amp_dtype: str | None = None
    channels_last: bool = False
    cuda_graph: bool = False
    graph_warmup: int = 3
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    log_every: int = 50
    snapshot_every: int = 0
    n_fixed_samples: int = 64
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        # numbers may come as strings (YAML 1.1 reads 2e-4 as "2e-4"): parsed, or refused by name
        for name in ("steps", "batch_size", "n_critic", "log_every", "n_fixed_samples", "graph_warmup"):
            setattr(self, name, as_int(name, getattr(self, name), low=1))
        for name in ("checkpoint_every", "snapshot_every", "seed"):
            setattr(self, name, as_int(name, getattr(self, name), low=0 if name != "seed" else None))
        for name in ("lr_d", "lr_g"):
            setattr(self, name, as_float(name, getattr(self, name), low=0, low_open=True))
        for name in ("betas_d", "betas_g"):
            b = getattr(self, name)
            if isinstance(b, (str, bytes)) or not hasattr(b, "__len__") or len(b) != 2:
                raise ValueError(f"{name} must be two numbers in [0, 1), got {b!r}")
            setattr(self, name, tuple(as_float(f"{name}[{i}]", x, low=0, high=1, high_open=True)
                                      for i, x in enumerate(b)))
        if self.ema_decay is not None:
            self.ema_decay = as_float("ema_decay", self.ema_decay, low=0, high=1, low_open=True, high_open=True)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.amp_dtype not in (None, "bf16"):
            raise ValueError(f"amp_dtype must be None or 'bf16', got {self.amp_dtype!r}")
        if self.checkpoint_dir is not None and not isinstance(self.checkpoint_dir, (str, os.PathLike)):
            raise TypeError(f"checkpoint_dir must be a path or None, got {type(self.checkpoint_dir).__name__}")
        get_loss(self.loss)  # unknown loss names fail here, before any model is touched

    @classmethod
    def ttur(cls, **overrides) -> "TrainConfig":
        """Two time-scale update rule as used by SAGAN (Zhang et al., 2019, §5):
        lr_D = 4e-4, lr_G = 1e-4, Adam betas (0, 0.9), one D step per G step
        (Heusel et al., 2017 prove convergence for separate learning rates)."""
        base = dict(lr_d=4e-4, lr_g=1e-4, betas_d=(0.0, 0.9), betas_g=(0.0, 0.9), n_critic=1)
        return cls(**{**base, **overrides})


def make_optimizer(params, config: TrainConfig, player: str) -> torch.optim.Optimizer:
    """The optimizer of one player (``"d"`` or ``"g"``) as ``config`` asks for it.

    ``"adam"`` uses ``lr_<player>`` and ``betas_<player>``; ``"rmsprop"`` (WGAN, Arjovsky et
    al. 2017, Algorithm 1: momentum made their critic unstable) uses ``lr_<player>`` and
    PyTorch's defaults, ignoring the betas. Both are elementwise, so one optimizer over
    stacked parameters (``SeedBatch``) equals one optimizer per model.
    """
    if player not in ("d", "g"):
        raise ValueError(f"player must be 'd' or 'g', got {player!r}")
    lr = getattr(config, f"lr_{player}")
    capturable = bool(getattr(config, "cuda_graph", False))  # step counters on the device: no host sync
    # foreach: one multi-tensor kernel per update op instead of a Python loop over parameters (PyTorch
    # picks it only on CUDA by default; on the CPU it gives the same values, several times fewer calls)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, capturable=capturable, foreach=True)
    return torch.optim.Adam(params, lr=lr, betas=getattr(config, f"betas_{player}"), capturable=capturable,
                            foreach=True)


def _grad_norm(params) -> torch.Tensor:
    params = list(params)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:  # on the parameters' device, like a real norm (the history stacks it with device scalars)
        return torch.zeros((), device=params[0].device if params else None)
    return torch.nn.utils.get_total_norm(grads)


def descend(optimizer: torch.optim.Optimizer, loss: torch.Tensor, params) -> torch.Tensor:
    """One optimizer step on ``loss``; returns the gradient norm of ``params`` (for the history)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = _grad_norm(params)
    optimizer.step()
    return grad_norm
