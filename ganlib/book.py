"""Helpers every chapter uses: device choice, profiles, glue, run information, caching.

This module must import anywhere a chapter runs: on Colab (no ``myst_nb``, maybe no
``ipywidgets``), in a plain script, and on a machine without a display. It therefore
imports only the standard library and torch at module level; IPython and myst_nb are
looked up when a function needs them.

Colab set-up. Chapters install ganlib with the command of :func:`colab_setup_code`.
``pyproject.toml`` gives torch only as a lower bound, so pip keeps the torch (and CUDA
build) that Colab ships instead of downloading another one.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import sys
import time
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import torch

PROFILES = ("smoke", "book", "gpu")
SMOKE_BANNER = "Smoke profile: tiny run that proves the chapter executes; its numbers are not results."
DEFAULT_REPO = "ganbook/gan-training-book"


# --- where we run ------------------------------------------------------------------------------
def _ipython_shell():
    """The running IPython shell, or None (plain Python, or IPython not installed)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    try:
        return ipython.get_ipython()
    except AttributeError:  # pragma: no cover - a broken or stub IPython
        return None


def in_notebook() -> bool:
    """True inside a Jupyter kernel (Jupyter, Colab, VS Code, papermill), not a terminal."""
    shell = _ipython_shell()
    return shell is not None and getattr(shell, "kernel", None) is not None


def in_colab() -> bool:
    """True when running on Google Colab."""
    return "google.colab" in sys.modules


def colab_setup_code(repo: str = DEFAULT_REPO, branch: str = "main") -> str:
    """The shell command the chapters' first cell runs on Colab to install ganlib.

    It installs ganlib from the book's git repository and nothing else: torch is only a
    lower bound in ``pyproject.toml``, so Colab's preinstalled, CUDA-enabled torch is kept.

    >>> colab_setup_code()
    'pip install -q "ganlib @ git+https://github.com/ganbook/gan-training-book@main"'
    """
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", repo):
        raise ValueError(f"repo must look like 'owner/name', got {repo!r}")
    if not re.fullmatch(r"[\w./-]+", branch):
        raise ValueError(f"branch must be a git ref without spaces or quotes, got {branch!r}")
    return f'pip install -q "ganlib @ git+https://github.com/{repo}@{branch}"'


# --- hardware ------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _n_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what this process may use (containers, taskset)
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def hardware_summary(device: torch.device | str | None = None, torch_version: bool = True) -> str:
    """One line naming the hardware a run uses, for the chapters' "run on" statements.

    ``device`` defaults to the one :func:`device` would choose. Examples:
    ``"NVIDIA A100-SXM4-40GB (39.4 GiB), torch 2.5.1+cu121"`` or
    ``"CPU: Intel(R) Xeon(R) CPU @ 2.20GHz (2 logical CPUs), torch 2.13.0+cpu"``.
    """
    dev = torch.device(device) if device is not None else _auto_device()
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        text = f"{props.name} ({props.total_memory / 2**30:.1f} GiB)"
    elif dev.type == "mps":
        text = f"Apple GPU via MPS ({platform.machine()})"
    else:
        text = f"CPU: {_cpu_model()} ({_n_cpus()} logical CPUs)"
    return f"{text}, torch {torch.__version__}" if torch_version else text


def _auto_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def device(prefer: str | torch.device | None = None, verbose: bool = True) -> torch.device:
    """The device a chapter runs on: CUDA if present, else Apple MPS, else the CPU.

    ``prefer`` forces one (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``); a requested device
    that is not available raises RuntimeError saying what to do. When ``prefer`` is None the
    environment variable ``GANLIB_DEVICE`` may force one (e.g. ``GANLIB_DEVICE=cpu`` to run a
    chapter on the CPU of a GPU machine). With ``verbose`` it prints :func:`hardware_summary`.
    """
    if prefer is None:
        prefer = os.environ.get("GANLIB_DEVICE") or None
    if prefer is None or prefer == "auto":
        dev = _auto_device()
    else:
        try:
            dev = torch.device(prefer)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"unknown device {prefer!r}: use None (automatic), 'cpu', 'cuda', 'cuda:N' "
                             "or 'mps'") from err
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError(
                    f"device {prefer!r} was requested but CUDA is not available (torch {torch.__version__}, "
                    "no visible NVIDIA GPU or a CPU-only torch build). On Colab choose Runtime > Change "
                    "runtime type > GPU; otherwise call device() to pick what is available, or device('cpu')."
                )
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                raise RuntimeError(f"device {prefer!r} was requested but only {torch.cuda.device_count()} "
                                   "CUDA device(s) are visible; use 'cuda' or 'cuda:0'.")
        elif dev.type == "mps":
            if not _mps_available():
                raise RuntimeError(f"device {prefer!r} was requested but Apple MPS is not available on this "
                                   "machine; call device() to pick what is available, or device('cpu').")
        elif dev.type != "cpu":
            raise ValueError(f"unsupported device {prefer!r}: use None (automatic), 'cpu', 'cuda', 'cuda:N' or 'mps'")
    if verbose:
        print(f"Running on {hardware_summary(dev)}")
    return dev


