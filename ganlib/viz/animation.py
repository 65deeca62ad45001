"""Animations over ``Trainer.snapshots``: one figure redrawn in place per snapshot.

:func:`animate_snapshots` returns a matplotlib ``FuncAnimation``; show it in a notebook or
the static book with :func:`ganlib.viz.to_html`.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.animation import FuncAnimation

from .draw import (check_bounds, check_kind, check_nrow, grid, grid_figsize, images01, imshow_grid, mixture_arrays,
                   mixture_bounds, outside_label, points, points_bounds, scatter_on)
from .style import STYLE, subplots


class _FramePlotter:
    """One figure redrawn in place per frame, with a fixed view over all frames."""

    def __init__(self, frames: Sequence, labels: Sequence[str], kind=None, mixture=None, bounds=None, nrow=None,
                 title: str | None = None, max_width: float = 4.6):
        if len(frames) == 0:
            raise ValueError("nothing to show: no frames (did the Trainer save snapshots? set snapshot_every > 0)")
        shapes = {tuple(f.shape) for f in frames}
        if len(shapes) != 1:
            raise ValueError(f"all frames must have the same shape, got {sorted(shapes)}")
        self.kind = check_kind(kind, frames[0])
        self.labels = list(labels)
        self.prefix = f"{title}: " if title else ""
        with matplotlib.rc_context(STYLE):
            if self.kind == "2d":
                self.data = [points(f) for f in frames]
                mix = mixture_arrays(mixture)
                self.bounds = check_bounds(bounds) or (mixture_bounds(mixture) if mix is not None
                                                       else points_bounds(self.data))
                self.fig, axes = subplots(figsize=(3.6, 3.8), layout=None)
                self.ax = axes[0, 0]
                self.fig.subplots_adjust(left=0.14, right=0.96, bottom=0.1, top=0.9)
                self.artist, self.text = scatter_on(self.ax, self.data[0], mix, self.bounds)
            else:
                images = [images01(f) for f in frames]
                n = check_nrow(len(images[0]), nrow)
                self.data = [grid(x, n) for x in images]
                self.fig, axes = subplots(figsize=grid_figsize(self.data[0], True, max_width), layout=None)
                self.ax = axes[0, 0]
                self.fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.9)
                self.artist, self.text = imshow_grid(self.ax, self.data[0]), None
            self.title_artist = self.ax.set_title(self.prefix + self.labels[0])

    def __len__(self) -> int:
        return len(self.data)

    def set_frame(self, i: int):
        if self.kind == "2d":
            self.artist.set_offsets(self.data[i])
            if self.text is not None:
                self.text.set_text(outside_label(self.data[i], self.bounds))
        else:
            self.artist.set_data(self.data[i])
        self.title_artist.set_text(self.prefix + self.labels[i])
        return [a for a in (self.artist, self.text, self.title_artist) if a is not None]

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
    title gives its true step). Show it with :func:`~ganlib.viz.to_html`, which plays without a kernel.
    """
    steps, frames = _check_snapshots(snapshots)
    pairs = _thin(list(zip(steps, frames)), max_frames)
    plotter = _FramePlotter([x for _, x in pairs], [f"step {s}" for s, _ in pairs], kind=kind, mixture=mixture,
                            bounds=bounds, nrow=nrow, title=title)
    return plotter.animation(interval)
