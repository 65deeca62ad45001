"""A small, resumable GAN trainer.

One *step* is ``n_critic`` discriminator updates (each on a fresh real batch and
a fresh fake batch) followed by one generator update, as in Algorithm 1 of
Goodfellow et al. (2014) and of WGAN (Arjovsky et al., 2017).

Design points:

* **No host syncs in the step.** Per-step statistics stay on the device and are
  copied to ``history`` every ``log_every`` steps; the NaN/inf guard checks them
  there and names the first bad step and quantity.
* **Exact resume.** Real batches come from ``source.sample(n, generator)`` with the
  trainer's own data generator, latent codes from its own noise generator; the
  checkpoint stores both, the global torch RNG (CPU and CUDA), models, optimizers,
  EMA weights, history, snapshots and the fixed sample noise. On CPU a resumed run
  reproduces an uninterrupted one exactly.
* **Override points** for the paper schemes: :meth:`d_step`, :meth:`g_step`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from ..losses import get_loss
from .history import PendingStats
from .checkpoint import CheckpointError, load_checkpoint, require_same_settings, save_checkpoint

OPTIMIZERS = ("adam", "rmsprop")
HISTORY_KEYS = ("d_loss", "g_loss", "d_real", "d_fake", "grad_norm_d", "grad_norm_g")


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
    needed). ``checkpoint_every=0`` saves only at the end of :meth:`Trainer.fit`.
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
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    log_every: int = 50
    snapshot_every: int = 0
    n_fixed_samples: int = 64
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        self.betas_d, self.betas_g = tuple(self.betas_d), tuple(self.betas_g)
        for name in ("steps", "batch_size", "n_critic", "log_every", "n_fixed_samples"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("checkpoint_every", "snapshot_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 turns it off), got {getattr(self, name)!r}")
        for name in ("lr_d", "lr_g"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("betas_d", "betas_g"):
            b = getattr(self, name)
            if len(b) != 2 or not all(0 <= x < 1 for x in b):
                raise ValueError(f"{name} must be two numbers in [0, 1), got {b!r}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {self.ema_decay!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.amp_dtype not in (None, "bf16"):
            raise ValueError(f"amp_dtype must be None or 'bf16', got {self.amp_dtype!r}")
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
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, betas=getattr(config, f"betas_{player}"))


def _has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def _grad_norm(params) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads)


def descend(optimizer: torch.optim.Optimizer, loss: torch.Tensor, params) -> torch.Tensor:
    """One optimizer step on ``loss``; returns the gradient norm of ``params`` (for the history)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = _grad_norm(params)
    optimizer.step()
    return grad_norm


