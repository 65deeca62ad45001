"""Input checks, view bounds and drawing primitives shared by figures, animations and the monitor.

Checks turn tensors or arrays into numpy and refuse bad shapes by name: images are
``[n, C, H, W]`` in ``[-1, 1]`` (C = 1 or 3), 2-D samples ``[n, 2]``, a mixture anything
with ``.means`` ``[K, 2]`` and ``.std``. The primitives draw on a given ``Axes``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from matplotlib.collections import PatchCollection
from matplotlib.patches import Circle

from .style import COLUMN_WIDTH


# --- input checks ----------------------------------------------------------------------------------
def as_numpy(x, name: str = "samples") -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a tensor or array, got {type(x).__name__}") from err


def points(samples, name: str = "samples") -> np.ndarray:
    x = as_numpy(samples, name)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"{name} must have shape [n, 2] (2-D points), got {tuple(x.shape)}")
    return x


def images01(images, value_range=(-1.0, 1.0)) -> np.ndarray:
    """``[n, C, H, W]`` in ``value_range`` -> float array in ``[0, 1]`` (clamped)."""
    x = as_numpy(images, "images")
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape [n, C, H, W] with C = 1 (grey) or 3 (RGB), got {tuple(x.shape)}; "
                         "for a single image pass x[None]")
    if len(x) == 0:
        raise ValueError("images is empty")
    lo, hi = value_range
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range!r}")
    return np.clip((np.nan_to_num(x, nan=lo) - lo) / (hi - lo), 0.0, 1.0)


def mixture_arrays(mixture) -> tuple[np.ndarray, float] | None:
    """``(means [K, 2], std)`` of a mixture, or None for None."""
    if mixture is None:
        return None
    if not (hasattr(mixture, "means") and hasattr(mixture, "std")):
        raise TypeError("mixture must have .means [K, 2] and .std (e.g. ganlib.data.ring_of_gaussians()), "
                        f"got {type(mixture).__name__}")
    means = as_numpy(mixture.means, "mixture.means")
    if means.ndim != 2 or means.shape[1] != 2:
        raise ValueError(f"mixture.means must have shape [K, 2], got {tuple(means.shape)}")
    return means, float(mixture.std)


def looks_like_mixture(obj) -> bool:
    means = getattr(obj, "means", None)
    return isinstance(means, torch.Tensor) and means.ndim == 2 and means.shape[1] == 2 and hasattr(obj, "std")


def kind_of(x) -> str:
    """``"2d"`` for ``[n, 2]`` points, ``"images"`` for ``[n, C, H, W]``; else ValueError."""
    shape = tuple(x.shape)
    if len(shape) == 2 and shape[1] == 2:
        return "2d"
    if len(shape) == 4 and shape[1] in (1, 3):
        return "images"
    raise ValueError(f"cannot plot samples of shape {shape}: expected [n, 2] points or [n, C, H, W] images")


def check_kind(kind, x) -> str:
    detected = kind_of(x)
    if kind is None:
        return detected
    if kind not in ("2d", "images"):
        raise ValueError(f"kind must be '2d', 'images' or None (automatic), got {kind!r}")
    if kind != detected:
        raise ValueError(f"kind={kind!r} but the samples have shape {tuple(x.shape)} ({detected!r})")
    return kind


# --- bounds ------------------------------------------------------------------------------------------
def _square(lo: np.ndarray, hi: np.ndarray) -> tuple[float, float, float, float]:
    centre, half = (lo + hi) / 2, float(np.max(hi - lo)) / 2
    return (centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half)


def mixture_bounds(mixture) -> tuple[float, float, float, float]:
    """A square view ``(xmin, xmax, ymin, ymax)`` around a mixture's modes with a margin."""
    means, std = mixture_arrays(mixture)
    lo, hi = means.min(0), means.max(0)
    pad = max(0.25 * float(np.max(hi - lo)), 6 * std, 0.5)
    return _square(lo - pad, hi + pad)