# --- profiles ------------------------------------------------------------------------------------
def _show(text: str, html: str | None = None) -> None:
    """Display ``html`` (with ``text`` as plain fallback) in a notebook, else print ``text``."""
    if _ipython_shell() is None:
        print(text)
        return
    from IPython.display import display

    bundle = {"text/plain": text}
    if html is not None:
        bundle["text/html"] = html
    display(bundle, raw=True)


def _smoke_banner() -> None:
    html = ('<div style="border:2px solid #b45309;background:#fef3c7;color:#78350f;padding:0.5em 0.8em;'
            f'border-radius:4px;font-weight:600">&#9888; {SMOKE_BANNER}</div>')
    _show(f"*** {SMOKE_BANNER} ***", html)


def select_profile(profile: str, *, smoke: Mapping[str, Any], book: Mapping[str, Any],
                   gpu: Mapping[str, Any]) -> types.SimpleNamespace:
    """The chosen preset as a namespace (``P.steps`` ...), plus ``P.name``.

    ``smoke``: seconds, for CI (proves the chapter runs; never results).
    ``book``: the rendered book's results, minutes on a 2-core CPU.
    ``gpu``: Colab or any GPU machine, larger and longer.
    The three presets must define the same keys, so no chapter code path reads a value that
    one profile forgot. Choosing ``"smoke"`` shows a banner saying its numbers are not results.
    """
    presets = {"smoke": smoke, "book": book, "gpu": gpu}
    if not isinstance(profile, str) or profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: choose one of {', '.join(repr(p) for p in PROFILES)}")
    for name, preset in presets.items():
        if not isinstance(preset, Mapping):
            raise TypeError(f"the {name!r} preset must be a dict of values, got {type(preset).__name__}")
        if "name" in preset:
            raise ValueError(f"the {name!r} preset uses the reserved key 'name' (it holds the profile name); rename it")
    all_keys = set().union(*(p.keys() for p in presets.values()))
    missing = {name: sorted(all_keys - set(p)) for name, p in presets.items() if all_keys - set(p)}
    if missing:
        detail = "; ".join(f"{name} lacks {keys}" for name, keys in missing.items())
        raise ValueError(f"the profile presets must define the same keys: {detail}")
    chosen = types.SimpleNamespace(**presets[profile], name=profile)
    if profile == "smoke":
        _smoke_banner()
    return chosen


# --- glue ----------------------------------------------------------------------------------------
def _plain(value):
    """Numbers as Python numbers, so ``{glue:text}`key:.2f``` can format them.

    myst-nb formats the glued ``text/plain``; a NumPy 2 scalar shows as ``np.float64(0.5)``
    and a tensor as ``tensor(0.5000)``, which it cannot parse as a number.
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


def glue(name: str, value, display: bool = False) -> None:
    """Store ``value`` under ``name`` for the book's prose (``{glue:text}`name:.2f```).

    In a notebook with myst_nb installed this is ``myst_nb.glue``. Elsewhere (Colab, a
    script) it falls back: shows ``value`` if ``display`` is True, otherwise does nothing.
    One-element tensors and NumPy scalars are glued as Python numbers. Returns None, so a
    cell that ends with ``glue(...)`` does not also print the value as a stray output.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"glue name must be a non-empty string, got {name!r}")
    plain = _plain(value)
    myst_glue = None
    if in_notebook():
        try:
            from myst_nb import glue as myst_glue
        except ImportError:
            myst_glue = None
    if myst_glue is not None:
        myst_glue(name, plain, display=display)
    elif display:
        if _ipython_shell() is not None:
            from IPython.display import display as ipy_display

            ipy_display(value)
        else:
            print(value)


