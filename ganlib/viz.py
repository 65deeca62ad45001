"""Figures for the book: sample grids, 2-D scatter and density plots, training curves,
animations that play in static HTML, and live / interactive views with static fallbacks.

Conventions:

* Every function returns a matplotlib ``Figure`` (or an animation / display object);
  nothing here calls ``plt.show``. Figures are created through pyplot (so notebooks
  display them inline) and closed straight away, so a notebook shows each returned
  figure once, as the cell's value or with ``display(fig)``, and scripts can
  ``fig.savefig``. Passing ``ax=`` draws into your axes instead; that figure is yours.
* Images are ``[n, C, H, W]`` tensors in ``[-1, 1]`` (C = 1 grey, C = 3 RGB), 2-D
  samples are ``[n, 2]``; a *mixture* is anything with ``.means`` ``[K, 2]`` and ``.std``
  (``ganlib.data.GaussianMixture``). Snapshots are ``[(step, Tensor), ...]`` as in
  ``Trainer.snapshots``.
* Interactive views (:class:`LiveMonitor`, :func:`snapshot_explorer`,
  :func:`latent_explorer`) need a live Jupyter kernel. Without one, with ``static=True``,
  or when the environment variable ``GANLIB_STATIC=1`` is set (set it when executing the
  chapters for the static book: a widget's slider is dead in a static page), they give
  static output instead: a figure, or a JavaScript animation that plays in the rendered
  HTML page without a kernel.
"""

from __future__ import annotations

import functools
import io
import math
import os
import re
import time
import warnings
from typing import Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.animation import FuncAnimation
from matplotlib.collections import PatchCollection
from matplotlib.colors import PowerNorm
from matplotlib.patches import Circle

from .book import in_notebook

COLUMN_WIDTH = 6.4
"""Inches: about 640 px at 100 dpi, the width of the book's content column."""

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": "figure",
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.2,
    "image.interpolation": "nearest",
}
"""The small, consistent style every figure of the book is drawn with."""

DEFAULT_EMBED_LIMIT_MB = 50.0
"""Size limit of one embedded JavaScript animation (matplotlib's default is 20 MB)."""


def _styled(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper


def _subplots(nrows: int = 1, ncols: int = 1, figsize=None, layout="constrained", **kw):
    """A new figure and a 2-D array of axes, closed in pyplot (see the module docstring).

    Created through pyplot so that a notebook's inline backend is loaded and displays the
    returned figure; closed so that it is shown once, not again when the cell ends. Closing
    leaves a bare canvas, so an Agg canvas is attached: the figure can still be drawn
    (``fig.canvas.draw()``, ``buffer_rgba()``), saved and displayed.
    """
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, layout=layout, **kw)
    plt.close(fig)
    FigureCanvasAgg(fig)
    return fig, axes


def static_mode() -> bool:
    """True when interactive views must give static output (``GANLIB_STATIC`` set, or no kernel)."""
    flag = os.environ.get("GANLIB_STATIC", "").strip().lower()
    return flag not in ("", "0", "false", "no") or not in_notebook()


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError:
        return None
    return ipywidgets


def _fig_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# --- input checks ----------------------------------------------------------------------------------
def _numpy(x, name: str = "samples") -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a tensor or array, got {type(x).__name__}") from err


def _points(samples, name: str = "samples") -> np.ndarray:
    x = _numpy(samples, name)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"{name} must have shape [n, 2] (2-D points), got {tuple(x.shape)}")
    return x


def _images01(images, value_range=(-1.0, 1.0)) -> np.ndarray:
    """``[n, C, H, W]`` in ``value_range`` -> float array in ``[0, 1]`` (clamped)."""
    x = _numpy(images, "images")
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape [n, C, H, W] with C = 1 (grey) or 3 (RGB), got {tuple(x.shape)}; "
                         "for a single image pass x[None]")
    if len(x) == 0:
        raise ValueError("images is empty")
    lo, hi = value_range
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range!r}")
    return np.clip((np.nan_to_num(x, nan=lo) - lo) / (hi - lo), 0.0, 1.0)


def _mixture(mixture) -> tuple[np.ndarray, float] | None:
    if mixture is None:
        return None
    if not (hasattr(mixture, "means") and hasattr(mixture, "std")):
        raise TypeError("mixture must have .means [K, 2] and .std (e.g. ganlib.data.ring_of_gaussians()), "
                        f"got {type(mixture).__name__}")
    means = _numpy(mixture.means, "mixture.means")
    if means.ndim != 2 or means.shape[1] != 2:
        raise ValueError(f"mixture.means must have shape [K, 2], got {tuple(means.shape)}")
    return means, float(mixture.std)


