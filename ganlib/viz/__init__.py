"""Figures for the book: sample grids, 2-D scatter plots, training curves, animations that
play in static HTML, and a live training monitor with a static fallback.

Modules, by concern:

* :mod:`~ganlib.viz.figures`: static figures (:func:`image_grid`, :func:`scatter_2d`,
  :func:`plot_history`);
* :mod:`~ganlib.viz.animation`: :func:`animate_snapshots` over ``Trainer.snapshots``;
* :mod:`~ganlib.viz.embed`: :func:`to_html`, an animation as self-contained HTML + JavaScript;
* :mod:`~ganlib.viz.live`: :class:`LiveMonitor` (a Trainer callback) and :func:`static_mode`;
* :mod:`~ganlib.viz.style` and :mod:`~ganlib.viz.draw`: the book's style, the canvas, input
  checks and drawing primitives they share.

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
* :class:`LiveMonitor` redraws only in a live Jupyter kernel. Without one, with
  ``static=True``, or when the environment variable ``GANLIB_STATIC=1`` is set (set it
  when executing the chapters for the static book), it costs nothing during training and
  gives a figure at the end; animations go through :func:`to_html`, which plays in the
  rendered HTML page without a kernel.

This package exports the names the chapters, tests and scripts use; the chapters'
``viz.NAME`` references are checked against it by ``tests/test_viz.py``.
"""

from .animation import animate_snapshots
from .draw import mixture_bounds
from .embed import StaticHTML, count_frames, to_html
from .figures import image_grid, plot_history, scatter_2d
from .live import LiveMonitor, static_mode

__all__ = [
    "image_grid", "scatter_2d", "plot_history", "animate_snapshots", "to_html", "count_frames", "StaticHTML",
    "LiveMonitor", "static_mode", "mixture_bounds",
]
