"""Per-step training statistics: kept on the device, copied to ``history`` in one host transfer
every ``log_every`` steps, and checked there for NaN/inf (the guard names the step, the quantity
and, in a population, the member). Shared by :class:`~ganlib.training.Trainer` and
:class:`~ganlib.training.population.Population`."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

ADVICE = ("Training diverged: lower the learning rates, add a gradient penalty or spectral normalization, "
          "or resume from the last checkpoint with different settings.")


class PendingStats:
    """Rows of statistics (one per step), each a device tensor ``[K]`` (one model) or ``[P, K]``
    (P members), flushed into a ``history`` dict of lists.

    Args:
        keys: the K statistic names, in row order.
        member_name: for populations, ``f(p) -> str`` naming member ``p`` in error messages.
        checked: the keys the NaN guard checks (default all; a scheme's extra statistics may use
            NaN for "not computed").
    """

    def __init__(self, keys: Sequence[str], member_name: Callable[[int], str] | None = None,
                 checked: Sequence[str] | None = None):
        self.keys, self.member_name = tuple(keys), member_name
        self._checked = [self.keys.index(k) for k in (checked if checked is not None else self.keys)]
        self.rows: list[torch.Tensor] = []
        self.steps: list[int] = []

    def add(self, step: int, stats: dict[str, torch.Tensor]) -> None:
        """Record one step; ``stats[key]`` is a scalar (one model) or ``[P]`` (no host sync)."""
        self.rows.append(torch.stack([stats[k].detach().float() for k in self.keys], dim=-1))
        self.steps.append(step)

    def add_row(self, step: int, row: torch.Tensor) -> None:
        """Record one step whose statistics are already stacked in ``keys`` order (``[K]`` or ``[P, K]``)."""
        self.rows.append(row)
        self.steps.append(step)

    def flush(self, history: dict[str, list], reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Append the pending rows to ``history`` (``history[key]`` gets a float, or a list of P
        floats, per step) after checking they are finite. ``reduce`` maps the stacked rows before
        the host copy (the data-parallel Trainer averages them over ranks)."""
        if not self.rows:
            return
        rows = torch.stack(self.rows)
        rows = (reduce(rows) if reduce is not None else rows).cpu()   # [T, K] or [T, P, K]: one host copy
        steps, self.rows, self.steps = self.steps, [], []
        check_finite(rows[..., self._checked], steps, [self.keys[k] for k in self._checked], self.member_name)
        history["step"].extend(steps)
        for k, key in enumerate(self.keys):
            history[key].extend(rows[..., k].tolist())


def check_finite(rows: torch.Tensor, steps: Sequence[int], keys: Sequence[str],
                 member_name: Callable[[int], str] | None = None) -> None:
    """Raise ``FloatingPointError`` naming the first non-finite statistic: ``rows`` is ``[T, K]``
    or ``[T, P, K]`` (step, member, statistic)."""
    bad = ~torch.isfinite(rows)
    if not bad.any():
        return
    index = [int(v) for v in bad.nonzero()[0]]
    t, k = index[0], index[-1]
    who = ""
    if rows.ndim == 3:
        p = index[1]
        who = f" of {member_name(p) if member_name else f'member {p}'}"
    raise FloatingPointError(f"{keys[k]}{who} became {rows[tuple(index)].item()} at step {steps[t]}. {ADVICE}")