def _looks_like_mixture(obj) -> bool:
    means = getattr(obj, "means", None)
    return isinstance(means, torch.Tensor) and means.ndim == 2 and means.shape[1] == 2 and hasattr(obj, "std")


def _kind(x) -> str:
    shape = tuple(x.shape)
    if len(shape) == 2 and shape[1] == 2:
        return "2d"
    if len(shape) == 4 and shape[1] in (1, 3):
        return "images"
    raise ValueError(f"cannot plot samples of shape {shape}: expected [n, 2] points or [n, C, H, W] images")


def _check_kind(kind, x) -> str:
    detected = _kind(x)
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
    means, std = _mixture(mixture)
    lo, hi = means.min(0), means.max(0)
    pad = max(0.25 * float(np.max(hi - lo)), 6 * std, 0.5)
    return _square(lo - pad, hi + pad)


def _points_bounds(points: Sequence[np.ndarray]) -> tuple[float, float, float, float]:
    x = np.concatenate([p for p in points if len(p)]) if any(len(p) for p in points) else np.zeros((1, 2))
    x = x[np.isfinite(x).all(1)]
    if len(x) == 0:
        x = np.zeros((1, 2))
    lo, hi = np.percentile(x, 0.5, axis=0), np.percentile(x, 99.5, axis=0)
    pad = np.maximum(0.1 * (hi - lo), 0.1)
    return _square(lo - pad, hi + pad)


def _check_bounds(bounds):
    if bounds is None:
        return None
    b = tuple(float(v) for v in bounds)
    if len(b) != 4 or not (b[1] > b[0] and b[3] > b[2]):
        raise ValueError(f"bounds must be (xmin, xmax, ymin, ymax) with xmax > xmin and ymax > ymin, got {bounds!r}")
    return b


# --- drawing primitives (shared by figures, animations and sliders) ---------------------------------------
def _draw_mixture(ax, mix, circles: bool = True):
    means, std = mix
    if circles:
        ax.add_collection(PatchCollection([Circle(tuple(m), 3 * std) for m in means], facecolor="none",
                                          edgecolor="0.45", linewidth=0.8, zorder=3))
    # Crosses under the samples: a cross left visible is a mode the samples missed.
    ax.scatter(means[:, 0], means[:, 1], marker="x", s=22, c="crimson", linewidths=1.2, zorder=1.5,
               label="mode means")


def _outside(x: np.ndarray, bounds) -> int:
    if bounds is None:
        return 0
    xmin, xmax, ymin, ymax = bounds
    inside = (x[:, 0] >= xmin) & (x[:, 0] <= xmax) & (x[:, 1] >= ymin) & (x[:, 1] <= ymax)
    return int(len(x) - inside.sum())


def _outside_label(x: np.ndarray, bounds) -> str:
    k = _outside(x, bounds)
    return f"{k} of {len(x)} points outside the view" if k else ""


def _marker_size(n: int) -> float:
    return 30.0 if n <= 16 else 10.0 if n <= 256 else 4.0


def _scatter_on(ax, x, mix, bounds, s=None, color="C0", alpha=0.6, label=None):
    """Points (+ mixture) on ``ax``; returns (points collection, outside-count text)."""
    if mix is not None:
        _draw_mixture(ax, mix)
    pts = ax.scatter(x[:, 0], x[:, 1], s=_marker_size(len(x)) if s is None else s, c=color, alpha=alpha,
                     linewidths=0, zorder=2, label=label)
    text = None
    if bounds is not None:
        ax.set_xlim(bounds[0], bounds[1])
        ax.set_ylim(bounds[2], bounds[3])
        text = ax.text(0.02, 0.02, _outside_label(x, bounds), transform=ax.transAxes, fontsize=7,
                       color="0.3", va="bottom", zorder=5)
    ax.set_aspect("equal", adjustable="box")
    return pts, text


