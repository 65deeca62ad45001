"""Embedding animations in HTML: every frame as a PNG with a JavaScript player, no CDN.

:func:`to_html` turns a matplotlib animation into a self-contained ``IPython.display.HTML``
(or :class:`StaticHTML` without IPython) that plays in the static book page without a kernel.
"""

from __future__ import annotations

import re
import warnings

import matplotlib
import matplotlib.animation

from .style import STYLE

DEFAULT_EMBED_LIMIT_MB = 50.0
"""Size limit of one embedded JavaScript animation (matplotlib's default is 20 MB)."""

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


def count_frames(html) -> int:
    """Number of frames embedded in a :func:`to_html` result (or its HTML string)."""
    text = getattr(html, "data", html)
    return len(re.findall(r'frames\[\d+\] = "data:image/', text))


def to_html(anim, embed_limit_mb: float = DEFAULT_EMBED_LIMIT_MB, default_mode: str | None = None):
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
