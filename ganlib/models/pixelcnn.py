r"""Gated PixelCNN over discrete code maps (van den Oord, Kalchbrenner, Vinyals, Espeholt,
Graves & Kavukcuoglu, "Conditional Image Generation with PixelCNN Decoders", NeurIPS 2016),
the prior of PC-VQ2.

The joint distribution of a map of codes is factorised in raster order (paper, Eq. 1),
:math:`p(c) = \prod_{i} p(c_i \mid c_1, \dots, c_{i-1})`, and each layer is a gated unit
(Eq. 2 and Eq. 4 with a conditioning map :math:`s = m(h)`):

.. math::
    y = \tanh(W_{f}\ast x + V_{f}\ast s) \odot \sigma(W_{g}\ast x + V_{g}\ast s).

Two stacks remove the blind spot of a single masked kernel (§2.2): the **vertical** stack
sees every row above (a ``k//2 + 1`` x ``k`` kernel, its output shifted down one row before it
feeds the horizontal stack), the **horizontal** stack sees the pixels to the left in the current
row (a 1 x ``k`` kernel, mask "A" without the current position in the first layer, "B" with it
after). Only the horizontal stack has a residual connection.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GatedPixelCNN", "MaskedConv2d", "raster_mask", "vertical_mask", "horizontal_mask"]

MASK_TYPES = ("A", "B")


def _check_kernel(k: int) -> None:
    if int(k) != k or k < 1 or k % 2 == 0:
        raise ValueError(f"kernel size must be an odd positive integer, got {k}")


def _check_mask_type(mask_type: str) -> None:
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be 'A' (first layer, excludes the centre) or 'B', got {mask_type!r}")


def raster_mask(k: int, mask_type: str) -> torch.Tensor:
    """The ``k x k`` mask of a plain PixelCNN convolution (van den Oord et al. 2016a, Fig. 2):
    1 on the rows above the centre and left of the centre in its row; the centre itself is
    1 for mask "B" only."""
    _check_kernel(k)
    _check_mask_type(mask_type)
    m = torch.zeros(k, k)
    c = k // 2
    m[:c] = 1
    m[c, :c] = 1
    if mask_type == "B":
        m[c, c] = 1
    return m


def vertical_mask(k: int) -> torch.Tensor:
    """``k x k`` mask of the vertical stack: the centre row and every row above it (all columns);
    causal once the stack's output is shifted down a row."""
    _check_kernel(k)
    m = torch.zeros(k, k)
    m[: k // 2 + 1] = 1
    return m


def horizontal_mask(k: int, mask_type: str) -> torch.Tensor:
    """``1 x k`` mask of the horizontal stack: left of the centre, plus the centre for "B"."""
    _check_kernel(k)
    _check_mask_type(mask_type)
    m = torch.zeros(1, k)
    m[0, : k // 2 + (mask_type == "B")] = 1
    return m


class MaskedConv2d(nn.Conv2d):
    """A same-size convolution whose kernel is multiplied by a fixed 0/1 ``mask`` [kh, kw].

    Only the bounding box of the mask's ones is convolved (the padding is shifted to match),
    so a vertical-stack kernel costs ``k//2 + 1`` rows, not ``k``: same result, less work.
    """

    def __init__(self, in_channels: int, out_channels: int, mask: torch.Tensor):
        kh, kw = mask.shape
        super().__init__(in_channels, out_channels, (kh, kw), padding=(kh // 2, kw // 2))
        if not mask.any():
            raise ValueError("the mask must keep at least one tap")
        self.register_buffer("mask", mask.clone().float())
        rows, cols = mask.nonzero(as_tuple=True)
        self._box = (int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1)
        r0, r1, c0, c1 = self._box
        # F.pad order (left, right, top, bottom); a negative entry crops
        self._pad = (kw // 2 - c0, c1 - 1 - kw // 2, kh // 2 - r0, r1 - 1 - kh // 2)

    def forward(self, x):
        r0, r1, c0, c1 = self._box
        w = (self.weight * self.mask)[:, :, r0:r1, c0:c1]
        return F.conv2d(F.pad(x, self._pad), w, self.bias)


def _shift_down(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def _gate(x: torch.Tensor) -> torch.Tensor:
    f, g = x.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


class _GatedLayer(nn.Module):
    def __init__(self, width: int, k: int, mask_type: str, cond_channels: int, dropout: float = 0.0):
        super().__init__()
        self.residual = mask_type == "B"
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()  # p = 0 draws no random numbers
        self.v_conv = MaskedConv2d(width, 2 * width, vertical_mask(k))
        self.v_to_h = nn.Conv2d(2 * width, 2 * width, 1)
        self.h_conv = MaskedConv2d(width, 2 * width, horizontal_mask(k, mask_type))
        self.h_out = nn.Conv2d(width, width, 1)
        self.cond = nn.Conv2d(cond_channels, 4 * width, 1, bias=False) if cond_channels else None

    def forward(self, v, h, s):
        v_pre = self.v_conv(v)
        h_pre = self.h_conv(h) + self.v_to_h(_shift_down(v_pre))
        if s is not None:
            cv, ch = self.cond(s).chunk(2, dim=1)
            v_pre, h_pre = v_pre + cv, h_pre + ch
        h_new = self.h_out(self.dropout(_gate(h_pre)))
        return _gate(v_pre), (h + h_new if self.residual else h_new)


class GatedPixelCNN(nn.Module):
    """Gated PixelCNN prior over maps of ``num_codes`` discrete codes: ``forward(codes, cond) ->
    logits [B, num_codes, H, W]``.

    ``cond_codes`` (optional): the number of codes of a conditioning map (the top codes, for
    the bottom prior of VQ-VAE-2). It is embedded, passed through a small residual
    conditioning stack, upsampled ``cond_scale`` times (nearest) to the prior's resolution and
    added inside every gate as ``V * s`` (1x1 convolutions). The first layer uses
    ``first_kernel`` (7 in the paper), the others ``kernel``.

    ``dropout``: rate of dropout on each layer's gated horizontal features, before the 1x1 that
    feeds the residual stream (active in training mode only). The gated PixelCNN paper has none;
    the VQ-VAE-2 priors use dropout, and a prior fitted to a few hundred code maps needs it to
    generalise. 0 (the default) adds no layer and draws no random numbers.
    """

    def __init__(self, num_codes: int, width: int = 64, n_layers: int = 6, kernel: int = 3, first_kernel: int = 7,
                 cond_codes: int | None = None, cond_scale: int = 2, n_cond_res: int = 2, dropout: float = 0.0):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if int(num_codes) != num_codes or num_codes < 2 or width < 1 or n_layers < 1:
            raise ValueError(f"need num_codes >= 2, width >= 1 and n_layers >= 1, got {num_codes}, {width}, {n_layers}")
        if cond_codes is not None and (cond_codes < 2 or cond_scale < 1):
            raise ValueError(f"cond_codes must be >= 2 and cond_scale >= 1, got {cond_codes}, {cond_scale}")
        self.num_codes, self.width, self.cond_codes, self.cond_scale = num_codes, width, cond_codes, cond_scale
        self.embed = nn.Embedding(num_codes, width)
        if cond_codes is not None:
            self.cond_embed = nn.Embedding(cond_codes, width)
            blocks = []
            for _ in range(n_cond_res):
                blocks.append(nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                            nn.Conv2d(width, width, 1)))
            self.cond_stack = nn.ModuleList(blocks)
        cond_ch = width if cond_codes is not None else 0
        self.layers = nn.ModuleList([_GatedLayer(width, first_kernel, "A", cond_ch, dropout)] +
                                    [_GatedLayer(width, kernel, "B", cond_ch, dropout) for _ in range(n_layers - 1)])
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 1), nn.ReLU(), nn.Conv2d(width, num_codes, 1))

    def _check_codes(self, codes: torch.Tensor, n_codes: int, name: str) -> None:
        if not isinstance(codes, torch.Tensor) or codes.ndim != 3 or codes.dtype != torch.long:
            raise ValueError(f"{name} must be a code map [B, H, W] of dtype long, got "
                             f"{tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= n_codes):
            raise ValueError(f"{name} must hold codes in [0, {n_codes})")

    def condition(self, cond: torch.Tensor | None, shape: tuple[int, int], check: bool = True) -> torch.Tensor | None:
        """The conditioning map ``s`` [B, width, H, W] from the conditioning codes (once per batch)."""
        if self.cond_codes is None:
            if cond is not None:
                raise ValueError("this prior was built without cond_codes, so it takes no conditioning map")
            return None
        if cond is None:
            raise ValueError("this prior is conditional: pass cond (e.g. the top code map)")
        if check:
            self._check_codes(cond, self.cond_codes, "cond")
        expected = tuple(d * self.cond_scale for d in cond.shape[-2:])
        if expected != tuple(shape):
            raise ValueError(f"cond of spatial size {tuple(cond.shape[1:])} upsampled x{self.cond_scale} is "
                             f"{expected}, but the codes are {tuple(shape)}")
        s = self.cond_embed(cond).permute(0, 3, 1, 2)
        for block in self.cond_stack:
            s = s + block(s)
        return F.interpolate(s, scale_factor=self.cond_scale, mode="nearest") if self.cond_scale > 1 else s

    def _logits(self, codes: torch.Tensor, s: torch.Tensor | None) -> torch.Tensor:
        x = self.embed(codes).permute(0, 3, 1, 2)
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h, s)
        return self.head(h)

    def forward(self, codes: torch.Tensor, cond: torch.Tensor | None = None, check: bool = True) -> torch.Tensor:
        """``check=False`` skips the value-range checks, which read the data: needed to run the
        prior under ``torch.func.vmap`` (an ensemble of stacked priors)."""
        if check:
            self._check_codes(codes, self.num_codes, "codes")
        return self._logits(codes, self.condition(cond, codes.shape[-2:], check))

    def nll(self, codes: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Negative log-likelihood in **bits** of each map: ``[B]`` (sum over positions)."""
        logits = self(codes, cond)
        nats = F.cross_entropy(logits, codes, reduction="none").flatten(1).sum(1)
        return nats / math.log(2)

    @torch.no_grad()
    def sample(self, n: int, shape: tuple[int, int] | None = None, cond: torch.Tensor | None = None,
               generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        """``n`` code maps drawn position by position in raster order, all ``n`` at once.

        ``shape`` (H, W) is needed without ``cond``; with it, it is ``cond``'s size times
        ``cond_scale``. Draws use ``generator`` (on the model's device), so a seeded generator
        gives the same maps. The logits of row ``i`` depend on rows ``<= i`` only (no kernel has a
        tap below its output row), so each draw runs the network on the rows so far, not on the
        whole map: for a 4-row map, 10/16 of the work.
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        device = self.embed.weight.device
        if cond is not None:
            if cond.shape[0] != n:
                raise ValueError(f"cond holds {cond.shape[0]} maps but n={n}")
            shape = tuple(d * self.cond_scale for d in cond.shape[1:])
        if shape is None:
            raise ValueError("give shape=(H, W) (or cond, for a conditional prior)")
        H, W = shape
        s = self.condition(cond, (H, W))
        codes = torch.zeros(n, H, W, dtype=torch.long, device=device)
        for i in range(H):
            rows, s_rows = codes[:, : i + 1], None if s is None else s[:, :, : i + 1]  # views
            for j in range(W):
                probs = torch.softmax(self._logits(rows, s_rows)[:, :, i, j].float() / temperature, dim=1)
                codes[:, i, j] = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        return codes
