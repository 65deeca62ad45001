"""Building blocks from the papers the book follows: self-attention (SAGAN) and the
ProGAN layers (minibatch standard deviation, pixel norm, equalized learning rate).

* :class:`SelfAttention2d` — Zhang, Goodfellow, Metaxas & Odena, "Self-Attention
  Generative Adversarial Networks", ICML 2019, §3 (Eq. 1–3).
* :class:`MinibatchStdDev`, :class:`PixelNorm`, :class:`EqualizedLinear`,
  :class:`EqualizedConv2d` — Karras, Aila, Laine & Lehtinen, "Progressive Growing of
  GANs for Improved Quality, Stability, and Variation", ICLR 2018, §3 and §4.1–4.2,
  checked against the official code (``tkarras/progressive_growing_of_gans``,
  ``networks.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as _sn

__all__ = ["SelfAttention2d", "MinibatchStdDev", "PixelNorm", "EqualizedLinear", "EqualizedConv2d",
           "attention_readout", "spectral_norm_all"]

ATTENTION_VARIANTS = ("paper", "official")


class SelfAttention2d(nn.Module):
    r"""SAGAN self-attention block (Zhang et al., 2019, §3), ``y = x + γ·o`` with γ initialised to 0.

    With ``x ∈ R^{C×N}`` (N = H·W positions) and 1x1 convolutions ``f`` (keys), ``g``
    (queries), ``h`` (values) and ``v`` (output projection):

    .. math::
        s_{ij} = f(x_i)^\top g(x_j),\qquad
        \beta_{j,i} = \frac{\exp s_{ij}}{\sum_{i'} \exp s_{i'j}},\qquad
        o_j = v\Big(\sum_i \beta_{j,i}\, h(x_i)\Big),\qquad y_j = \gamma\, o_j + x_j .

    ``β_{j,·}`` is the *attention map of query position j*: a distribution over the
    positions ``i`` that output position ``j`` reads from.

    The logits are plain dot products (no ``1/sqrt(d)``: that would be a deviation). The
    1x1 convolutions run as one matrix product over channels (f, g and h together) and the
    attention as two ``bmm`` with an explicit softmax: the same arithmetic as four conv calls
    and ``scaled_dot_product_attention``, about 1.5x as fast on a CPU at chapter 8's size
    (C = 32, 8x8) and no slower at 16x16 (``benchmarks/bench_attention.py``). The conv
    modules stay as the holders of the weights (spectral norm, state dicts).
    :meth:`attention_map` recomputes ``β`` for one query, for inspection and tests.

    Two structures are in circulation; ``variant`` picks one:

    * ``"paper"`` (**default**): f, g, h map C → C/8, v maps C/8 → C, keys and values at
      every position — the paper's Eq. 1–3 (§3, "C̄ = C/8").
    * ``"official"``: the authors' TensorFlow code (``brain-research/self-attention-gan``,
      ``non_local.py: sn_non_local_block_sim``) and BigGAN-PyTorch: f, g map C → C/8,
      h maps C → **C/2**, v maps C/2 → C, and keys and values are **2x2 max-pooled**
      (4x fewer key positions), so the map of a query has (H/2)·(W/2) entries.

    The 1x1 convolutions have no bias, as in the official code. ``spectral_norm=True``
    wraps all four with spectral normalization (SAGAN applies SN to every layer of G and D).
    """

    def __init__(self, channels: int, variant: str = "paper", spectral_norm: bool = False):
        super().__init__()
        if variant not in ATTENTION_VARIANTS:
            raise ValueError(f"variant must be one of {ATTENTION_VARIANTS}, got {variant!r}")
        if int(channels) != channels or channels < 8:
            raise ValueError(f"channels must be an integer >= 8 (keys have channels // 8 dims), got {channels!r}")
        self.channels, self.variant = channels, variant
        self.pool = variant == "official"
        key_ch = channels // 8
        value_ch = channels // 2 if variant == "official" else channels // 8
        wrap = _sn if spectral_norm else (lambda m: m)
        self.f = wrap(nn.Conv2d(channels, key_ch, 1, bias=False))      # keys   (official: phi)
        self.g = wrap(nn.Conv2d(channels, key_ch, 1, bias=False))      # queries (official: theta)
        self.h = wrap(nn.Conv2d(channels, value_ch, 1, bias=False))    # values (official: g)
        self.v = wrap(nn.Conv2d(value_ch, channels, 1, bias=False))    # output (official: attn conv)
        self.gamma = nn.Parameter(torch.zeros(()))

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected feature maps [n, {self.channels}, H, W], got {tuple(x.shape)}")
        if self.pool and (x.shape[2] % 2 or x.shape[3] % 2):
            raise ValueError(f"variant='official' max-pools keys 2x2 and needs even H and W, got {tuple(x.shape[2:])}")

    def _qkv(self, x: torch.Tensor):
        """Queries [n, C/8, N], keys [n, C/8, Nk], values [n, Cv, Nk] and the key grid (Hk, Wk):
        the 1x1 convolutions g, f and h as one product of their stacked weights with x [n, C, N]."""
        H, W = x.shape[2:]
        weights = torch.cat([self.g.weight, self.f.weight, self.h.weight]).flatten(1)
        q, k, val = torch.matmul(weights, x.flatten(2)).split(
            [self.g.out_channels, self.f.out_channels, self.h.out_channels], dim=1)
        if self.pool:
            k, val = (F.max_pool2d(t.unflatten(2, (H, W)), 2).flatten(2) for t in (k, val))
            return q, k, val, (H // 2, W // 2)
        return q, k, val, (H, W)

    @staticmethod
    def _softmax_over_keys(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """β [n, N, Nk]: row j = softmax over the keys i of s_ij = f(x_i)ᵀ g(x_j)."""
        return torch.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """All attention maps ``β``, explicitly: ``[n, N, Nk]``, row ``j`` = softmax over keys."""
        self._check(x)
        q, k, _, _ = self._qkv(x)
        return self._softmax_over_keys(q, k)

    def attention_map(self, x: torch.Tensor, query_index) -> torch.Tensor:
        """The attention map of one query position, ``[n, Hk, Wk]`` (sums to 1 per sample).

        ``query_index`` is a flat index ``j`` into the H·W positions of ``x`` or a
        ``(row, col)`` pair in ``x``'s grid. With ``variant="official"`` the map lives on
        the pooled (H/2, W/2) key grid.
        """
        self._check(x)
        H, W = x.shape[2:]
        if isinstance(query_index, (tuple, list)):
            if len(query_index) != 2 or not (0 <= query_index[0] < H and 0 <= query_index[1] < W):
                raise ValueError(f"query (row, col) must lie in the {H}x{W} grid, got {query_index!r}")
            j = int(query_index[0]) * W + int(query_index[1])
        else:
            j = int(query_index)
            if not 0 <= j < H * W:
                raise ValueError(f"flat query index must be in [0, {H * W}), got {query_index!r}")
        q, k, _, grid = self._qkv(x)
        return self._softmax_over_keys(q[:, :, j : j + 1], k).reshape(len(x), *grid)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        self._check(x)
        q, k, val, _ = self._qkv(x)
        beta = self._softmax_over_keys(q, k)
        o = torch.bmm(val, beta.transpose(1, 2))            # o_j = Σ_i β_{j,i} h(x_i): [n, Cv, N]
        o = torch.matmul(self.v.weight.flatten(1), o)       # the 1x1 convolution v
        y = x + self.gamma * o.view_as(x)
        return (y, beta) if return_attention else y

    def extra_repr(self) -> str:
        return f"channels={self.channels}, variant={self.variant!r}"


def attention_readout(model: nn.Module, inputs: torch.Tensor, query, layer: SelfAttention2d | None = None):
    """Run ``model(inputs)`` and read out the attention map of ``query`` in its attention block.

    Returns ``(output, map)`` with ``map`` of shape ``[n, Hk, Wk]`` (see
    :meth:`SelfAttention2d.attention_map`); ``query`` is ``(row, col)`` in the grid of the
    block's input feature map. ``layer`` defaults to the model's only SelfAttention2d.
    """
    if layer is None:
        blocks = [m for m in model.modules() if isinstance(m, SelfAttention2d)]
        if len(blocks) != 1:
            raise ValueError(f"model has {len(blocks)} SelfAttention2d blocks; pass layer= to pick one")
        layer = blocks[0]
    seen = []
    handle = layer.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            out = model(inputs)
            amap = layer.attention_map(seen[-1], query)
    finally:
        handle.remove()
    return out, amap


def spectral_norm_all(module: nn.Module) -> nn.Module:
    """Wrap every Linear / Conv / ConvTranspose weight of ``module`` with spectral normalization
    (Miyato et al., 2018), in place; already-parametrized layers are left alone.

    SAGAN (Zhang et al., 2019, §5) applies SN to the generator as well as the discriminator;
    this is how the book does that to a :class:`~ganlib.models.DCGANGenerator`.
    ConvTranspose weights are ``[in, out, k, k]``, so their power iteration runs over ``dim=1``.
    """
    for m in list(module.modules()):
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)):
            if parametrize.is_parametrized(m, "weight"):
                continue
            _sn(m, dim=1 if isinstance(m, nn.ConvTranspose2d) else 0)
    return module


# --- ProGAN layers (Karras et al., 2018) -----------------------------------------------------

class MinibatchStdDev(nn.Module):
    """Minibatch standard deviation (Karras et al., 2018, §3): appends one feature map.

    The batch is split into groups of ``group_size`` (or the whole batch if it is smaller);
    within a group the standard deviation of every feature at every position is taken,
    ``sqrt(mean((x - mean x)²) + 1e-8)``, averaged to one number per group and appended as a
    constant channel. As in the official ``minibatch_stddev_layer`` the reshape
    ``[G, M, C, H, W]`` puts sample ``i`` in group ``i mod M`` (strided groups); the batch
    size must be a multiple of the group size.
    """

    def __init__(self, group_size: int = 4):
        super().__init__()
        if int(group_size) != group_size or group_size < 2:
            raise ValueError(f"group_size must be an integer >= 2, got {group_size!r}")
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected feature maps [n, C, H, W], got {tuple(x.shape)}")
        n, _, H, W = x.shape
        G = min(self.group_size, n)
        if n % G:
            raise ValueError(f"batch size {n} is not a multiple of the minibatch-stddev group size {G}; "
                             "use a batch size divisible by it")
        y = x.float().reshape(G, -1, *x.shape[1:])                       # [G, M, C, H, W]
        y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt()           # [M, C, H, W]
        y = y.mean(dim=(1, 2, 3)).to(x.dtype)                           # [M]
        y = y.reshape(1, -1, 1, 1, 1).expand(G, -1, 1, H, W).reshape(n, 1, H, W)
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"


class PixelNorm(nn.Module):
    """Pixelwise feature normalization (Karras et al., 2018, §4.2, Eq. in text):
    ``b_xy = a_xy / sqrt(mean_c a_xy² + ε)`` with ε = 1e-8; normalises over dim 1."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + self.eps)


class EqualizedLinear(nn.Module):
    """Linear layer with equalized learning rate (Karras et al., 2018, §4.1).

    Weights are drawn N(0, 1) and multiplied at run time by the He constant
    ``c = gain / sqrt(fan_in)`` (gain √2 by default). Adam's update is scale-free, so every
    weight then learns at the same speed relative to its effective scale. Bias starts at 0.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, gain: float = math.sqrt(2)):
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError("in_features and out_features must be positive")
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.scale = gain / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)

    def extra_repr(self) -> str:
        o, i = self.weight.shape
        return f"{i}, {o}, scale={self.scale:.4g}, bias={self.bias is not None}"


class EqualizedConv2d(nn.Module):
    """2-D convolution with equalized learning rate (Karras et al., 2018, §4.1):
    weights N(0, 1) scaled at run time by ``gain / sqrt(in_channels · k · k)``; 'same' padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 gain: float = math.sqrt(2)):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer ('same' padding), got {kernel_size!r}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError("in_channels and out_channels must be positive")
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = gain / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, scale={self.scale:.4g}, bias={self.bias is not None}"
