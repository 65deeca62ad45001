"""The generalised (embedding) discriminator of MaEM-GAN.

Liu et al., 2023, "Combating Mode Collapse in GANs via Manifold Entropy Estimation"
(AAAI; arXiv 2208.12055), §3: the discriminator is a map 𝔻: x -> R^m, an
m-dimensional *embedding*, and ``(1/m) sum_k 𝔻_k(x)`` is the realness of ``x``
(Eq. 7, the L_MaF loss in :mod:`ganlib.training.maem`).

The appendix uses m = 16 "with a re-parameterization trick" on CIFAR-10. The paper
does not say how the trick is built; the official code (``models.py``, ``DCGAN_D``)
does it like a VAE encoder: one spectrally normalised linear layer outputs ``2m``
numbers, split into a mean and a log-variance, and every forward pass returns
``mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)`` -- so **sigma is produced by the
network itself, per sample and per dimension**, and the discriminator is stochastic
in training *and* in evaluation. :class:`EmbeddingDiscriminator` does exactly that on
any ganlib trunk; :meth:`EmbeddingDiscriminator.embed` returns the deterministic mean
(the code's ``embedding()`` method), which is what figures should plot.
"""

from __future__ import annotations

import torch
from torch import nn

from .dcgan import DCGANDiscriminator
from .mlp import MLPDiscriminator

# exp(logvar / 2) stays finite in float32 and cannot vanish to an exact 0 (our guard;
# the official code does not clamp).
LOGVAR_RANGE = (-30.0, 30.0)


class EmbeddingDiscriminator(nn.Module):
    """Generalised discriminator 𝔻(x) in R^m (Liu et al., 2023, §3 and Eq. 7).

    Args:
        trunk: a network returning ``[n, out_dim]`` raw outputs -- e.g.
            ``MLPDiscriminator(out_dim=2 * m, spectral_norm=True)`` or
            ``DCGANDiscriminator(out_dim=2 * m, spectral_norm=True)``. Its attribute
            ``out_dim`` must be ``2 * m`` with ``reparameterize=True`` (mean and
            log-variance, official ``models.py``) and ``m`` without.
        reparameterize: return ``mu + exp(logvar / 2) * eps`` (paper appendix "with a
            re-parameterization trick"; official code) instead of the trunk's output.

    Use the constructors :meth:`mlp` and :meth:`dcgan`, which add spectral norm on every
    layer as the official code does (it has no gradient penalty).
    """

    def __init__(self, trunk: nn.Module, reparameterize: bool = True):
        super().__init__()
        out_dim = getattr(trunk, "out_dim", None)
        if not isinstance(out_dim, int) or out_dim < 1:
            raise TypeError("trunk must be a module with an integer attribute out_dim (its number of "
                            "outputs), e.g. ganlib.models.MLPDiscriminator(out_dim=2 * m, spectral_norm=True)")
        if reparameterize and out_dim % 2:
            raise ValueError(f"with reparameterize=True the trunk outputs a mean and a log-variance, so its "
                             f"out_dim must be even (2 * m); got out_dim={out_dim}")
        self.trunk = trunk
        self.reparameterize = bool(reparameterize)
        self.m = out_dim // 2 if reparameterize else out_dim

    @classmethod
    def mlp(cls, m: int = 8, in_dim: int = 2, hidden: int = 128, depth: int = 3, reparameterize: bool = True,
            spectral_norm: bool = True) -> "EmbeddingDiscriminator":
        """An SN-MLP trunk ``in_dim -> hidden x depth -> 2m`` (or ``m``) for 2-D data."""
        _check_m(m)
        out = 2 * m if reparameterize else m
        return cls(MLPDiscriminator(in_dim, hidden, depth, out_dim=out, spectral_norm=spectral_norm), reparameterize)

    @classmethod
    def dcgan(cls, m: int = 16, channels: int = 1, image_size: int = 8, width: int = 64, reparameterize: bool = True,
              spectral_norm: bool = True) -> "EmbeddingDiscriminator":
        """A DCGAN conv trunk with spectral norm and no normalisation layer (official ``DCGAN_D``)."""
        _check_m(m)
        out = 2 * m if reparameterize else m
        trunk = DCGANDiscriminator(channels, image_size, width, norm="none", spectral_norm=spectral_norm, out_dim=out)
        return cls(trunk, reparameterize)

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.trunk(x)
        if out.ndim == 1:                      # ganlib trunks squeeze out_dim == 1 to [n]
            out = out.unsqueeze(-1)
        if not self.reparameterize:
            return out, None
        mu, logvar = out.chunk(2, dim=-1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``V = 𝔻(x)`` of shape ``[n, m]``; stochastic when ``reparameterize`` (as in the code,
        in train and eval mode alike; the noise comes from the global torch RNG)."""
        mu, logvar = self._stats(x)
        if logvar is None:
            return mu
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic embedding ``mu(x)`` ``[n, m]`` (official ``DCGAN_D.embedding``); for plots."""
        return self._stats(x)[0]

    def realness(self, x: torch.Tensor) -> torch.Tensor:
        """``(1/m) sum_k 𝔻_k(x)`` ``[n]``: the realness of Eq. 7 (one stochastic forward pass)."""
        return self(x).mean(dim=-1)

    def extra_repr(self) -> str:
        return f"m={self.m}, reparameterize={self.reparameterize}"


def _check_m(m) -> None:
    if int(m) != m or m < 1:
        raise ValueError(f"the embedding dimension m must be a positive integer, got {m!r}")
