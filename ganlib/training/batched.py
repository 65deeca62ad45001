"""Train S independent GANs of the same architecture as one vmapped computation.

Comparisons across seeds (the tables of the book) need several runs of the same
small GAN. Running them one after another wastes the hardware: each 2-D MLP is
far too small to fill even a CPU core. Here the S models' parameters are stacked
(``torch.func.stack_module_state``) and every forward/backward runs once, over
all models, through ``torch.func.vmap``.

Adam is elementwise, so one ``torch.optim.Adam`` over the stacked tensors is
exactly S independent Adams. Each model draws its real batches and latent codes
from its own generators seeded like :class:`ganlib.training.Trainer` (``seed`` and
``seed + 1``), so model ``s`` follows the same trajectory as a ``Trainer`` run
with ``seed_everything(seeds[s])`` before building the networks (up to float
round-off; a test checks it).

Supported: any loss of :mod:`ganlib.losses`, ``n_critic``, separate learning
rates and betas (TTUR), and ``d_after_step`` clipping on the stacked
parameters. Gradient penalties need per-model input gradients: use the
per-model :class:`~ganlib.training.Trainer` for those.
"""

from __future__ import annotations

import copy
import time
from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ..losses import get_loss
from .trainer import HISTORY_KEYS, TrainConfig, make_optimizer, seed_everything