def _grid(x01: np.ndarray, nrow: int, padding: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile ``[n, C, H, W]`` images, ``nrow`` per row (torchvision's meaning), padding between tiles."""
    n, c, h, w = x01.shape
    rows = math.ceil(n / nrow)
    out = np.full((c, rows * h + (rows - 1) * padding, nrow * w + (nrow - 1) * padding), pad_value, np.float32)
    for i in range(n):
        r, col = divmod(i, nrow)
        out[:, r * (h + padding): r * (h + padding) + h, col * (w + padding): col * (w + padding) + w] = x01[i]
    return out[0] if c == 1 else out.transpose(1, 2, 0)


def _nrow(n: int, nrow) -> int:
    if nrow is None:
        return max(1, math.ceil(math.sqrt(n)))
    if int(nrow) != nrow or nrow < 1:
        raise ValueError(f"nrow (images per row) must be a positive integer, got {nrow!r}")
    return int(min(nrow, n))


def _imshow_grid(ax, grid: np.ndarray):
    ax.set_axis_off()
    if grid.ndim == 2:
        return ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    return ax.imshow(grid, interpolation="nearest")


def _grid_figsize(grid: np.ndarray, title: bool, max_width: float = COLUMN_WIDTH) -> tuple[float, float]:
    h, w = grid.shape[:2]
    width = float(np.clip(0.06 * w, 1.6, max_width))
    return width, width * h / w + (0.3 if title else 0.0)


# --- static figures ----------------------------------------------------------------------------------------
@_styled
def image_grid(images, nrow: int | None = None, ax=None, title: str | None = None, value_range=(-1.0, 1.0),
               padding: int = 1):
    """A grid of images (``[n, C, H, W]`` in ``[-1, 1]``; -1 black, 1 white), ``nrow`` per row.

    Values are clamped to ``value_range``. One ``AxesImage`` holds the whole grid; tiles
    are separated by ``padding`` white pixels. Returns the figure.
    """
    x = _images01(images, value_range)
    grid = _grid(x, _nrow(len(x), nrow), padding)
    if ax is None:
        fig, axes = _subplots(figsize=_grid_figsize(grid, title is not None))
        ax = axes[0, 0]
    _imshow_grid(ax, grid)
    if title is not None:
        ax.set_title(title)
    return ax.figure


@_styled
def scatter_2d(samples, mixture=None, ax=None, title: str | None = None, bounds=None, s: float | None = None,
               color="C0", alpha: float = 0.6, label: str | None = None):
    """2-D samples as dots; with a ``mixture``, its mode means as crosses and 3-sigma circles.

    With a mixture (or explicit ``bounds``) the view is fixed around the modes, so plots
    of different runs compare; points outside the view are counted in the corner rather
    than silently dropped. Returns the figure.
    """
    x = _points(samples)
    mix = _mixture(mixture)
    bounds = _check_bounds(bounds) or (mixture_bounds(mixture) if mix is not None else None)
    if ax is None:
        fig, axes = _subplots(figsize=(3.4, 3.4 + (0.25 if title else 0)))
        ax = axes[0, 0]
    _scatter_on(ax, x, mix, bounds, s=s, color=color, alpha=alpha, label=label)
    if title is not None:
        ax.set_title(title)
    return ax.figure


@_styled
def density_2d(samples, bounds=None, bins: int = 120, ax=None, title: str | None = None, mixture=None,
               gamma: float = 0.5, cmap: str = "magma", show_modes: bool = False):
    """Heat map of a 2-D histogram of ``samples`` (density per unit area).

    ``gamma`` < 1 brightens low densities so that weak modes stay visible (a PowerNorm
    of the colour scale, not of the data). ``bounds`` defaults to the mixture's view, else
    to the samples' range; ``show_modes`` draws the mixture's 3-sigma circles (off by default:
    with tiny modes they would cover the density). Returns the figure.
    """
    x = _points(samples)
    mix = _mixture(mixture)
    if int(bins) != bins or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    if not gamma > 0:
        raise ValueError(f"gamma must be positive, got {gamma!r}")
    bounds = _check_bounds(bounds) or (mixture_bounds(mixture) if mix is not None else _points_bounds([x]))
    xmin, xmax, ymin, ymax = bounds
    hist, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=int(bins), range=[[xmin, xmax], [ymin, ymax]], density=True)
    if ax is None:
        fig, axes = _subplots(figsize=(3.4, 3.4 + (0.25 if title else 0)))
        ax = axes[0, 0]
    ax.imshow(hist.T, origin="lower", extent=bounds, cmap=cmap, norm=PowerNorm(gamma, vmin=0.0),
              interpolation="nearest", aspect="equal")
    if mix is not None and show_modes:
        ax.add_collection(PatchCollection([Circle(tuple(m), 3 * mix[1]) for m in mix[0]], facecolor="none",
                                          edgecolor="cyan", linewidth=0.6, alpha=0.7))
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    k = _outside(x, bounds)
    if k:
        ax.text(0.02, 0.02, f"{k} of {len(x)} points outside the view", transform=ax.transAxes, fontsize=7,
                color="white", va="bottom")
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


def _panels(keys) -> list[tuple[str, ...]]:
    if isinstance(keys, str):
        keys = (keys,)
    panels = [(k,) if isinstance(k, str) else tuple(k) for k in keys]
    if not panels or any(not p or not all(isinstance(k, str) for k in p) for p in panels):
        raise ValueError(f"keys must be history keys, or tuples of keys sharing a panel, got {keys!r}")
    return panels


@_styled
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
    panels = _panels(keys)
    unknown = sorted({k for p in panels for k in p} - set(history))
    if unknown:
        raise ValueError(f"history has no key(s) {unknown}; available: {sorted(k for k in history if k != 'step')}")
    steps = np.asarray(history["step"], dtype=float)
    if ax is None:
        ncols = min(3, len(panels))
        nrows = math.ceil(len(panels) / ncols)
        width = min(COLUMN_WIDTH, 3.3 * ncols)
        fig, axes = _subplots(nrows, ncols, figsize=(width, 2.3 * nrows + (0.25 if title else 0)), sharex=True)
        axes = list(axes.flat)
        for extra in axes[len(panels):]:
            extra.set_axis_off()
    else:
        axes = [ax] if not isinstance(ax, (list, tuple, np.ndarray)) else list(np.ravel(ax))
        if len(axes) != len(panels):
            raise ValueError(f"got {len(axes)} axes for {len(panels)} panels; pass one Axes per entry of keys")
        fig = axes[0].figure
    for a, panel in zip(axes, panels):
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
        if len(panels) == 1:
            axes[0].set_title(title)
        else:
            fig.suptitle(title)
    return fig


# --- animations ---------------------------------------------------------------------------------------------
class _FramePlotter:
    """One figure redrawn in place per frame; animations and sliders share it."""

    def __init__(self, frames: Sequence, labels: Sequence[str], kind=None, mixture=None, bounds=None, nrow=None,
                 title: str | None = None, max_width: float = 4.6):
        if len(frames) == 0:
            raise ValueError("nothing to show: no frames (did the Trainer save snapshots? set snapshot_every > 0)")
        shapes = {tuple(f.shape) for f in frames}
        if len(shapes) != 1:
            raise ValueError(f"all frames must have the same shape, got {sorted(shapes)}")
        self.kind = _check_kind(kind, frames[0])
        self.labels = list(labels)
        self.title = title
        prefix = f"{title}: " if title else ""
        self.prefix = prefix
        with matplotlib.rc_context(STYLE):
            if self.kind == "2d":
                self.data = [_points(f) for f in frames]
                mix = _mixture(mixture)
                self.bounds = _check_bounds(bounds) or (mixture_bounds(mixture) if mix is not None
                                                        else _points_bounds(self.data))
                self.fig, axes = _subplots(figsize=(3.6, 3.8), layout=None)
                self.ax = axes[0, 0]
                self.fig.subplots_adjust(left=0.14, right=0.96, bottom=0.1, top=0.9)
                self.artist, self.text = _scatter_on(self.ax, self.data[0], mix, self.bounds)
            else:
                images = [_images01(f) for f in frames]
                n = _nrow(len(images[0]), nrow)
                self.data = [_grid(x, n) for x in images]
                self.fig, axes = _subplots(figsize=_grid_figsize(self.data[0], True, max_width), layout=None)
                self.ax = axes[0, 0]
                self.fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.9)
                self.artist, self.text = _imshow_grid(self.ax, self.data[0]), None
            self.title_artist = self.ax.set_title(prefix + self.labels[0])

    def __len__(self) -> int:
        return len(self.data)

    def set_frame(self, i: int):
        if self.kind == "2d":
            self.artist.set_offsets(self.data[i])
            if self.text is not None:
                self.text.set_text(_outside_label(self.data[i], self.bounds))
        else:
            self.artist.set_data(self.data[i])
        self.title_artist.set_text(self.prefix + self.labels[i])
        return [a for a in (self.artist, self.text, self.title_artist) if a is not None]

    def png(self, i: int) -> bytes:
        self.set_frame(i)
        with matplotlib.rc_context(STYLE):
            return _fig_png(self.fig)

    def animation(self, interval: int) -> FuncAnimation:
        if int(interval) != interval or interval < 1:
            raise ValueError(f"interval (milliseconds per frame) must be a positive integer, got {interval!r}")
        anim = FuncAnimation(self.fig, self.set_frame, frames=len(self), interval=int(interval), blit=False,
                             repeat=True)
        anim.n_frames = len(self)
        return anim


