"""Progressively grown generator and discriminator (Karras et al., ICLR 2018, §2–4).

Both networks are built for ``max_resolution`` up front (as the official TensorFlow
code does), but run only up to the current *stage*: stage 0 is 4x4, stage ``s`` is
``4·2^s``. When a stage is added its block is *faded in*: with ``α`` going from 0 to 1,

* the generator outputs ``(1-α)·upsample(toRGB_{s-1}(h_{s-1})) + α·toRGB_s(block_s(h_{s-1}))``
  (nearest-neighbour upsampling, the paper's Fig. 2b);
* the discriminator mirrors it in feature space:
  ``(1-α)·fromRGB_{s-1}(avgpool(x)) + α·block_s(fromRGB_s(x))`` feeds the rest of D.

Architecture (paper Table 2 / official ``G_paper``, ``D_paper``): G starts from the
pixel-normalised latent, a dense layer to 4x4 and a 3x3 conv; every later block is
nearest upsample + two 3x3 convs; every conv is followed by LeakyReLU(0.2) and pixel norm;
toRGB is a linear 1x1 conv (no tanh). D: fromRGB 1x1 conv + LeakyReLU, blocks of two 3x3
convs + 2x2 average pooling, and at 4x4 minibatch-stddev, a 3x3 conv, a dense layer and a
linear output. All layers use equalized learning rate.

Feature maps per resolution: ``min(fmap_max, fmap_base // resolution)``; the paper's
1024² networks are ``fmap_base=16384, fmap_max=512`` (512 maps up to 32x32, halving
after). **Deviation (size only):** the defaults here are small (``fmap_base=1024``,
``fmap_max=128``) so that the book's runs fit a laptop CPU.

The stage and ``α`` are Python attributes (no host sync in ``forward``) and are saved in
the module's ``state_dict`` (``get_extra_state``), so a checkpoint restores them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import LatentGenerator, check_positive_ints
from .layers import EqualizedConv2d, EqualizedLinear, MinibatchStdDev, PixelNorm

__all__ = ["ProgressiveGenerator", "ProgressiveDiscriminator"]


def _check_resolution(max_resolution: int) -> int:
    if int(max_resolution) != max_resolution or max_resolution < 4 or max_resolution & (max_resolution - 1):
        raise ValueError(f"max_resolution must be a power of two >= 4 (4, 8, 16, 32, ...), got {max_resolution!r}")
    return int(math.log2(max_resolution)) - 1   # number of stages: 4x4 is stage 0


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling (the official ``upscale2d``)."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """2x2 box-filter downsampling (the official ``downscale2d``)."""
    return F.avg_pool2d(x, 2)


class _ChannelBias(nn.Module):
    """A learned bias per channel (the official code adds the 4x4 dense layer's bias after the reshape)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias.view(1, -1, 1, 1)


class _Growing(nn.Module):
    """Stage / α bookkeeping shared by G and D."""

    def _init_growth(self, max_resolution: int) -> None:
        self.n_stages = _check_resolution(max_resolution)
        self.max_resolution = int(max_resolution)
        self.stage, self.alpha = 0, 1.0

    @property
    def resolution(self) -> int:
        """Side of the images at the current stage."""
        return 4 * 2**self.stage

    def set_progress(self, stage: int, alpha: float = 1.0) -> None:
        """Jump to ``stage`` with fade-in weight ``alpha`` (1 = the new block fully in)."""
        if int(stage) != stage or not 0 <= stage < self.n_stages:
            raise ValueError(f"stage must be an integer in [0, {self.n_stages - 1}] for max_resolution "
                             f"{self.max_resolution}, got {stage!r}")
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        self.stage, self.alpha = int(stage), alpha

    def grow(self) -> None:
        """Add the next resolution block with ``alpha = 0`` (the start of its fade-in)."""
        if self.stage + 1 >= self.n_stages:
            raise ValueError(f"already at max_resolution {self.max_resolution}; cannot grow further")
        self.set_progress(self.stage + 1, 0.0)

    @property
    def fading(self) -> bool:
        return self.stage > 0 and self.alpha < 1.0

    def get_extra_state(self) -> dict:
        return {"stage": self.stage, "alpha": self.alpha}

    def set_extra_state(self, state: dict) -> None:
        self.set_progress(state["stage"], state["alpha"])

    def nf(self, resolution: int) -> int:
        return max(1, min(self.fmap_max, self.fmap_base // resolution))


class ProgressiveGenerator(_Growing, LatentGenerator):
    """ProGAN generator; outputs ``[n, channels, r, r]`` at the current resolution ``r``.

    Args:
        latent_dim: size of z (paper: 512 = the 4x4 feature count; default ``nf(4)``).
        channels: image channels.
        max_resolution: final image side (power of two >= 4).
        fmap_base, fmap_max: feature maps ``min(fmap_max, fmap_base // resolution)``.
        normalize_latents: pixel-norm z before the first layer (paper: yes).
        pixel_norm: pixel norm after every conv (paper: yes).
    """

    def __init__(self, latent_dim: int | None = None, channels: int = 1, max_resolution: int = 16,
                 fmap_base: int = 1024, fmap_max: int = 128, normalize_latents: bool = True,
                 pixel_norm: bool = True):
        super().__init__()
        check_positive_ints(channels=channels, fmap_base=fmap_base, fmap_max=fmap_max)
        self.fmap_base, self.fmap_max = fmap_base, fmap_max
        self._init_growth(max_resolution)
        if latent_dim is not None:
            check_positive_ints(latent_dim=latent_dim)
        self.latent_dim = self.nf(4) if latent_dim is None else int(latent_dim)
        self.channels = channels
        norm = PixelNorm() if pixel_norm else nn.Identity()
        self.latent_norm = PixelNorm() if normalize_latents else nn.Identity()
        act = nn.LeakyReLU(0.2)
        c4 = self.nf(4)
        # 4x4: dense (gain sqrt(2)/4, as the official code) -> 4x4 map, per-channel bias, act, norm; conv.
        self.blocks = nn.ModuleList([nn.Sequential(
            EqualizedLinear(self.latent_dim, c4 * 16, bias=False, gain=math.sqrt(2) / 4),
            nn.Unflatten(1, (c4, 4, 4)), _ChannelBias(c4), act, norm, EqualizedConv2d(c4, c4, 3), act, norm)])
        self.to_rgb = nn.ModuleList([EqualizedConv2d(c4, channels, 1, gain=1.0)])
        for s in range(1, self.n_stages):
            r = 4 * 2**s
            c_in, c_out = self.nf(r // 2), self.nf(r)
            self.blocks.append(nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"),
                EqualizedConv2d(c_in, c_out, 3), act, norm, EqualizedConv2d(c_out, c_out, 3), act, norm))
            self.to_rgb.append(EqualizedConv2d(c_out, channels, 1, gain=1.0))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.check_latent(z)
        h = self.blocks[0](self.latent_norm(z))
        for s in range(1, self.stage):
            h = self.blocks[s](h)
        if self.stage == 0:
            return self.to_rgb[0](h)
        new = self.to_rgb[self.stage](self.blocks[self.stage](h))
        if not self.fading:
            return new
        old = upsample2x(self.to_rgb[self.stage - 1](h))
        return torch.lerp(old, new, self.alpha)      # (1-α)·old + α·new, exact at α = 0 and 1


class ProgressiveDiscriminator(_Growing):
    """ProGAN discriminator (critic); takes ``[n, channels, r, r]`` at the current resolution and
    returns one raw score per sample, ``[n]``.

    Args:
        channels, max_resolution, fmap_base, fmap_max: as for :class:`ProgressiveGenerator`.
        mbstd_group_size: group size of the minibatch-stddev layer (paper: 4; 0 turns it off).
    """

    def __init__(self, channels: int = 1, max_resolution: int = 16, fmap_base: int = 1024, fmap_max: int = 128,
                 mbstd_group_size: int = 4):
        super().__init__()
        check_positive_ints(channels=channels, fmap_base=fmap_base, fmap_max=fmap_max)
        self.fmap_base, self.fmap_max = fmap_base, fmap_max
        self._init_growth(max_resolution)
        self.channels = channels
        act = nn.LeakyReLU(0.2)
        c4 = self.nf(4)
        mbstd = MinibatchStdDev(mbstd_group_size) if mbstd_group_size else None
        extra = 1 if mbstd is not None else 0
        # blocks[s] takes nf(r) maps at r = 4·2^s and returns nf(r/2) maps at r/2 (s >= 1);
        # blocks[0] is the 4x4 head.
        self.blocks = nn.ModuleList([nn.Sequential(
            *([mbstd] if mbstd is not None else []),
            EqualizedConv2d(c4 + extra, c4, 3), act, nn.Flatten(),
            EqualizedLinear(c4 * 16, c4), act, EqualizedLinear(c4, 1, gain=1.0))])
        self.from_rgb = nn.ModuleList([nn.Sequential(EqualizedConv2d(channels, c4, 1), act)])
        for s in range(1, self.n_stages):
            r = 4 * 2**s
            c, c_next = self.nf(r), self.nf(r // 2)
            self.blocks.append(nn.Sequential(
                EqualizedConv2d(c, c, 3), act, EqualizedConv2d(c, c_next, 3), act, nn.AvgPool2d(2)))
            self.from_rgb.append(nn.Sequential(EqualizedConv2d(channels, c, 1), act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.resolution
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.channels, r, r):
            raise ValueError(f"expected images [n, {self.channels}, {r}, {r}] at stage {self.stage}, got "
                             f"{tuple(x.shape)}; downsample the data to the current resolution")
        h = self.blocks[self.stage](self.from_rgb[self.stage](x))
        if self.fading:
            old = self.from_rgb[self.stage - 1](downsample2x(x))
            h = torch.lerp(old, h, self.alpha)          # (1-α)·old + α·new
        for s in range(self.stage - 1, -1, -1):
            h = self.blocks[s](h)
        return h.squeeze(1)
