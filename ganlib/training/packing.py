r"""PacGAN: a discriminator that judges packs of samples (Lin, Khetan, Fanti & Oh, NeurIPS 2018).

The packed discriminator :math:`D_m(x_1, \dots, x_m)` sees ``m`` samples at once, all real or
all fake, and outputs one decision; the generator is unchanged. The loss is any ordinary GAN
loss on packed inputs (Lin et al., Eq. 2, with packs in place of samples):

.. math::

    \min_G \max_D\;
    \mathbb{E}_{x_1..x_m \sim P}\,[\log D(x_1, \dots, x_m)]
    + \mathbb{E}_{x_1..x_m \sim Q}\,[\log(1 - D(x_1, \dots, x_m))].

A collapsed generator's packs look alike and unlike the real packs (whose members come from
different modes), so the packed discriminator sees mode collapse directly; Lin et al. show
that packing sharpens the penalty on distributions with mode collapse (Sections 3-4).

How samples are concatenated follows the official code (``fjxmlzn/PacGAN``): vectors are
concatenated along the feature axis (the MLP's first layer takes ``m * d`` inputs), images
along the channel axis (``m * C`` channels). Only the discriminator's input layer grows.

Use with the plain :class:`~ganlib.training.Trainer` and any loss: wrap a base discriminator
built for ``m * d`` inputs (or ``m * C`` channels) and set ``batch_size`` to ``m`` times the
number of decisions you want per batch (the official code draws ``m`` samples per decision,
so a "batch of 100" is 100 packs, i.e. ``100 * m`` samples, real and fake alike).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["pack", "unpack", "PackedDiscriminator"]


def _check_degree(m) -> int:
    if isinstance(m, bool) or int(m) != m or m < 1:
        raise ValueError(f"the packing degree m must be an integer >= 1, got {m!r}")
    return int(m)


def pack(x: torch.Tensor, m: int) -> torch.Tensor:
    """Group ``m`` consecutive samples into one pack: ``[n*m, d] -> [n, m*d]``, ``[n*m, C, ...] -> [n, m*C, ...]``.

    Pack ``i`` holds samples ``i*m, ..., i*m + m - 1``, concatenated along the feature (or
    channel) axis in that order; samples of different packs are never mixed. This is a view
    (a reshape of the leading two axes) when ``x`` is contiguous.
    """
    m = _check_degree(m)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"pack expects a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"pack expects samples of shape [n, features...] (at least 2-D), got {tuple(x.shape)}")
    if x.shape[0] % m:
        raise ValueError(
            f"cannot pack a batch of {x.shape[0]} samples into packs of m={m}: the batch size must be a "
            f"multiple of m (use batch_size = m * packs, e.g. {m * max(1, x.shape[0] // m)})")
    return x.reshape(x.shape[0] // m, m * x.shape[1], *x.shape[2:])


def unpack(packed: torch.Tensor, m: int) -> torch.Tensor:
    """Inverse of :func:`pack`: ``[n, m*d, ...] -> [n*m, d, ...]``."""
    m = _check_degree(m)
    if packed.ndim < 2 or packed.shape[1] % m:
        raise ValueError(f"cannot unpack shape {tuple(packed.shape)} with m={m}: axis 1 must be a multiple of m")
    return packed.reshape(packed.shape[0] * m, packed.shape[1] // m, *packed.shape[2:])


class PackedDiscriminator(nn.Module):
    """Wraps a discriminator built for packed inputs: ``forward(x [n*m, ...]) = base(pack(x, m))``.

    Args:
        base: a discriminator whose input is ``m`` samples concatenated, e.g.
            ``MLPDiscriminator(in_dim=m * 2)`` or ``DCGANDiscriminator(channels=m * 3, ...)``.
        m: the packing degree (PacGAN2 = 2, ...); ``m = 1`` is the ordinary discriminator.

    Returns one score per pack: ``[n]`` (or ``[n, out_dim]``).
    """

    def __init__(self, base: nn.Module, m: int):
        super().__init__()
        self.m = _check_degree(m)
        for attr in ("in_dim", "channels"):
            width = getattr(base, attr, None)
            if isinstance(width, int) and width % self.m:
                raise ValueError(f"the base discriminator's {attr}={width} is not a multiple of m={self.m}; "
                                 f"build it for packed inputs ({attr} = m * the sample's {attr})")
        self.base = base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(pack(x, self.m))

    def extra_repr(self) -> str:
        return f"m={self.m}"
