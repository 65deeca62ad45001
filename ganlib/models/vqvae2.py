r"""A two-level VQ-VAE-2 (Razavi, van den Oord & Vinyals, "Generating Diverse High-Fidelity
Images with VQ-VAE-2", NeurIPS 2019), the autoencoder of PC-VQ2.

* :class:`VectorQuantizerEMA`: nearest-neighbour codebook, straight-through gradient,
  codebook learnt by exponential moving averages (decay γ = 0.99) instead of a codebook loss,
  commitment weight β = 0.25 (van den Oord et al. 2017, Eq. 3 and Appendix A.1; Razavi et al.
  2019, Eq. 2). Loss of the autoencoder: :math:`\|x-\hat x\|_2^2 + \beta\|z_e(x) - \mathrm{sg}[e]\|_2^2`.
* :class:`VQVAE2`: the bottom encoder downsamples the image by ``bottom_factor`` (4 in the paper),
  the top encoder downsamples the bottom features by ``top_factor`` more (2). The top latent is
  quantised first; the bottom latent is quantised from the bottom features **concatenated with
  the decoded top latent** (the bottom level only has to add what the top misses), and the
  decoder reads the upsampled top codes concatenated with the bottom codes (paper, Fig. 2a).

Constructor defaults are the paper's (K = 512 codes of dimension 64, 128 hidden channels,
two residual blocks of 64 channels, factors 4 and 2). Small images need smaller factors
(8x8 digits: ``bottom_factor=2, top_factor=2`` gives 4x4 bottom and 2x2 top code maps).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VectorQuantizerEMA", "VQVAE2"]


class VectorQuantizerEMA(nn.Module):
    r"""EMA vector quantiser: ``forward(z) -> (z_q, indices, commitment)`` for ``z [B, D, H, W]``.

    ``indices[b, i, j] = argmin_k ||z[b, :, i, j] - e_k||``; ``z_q = z + sg[e - z]`` (value
    ``e``, gradient of the identity: straight-through); ``commitment = β · mean (z - sg[e])^2``.
    In training mode each call updates the codebook (van den Oord et al. 2017, App. A.1):
    :math:`N_k \leftarrow \gamma N_k + (1-\gamma) n_k`,
    :math:`m_k \leftarrow \gamma m_k + (1-\gamma)\sum_{i: k_i = k} z_i`, and
    :math:`e_k = m_k / \tilde N_k` with the Laplace-smoothed counts
    :math:`\tilde N_k = (N_k + \epsilon)/(\sum_j N_j + K\epsilon)\,\sum_j N_j`.

    Counts start at 1 with ``m_k = e_k`` (our choice), so a code that is never picked keeps its
    initial value. ``dead_threshold > 0`` (off in the paper) moves every code whose count falls
    below it onto a random encoder output of the current batch: with little data many codes die.
    """

    def __init__(self, num_codes: int = 512, dim: int = 64, decay: float = 0.99, beta: float = 0.25,
                 eps: float = 1e-5, dead_threshold: float = 0.0):
        super().__init__()
        if int(num_codes) != num_codes or num_codes < 2 or int(dim) != dim or dim < 1:
            raise ValueError(f"num_codes must be an integer >= 2 and dim >= 1, got {num_codes}, {dim}")
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if beta < 0 or eps < 0 or dead_threshold < 0:
            raise ValueError("beta, eps and dead_threshold must be >= 0")
        self.num_codes, self.dim, self.decay, self.beta, self.eps = num_codes, dim, decay, beta, eps
        self.dead_threshold = dead_threshold
        codebook = torch.randn(num_codes, dim)
        self.register_buffer("codebook", codebook)
        self.register_buffer("cluster_size", torch.ones(num_codes))
        self.register_buffer("embed_sum", codebook.clone())

    def _check(self, z: torch.Tensor) -> None:
        if z.ndim != 4 or z.shape[1] != self.dim:
            raise ValueError(f"expected latents [B, {self.dim}, H, W], got {tuple(z.shape)}")

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index ``[B, H, W]`` of the nearest code of every latent vector (no update)."""
        self._check(z)
        flat = z.detach().permute(0, 2, 3, 1).reshape(-1, self.dim).float()
        d = flat.square().sum(1, keepdim=True) - 2 * flat @ self.codebook.T + self.codebook.square().sum(1)
        return d.argmin(1).view(z.shape[0], z.shape[2], z.shape[3])

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors ``[B, D, H, W]`` of an index map ``[B, H, W]``."""
        if indices.ndim != 3 or indices.dtype != torch.long:
            raise ValueError(f"expected an index map [B, H, W] of dtype long, got {tuple(indices.shape)} "
                             f"{indices.dtype}")
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.num_codes):
            raise ValueError(f"indices must be in [0, {self.num_codes})")
        return self.codebook[indices].permute(0, 3, 1, 2)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        counts = torch.bincount(idx, minlength=self.num_codes).to(flat.dtype)
        sums = torch.zeros_like(self.embed_sum).index_add_(0, idx, flat)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.num_codes * self.eps) * n
        self.codebook.copy_(self.embed_sum / smoothed.unsqueeze(1))
        if self.dead_threshold > 0:
            dead = self.cluster_size < self.dead_threshold
            pick = torch.randint(len(flat), (self.num_codes,), device=flat.device)
            new = torch.where(dead.unsqueeze(1), flat[pick], self.codebook)
            self.codebook.copy_(new)
            self.embed_sum.copy_(torch.where(dead.unsqueeze(1), new, self.embed_sum))
            self.cluster_size.copy_(torch.where(dead, torch.ones_like(self.cluster_size), self.cluster_size))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = self.nearest(z)
        q = self.lookup(idx).to(z.dtype)
        if self.training:
            flat = z.detach().permute(0, 2, 3, 1).reshape(-1, self.dim).float()
            self._ema_update(flat, idx.flatten())
        commitment = self.beta * F.mse_loss(z, q.detach())
        return z + (q - z).detach(), idx, commitment


class _ResBlock(nn.Module):
    """ReLU - 3x3 conv - ReLU - 1x1 conv, added to the input (the paper's residual block)."""

    def __init__(self, channels: int, res_channels: int):
        super().__init__()
        self.net = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, res_channels, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(res_channels, channels, 1))

    def forward(self, x):
        return x + self.net(x)