def _check_snapshots(snapshots) -> tuple[list[int], list]:
    if isinstance(snapshots, dict):
        snapshots = list(snapshots.items())
    try:
        steps = [int(s) for s, _ in snapshots]
        frames = [x for _, x in snapshots]
    except (TypeError, ValueError) as err:
        raise TypeError("snapshots must be a list of (step, Tensor) pairs, as in Trainer.snapshots") from err
    if not frames:
        raise ValueError("snapshots is empty: train with TrainConfig(snapshot_every=...) > 0 to record some")
    return steps, frames


def _thin(items: list, max_frames: int | None) -> list:
    if max_frames is not None and (int(max_frames) != max_frames or max_frames < 2):
        raise ValueError(f"max_frames must be an integer >= 2 or None, got {max_frames!r}")
    if max_frames is None or len(items) <= max_frames:
        return items
    keep = np.unique(np.linspace(0, len(items) - 1, int(max_frames)).round().astype(int))
    return [items[i] for i in keep]


def animate_snapshots(snapshots, kind: str | None = None, mixture=None, interval: int = 250, bounds=None,
                      nrow: int | None = None, title: str | None = None, max_frames: int | None = 80) -> FuncAnimation:
    """A matplotlib animation over ``Trainer.snapshots`` (``[(step, Tensor), ...]``).

    ``kind``: ``"2d"`` (scatter, with the ``mixture``'s modes if given) or ``"images"``
    (grids); None detects it from the shape. The view is fixed over all frames. More
    than ``max_frames`` snapshots are thinned evenly (first and last kept; each frame's
    title gives its true step). Show it with :func:`to_html`, which plays without a kernel.
    """
    steps, frames = _check_snapshots(snapshots)
    pairs = _thin(list(zip(steps, frames)), max_frames)
    plotter = _FramePlotter([x for _, x in pairs], [f"step {s}" for s, _ in pairs], kind=kind, mixture=mixture,
                            bounds=bounds, nrow=nrow, title=title)
    return plotter.animation(interval)


