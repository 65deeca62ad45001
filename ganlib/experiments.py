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
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Sequence

import torch

__all__ = ["Markdown", "table", "mean_se", "pm", "Paired", "paired", "digits_fid_per_model", "Experiment",
           "run_arms", "VERDICT_RULE", "Gate", "gates_table", "Comparison", "compare", "comparison_table",
           "LRDecay"]

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


@dataclass(frozen=True)
class Gate:
    """A convergence gate: evidence that a reference run has learned the data (e.g. the plain
    GAN's high-quality rate on the ring, the reference run's digits FID), checked against a
    threshold fixed before the run. A comparison is read only when its gates pass: when the
    baseline has not learned the data, "X beats Y" measures stray samples, not the method."""

    what: str
    value: float
    threshold: float
    higher_is_better: bool = True
    digits: int = 1

    @property
    def passed(self) -> bool:
        v = float(self.value)
        if not math.isfinite(v):
            return False
        return v >= self.threshold if self.higher_is_better else v <= self.threshold

    @property
    def needs(self) -> str:
        return f"{'≥' if self.higher_is_better else '≤'} {self.threshold:g}"

    def __str__(self) -> str:
        state = "passed" if self.passed else "FAILED"
        return f"{self.what}: {float(self.value):.{self.digits}f} (needs {self.needs}): {state}"

    def _repr_markdown_(self) -> str:
        return f"**Convergence gate.** {self}"


def gates_table(gates: Sequence[Gate]) -> Markdown:
    """The gates as a Markdown table: what is checked, the measured value, the threshold, passed."""
    return table(["convergence gate", "measured", "needs", "passed"],
                 [[g.what, f"{float(g.value):.{g.digits}f}", g.needs, "yes" if g.passed else "**no**"]
                  for g in gates])


@dataclass(frozen=True)
class Comparison:
    """A gated, paired verdict on one metric: ``arm`` against ``baseline`` over shared seeds.

    ``better`` is True/False when the gates pass and the paired difference is clear
    (:data:`VERDICT_RULE`), None otherwise (no clear difference, or no verdict because a gate
    failed: then ``gated`` is True)."""

    arm: str
    baseline: str
    metric: str
    difference: Paired
    lower_is_better: bool
    failed_gates: tuple = ()

    @property
    def gated(self) -> bool:
        return bool(self.failed_gates)

    @property
    def better(self) -> bool | None:
        if self.gated or self.difference.verdict == "no clear difference":
            return None
        return (self.difference.verdict == "lower") == self.lower_is_better

    @property
    def word(self) -> str:
        """"better", "worse", "no clear difference" or "no verdict (unconverged)"."""
        if self.gated:
            return "no verdict (unconverged)"
        return {True: "better", False: "worse", None: "no clear difference"}[self.better]

    def __str__(self) -> str:
        d = self.difference.format()
        if self.gated:
            failed = "; ".join(g.what for g in self.failed_gates)
            return (f"No verdict on {self.metric} for {self.arm} against {self.baseline}: the run is "
                    f"unconverged (failed gate: {failed}). Paired difference {d}.")
        if self.better is None:
            return (f"{self.arm} against {self.baseline}: no clear difference in {self.metric} "
                    f"(paired difference {d}).")
        return (f"{self.arm} is {'better' if self.better else 'worse'} than {self.baseline} on {self.metric} "
                f"(paired difference {d}).")

    def _repr_markdown_(self) -> str:
        return str(self)


def compare(arm: str, arm_values, baseline: str, baseline_values, metric: str, *, lower_is_better: bool,
            gates: Sequence[Gate] = ()) -> Comparison:
    """The paired verdict ``arm`` vs ``baseline`` on ``metric`` (values per seed, seeds aligned),
    withheld when any of ``gates`` failed."""
    failed = tuple(g for g in gates if not g.passed)
    return Comparison(arm, baseline, metric, paired(arm_values, baseline_values), lower_is_better, failed)


