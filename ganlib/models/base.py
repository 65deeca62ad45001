"""What every ganlib generator shares: its latent space and input checks."""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn


def check_positive_ints(**sizes) -> None:
    """Refuse sizes that are not positive integers, naming the argument."""
    for name, value in sizes.items():
        ok = (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
              and int(value) == value and value >= 1)
        if not ok:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class LatentGenerator(nn.Module):
    """A generator fed by ``z ~ N(0, I)`` in ``latent_dim`` dimensions.

    Trainers draw noise through :meth:`sample_latent`, so a generator with another prior
    only overrides that method; :meth:`check_latent` gives every generator the same error
    for a wrongly shaped ``z``.
    """

    latent_dim: int

    def sample_latent(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        device = device if device is not None else next(self.parameters()).device
        return torch.randn(n, self.latent_dim, generator=generator, device=device)

    def check_latent(self, z: torch.Tensor) -> None:
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"z must be a tensor of latent codes [n, {self.latent_dim}], got {type(z).__name__}")
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"expected latent codes [n, {self.latent_dim}], got {tuple(z.shape)}")