class Trainer:
    """Trains ``generator`` against ``discriminator`` on batches from ``source``.

    Args:
        generator: module with ``latent_dim`` and ``sample_latent(n, generator, device)``.
        discriminator: module returning one raw score per sample.
        source: anything with ``sample(n, generator) -> Tensor`` (a GaussianMixture,
            ``ganlib.data.TensorSource``...); moved to the models' device if it has ``.to``.
        config: a :class:`TrainConfig`.
        d_penalty: optional ``f(discriminator, real, fake) -> scalar`` added to the D loss
            (gradient penalties; see ``ganlib.regularizers``).
        d_after_step: optional ``f(discriminator)`` run after every D update (weight clipping).
        callbacks: callables ``f(trainer)`` run every ``log_every`` steps (live plots).
    """

    checkpoint_name = "checkpoint.pt"

    def __init__(self, generator: nn.Module, discriminator: nn.Module, source, config: TrainConfig,
                 d_penalty: Callable | None = None, d_after_step: Callable | None = None,
                 callbacks: Sequence[Callable] = ()):
        self.G, self.D, self.config = generator, discriminator, config
        self.device = next(generator.parameters()).device
        if next(discriminator.parameters()).device != self.device:
            raise ValueError("generator and discriminator must be on the same device; call .to(device) on both")
        if d_penalty is not None and _has_batchnorm(discriminator):
            raise ValueError(
                "a gradient penalty needs a discriminator without BatchNorm: BatchNorm mixes the samples "
                "of a batch, so the per-sample gradient the penalty constrains is not defined. Build the "
                "discriminator with norm='none' or norm='layer'."
            )
        self.source = source.to(self.device) if hasattr(source, "to") else source
        self.loss = get_loss(config.loss)
        self.d_penalty, self.d_after_step, self.callbacks = d_penalty, d_after_step, list(callbacks)
        self.opt_d = make_optimizer(discriminator.parameters(), config, "d")
        self.opt_g = make_optimizer(generator.parameters(), config, "g")
        self.G_ema = None
        if config.ema_decay is not None:
            self.G_ema = copy.deepcopy(generator).eval().requires_grad_(False)
        self.noise_rng = torch.Generator(self.device).manual_seed(config.seed)
        self.data_rng = torch.Generator(self.device).manual_seed(config.seed + 1)
        fixed_rng = torch.Generator(self.device).manual_seed(config.seed + 2)
        self.fixed_noise = generator.sample_latent(config.n_fixed_samples, generator=fixed_rng, device=self.device)
        self.step = 0
        self.elapsed = 0.0
        self.history: dict[str, list] = {"step": [], **{k: [] for k in HISTORY_KEYS}}
        self.snapshots: list[tuple[int, torch.Tensor]] = []
        self._stats = PendingStats(HISTORY_KEYS)

    # --- the two updates ---------------------------------------------------------------------
    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.amp_dtype == "bf16")

    def fake_batch(self, n: int) -> torch.Tensor:
        return self.G(self.G.sample_latent(n, generator=self.noise_rng, device=self.device))

    def real_batch(self, n: int) -> torch.Tensor:
        return self.source.sample(n, self.data_rng)

    def d_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """One discriminator update; returns detached device scalars (no sync)."""
        with torch.no_grad(), self.autocast():
            fake = self.fake_batch(len(real))
        with self.autocast():
            real_logits, fake_logits = self.D(real), self.D(fake.float())
        loss = self.loss.d(real_logits.float(), fake_logits.float())
        if self.d_penalty is not None:
            loss = loss + self.d_penalty(self.D, real, fake.float())
        grad_norm = descend(self.opt_d, loss, self.D.parameters())
        if self.d_after_step is not None:
            self.d_after_step(self.D)
        return {"d_loss": loss.detach(), "d_real": real_logits.detach().float().mean(),
                "d_fake": fake_logits.detach().float().mean(), "grad_norm_d": grad_norm}

    def g_step(self, batch_size: int) -> dict[str, torch.Tensor]:
        """One generator update (D's parameters frozen for the backward pass)."""
        self.D.requires_grad_(False)
        try:
            with self.autocast():
                fake_logits = self.D(self.fake_batch(batch_size))
                real_logits = self.D(self.real_batch(batch_size)) if self.loss.g_needs_real else None
            loss = self.loss.g(fake_logits.float(), None if real_logits is None else real_logits.float())
            grad_norm = descend(self.opt_g, loss, self.G.parameters())
        finally:
            self.D.requires_grad_(True)
        return {"g_loss": loss.detach(), "grad_norm_g": grad_norm}

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.config.ema_decay
        ema_p, p = list(self.G_ema.parameters()), list(self.G.parameters())
        torch._foreach_lerp_(ema_p, p, 1 - decay)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # --- the loop ------------------------------------------------------------------------------
    def fit(self, steps: int | None = None) -> dict[str, list]:
        """Train until ``steps`` (default ``config.steps``) generator updates in total.

        If ``config.checkpoint_dir`` holds a checkpoint, training resumes from it.
        """
        target = self.config.steps if steps is None else steps
        if self.step == 0 and self.checkpoint_path is not None and self.checkpoint_path.exists():
            self.load(self.checkpoint_path)
        from tqdm.auto import tqdm

        cfg = self.config
        # GANLIB_STATIC=1 (set when the book is built) turns the bar off: a static page can't animate it
        show = cfg.progress and os.environ.get("GANLIB_STATIC") != "1"
        bar = tqdm(total=target, initial=self.step, disable=not show, desc="training", leave=False)
        start = time.perf_counter()
        try:
            while self.step < target:
                for _ in range(cfg.n_critic):
                    d_stats = self.d_step(self.real_batch(cfg.batch_size))
                g_stats = self.g_step(cfg.batch_size)
                if self.G_ema is not None:
                    self._update_ema()
                self.step += 1
                self._stats.add(self.step, {k: v.reshape(()) for k, v in {**d_stats, **g_stats}.items()})
                if cfg.snapshot_every and self.step % cfg.snapshot_every == 0:
                    self.snapshots.append((self.step, self.sample_fixed()))
                if self.step % cfg.log_every == 0 or self.step == target:
                    self._flush()
                    bar.update(self.step - bar.n)
                    bar.set_postfix(d_loss=f"{self.history['d_loss'][-1]:.3f}",
                                    g_loss=f"{self.history['g_loss'][-1]:.3f}")
                    for callback in self.callbacks:
                        callback(self)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.elapsed += time.perf_counter() - start
                    start = time.perf_counter()
                    self.save()
        finally:
            bar.close()
        self.elapsed += time.perf_counter() - start
        self._flush()
        if self.checkpoint_path is not None:
            self.save()
        return self.history

    def _flush(self) -> None:
        """Move pending per-step stats to ``history`` (one host copy) and check they are finite."""
        self._stats.flush(self.history)

    # --- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, ema: bool = False, seed: int | None = None) -> torch.Tensor:
        """``n`` generated samples on the CPU, drawn with their own RNG (training RNG untouched)."""
        G = self.G_ema if ema else self.G
        if G is None:
            raise ValueError("ema=True needs TrainConfig(ema_decay=...)")
        rng = torch.Generator(self.device).manual_seed(self.config.seed + 10_007 if seed is None else seed)
        was_training = G.training
        G.eval()
        try:
            return G(G.sample_latent(n, generator=rng, device=self.device)).float().cpu()
        finally:
            G.train(was_training)

    @torch.no_grad()
    def sample_fixed(self, ema: bool = False) -> torch.Tensor:
        """The generator's output on the fixed noise (the same codes all run long), on the CPU."""
        G = self.G_ema if ema else self.G
        was_training = G.training
        G.eval()
        try:
            return G(self.fixed_noise).float().cpu()
        finally:
            G.train(was_training)

    # --- checkpoints ---------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        d = self.config.checkpoint_dir
        return None if d is None else Path(d) / self.checkpoint_name

    def state_dict(self) -> dict:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        return {
            "step": self.step, "elapsed": self.elapsed,
            "generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
            "g_ema": None if self.G_ema is None else self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "history": self.history, "snapshots": [[s, x] for s, x in self.snapshots],
            "fixed_noise": self.fixed_noise,
            "rng": {"torch": torch.get_rng_state(), "cuda": cuda,
                    "noise": self.noise_rng.get_state(), "data": self.data_rng.get_state()},
            "config": dataclasses.asdict(self.config),
        }

    def save(self, path=None) -> Path:
        self._flush()
        path = path or self.checkpoint_path
        if path is None:
            raise ValueError("no path given and config.checkpoint_dir is None")
        return save_checkpoint(path, self.state_dict())

    def load(self, path) -> None:
        """Restore everything saved by :meth:`save`; the next step continues exactly."""
        state = load_checkpoint(path)
        require_same_settings(path, state["config"], self.config, ("batch_size", "n_critic", "loss", "seed"))
        try:
            self.G.load_state_dict(state["generator"])
            self.D.load_state_dict(state["discriminator"])
            if self.G_ema is not None and state["g_ema"] is not None:
                self.G_ema.load_state_dict(state["g_ema"])
        except RuntimeError as err:
            raise CheckpointError(f"{path} holds networks of another shape: {err}") from err
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step, self.elapsed = state["step"], state["elapsed"]
        self.history = state["history"]
        self.snapshots = [(int(s), x) for s, x in state["snapshots"]]
        self.fixed_noise = state["fixed_noise"].to(self.device)
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.noise_rng.set_state(rng["noise"])
        self.data_rng.set_state(rng["data"])