# Glyphs found in common fonts (the player's CDN icon font is not needed offline).
_FA_GLYPHS = {"minus": "&minus;", "fast-backward": "|&#x25C0;", "step-backward": "&#x25C2;",
              "play fa-flip-horizontal": "&#x25C0;", "pause": "||", "play": "&#x25B6;",
              "step-forward": "&#x25B8;", "fast-forward": "&#x25B6;|", "plus": "+"}


def _self_contained(html: str) -> str:
    """Drop the CDN font-awesome stylesheet of matplotlib's player; use Unicode button glyphs."""
    html = re.sub(r'<link rel="stylesheet"\s+href="[^"]*font-awesome[^"]*">', "", html)
    return re.sub(r'<i class="fa fa-([\w -]+?)"></i>', lambda m: _FA_GLYPHS.get(m.group(1), m.group(0)), html)


class StaticHTML:
    """Minimal HTML display object, used when IPython is not installed."""

    def __init__(self, data: str):
        self.data = data

    def _repr_html_(self) -> str:
        return self.data


def _html_object(html: str):
    try:
        from IPython.display import HTML
    except ImportError:
        return StaticHTML(html)
    return HTML(html)


def to_html(anim: FuncAnimation, embed_limit_mb: float = DEFAULT_EMBED_LIMIT_MB, default_mode: str | None = None):
    """The animation as self-contained HTML + JavaScript (``IPython.display.HTML``).

    Every frame is embedded as a PNG with a player, so the animation plays in the static
    book page without a kernel. ``animation.embed_limit`` is raised to ``embed_limit_mb``
    for this call only; if frames still do not fit, a warning says how many were dropped
    (use fewer frames, ``max_frames``, or a smaller figure).
    """
    if not isinstance(anim, matplotlib.animation.Animation):
        raise TypeError("to_html expects a matplotlib animation (e.g. from animate_snapshots), "
                        f"got {type(anim).__name__}")
    if not embed_limit_mb > 0:
        raise ValueError(f"embed_limit_mb must be positive, got {embed_limit_mb!r}")
    with matplotlib.rc_context({**STYLE, "animation.embed_limit": float(embed_limit_mb)}):
        html = anim.to_jshtml(default_mode=default_mode)
    expected = getattr(anim, "n_frames", None) or getattr(anim, "_save_count", None)
    saved = count_frames(html)
    if expected and saved < expected:
        warnings.warn(f"the animation kept {saved} of {expected} frames: they exceed embed_limit_mb="
                      f"{embed_limit_mb}. Use fewer frames (max_frames) or a smaller figure.", stacklevel=2)
    return _html_object(_self_contained(html))


def count_frames(html) -> int:
    """Number of frames embedded in a :func:`to_html` result (or its HTML string)."""
    text = getattr(html, "data", html)
    return len(re.findall(r'frames\[\d+\] = "data:image/', text))


