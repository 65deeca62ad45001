"""The chapters' experiment harness and result helpers: arms x seeds -> fit -> sample -> score,
GFM result tables, mean ± standard error and paired differences.

A chapter states its arms and seeds, and gets every number from one call::

    from ganlib.experiments import run_arms, table, pm, paired
    from ganlib.training.population import Standard

    exp = run_arms(lambda: MLPGenerator(), lambda: MLPDiscriminator(), ring_of_gaussians(),
                   TrainConfig(steps=2000, batch_size=256, progress=False),
                   arms={"gan": Standard("ns"), "lsgan": Standard("lsgan")}, seeds=range(5),
                   scores={"modes": lambda x: mixture_metrics_per_model(x)}, n_samples=2500)
    exp.table(baseline="gan")        # a Markdown table: mean ± s.e. per arm, paired difference to "gan"
    exp.scores["lsgan"]["modes"]     # Tensor [5], one value per seed

**Statistics.** Seeds are the unit of replication: a score is one number per seed, summarised as
``mean ± standard error`` (s.e. = sample standard deviation / sqrt(n), n the number of finite
values). Arms that share seeds start from the same networks and see the same batches, so they
are compared by **paired differences** (per seed, arm minus baseline): the verdict is "higher" or
"lower" when ``|mean difference| > 2 s.e.`` of the differences and "no clear difference"
otherwise -- a rough two-sided 95% rule (the normal approximation; with few seeds a t quantile
would be stricter, so treat a borderline verdict as unclear).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch

__all__ = ["Markdown", "table", "mean_se", "pm", "Paired", "paired", "digits_fid_per_model", "Experiment",
           "run_arms", "VERDICT_RULE"]

VERDICT_RULE = "|mean paired difference| > 2 standard errors"


class Markdown(str):
    """A string of Markdown that Jupyter renders as Markdown (and prints as itself)."""

    def _repr_markdown_(self) -> str:
        return str(self)


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence, rows: Sequence[Sequence]) -> Markdown:
    """A GitHub-flavoured Markdown table from a header and rows of cells (formatted with ``str``;
    ``|`` in a cell is escaped). Every row must have as many cells as the header."""
    header = list(header)
    if not header:
        raise ValueError("a table needs at least one column")
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    for i, row in enumerate(rows):
        row = list(row)
        if len(row) != len(header):
            raise ValueError(f"row {i} has {len(row)} cells for {len(header)} columns: {row!r}")
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return Markdown("\n".join(lines))


def _finite(values) -> torch.Tensor:
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    return v[torch.isfinite(v)]


def mean_se(values) -> tuple[float, float, int]:
    """``(mean, standard error, n)`` of the finite entries of ``values`` (NaN/inf are left out:
    e.g. a KL with no high-quality sample). s.e. = sample std (n - 1) / sqrt(n); ``nan`` when n < 2."""
    v = _finite(values)
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    se = (v.std() / math.sqrt(n)).item() if n > 1 else math.nan
    return v.mean().item(), se, n


def pm(values, digits: int = 2, scale: float = 1.0) -> str:
    """``"mean ± s.e."`` of ``values`` (times ``scale``) with ``digits`` decimals; ``"n/a"`` when no
    value is finite, the bare value when there is one."""
    m, se, n = mean_se(_finite(values) * scale)
    if n == 0:
        return "n/a"
    if n == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {se:.{digits}f}"


@dataclass(frozen=True)
class Paired:
    """A paired difference (arm - baseline, per seed): ``mean``, standard error ``se``, ``n`` seeds and
    the verdict under :data:`VERDICT_RULE`."""

    mean: float
    se: float
    n: int
    verdict: str

    def format(self, digits: int = 2) -> str:
        if self.n == 0:
            return "n/a"
        se = "n/a" if math.isnan(self.se) else f"{self.se:.{digits}f}"
        return f"{self.mean:+.{digits}f} ± {se} ({self.verdict}, {self.n} seeds)"

    def __str__(self) -> str:
        return self.format()


def paired(arm, baseline) -> Paired:
    """Per-seed differences ``arm - baseline`` (seeds aligned; pairs with a non-finite side are left
    out) as a :class:`Paired`. Verdict: "higher"/"lower" when ``|mean| > 2 se``, else
    "no clear difference" (always unclear with fewer than 2 pairs)."""
    a = torch.as_tensor(arm, dtype=torch.float64).flatten()
    b = torch.as_tensor(baseline, dtype=torch.float64).flatten()
    if a.shape != b.shape:
        raise ValueError(f"paired differences need one value per seed on both sides, got {len(a)} and {len(b)}")
    m, se, n = mean_se(a - b)
    clear = n > 1 and abs(m) > 2 * se
    verdict = ("higher" if m > 0 else "lower") if clear else "no clear difference"
    return Paired(m, se, n, verdict)


def digits_fid_per_model(samples: torch.Tensor, real_features: torch.Tensor | None = None) -> torch.Tensor:
    """Digits FID (:func:`ganlib.metrics.digits.digits_fid`) of every model's samples: ``samples``
    ``[P, n, 64]`` (flattened 8x8) or ``[P, n, 1, 8, 8]`` in ``[-1, 1]`` -> ``Tensor[P]`` on the CPU.
    ``real_features``: digits features of the reference images (default: all 1,797 digits), computed
    once for all models. Compare values only at equal ``n`` (the estimate is biased upward at small n)."""
    from .metrics import fid_from_features
    from .metrics.digits import digits_features

    if samples.ndim not in (3, 5):
        raise ValueError(f"samples must be [P, n, 64] or [P, n, 1, 8, 8], got {tuple(samples.shape)}")
    if real_features is None:
        from .data.images import load_digits

        real_features = digits_features(load_digits()[0])
    images = samples.reshape(*samples.shape[:2], 1, 8, 8).clamp(-1, 1)
    return torch.tensor([fid_from_features(real_features.to(x.device), digits_features(x)).item() for x in images],
                        dtype=torch.float64)


@dataclass
class Experiment:
    """The result of :func:`run_arms`: the trained population, samples and scores by arm
    (``scores[arm][metric]`` is ``Tensor[seeds]``, in ``seeds`` order), and training seconds."""

    population: object
    seeds: list
    samples: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)
    seconds: float = 0.0

    def table(self, metrics: Sequence[str] | None = None, baseline: str | None = None, digits: int = 2) -> Markdown:
        """One row per arm: ``mean ± s.e.`` of every metric over seeds and, with ``baseline``, the
        paired difference to the baseline arm (:func:`paired`)."""
        arms = list(self.scores)
        metrics = list(metrics or (next(iter(self.scores.values())) if arms else []))
        header = ["arm", *metrics]
        if baseline is not None:
            if baseline not in self.scores:
                raise KeyError(f"no arm {baseline!r}; arms are {arms}")
            header += [f"{m} - {baseline}" for m in metrics]
        rows = []
        for arm in arms:
            row = [arm, *(pm(self.scores[arm][m], digits) for m in metrics)]
            if baseline is not None:
                row += ["(baseline)" if arm == baseline else paired(self.scores[arm][m], self.scores[baseline][m]).format(digits)
                        for m in metrics]
            rows.append(row)
        return table(header, rows)


def run_arms(make_generator: Callable, make_discriminator: Callable, source, config, arms: Mapping,
             seeds: Sequence[int], scores: Mapping[str, Callable] | None = None, n_samples: int = 1000,
             device=None, sample_seed: int = 10_007, ema: bool = False, **population_kw) -> Experiment:
    """Arms x seeds -> fit -> sample -> score, as one :class:`~ganlib.training.population.Population`.

    ``scores[name](samples [S, n, ...]) -> Tensor[S]`` scores one arm's samples (one value per
    seed). Samples are drawn with their own RNG (``sample_seed``), from the EMA generators with
    ``ema=True``. Extra keyword arguments go to ``Population``."""
    from .training.population import Population

    seeds = [int(s) for s in seeds]
    pop = Population(make_generator, make_discriminator, source, config, seeds=seeds, arms=dict(arms),
                     device=device, **population_kw)
    start = time.perf_counter()
    pop.fit()
    seconds = time.perf_counter() - start
    samples = pop.samples(n_samples, seed=sample_seed, ema=ema)
    scored = {arm: {name: torch.as_tensor(fn(x)).flatten().cpu() for name, fn in (scores or {}).items()}
              for arm, x in samples.items()}
    return Experiment(pop, seeds, samples, scored, seconds)