def points_bounds(points: Sequence[np.ndarray]) -> tuple[float, float, float, float]:
    """A square view over the central 99% of all the given point sets."""
    x = np.concatenate([p for p in points if len(p)]) if any(len(p) for p in points) else np.zeros((1, 2))
    x = x[np.isfinite(x).all(1)]
    if len(x) == 0:
        x = np.zeros((1, 2))
    lo, hi = np.percentile(x, 0.5, axis=0), np.percentile(x, 99.5, axis=0)
    pad = np.maximum(0.1 * (hi - lo), 0.1)
    return _square(lo - pad, hi + pad)


def check_bounds(bounds):
    if bounds is None:
        return None
    b = tuple(float(v) for v in bounds)
    if len(b) != 4 or not (b[1] > b[0] and b[3] > b[2]):
        raise ValueError(f"bounds must be (xmin, xmax, ymin, ymax) with xmax > xmin and ymax > ymin, got {bounds!r}")
    return b


# --- drawing primitives ------------------------------------------------------------------------------
def draw_mixture(ax, mix):
    """A mixture's 3-sigma circles and its mode means as crosses."""
    means, std = mix
    ax.add_collection(PatchCollection([Circle(tuple(m), 3 * std) for m in means], facecolor="none",
                                      edgecolor="0.45", linewidth=0.8, zorder=3))
    # Crosses under the samples: a cross left visible is a mode the samples missed.
    ax.scatter(means[:, 0], means[:, 1], marker="x", s=22, c="crimson", linewidths=1.2, zorder=1.5,
               label="mode means")


def outside_label(x: np.ndarray, bounds) -> str:
    """The note "k of n points outside the view", or "" when none is (or there are no bounds)."""
    if bounds is None:
        return ""
    xmin, xmax, ymin, ymax = bounds
    inside = (x[:, 0] >= xmin) & (x[:, 0] <= xmax) & (x[:, 1] >= ymin) & (x[:, 1] <= ymax)
    k = int(len(x) - inside.sum())
    return f"{k} of {len(x)} points outside the view" if k else ""


def _marker_size(n: int) -> float:
    return 30.0 if n <= 16 else 10.0 if n <= 256 else 4.0


def scatter_on(ax, x, mix, bounds, s=None, color="C0", alpha=0.6, label=None):
    """Points (+ mixture) on ``ax``; returns (points collection, outside-count text)."""
    if mix is not None:
        draw_mixture(ax, mix)
    pts = ax.scatter(x[:, 0], x[:, 1], s=_marker_size(len(x)) if s is None else s, c=color, alpha=alpha,
                     linewidths=0, zorder=2, label=label)
    text = None
    if bounds is not None:
        ax.set_xlim(bounds[0], bounds[1])
        ax.set_ylim(bounds[2], bounds[3])
        text = ax.text(0.02, 0.02, outside_label(x, bounds), transform=ax.transAxes, fontsize=7,
                       color="0.3", va="bottom", zorder=5)
    ax.set_aspect("equal", adjustable="box")
    return pts, text


def grid(x01: np.ndarray, nrow: int, padding: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile ``[n, C, H, W]`` images, ``nrow`` per row (torchvision's meaning), padding between tiles."""
    n, c, h, w = x01.shape
    rows = math.ceil(n / nrow)
    out = np.full((c, rows * h + (rows - 1) * padding, nrow * w + (nrow - 1) * padding), pad_value, np.float32)
    for i in range(n):
        r, col = divmod(i, nrow)
        out[:, r * (h + padding): r * (h + padding) + h, col * (w + padding): col * (w + padding) + w] = x01[i]
    return out[0] if c == 1 else out.transpose(1, 2, 0)


def check_nrow(n: int, nrow) -> int:
    """Images per row: ``nrow`` checked and capped at ``n``, or a square grid for None."""
    if nrow is None:
        return max(1, math.ceil(math.sqrt(n)))
    if int(nrow) != nrow or nrow < 1:
        raise ValueError(f"nrow (images per row) must be a positive integer, got {nrow!r}")
    return int(min(nrow, n))


def imshow_grid(ax, grid: np.ndarray):
    ax.set_axis_off()
    if grid.ndim == 2:
        return ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    return ax.imshow(grid, interpolation="nearest")


def grid_figsize(grid: np.ndarray, title: bool, max_width: float = COLUMN_WIDTH) -> tuple[float, float]:
    h, w = grid.shape[:2]
    width = float(np.clip(0.06 * w, 1.6, max_width))
    return width, width * h / w + (0.3 if title else 0.0)