# --- live and interactive views ---------------------------------------------------------------------------------
class LiveMonitor:
    """A Trainer callback that shows loss curves and current samples while ``fit`` runs.

    ``Trainer(..., callbacks=[monitor])`` calls it every ``log_every`` steps. In a live
    Jupyter kernel (Jupyter, Colab, VS Code) it redraws one output in place (an IPython
    display handle, no ipywidgets needed), at most every ``every`` seconds and never using
    more than about a tenth of the run: each redraw waits at least 10x its own drawing time.
    The last step of ``config.steps`` is always drawn. Elsewhere, with ``static=True`` or
    with ``GANLIB_STATIC=1`` it does nothing during training (no cost).

    After training, ``monitor.finish()`` makes the final state visible once: it updates the
    live output and returns None, or, in static mode, returns the final figure (so it is
    the cell's displayed value). :meth:`final_figure` always returns a new figure.

    Samples come from ``trainer.sample(n)`` (its own fixed RNG, so redraws show the same
    latent codes); with 2-D data the mixture defaults to ``trainer.source`` when that is one.
    """

    def __init__(self, every: float = 5.0, keys=("d_loss", "g_loss"), mixture=None, n_samples: int | None = None,
                 smooth: float = 0.9, static: bool | None = None, ema: bool = False):
        if not every >= 0:
            raise ValueError(f"every (seconds between redraws) must be >= 0, got {every!r}")
        if n_samples is not None and (int(n_samples) != n_samples or n_samples < 1):
            raise ValueError(f"n_samples must be a positive integer or None, got {n_samples!r}")
        self.every, self.keys, self.mixture, self.n_samples = float(every), _panels(keys), mixture, n_samples
        self.smooth, self.static, self.ema = smooth, static, ema
        if not 0 <= smooth < 1:
            raise ValueError(f"smooth must be in [0, 1), got {smooth!r}")
        self.trainer = None
        self.redraws = 0
        self._handle = None
        self._next_time = 0.0

    @property
    def live(self) -> bool:
        """Whether this monitor redraws during training here (a kernel, not static)."""
        return not (self.static or static_mode())

    def __call__(self, trainer) -> None:
        self.trainer = trainer
        if not self.live:
            return
        steps = getattr(getattr(trainer, "config", None), "steps", None)
        final = steps is not None and trainer.step >= steps
        if not final and time.monotonic() < self._next_time:
            return
        self._redraw(trainer)

    def _samples(self, trainer):
        kwargs = {"ema": True} if self.ema else {}
        x = trainer.sample(self.n_samples or 64, **kwargs)
        if self.n_samples is None and _kind(x) == "2d":
            x = trainer.sample(512, **kwargs)
        return x

    def final_figure(self, trainer=None):
        """Loss curves and current samples of ``trainer`` (default: the last one seen)."""
        trainer = trainer if trainer is not None else self.trainer
        if trainer is None:
            raise ValueError("LiveMonitor has not seen a trainer: pass it in Trainer(callbacks=[monitor]) and call "
                             "fit(), or give final_figure(trainer)")
        x = self._samples(trainer)
        kind = _kind(x)
        mixture = self.mixture
        if mixture is None and kind == "2d" and _looks_like_mixture(getattr(trainer, "source", None)):
            mixture = trainer.source
        with matplotlib.rc_context(STYLE):
            n = 1 + len(self.keys)
            fig, axes = _subplots(1, n, figsize=(COLUMN_WIDTH, 2.5),
                                  gridspec_kw={"width_ratios": [1.15] + [1] * len(self.keys)})
            axes = list(axes.flat)
            step = getattr(trainer, "step", None)
            if kind == "2d":
                mix = _mixture(mixture)
                bounds = mixture_bounds(mixture) if mix is not None else None
                _scatter_on(axes[0], _points(x), mix, bounds)
            else:
                x01 = _images01(x[:64])
                _imshow_grid(axes[0], _grid(x01, _nrow(len(x01), None)))
            axes[0].set_title("samples" if step is None else f"samples, step {step}")
            history = trainer.history
            if history and history.get("step"):
                plot_history(history, keys=self.keys, smooth=self.smooth, ax=axes[1:])
            else:
                for a in axes[1:]:
                    a.text(0.5, 0.5, "no history yet", ha="center", va="center", transform=a.transAxes)
        return fig

    def _redraw(self, trainer) -> None:
        from IPython.display import Image, display

        start = time.monotonic()
        fig = self.final_figure(trainer)
        with matplotlib.rc_context(STYLE):
            image = Image(data=_fig_png(fig), format="png")
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)
        self.redraws += 1
        cost = time.monotonic() - start
        self._next_time = time.monotonic() + max(self.every, 10 * cost)

    def finish(self):
        """Show the final state once: update the live output (returns None) or return the figure."""
        if self.trainer is None:
            raise ValueError("LiveMonitor has not seen a trainer: pass it in Trainer(callbacks=[monitor]) and "
                             "call fit()")
        if self.live:
            self._redraw(self.trainer)
            return None
        return self.final_figure()


