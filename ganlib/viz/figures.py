"""Static matplotlib figures: image grids, 2-D scatter plots and training curves.

Each function returns a ``Figure``; with ``ax=`` it draws into your axes instead.
"""

from __future__ import annotations

import math

import numpy as np

from .draw import (check_bounds, check_nrow, grid, grid_figsize, images01, imshow_grid, mixture_arrays,
                   mixture_bounds, points, scatter_on)
from .style import COLUMN_WIDTH, styled, subplots


@styled
def image_grid(images, nrow: int | None = None, ax=None, title: str | None = None, value_range=(-1.0, 1.0),
               padding: int = 1):
    """A grid of images (``[n, C, H, W]`` in ``[-1, 1]``; -1 black, 1 white), ``nrow`` per row.

    Values are clamped to ``value_range``. One ``AxesImage`` holds the whole grid; tiles
    are separated by ``padding`` white pixels. Returns the figure.
    """
    x = images01(images, value_range)
    tiles = grid(x, check_nrow(len(x), nrow), padding)
    if ax is None:
        fig, axes = subplots(figsize=grid_figsize(tiles, title is not None))
        ax = axes[0, 0]
    imshow_grid(ax, tiles)
    if title is not None:
        ax.set_title(title)
    return ax.figure


@styled
def scatter_2d(samples, mixture=None, ax=None, title: str | None = None, bounds=None, s: float | None = None,
               color="C0", alpha: float = 0.6, label: str | None = None):
    """2-D samples as dots; with a ``mixture``, its mode means as crosses and 3-sigma circles.

    With a mixture (or explicit ``bounds``) the view is fixed around the modes, so plots
    of different runs compare; points outside the view are counted in the corner rather
    than silently dropped. Returns the figure.
    """
    x = points(samples)
    mix = mixture_arrays(mixture)
    bounds = check_bounds(bounds) or (mixture_bounds(mixture) if mix is not None else None)
    if ax is None:
        fig, axes = subplots(figsize=(3.4, 3.4 + (0.25 if title else 0)))
        ax = axes[0, 0]
    scatter_on(ax, x, mix, bounds, s=s, color=color, alpha=alpha, label=label)
    if title is not None:
        ax.set_title(title)
    return ax.figure


def _ema(y: np.ndarray, weight: float) -> np.ndarray:
    """Debiased exponential moving average (TensorBoard's smoothing)."""
    out, m = np.empty_like(y), 0.0
    for i, v in enumerate(y):
        m = weight * m + (1 - weight) * v
        out[i] = m / (1 - weight ** (i + 1))
    return out


def panels(keys) -> list[tuple[str, ...]]:
    """History keys as panels: each entry one panel, a tuple of keys sharing one."""
    if isinstance(keys, str):
        keys = (keys,)
    out = [(k,) if isinstance(k, str) else tuple(k) for k in keys]
    if not out or any(not p or not all(isinstance(k, str) for k in p) for p in out):
        raise ValueError(f"keys must be history keys, or tuples of keys sharing a panel, got {keys!r}")
    return out


@styled
def plot_history(history, keys=("d_loss", "g_loss"), smooth: float = 0.9, ax=None, title: str | None = None,
                 logy: bool = False):
    """Training curves from ``Trainer.history`` (a dict of lists with ``"step"``), or a Trainer.

    Each entry of ``keys`` gets its own panel; a tuple of keys shares one panel, e.g.
    ``keys=[("d_real", "d_fake"), "grad_norm_d"]``. ``smooth`` in ``[0, 1)`` is the weight of
    a debiased exponential moving average (0: raw); the raw curve stays visible, faint.
    ``ax`` may be one Axes (one panel) or a sequence with one Axes per panel. Returns the figure.
    """
    history = getattr(history, "history", history)
    if not isinstance(history, dict) or "step" not in history:
        raise TypeError("history must be Trainer.history (a dict of lists with a 'step' key) or a Trainer")
    if not 0 <= smooth < 1:
        raise ValueError(f"smooth must be in [0, 1) (0 = no smoothing), got {smooth!r}")
    panel_keys = panels(keys)
    unknown = sorted({k for p in panel_keys for k in p} - set(history))
    if unknown:
        raise ValueError(f"history has no key(s) {unknown}; available: {sorted(k for k in history if k != 'step')}")
    steps = np.asarray(history["step"], dtype=float)
    if ax is None:
        ncols = min(3, len(panel_keys))
        nrows = math.ceil(len(panel_keys) / ncols)
        width = min(COLUMN_WIDTH, 3.3 * ncols)
        fig, axes = subplots(nrows, ncols, figsize=(width, 2.3 * nrows + (0.25 if title else 0)), sharex=True)
        axes = list(axes.flat)
        for extra in axes[len(panel_keys):]:
            extra.set_axis_off()
    else:
        axes = [ax] if not isinstance(ax, (list, tuple, np.ndarray)) else list(np.ravel(ax))
        if len(axes) != len(panel_keys):
            raise ValueError(f"got {len(axes)} axes for {len(panel_keys)} panels; pass one Axes per entry of keys")
        fig = axes[0].figure
    for a, panel in zip(axes, panel_keys):
        for j, key in enumerate(panel):
            y = np.asarray(history[key], dtype=float)
            if len(y) != len(steps):
                raise ValueError(f"history[{key!r}] has {len(y)} values but history['step'] has {len(steps)}")
            colour = f"C{j}"
            if smooth > 0 and len(y) > 1:
                a.plot(steps, y, color=colour, alpha=0.25, linewidth=0.8)
                a.plot(steps, _ema(y, smooth), color=colour, label=key)
            else:
                a.plot(steps, y, color=colour, label=key)
        if logy:
            a.set_yscale("log")
        if len(panel) > 1:
            a.legend(loc="best")
        else:
            a.set_ylabel(panel[0])
        a.set_xlabel("step")
    if title is not None:
        if len(panel_keys) == 1:
            axes[0].set_title(title)
        else:
            fig.suptitle(title)
    return fig