def _n_halvings(factor: int, name: str) -> int:
    n = int(round(math.log2(factor))) if factor >= 1 else -1
    if factor < 2 or 2**n != factor:
        raise ValueError(f"{name} must be a power of 2 >= 2, got {factor}")
    return n


def _encoder(cin: int, hidden: int, res_ch: int, n_res: int, factor: int) -> nn.Sequential:
    """``log2(factor)`` stride-2 4x4 convolutions, a 3x3 convolution, residual blocks."""
    layers, c = [], cin
    for i in range(_n_halvings(factor, "factor")):
        out = hidden // 2 if i == 0 and factor > 2 else hidden
        layers += [nn.Conv2d(c, out, 4, stride=2, padding=1), nn.ReLU()]
        c = out
    layers += [nn.Conv2d(c, hidden, 3, padding=1)] + [_ResBlock(hidden, res_ch) for _ in range(n_res)] + [nn.ReLU()]
    return nn.Sequential(*layers)


def _decoder(cin: int, cout: int, hidden: int, res_ch: int, n_res: int, factor: int) -> nn.Sequential:
    """A 3x3 convolution, residual blocks, ``log2(factor)`` stride-2 4x4 transposed convolutions."""
    layers = [nn.Conv2d(cin, hidden, 3, padding=1)] + [_ResBlock(hidden, res_ch) for _ in range(n_res)] + [nn.ReLU()]
    n, c = _n_halvings(factor, "factor"), hidden
    for i in range(n):
        last = i == n - 1
        out = cout if last else hidden // 2
        layers.append(nn.ConvTranspose2d(c, out, 4, stride=2, padding=1))
        if not last:
            layers.append(nn.ReLU())
        c = out
    return nn.Sequential(*layers)


