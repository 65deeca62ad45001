"""The book's figure style and canvas: every figure in ganlib.viz is made here.

``STYLE`` is the small rc style each figure is drawn with (:func:`styled` applies it to a
function); :func:`subplots` makes a figure that a notebook shows once (created through
pyplot, then closed, with an Agg canvas so it can still be drawn, saved and displayed).
"""

from __future__ import annotations

import functools
import io

import matplotlib

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


def styled(fn):
    """Decorator: run ``fn`` inside ``matplotlib.rc_context(STYLE)``."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper


def subplots(nrows: int = 1, ncols: int = 1, figsize=None, layout="constrained", **kw):
    """A new figure and a 2-D array of axes, closed in pyplot (see :mod:`ganlib.viz`).

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


def fig_png(fig) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