def comparison_table(scores: Mapping[str, object], baseline: str, metric: str, *, lower_is_better: bool,
                     gates: Sequence[Gate] = (), digits: int = 2) -> Markdown:
    """One row per arm of ``scores`` (arm -> values per seed): ``mean ± s.e.``, the paired
    difference to ``baseline`` and the gated verdict (:func:`compare`)."""
    if baseline not in scores:
        raise KeyError(f"no arm {baseline!r}; arms are {list(scores)}")
    rows = []
    for arm, values in scores.items():
        if arm == baseline:
            rows.append([arm, pm(values, digits), "(baseline)", ""])
            continue
        c = compare(arm, values, baseline, scores[baseline], metric, lower_is_better=lower_is_better, gates=gates)
        rows.append([arm, pm(values, digits), c.difference.format(digits), c.word])
    direction = "lower" if lower_is_better else "higher"
    return table(["arm", f"{metric} ({direction} is better)", f"paired difference to {baseline}", "verdict"], rows)


def digits_fid_per_model(samples: torch.Tensor, real_features: torch.Tensor | None = None) -> torch.Tensor:
    """Digits FID (:func:`ganlib.metrics.digits.digits_fid`) of every model's samples: ``samples``
    ``[P, n, H*W]`` (flattened square images, e.g. 64 for 8x8 digits) or ``[P, n, 1, H, W]`` in
    ``[-1, 1]`` -> ``Tensor[P]`` on the CPU (larger images are pooled to 8x8 by the classifier).
    ``real_features``: digits features of the reference images (default: all 1,797 digits), computed
    once for all models. Compare values only at equal ``n`` (the estimate is biased upward at small n)."""
    from .metrics import fid_from_features
    from .metrics.digits import digits_features

    if samples.ndim not in (3, 5):
        raise ValueError(f"samples must be [P, n, H*W] or [P, n, 1, H, W], got {tuple(samples.shape)}")
    if samples.ndim == 3:
        side = math.isqrt(samples.shape[-1])
        if side * side != samples.shape[-1]:
            raise ValueError(f"flattened samples must be square images, got {samples.shape[-1]} pixels")
        samples = samples.reshape(*samples.shape[:2], 1, side, side)
    if real_features is None:
        from .data.images import load_digits

        real_features = digits_features(load_digits()[0])
    images = samples.clamp(-1, 1)
    return torch.tensor([fid_from_features(real_features.to(x.device), digits_features(x)).item() for x in images],
                        dtype=torch.float64)


@dataclass
class Experiment:
    """The result of :func:`run_arms`: the trained population, samples and scores by arm
    (``scores[arm][metric]`` is ``Tensor[seeds]``, in ``seeds`` order), training seconds and the
    generator steps the population took."""

    population: object
    seeds: list
    samples: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)
    seconds: float = 0.0
    steps: int = 0

    def without_population(self) -> "Experiment":
        """A copy without the population, which does not pickle (its closures and parametrized
        modules): what a :func:`ganlib.book.map_processes` worker sends back."""
        return replace(self, population=None)

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
    return Experiment(pop, seeds, samples, scored, seconds, pop.step)


@dataclass(frozen=True)
class LRDecay:
    """A population callback (``Population(..., callbacks=[LRDecay(...)])``): constant learning
    rates (``config.lr_d``, ``config.lr_g``) for the first ``start`` fraction of ``config.steps``,
    then a geometric decay to ``final`` times them at the last step. It sets the stacked
    optimizers' ``lr`` (and the unrolled D steps' ``lr`` of an :class:`~ganlib.training.unrolled.Unrolled`
    scheme, so the unroll keeps imitating D's real update); the value holds until the next call,
    i.e. it is piecewise constant over ``config.log_every`` steps. Call it once after loading a
    checkpoint so that a resumed run does not restart at the base rate."""

    start: float = 0.5
    final: float = 0.03

    def __post_init__(self):
        if not 0 <= self.start <= 1 or not 0 < self.final <= 1:
            raise ValueError(f"need 0 <= start <= 1 and 0 < final <= 1, got start={self.start}, final={self.final}")

    def factor(self, step: int, steps: int) -> float:
        t = step / steps
        if t <= self.start or self.start >= 1:
            return 1.0
        return self.final ** min(1.0, (t - self.start) / (1 - self.start))

    def __call__(self, pop) -> None:
        cfg = pop.config
        f = self.factor(pop.step, cfg.steps)
        pop.opt_d.lr, pop.opt_g.lr = cfg.lr_d * f, cfg.lr_g * f
        update = getattr(pop.scheme, "update", None)
        if update is not None and hasattr(update, "lr"):
            if not hasattr(pop.scheme, "_base_unroll_lr"):
                pop.scheme._base_unroll_lr = update.lr
            update.lr = pop.scheme._base_unroll_lr * f