def _interactive(interactive: bool | None) -> bool:
    if interactive is None:
        return not static_mode() and _ipywidgets() is not None
    if interactive and _ipywidgets() is None:
        raise ImportError("interactive=True needs ipywidgets (pip install ipywidgets); use interactive=None for the "
                          "static fallback")
    return bool(interactive)


def _slider_widget(plotter: _FramePlotter, description: str, interval: int):
    """Play button + slider + image; frames are rendered on first view and cached."""
    widgets = _ipywidgets()
    cache: dict[int, bytes] = {}

    def png(i: int) -> bytes:
        if i not in cache:
            cache[i] = plotter.png(i)
        return cache[i]

    image = widgets.Image(value=png(0), format="png")
    slider = widgets.IntSlider(value=0, min=0, max=len(plotter) - 1, step=1, description=description,
                               continuous_update=True, readout=False)
    label = widgets.Label(value=plotter.labels[0])
    play = widgets.Play(value=0, min=0, max=len(plotter) - 1, step=1, interval=int(interval))
    widgets.jslink((play, "value"), (slider, "value"))

    def on_change(change):
        i = change["new"]
        image.value = png(i)
        label.value = plotter.labels[i]

    slider.observe(on_change, names="value")
    return widgets.VBox([widgets.HBox([play, slider, label]), image])


def snapshot_explorer(snapshots, kind: str | None = None, mixture=None, interactive: bool | None = None,
                      interval: int = 250, bounds=None, nrow: int | None = None, title: str | None = None,
                      max_frames: int | None = 80):
    """Browse ``Trainer.snapshots`` with a slider in a live kernel; elsewhere, an animation.

    In Jupyter/Colab (ipywidgets installed, no ``GANLIB_STATIC``) returns an ipywidgets
    box with a play button and a slider over the snapshots. Otherwise returns
    ``to_html(animate_snapshots(...))``, which plays in the static book. Either way the
    return value displays itself as the cell's value. ``interactive`` forces one or the other.
    """
    steps, frames = _check_snapshots(snapshots)
    if not _interactive(interactive):
        return to_html(animate_snapshots(snapshots, kind=kind, mixture=mixture, interval=interval, bounds=bounds,
                                         nrow=nrow, title=title, max_frames=max_frames))
    pairs = _thin(list(zip(steps, frames)), max_frames)
    plotter = _FramePlotter([x for _, x in pairs], [f"step {s}" for s, _ in pairs], kind=kind, mixture=mixture,
                            bounds=bounds, nrow=nrow, title=title)
    return _slider_widget(plotter, "snapshot", interval)


