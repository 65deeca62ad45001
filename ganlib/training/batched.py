"""S independent GANs of one architecture trained as one stacked computation (the seed tables).

:class:`SeedBatch` is the one-arm :class:`~ganlib.training.population.Population` under the
name and constructor the chapters have used: member ``s`` is seeded ``seeds[s]`` and follows the
trajectory of a :class:`~ganlib.training.Trainer` run with ``seed_everything(seeds[s])`` before
building the networks and ``TrainConfig(seed=seeds[s])`` (up to float round-off; a test checks it).
New code: use ``Population`` with named arms.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .population import Population, Standard
from .trainer import TrainConfig


class SeedBatch(Population):
    """S independent (G, D) pairs trained in lockstep; ``seeds[s]`` seeds pair ``s``.

    Args:
        make_generator / make_discriminator: zero-argument factories of the two networks.
        source: data source with ``sample(n, generator)`` (every model draws its own batches).
        config: a :class:`TrainConfig` (``seed`` is ignored: ``seeds`` are used).
        seeds: one seed per model (repeats allowed).
        device: where to train.
        clip_weights: if set, clamp every discriminator parameter to ``[-c, c]`` after each D step
            (WGAN's weight clipping).
    """

    def __init__(self, make_generator: Callable[[], nn.Module], make_discriminator: Callable[[], nn.Module],
                 source, config: TrainConfig, seeds: Sequence[int], device=None,
                 clip_weights: float | None = None, scheme=None):
        seeds = list(seeds)
        if len(seeds) < 1:
            raise ValueError("seeds must name at least one model")
        if clip_weights is not None and not clip_weights > 0:
            raise ValueError(f"clip_weights must be positive, got {clip_weights}")
        self.clip = clip_weights
        scheme = Standard(clip=clip_weights) if scheme is None else scheme
        super().__init__(make_generator, make_discriminator, source, config, arms={"main": scheme},
                         members=[("main", s) for s in seeds], device=device or "cpu")

    # the names the chapters use
    @property
    def seeds(self) -> list[int]:
        return self.member_seeds

    @property
    def n_models(self) -> int:
        return self.n_members

    @property
    def g_params(self) -> dict:
        return self.G.params

    @property
    def d_params(self) -> dict:
        return self.D.params

    @property
    def g_buffers(self) -> dict:
        return self.G.buffers

    @property
    def d_buffers(self) -> dict:
        return self.D.buffers

    @property
    def spectral_norm(self) -> bool:
        return self.D.spectral_norm

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """``z``: ``[S, n, latent_dim]`` -> samples ``[S, n, ...]``."""
        return self.G(z)

    def discriminate(self, x: torch.Tensor, update_sn: bool = True) -> torch.Tensor:
        """Scores ``[S, n]`` of ``x [S, n, ...]``; with spectral norm, one power iteration per call
        (as a PyTorch SN module in training mode) unless ``update_sn=False``."""
        return self.D(x, update_sn=update_sn)

    def model(self, s: int, which: str = "generator", like: nn.Module | None = None) -> nn.Module:
        """Model ``s`` as an ordinary module (a copy), e.g. to plot or evaluate it alone."""
        return self.export(s, which, like)
