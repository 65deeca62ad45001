"""2-D Gaussian mixtures: the classic mode-collapse benchmark.

The ring and grid follow the protocol of VEEGAN (Srivastava et al., 2017) and
PacGAN (Lin et al., 2018, official code ``synthetic_data_experiments``):

* ring: 8 modes at ``(cos(2*pi*i/8), sin(2*pi*i/8))`` (radius 1), std 0.01;
* grid: 25 modes at ``(i, j)`` for ``i, j`` in ``{-4, -2, 0, 2, 4}``, std 0.05.
"""

from __future__ import annotations

import math

import torch

from ..validation import as_float, as_int, check_finite, check_generator


class GaussianMixture:
    """Uniform mixture of isotropic Gaussians in the plane (or any dimension).

    Args:
        means: ``Tensor[K, D]`` of mode centres.
        std: the common standard deviation of every mode.
    """

    def __init__(self, means: torch.Tensor, std: float):
        means = torch.as_tensor(means, dtype=torch.float32)
        if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 1:
            raise ValueError(f"means must be a [K, D] tensor with K, D >= 1, got shape {tuple(means.shape)}")
        check_finite("means", means)
        self.means = means
        self.std = as_float("std", std, low=0, low_open=True)

    @property
    def n_modes(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def to(self, device) -> "GaussianMixture":
        """The same mixture with its means on ``device``."""
        return GaussianMixture(self.means.to(device), self.std)

    def sample(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """Draw ``n`` points: a uniform mode, then isotropic noise around it."""
        n = as_int("n", n, low=0)
        check_generator(generator)
        device = torch.device(device) if device is not None else (
            generator.device if generator is not None else self.means.device)
        modes = torch.randint(self.n_modes, (n,), generator=generator, device=device)
        noise = torch.randn(n, self.dim, generator=generator, device=device)
        return self.means.to(device)[modes] + self.std * noise

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 2 or x.shape[-1] != self.dim:
            raise ValueError(f"expected samples of shape [..., {self.dim}], got {tuple(x.shape)}")
        return x

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log density of the mixture at each point of ``x`` (``[..., D]`` -> ``[...]``)."""
        x = self._check(x).float()
        sq = torch.cdist(x, self.means.to(x.device)).square()          # [..., K]
        log_gauss = -0.5 * sq / self.std**2 - self.dim * math.log(self.std * math.sqrt(2 * math.pi))
        return torch.logsumexp(log_gauss, dim=-1) - math.log(self.n_modes)

    def assign(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest mode of each point and its distance in units of ``std``.

        With an isotropic covariance this equals PacGAN's diagonal Mahalanobis
        distance ``sqrt(sum((x - mu)^2 / sigma^2))``.
        """
        x = self._check(x).float()
        dist = torch.cdist(x, self.means.to(x.device))
        d_min, idx = dist.min(dim=-1)
        return idx, d_min / self.std

    # A mixture is itself a data source for the Trainer.
    def __repr__(self) -> str:
        return f"GaussianMixture(n_modes={self.n_modes}, dim={self.dim}, std={self.std})"


def ring_of_gaussians(n_modes: int = 8, radius: float = 1.0, std: float = 0.01) -> GaussianMixture:
    """Ring of ``n_modes`` Gaussians (VEEGAN/PacGAN: 8 modes, radius 1, std 0.01)."""
    n_modes = as_int("n_modes", n_modes, low=1)
    radius, std = as_float("radius", radius), as_float("std", std, low=0, low_open=True)
    angles = 2 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
    means = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
    return GaussianMixture(means.float(), std)


def grid_of_gaussians(side: int = 5, spacing: float = 2.0, std: float = 0.05) -> GaussianMixture:
    """``side`` x ``side`` grid of Gaussians centred on the origin.

    Defaults (VEEGAN/PacGAN): 25 modes at ``{-4, -2, 0, 2, 4}^2``, std 0.05.
    """
    side = as_int("side", side, low=1)
    spacing, std = as_float("spacing", spacing), as_float("std", std, low=0, low_open=True)
    coords = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
    gx, gy = torch.meshgrid(coords, coords, indexing="ij")
    return GaussianMixture(torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1), std)