# --- latent space ---------------------------------------------------------------------------------------------------
def _slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation per row (White, 2016, "Sampling Generative Networks", sec. 2.1)."""
    a, b = z0.flatten(1), z1.flatten(1)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
    theta = torch.arccos(cos.clamp(-1.0, 1.0))[None, :, None]            # [1, r, 1]
    t = t[:, None, None]                                                     # [s, 1, 1]
    sin = torch.sin(theta)
    small = sin.abs() < 1e-6
    w0 = torch.where(small, 1 - t, torch.sin((1 - t) * theta) / torch.where(small, 1.0, sin))
    w1 = torch.where(small, t, torch.sin(t * theta) / torch.where(small, 1.0, sin))
    return (w0 * a[None] + w1 * b[None]).reshape(len(t), *z0.shape)


def interpolate_latents(z0: torch.Tensor, z1: torch.Tensor, steps: int, method: str = "linear") -> torch.Tensor:
    """Codes from ``z0`` to ``z1`` (each ``[rows, ...]``): returns ``[steps, rows, ...]``, ends included.

    ``"linear"``: (1 - t) z0 + t z1, as in DCGAN (Radford et al., 2016, sec. 6.1).
    ``"slerp"``: along the great circle (White, 2016), which keeps the norm typical of a
    Gaussian latent instead of passing near the origin.
    """
    if z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must have the same shape, got {tuple(z0.shape)} and {tuple(z1.shape)}")
    if int(steps) != steps or steps < 2:
        raise ValueError(f"steps must be an integer >= 2, got {steps!r}")
    t = torch.linspace(0, 1, int(steps), device=z0.device, dtype=z0.dtype)
    if method == "linear":
        return torch.lerp(z0[None], z1[None], t.reshape(-1, *([1] * z0.ndim)))
    if method == "slerp":
        return _slerp(z0, z1, t)
    raise ValueError(f"method must be 'linear' or 'slerp', got {method!r}")


def _latent_frames(generator, z0, z1, steps, method, rows, seed):
    if not hasattr(generator, "sample_latent"):
        raise TypeError("generator must be a ganlib generator (with .sample_latent), e.g. MLPGenerator or "
                        "DCGANGenerator")
    try:
        dev = next(generator.parameters()).device
    except StopIteration:
        dev = torch.device("cpu")
    if int(rows) != rows or rows < 1:
        raise ValueError(f"rows must be a positive integer, got {rows!r}")
    rng = torch.Generator(dev).manual_seed(seed)

    def as_rows(z):
        z = torch.as_tensor(z, device=dev).float()
        return z[None] if z.ndim == 1 else z

    z0 = generator.sample_latent(int(rows), generator=rng, device=dev) if z0 is None else as_rows(z0)
    z1 = generator.sample_latent(len(z0), generator=rng, device=dev) if z1 is None else as_rows(z1)
    zs = interpolate_latents(z0, z1, steps, method)           # [steps, rows, d]
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            out = generator(zs.flatten(0, 1)).float().cpu()
    finally:
        generator.train(was_training)
    return out.reshape(len(zs), len(z0), *out.shape[1:])                      # [steps, rows, ...]


@_styled
def latent_interpolation(generator, z0=None, z1=None, steps: int = 8, method: str = "linear", rows: int = 1,
                         seed: int = 0, mixture=None, ax=None, title: str | None = None):
    """A static strip of ``generator`` outputs along a path from ``z0`` to ``z1``.

    ``z0``/``z1``: ``[latent_dim]`` or ``[rows, latent_dim]`` codes; when omitted, ``rows``
    pairs are drawn with ``seed``. Images: one row of ``steps`` images per pair. 2-D
    outputs: each path drawn as points joined by a line, coloured from start to end
    (with the mixture's modes if given). Returns the figure.
    """
    out = _latent_frames(generator, z0, z1, steps, method, rows, seed)     # [steps, r, ...]
    s, r = out.shape[:2]
    if _kind(out[0]) == "images":
        images = out.transpose(0, 1).flatten(0, 1)                             # row-major: pair, then t
        return image_grid(images, nrow=s, ax=ax, title=title)
    mix = _mixture(mixture)
    bounds = mixture_bounds(mixture) if mix is not None else _points_bounds([out.reshape(-1, 2).numpy()])
    if ax is None:
        fig, axes = _subplots(figsize=(3.4, 3.4 + (0.25 if title else 0)))
        ax = axes[0, 0]
    if mix is not None:
        _draw_mixture(ax, mix)
    t = np.linspace(0, 1, s)
    for j in range(r):
        path = out[:, j].numpy()
        ax.plot(path[:, 0], path[:, 1], color="0.6", linewidth=0.8, zorder=2)
        points = ax.scatter(path[:, 0], path[:, 1], c=t, cmap="viridis", s=22, zorder=3)
    ax.set_xlim(bounds[0], bounds[1])
    ax.set_ylim(bounds[2], bounds[3])
    ax.set_aspect("equal", adjustable="box")
    ax.figure.colorbar(points, ax=ax, label="t (z0 to z1)", shrink=0.8)
    if title is not None:
        ax.set_title(title)
    return ax.figure


def latent_explorer(generator, z0=None, z1=None, steps: int = 16, method: str = "linear", rows: int = 4,
                    seed: int = 0, mixture=None, interactive: bool | None = None, interval: int = 150,
                    title: str | None = None):
    """A slider from ``z0`` to ``z1`` over the generator's outputs in a live kernel; elsewhere
    an animation that plays back and forth in the static page (see :func:`latent_interpolation`)."""
    out = _latent_frames(generator, z0, z1, steps, method, rows, seed)     # [steps, r, ...]
    t = np.linspace(0, 1, len(out))
    plotter = _FramePlotter(list(out), [f"t = {v:.2f}" for v in t], mixture=mixture, title=title,
                            nrow=min(out.shape[1], 8))
    if _interactive(interactive):
        return _slider_widget(plotter, "t", interval)
    return to_html(plotter.animation(interval), default_mode="reflect")


__all__ = [
    "COLUMN_WIDTH", "STYLE", "image_grid", "scatter_2d", "density_2d", "plot_history", "animate_snapshots",
    "to_html", "count_frames", "LiveMonitor", "snapshot_explorer", "latent_interpolation", "latent_explorer",
    "interpolate_latents", "mixture_bounds", "static_mode",
]
