"""How many CPU cores a chapter may use: the one rule that :mod:`ganlib.book` and
``scripts/run_chapters.py`` share.

Standard library only, and nothing from the rest of ganlib, so the chapter runner, which never
imports torch, loads this file by its path without importing the package.
"""

from __future__ import annotations

import os

CPUS_VARIABLE = "GANLIB_CPUS"


def usable_cpus() -> int:
    """The cores this process may run on (its affinity: containers, ``taskset``), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def cpu_budget() -> int:
    """How many CPU cores a chapter may use: ``GANLIB_CPUS`` if set (``scripts/run_chapters.py``
    sets it to 1 for a chapter that runs beside others, and leaves it unset for one that runs
    alone), else :func:`usable_cpus`. A value that is not a positive integer is refused."""
    value = os.environ.get(CPUS_VARIABLE, "").strip()
    if not value:
        return usable_cpus()
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{CPUS_VARIABLE} must be a positive integer, got {value!r}; unset it to use every core")
    return int(value)
