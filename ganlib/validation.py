"""Input checks shared by ganlib's public entry points: one home for "refuse it by name".

The contract (see also :mod:`ganlib.training`):

* **Numbers.** A numeric hyperparameter may be given as a number or as a string that
  Python parses as one (``"2e-4"``: what a YAML 1.1 loader returns for ``2e-4``); the string
  is *parsed*, the same way in every config (``TrainConfig``, ``ProgressiveConfig``,
  ``PhasedConfig``), penalty, augmentation range, mixture, count and metric option. Anything
  else (``None`` where a number is needed, ``True``, ``"fast"``, NaN, ±inf) is refused with a
  ``ValueError``/``TypeError`` that names the parameter and the value. Network sizes given to
  model constructors (``hidden``, ``latent_dim``...) are the one exception: they must be ints
  and a string is refused by name (YAML reads integers as ints; only floats like ``2e-4``
  arrive as strings).
* **Counts** (``steps``, ``n``, ``batch_size``...) are integers; a float with an integral value
  (``64.0``) is accepted, a negative or fractional one is refused by name.
* **Data.** A data source is an object with ``sample(n, generator)``; a raw tensor is refused
  with a pointer to :class:`ganlib.data.TensorSource`. Tensors of data or features must be
  finite: NaN/inf values are counted and refused before they can look like a training failure.
"""

from __future__ import annotations

import math
import numbers

import torch

__all__ = ["as_float", "as_int", "check_finite", "check_generator", "check_source"]


def _parse(name: str, value):
    if isinstance(value, bool) or value is None:
        raise TypeError(f"{name} must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise ValueError(f"{name} must be a number, got the string {value!r}") from None
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return value


def as_float(name: str, value, *, low: float | None = None, high: float | None = None,
             low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float in the given range, or a ``ValueError``/``TypeError`` naming ``name``.

    Strings are parsed (``"2e-4"`` -> ``0.0002``). ``low``/``high`` bound the range, inclusive
    unless ``low_open``/``high_open``.
    """
    x = float(_parse(name, value))
    if not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (x < low or (low_open and x == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (x > high or (high_open and x == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value!r}")
    return x


def as_int(name: str, value, *, low: int | None = None) -> int:
    """``value`` as an int ``>= low``; integral floats and numeric strings are accepted, the rest refused
    by name (``fit(steps=-5)``: "steps must be an integer >= 0, got -5")."""
    x = _parse(name, value)
    bound = "" if low is None else f" >= {low}"
    if isinstance(x, float) and not (math.isfinite(x) and x.is_integer()):
        raise ValueError(f"{name} must be an integer{bound}, got {value!r}")
    x = int(x)
    if low is not None and x < low:
        raise ValueError(f"{name} must be an integer{bound}, got {value!r}")
    return x


def check_finite(name: str, tensor: torch.Tensor, what: str = "values") -> None:
    """Refuse a tensor holding NaN or ±inf, saying how many and where the first one is (one host sync)."""
    bad = ~torch.isfinite(tensor)
    n_bad = int(bad.sum())
    if n_bad:
        rows = bad.reshape(len(tensor), -1).any(1) if tensor.ndim >= 1 and len(tensor) else bad.reshape(1)
        first = int(rows.nonzero()[0, 0])
        raise ValueError(
            f"{name} has {n_bad} non-finite {what} (NaN or inf) in {int(rows.sum())} of {len(rows)} rows, "
            f"the first in row {first}; remove or repair them (e.g. keep "
            f"x[torch.isfinite(x).flatten(1).all(1)]) before passing {name}")


def check_generator(generator, name: str = "generator"):
    """Refuse a random generator that is neither ``None`` nor a ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {type(generator).__name__}; "
                        "make one with torch.Generator(device).manual_seed(seed)")
    return generator


def check_source(source, name: str = "source"):
    """Refuse anything that is not a data source (an object with ``sample(n, generator)``)."""
    if isinstance(source, torch.Tensor):
        raise TypeError(
            f"{name} must be a data source with sample(n, generator), got a tensor of shape "
            f"{tuple(source.shape)}; wrap it: ganlib.data.TensorSource(x)")
    if not callable(getattr(source, "sample", None)):
        raise TypeError(
            f"{name} must be a data source with sample(n, generator) (a GaussianMixture, "
            f"ganlib.data.TensorSource(x), ganlib.data.load_dataset(name)...), got {type(source).__name__}")
    return source
