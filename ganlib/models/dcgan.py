"""DCGAN-style convolutional generator and discriminator for 8, 16 and 32 px images.

Architecture after Radford et al. (2016): the generator maps z to a 4x4 map and
doubles resolution with stride-2 transposed convolutions (normalization + ReLU),
ending in a 3x3 convolution and ``tanh``; the discriminator mirrors it with
stride-2 convolutions and LeakyReLU(0.2) down to 4x4, then a linear layer.
``width`` is the channel count at full resolution; channels double at every
halving, so ``width`` is the knob that makes a network wider or narrower.

``attention_resolution=r`` inserts a SAGAN self-attention block
(:class:`~ganlib.models.layers.SelfAttention2d`, Zhang et al. 2019) after the layer
whose feature maps are ``r x r`` (G: after the 4x4 projection or the upsampling block
that reaches ``r``; D: after the full-resolution conv or the downsampling block that
reaches ``r``). Its γ starts at 0, so at initialisation the network computes exactly
what it computes without the block.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _sn

from .base import LatentGenerator, check_positive_ints
from .layers import SelfAttention2d

SIZES = (8, 16, 32)


def _n_stages(image_size: int) -> int:
    if image_size not in SIZES:
        raise ValueError(f"image_size must be one of {SIZES}, got {image_size}")
    return int(math.log2(image_size // 4))


def _check_attention(attention_resolution, image_size: int) -> None:
    if attention_resolution is None:
        return
    allowed = [4 * 2**i for i in range(_n_stages(image_size) + 1)]
    if attention_resolution not in allowed:
        raise ValueError(f"attention_resolution must be None or one of the feature-map sizes {allowed} "
                         f"of a {image_size}px network, got {attention_resolution!r}")


def _norm2d(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":  # LayerNorm over (C, H, W) as GroupNorm with one group: safe with penalties
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'layer' or 'none', got {kind!r}")


class DCGANGenerator(LatentGenerator):
    def __init__(self, latent_dim: int = 64, channels: int = 1, image_size: int = 8, width: int = 64,
                 norm: str = "batch", attention_resolution: int | None = None):
        super().__init__()
        stages = _n_stages(image_size)
        _check_attention(attention_resolution, image_size)
        check_positive_ints(latent_dim=latent_dim, channels=channels, width=width)
        self.latent_dim, self.channels, self.image_size = latent_dim, channels, image_size
        top = width * 2**stages
        self.project = nn.Sequential(nn.Linear(latent_dim, top * 16), nn.Unflatten(1, (top, 4, 4)),
                                     _norm2d(norm, top), nn.ReLU())
        blocks, c, r = [], top, 4
        if attention_resolution == 4:
            blocks.append(SelfAttention2d(c))
        for _ in range(stages):
            blocks += [nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1), _norm2d(norm, c // 2), nn.ReLU()]
            c, r = c // 2, r * 2
            if attention_resolution == r:
                blocks.append(SelfAttention2d(c))
        self.blocks = nn.Sequential(*blocks)
        self.to_image = nn.Sequential(nn.Conv2d(c, channels, 3, padding=1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.check_latent(z)
        return self.to_image(self.blocks(self.project(z)))


class DCGANDiscriminator(nn.Module):
    """Raw scores ``[n]`` (or ``[n, out_dim]``); no sigmoid — the loss decides.

    Use ``norm="none"`` or ``"layer"`` with gradient penalties: BatchNorm couples
    the samples of a batch, which breaks per-sample gradient penalties.
    """

    def __init__(self, channels: int = 1, image_size: int = 8, width: int = 64, norm: str = "none",
                 spectral_norm: bool = False, out_dim: int = 1, attention_resolution: int | None = None):
        super().__init__()
        stages = _n_stages(image_size)
        _check_attention(attention_resolution, image_size)
        check_positive_ints(channels=channels, width=width, out_dim=out_dim)
        self.channels, self.image_size, self.out_dim = channels, image_size, out_dim
        wrap = _sn if spectral_norm else (lambda m: m)
        layers, c, r = [wrap(nn.Conv2d(channels, width, 3, padding=1)), nn.LeakyReLU(0.2)], width, image_size
        if attention_resolution == r:
            layers.append(SelfAttention2d(c, spectral_norm=spectral_norm))
        for _ in range(stages):
            layers += [wrap(nn.Conv2d(c, c * 2, 4, stride=2, padding=1)), _norm2d(norm, c * 2), nn.LeakyReLU(0.2)]
            c, r = c * 2, r // 2
            if attention_resolution == r:
                layers.append(SelfAttention2d(c, spectral_norm=spectral_norm))
        self.features = nn.Sequential(*layers)
        self.head = wrap(nn.Linear(c * 16, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.channels, self.image_size, self.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected images [n, {', '.join(map(str, expected))}], got {tuple(x.shape)}")
        out = self.head(self.features(x).flatten(1))
        return out.squeeze(1) if self.out_dim == 1 else out