class SeedBatch:
    """S independent (G, D) pairs trained in lockstep; ``seeds[s]`` seeds pair ``s``.

    Args:
        make_generator / make_discriminator: zero-argument factories of the two networks.
        source: data source with ``sample(n, generator)`` (every model draws its own batches).
        config: a :class:`TrainConfig` (``seed`` is ignored: ``seeds`` are used; checkpointing
            options are ignored: these runs are short experiments).
        seeds: one seed per model.
        device: where to train.
        clip_weights: if set, clamp every discriminator parameter to ``[-c, c]`` after each D step
            (WGAN's weight clipping).
    """

    def __init__(self, make_generator: Callable[[], nn.Module], make_discriminator: Callable[[], nn.Module],
                 source, config: TrainConfig, seeds: Sequence[int], device=None,
                 clip_weights: float | None = None):
        if len(seeds) < 1:
            raise ValueError("seeds must name at least one model")
        if clip_weights is not None and not clip_weights > 0:
            raise ValueError(f"clip_weights must be positive, got {clip_weights}")
        self.config, self.seeds, self.clip = config, list(seeds), clip_weights
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        gens, discs = [], []
        for s in self.seeds:
            seed_everything(s)
            gens.append(make_generator().to(self.device))
            discs.append(make_discriminator().to(self.device))
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in gens[0].modules()):
            raise ValueError("SeedBatch runs models under vmap: use networks without BatchNorm")
        self.latent_dim = gens[0].latent_dim
        self.g_params, self.g_buffers = stack_module_state(gens)
        self.d_params, self.d_buffers = stack_module_state(discs)
        self._g_base = copy.deepcopy(gens[0]).to("meta")
        self._d_base = copy.deepcopy(discs[0]).to("meta")
        self.loss = get_loss(config.loss)
        self.opt_g = make_optimizer(self.g_params.values(), config, "g")
        self.opt_d = make_optimizer(self.d_params.values(), config, "d")
        self.source = source.to(self.device) if hasattr(source, "to") else source
        self.noise_rngs = [torch.Generator(self.device).manual_seed(s) for s in self.seeds]
        self.data_rngs = [torch.Generator(self.device).manual_seed(s + 1) for s in self.seeds]
        self.fixed_noise = torch.stack([
            torch.randn(config.n_fixed_samples, self.latent_dim, device=self.device,
                        generator=torch.Generator(self.device).manual_seed(s + 2)) for s in self.seeds])
        self.step, self.elapsed = 0, 0.0
        self.history = {"step": [], **{k: [] for k in HISTORY_KEYS}}   # each entry: a list of S floats
        self.snapshots: list[tuple[int, torch.Tensor]] = []             # (step, Tensor[S, n, ...])
        self._pending, self._pending_steps = [], []
        self._g = vmap(lambda p, b, z: functional_call(self._g_base, (p, b), (z,)))
        self._d = vmap(lambda p, b, x: functional_call(self._d_base, (p, b), (x,)))
        self._d_loss = vmap(self.loss.d)
        self._g_loss = vmap(self.loss.g) if not self.loss.g_needs_real else vmap(self.loss.g)

    @property
    def n_models(self) -> int:
        return len(self.seeds)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """``z``: ``[S, n, latent_dim]`` -> samples ``[S, n, ...]``."""
        return self._g(self.g_params, self.g_buffers, z)

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        return self._d(self.d_params, self.d_buffers, x)

    def _latent(self, n: int) -> torch.Tensor:
        return torch.stack([torch.randn(n, self.latent_dim, generator=g, device=self.device)
                            for g in self.noise_rngs])

    def _real(self, n: int) -> torch.Tensor:
        return torch.stack([self.source.sample(n, g) for g in self.data_rngs])

    @staticmethod
    def _norms(params: dict) -> torch.Tensor:
        return torch.stack([p.grad.flatten(1).square().sum(1) for p in params.values()]).sum(0).sqrt()

    def _d_step(self, real: torch.Tensor) -> dict:
        with torch.no_grad():
            fake = self.generate(self._latent(real.shape[1]))
        real_logits, fake_logits = self.discriminate(real), self.discriminate(fake)
        losses = self._d_loss(real_logits, fake_logits)                 # [S]
        return self._update_d(losses.sum(), losses, real_logits, fake_logits)

    def _update_d(self, total, losses, real_logits, fake_logits) -> dict:
        """Backward ``total`` (models are independent: d(sum)/d(theta_s) = d(loss_s)/d(theta_s)),
        one Adam step, optional clipping; returns the per-model stats."""
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        norms = self._norms(self.d_params)
        self.opt_d.step()
        if self.clip is not None:
            with torch.no_grad():
                for p in self.d_params.values():
                    p.clamp_(-self.clip, self.clip)
        return {"d_loss": losses.detach(), "d_real": real_logits.detach().mean(1),
                "d_fake": fake_logits.detach().mean(1), "grad_norm_d": norms}

    def _g_step(self, n: int) -> dict:
        fake_logits = self.discriminate(self.generate(self._latent(n)))
        if self.loss.g_needs_real:
            with torch.no_grad():
                real_logits = self.discriminate(self._real(n))
            losses = self._g_loss(fake_logits, real_logits)
        else:
            losses = vmap(lambda f: self.loss.g(f))(fake_logits)
        return {"g_loss": losses.detach(), "grad_norm_g": self._update_g(losses)}

    def _update_g(self, losses: torch.Tensor) -> torch.Tensor:
        """One step of the generators on their per-model ``losses`` [S]; returns their gradient norms [S]."""
        self.opt_g.zero_grad(set_to_none=True)
        losses.sum().backward()
        for p in self.d_params.values():   # D's grads from the G pass are not used
            p.grad = None
        norms = self._norms(self.g_params)
        self.opt_g.step()
        return norms

    def fit(self, steps: int | None = None, callbacks: Sequence[Callable] = ()) -> dict:
        """Train every model to ``steps`` generator updates (default ``config.steps``)."""
        cfg = self.config
        target = cfg.steps if steps is None else steps
        start = time.perf_counter()
        while self.step < target:
            for _ in range(cfg.n_critic):
                d_stats = self._d_step(self._real(cfg.batch_size))
            g_stats = self._g_step(cfg.batch_size)
            self.step += 1
            stats = {**d_stats, **g_stats}
            self._pending.append(torch.stack([stats[k].float() for k in HISTORY_KEYS], dim=1))   # [S, K]
            self._pending_steps.append(self.step)
            if cfg.snapshot_every and self.step % cfg.snapshot_every == 0:
                self.snapshots.append((self.step, self.sample_fixed()))
            if self.step % cfg.log_every == 0 or self.step == target:
                self._flush()
                for callback in callbacks:
                    callback(self)
        self._flush()
        self.elapsed += time.perf_counter() - start
        return self.history

    def _flush(self) -> None:
        if not self._pending:
            return
        rows = torch.stack(self._pending).cpu()                                  # [T, S, K]
        steps, self._pending, self._pending_steps = self._pending_steps, [], []
        bad = ~torch.isfinite(rows)
        if bad.any():
            t, s, k = (int(v) for v in bad.nonzero()[0])
            raise FloatingPointError(f"{HISTORY_KEYS[k]} of model {s} (seed {self.seeds[s]}) became "
                                     f"{rows[t, s, k].item()} at step {steps[t]}; lower the learning rates.")
        self.history["step"].extend(steps)
        for k, key in enumerate(HISTORY_KEYS):
            self.history[key].extend(rows[:, :, k].tolist())

    @torch.no_grad()
    def sample(self, n: int, seed: int = 10_007) -> torch.Tensor:
        """``n`` samples from every model: ``Tensor[S, n, ...]`` on the CPU (own RNG)."""
        rng = torch.Generator(self.device).manual_seed(seed)
        z = torch.randn(self.n_models, n, self.latent_dim, generator=rng, device=self.device)
        return self.generate(z).float().cpu()

    @torch.no_grad()
    def sample_fixed(self) -> torch.Tensor:
        return self.generate(self.fixed_noise).float().cpu()

    def model(self, s: int, which: str = "generator", like: nn.Module | None = None) -> nn.Module:
        """Model ``s`` as an ordinary module (a copy), e.g. to plot or evaluate it alone."""
        base = self._g_base if which == "generator" else self._d_base
        params, buffers = (self.g_params, self.g_buffers) if which == "generator" else (self.d_params, self.d_buffers)
        module = copy.deepcopy(like) if like is not None else copy.deepcopy(base).to_empty(device=self.device)
        state = {k: v[s].detach().clone() for k, v in {**params, **buffers}.items()}
        module.load_state_dict(state)
        return module
