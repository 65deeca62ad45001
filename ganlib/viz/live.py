"""The live training view: :class:`LiveMonitor`, a Trainer callback, and :func:`static_mode`.

In a live Jupyter kernel the monitor redraws one output in place while ``fit`` runs (an
IPython display handle; no ipywidgets needed). In the static book build (``GANLIB_STATIC=1``)
or without a kernel it costs nothing during training and gives a figure at the end.
"""

from __future__ import annotations

import os
import time

import matplotlib

from .. import book
from .draw import (check_nrow, grid, images01, imshow_grid, kind_of, looks_like_mixture, mixture_arrays,
                   mixture_bounds, points, scatter_on)
from .figures import panels, plot_history
from .style import COLUMN_WIDTH, STYLE, fig_png, subplots


def static_mode() -> bool:
    """True when live views must give static output (``GANLIB_STATIC`` set, or no kernel)."""
    flag = os.environ.get("GANLIB_STATIC", "").strip().lower()
    return flag not in ("", "0", "false", "no") or not book.in_notebook()


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
        self.every, self.keys, self.mixture, self.n_samples = float(every), panels(keys), mixture, n_samples
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
        if self.n_samples is None and kind_of(x) == "2d":
            x = trainer.sample(512, **kwargs)
        return x

    def final_figure(self, trainer=None):
        """Loss curves and current samples of ``trainer`` (default: the last one seen)."""
        trainer = trainer if trainer is not None else self.trainer
        if trainer is None:
            raise ValueError("LiveMonitor has not seen a trainer: pass it in Trainer(callbacks=[monitor]) and call "
                             "fit(), or give final_figure(trainer)")
        x = self._samples(trainer)
        kind = kind_of(x)
        mixture = self.mixture
        if mixture is None and kind == "2d" and looks_like_mixture(getattr(trainer, "source", None)):
            mixture = trainer.source
        with matplotlib.rc_context(STYLE):
            n = 1 + len(self.keys)
            fig, axes = subplots(1, n, figsize=(COLUMN_WIDTH, 2.5),
                                 gridspec_kw={"width_ratios": [1.15] + [1] * len(self.keys)})
            axes = list(axes.flat)
            step = getattr(trainer, "step", None)
            if kind == "2d":
                mix = mixture_arrays(mixture)
                bounds = mixture_bounds(mixture) if mix is not None else None
                scatter_on(axes[0], points(x), mix, bounds)
            else:
                x01 = images01(x[:64])
                imshow_grid(axes[0], grid(x01, check_nrow(len(x01), None)))
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
            image = Image(data=fig_png(fig), format="png")
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
