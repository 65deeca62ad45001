"""Multilayer perceptrons for 2-D (and other low-dimensional) data.

The default sizes follow the mixture experiments of the unrolled-GAN and
PacGAN papers: a few fully connected layers of a few hundred units with ReLU
(generator) or LeakyReLU (discriminator).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _sn

from .base import LatentGenerator, check_positive_ints


class MLPGenerator(LatentGenerator):
    """z ~ N(0, I) in ``latent_dim`` -> ``depth`` hidden ReLU layers -> ``out_dim`` (linear output)."""

    def __init__(self, latent_dim: int = 2, out_dim: int = 2, hidden: int = 128, depth: int = 3):
        super().__init__()
        check_positive_ints(latent_dim=latent_dim, out_dim=out_dim, hidden=hidden, depth=depth)
        self.latent_dim = latent_dim
        layers, width = [], latent_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.check_latent(z)
        return self.net(z)


class TanhMLPGenerator(MLPGenerator):
    """:class:`MLPGenerator` with a tanh output layer: samples in ``[-1, 1]``, the range of ganlib's
    image data (e.g. flattened 8x8 digits, ``out_dim=64``). The tanh is the last layer of ``net``,
    so stacked populations still run it as grouped layers."""

    def __init__(self, latent_dim: int = 2, out_dim: int = 2, hidden: int = 128, depth: int = 3):
        super().__init__(latent_dim, out_dim, hidden, depth)
        self.net.append(nn.Tanh())


class MLPDiscriminator(nn.Module):
    """x -> ``depth`` hidden LeakyReLU(0.2) layers -> ``out_dim`` raw scores (logits).

    ``spectral_norm=True`` wraps every linear layer with PyTorch's spectral-norm
    parametrization (Miyato et al., 2018). Output ``[n]`` when ``out_dim == 1``,
    else ``[n, out_dim]`` (embedding discriminators).
    """

    def __init__(self, in_dim: int = 2, hidden: int = 128, depth: int = 3, out_dim: int = 1,
                 spectral_norm: bool = False):
        super().__init__()
        check_positive_ints(in_dim=in_dim, hidden=hidden, depth=depth, out_dim=out_dim)
        self.in_dim, self.out_dim = in_dim, out_dim
        wrap = _sn if spectral_norm else (lambda m: m)
        layers, width = [], in_dim
        for _ in range(depth):
            layers += [wrap(nn.Linear(width, hidden)), nn.LeakyReLU(0.2)]
            width = hidden
        layers.append(wrap(nn.Linear(width, out_dim)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"expected inputs [n, {self.in_dim}], got {tuple(getattr(x, 'shape', ())) or type(x).__name__}")
        out = self.net(x)
        return out.squeeze(1) if self.out_dim == 1 else out