class VQVAE2(nn.Module):
    """Two-level VQ-VAE-2: ``forward(x) -> (x_hat, commitment)``; ``loss(x)`` is the training loss.

    ``encode_indices(x) -> (top [B, H/(bf·tf), W/(bf·tf)], bottom [B, H/bf, W/bf])`` and
    ``decode_indices(top, bottom) -> x_hat`` are what the priors are trained on and sampled
    through. Both quantisers share ``num_codes``, ``code_dim`` and the EMA settings.
    """

    def __init__(self, in_channels: int = 1, hidden: int = 128, res_channels: int = 64, n_res_blocks: int = 2,
                 num_codes: int = 512, code_dim: int = 64, bottom_factor: int = 4, top_factor: int = 2,
                 decay: float = 0.99, beta: float = 0.25, eps: float = 1e-5, dead_threshold: float = 0.0):
        super().__init__()
        if min(in_channels, hidden, res_channels, code_dim) < 1 or n_res_blocks < 0:
            raise ValueError("in_channels, hidden, res_channels and code_dim must be positive, n_res_blocks >= 0")
        _n_halvings(bottom_factor, "bottom_factor")
        _n_halvings(top_factor, "top_factor")
        self.in_channels, self.num_codes, self.code_dim = in_channels, num_codes, code_dim
        self.bottom_factor, self.top_factor = bottom_factor, top_factor
        q = dict(num_codes=num_codes, dim=code_dim, decay=decay, beta=beta, eps=eps, dead_threshold=dead_threshold)
        self.enc_b = _encoder(in_channels, hidden, res_channels, n_res_blocks, bottom_factor)
        self.enc_t = _encoder(hidden, hidden, res_channels, n_res_blocks, top_factor)
        self.pre_t = nn.Conv2d(hidden, code_dim, 1)
        self.quant_t = VectorQuantizerEMA(**q)
        self.dec_t = _decoder(code_dim, code_dim, hidden, res_channels, n_res_blocks, top_factor)
        self.pre_b = nn.Conv2d(hidden + code_dim, code_dim, 1)
        self.quant_b = VectorQuantizerEMA(**q)
        up = [nn.ConvTranspose2d(code_dim, code_dim, 4, stride=2, padding=1)
              for _ in range(_n_halvings(top_factor, "top_factor"))]
        self.up_t = nn.Sequential(*sum(([u, nn.ReLU()] for u in up[:-1]), []), up[-1])
        self.dec = _decoder(2 * code_dim, in_channels, hidden, res_channels, n_res_blocks, bottom_factor)

    def latent_shapes(self, height: int, width: int | None = None) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((top_h, top_w), (bottom_h, bottom_w))`` for images of this size."""
        width = height if width is None else width
        f = self.bottom_factor * self.top_factor
        if height % f or width % f:
            raise ValueError(f"image sides must be multiples of bottom_factor * top_factor = {f}, got {height}x{width}")
        return (height // f, width // f), (height // self.bottom_factor, width // self.bottom_factor)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected images [B, {self.in_channels}, H, W], got {tuple(x.shape)}")
        self.latent_shapes(x.shape[2], x.shape[3])

    def _top_bottom(self, x: torch.Tensor):
        self._check(x)
        h_b = self.enc_b(x)
        z_t = self.pre_t(self.enc_t(h_b))
        q_t, idx_t, c_t = self.quant_t(z_t)
        z_b = self.pre_b(torch.cat([h_b, self.dec_t(q_t)], 1))
        q_b, idx_b, c_b = self.quant_b(z_b)
        return q_t, q_b, idx_t, idx_b, c_t + c_b

    def decode(self, q_t: torch.Tensor, q_b: torch.Tensor) -> torch.Tensor:
        return self.dec(torch.cat([self.up_t(q_t), q_b], 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q_t, q_b, _, _, commitment = self._top_bottom(x)
        return self.decode(q_t, q_b), commitment

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``||x - x_hat||^2`` (mean over pixels) plus the commitment terms of both levels."""
        x_hat, commitment = self(x)
        recon = F.mse_loss(x_hat, x)
        return recon + commitment, {"recon": recon.detach(), "commitment": commitment.detach()}

    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top and bottom code maps of ``x``; never updates the codebooks."""
        self._check(x)
        h_b = self.enc_b(x)
        idx_t = self.quant_t.nearest(self.pre_t(self.enc_t(h_b)))
        q_t = self.quant_t.lookup(idx_t)
        idx_b = self.quant_b.nearest(self.pre_b(torch.cat([h_b, self.dec_t(q_t)], 1)))
        return idx_t, idx_b

    @torch.no_grad()
    def decode_indices(self, top: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
        """Images from code maps (top spatially ``top_factor`` times smaller than bottom)."""
        if top.shape[0] != bottom.shape[0] or tuple(bottom.shape[1:]) != (top.shape[1] * self.top_factor,
                                                                         top.shape[2] * self.top_factor):
            raise ValueError(f"bottom codes must be top_factor={self.top_factor} times larger than the top codes, "
                             f"got top {tuple(top.shape)} and bottom {tuple(bottom.shape)}")
        return self.decode(self.quant_t.lookup(top), self.quant_b.lookup(bottom))