# --- run statements --------------------------------------------------------------------------------
class Timer:
    """Measures a block's wall-clock time for the chapters' "this took X s" statements.

    >>> with Timer("training") as t:   # prints "training: 12.3 s" at the end
    ...     trainer.fit()
    >>> glue("train_seconds", t.seconds)

    On CUDA the block's queued GPU work is waited for at the end, so the time covers it.
    """

    def __init__(self, label: str | None = None):
        self.label = label
        self._start: float | None = None
        self._end: float | None = None

    def __enter__(self) -> "Timer":
        self._start, self._end = time.perf_counter(), None
        return self

    def __exit__(self, *exc) -> None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        self._end = time.perf_counter()
        if self.label is not None and exc[0] is None:
            print(f"{self.label}: {self}")

    @property
    def seconds(self) -> float:
        """Elapsed seconds (still counting while inside the block)."""
        if self._start is None:
            raise RuntimeError("Timer has not been started: use it as `with Timer() as t:`")
        return (self._end if self._end is not None else time.perf_counter()) - self._start

    def __str__(self) -> str:
        s = self.seconds
        return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"

    def __repr__(self) -> str:
        return f"Timer(label={self.label!r}, seconds={self.seconds:.3f})" if self._start is not None else "Timer()"


class RunInfo(dict):
    """A dict of what a run used; shows as one markdown line in a notebook, ``str`` gives that line."""

    @property
    def markdown(self) -> str:
        seed = self["seed"]
        seeds = ", ".join(map(str, seed)) if isinstance(seed, (list, tuple)) else str(seed)
        return (f"**Run:** profile `{self['profile']}` · seed {seeds} · {self['hardware']} · "
                f"torch {self['torch']} · ganlib {self['ganlib']} · {self['date']}")

    def _repr_markdown_(self) -> str:
        return self.markdown

    def __str__(self) -> str:
        return self.markdown


def run_info(seed, profile, device: torch.device | str | None = None) -> RunInfo:
    """Seed(s), profile, hardware, torch and ganlib versions and the date (UTC) of a run.

    ``profile`` may be the name or the namespace from :func:`select_profile`. Display the
    result (one markdown line) or glue its fields.
    """
    from . import __version__

    name = getattr(profile, "name", profile)
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: choose one of {', '.join(repr(p) for p in PROFILES)}")
    seed = list(seed) if isinstance(seed, (list, tuple, range)) else seed
    return RunInfo(seed=seed, profile=name, hardware=hardware_summary(device, torch_version=False),
                   torch=torch.__version__, ganlib=__version__, python=platform.python_version(),
                   date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"))


# --- caching ---------------------------------------------------------------------------------------
def cached_run(path: str | os.PathLike, fn: Callable[[], Any], refresh: bool = False, verbose: bool = True):
    """Return the results saved at ``path``; compute them with ``fn()`` and save them if absent.

    For Colab users who resume after a disconnect: a long computation runs once. Results
    must be what ``torch.load(weights_only=True)`` accepts (tensors, numbers, strings, None,
    lists, tuples, dicts), so loading never runs pickled code; they load onto the CPU.
    The file is written atomically (temporary file, then rename) and checked by loading it
    back before it replaces ``path``. Put the profile and seed in ``path`` so runs of
    different sizes never share a file. ``refresh=True`` recomputes and overwrites.
    """
    path = Path(path)
    if path.exists() and not refresh:
        try:
            result = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise RuntimeError(
                f"cached results at {path} cannot be loaded ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:200] if str(err) else ''}). Delete the file or pass "
                "refresh=True to recompute."
            ) from err
        if verbose:
            print(f"Loaded cached results from {path} (delete it or pass refresh=True to recompute)")
        return result
    result = fn()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(result, tmp)
        try:
            torch.load(tmp, map_location="cpu", weights_only=True)
        except Exception as err:
            found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
            what = f"it contains {found.group(1)}" if found else type(err).__name__
            raise TypeError(
                f"cached_run cannot cache the result of {getattr(fn, '__name__', 'fn')}: torch.load(weights_only=True) "
                f"refuses it ({what}). Return only tensors, numbers, strings, None and lists/tuples/dicts of them "
                "(convert NumPy arrays with torch.as_tensor, objects to dicts)."
            ) from err
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return result
