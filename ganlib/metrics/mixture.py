"""Mode-collapse metrics on Gaussian mixtures (the VEEGAN/PacGAN 2-D protocol).

Follows ``MetricLogger`` of PacGAN's official code (Lin et al., 2018,
``synthetic_data_experiments/PacGAN/pacgan/extensions.py``, ``dis_thre=3``), which
reproduces the metrics of VEEGAN (Srivastava et al., 2017, Table 1) and produces
PacGAN's Table 1:

1. each generated sample is assigned to its nearest mean, the distance measured in
   units of the standard deviation, ``sqrt(sum((x - mu)^2 / sigma^2))``;
2. a sample is *high quality* (HQ) when that distance is **strictly below** the
   threshold (3 standard deviations);
3. the histogram ``counts[k]`` counts the HQ samples assigned to mode ``k``
   (non-HQ samples are dropped, as in ``detail_of_coverage``);
4. a mode is *covered* when ``counts[k] >= 1``;
5. *high-quality rate* = (number of HQ samples) / (number of samples);
6. *reverse KL* = ``KL(p || uniform)`` with ``p = counts / counts.sum()``, in nats.

Everything is batched: ``samples`` may be ``[n, D]`` (one sample set) or
``[S, n, D]`` (S sets at once, e.g. seeds or players), and every statistic then
has a leading ``S`` axis. Nothing leaves the samples' device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["ModeStats", "mode_statistics", "kl_to_uniform", "mean_log_likelihood"]


@dataclass(frozen=True)
class ModeStats:
    """Per-set mode statistics; every field is a tensor with the sample sets' batch shape.

    Attributes:
        modes_covered: number of modes with at least ``min_count`` HQ samples (long).
        high_quality_rate: share of samples within the threshold of their nearest mode, in
            ``[0, 1]``; ``None`` where it is not defined (stacked digits).
        reverse_kl: ``KL(p_gen || uniform)`` over modes in nats (float64); NaN when no
            sample falls in any mode.
        counts: ``[..., K]`` histogram of (HQ) samples per mode (long).
    """

    modes_covered: torch.Tensor
    high_quality_rate: torch.Tensor | None
    reverse_kl: torch.Tensor
    counts: torch.Tensor

    @property
    def n_modes(self) -> int:
        return self.counts.shape[-1]

    def to_dict(self) -> dict:
        """Python numbers (floats / lists) for printing tables; this syncs with the device."""
        out = {"modes_covered": self.modes_covered.tolist(), "reverse_kl": self.reverse_kl.tolist(),
               "counts": self.counts.tolist()}
        if self.high_quality_rate is not None:
            out["high_quality_rate"] = self.high_quality_rate.tolist()
        return out


def kl_to_uniform(counts: torch.Tensor) -> torch.Tensor:
    """``KL(p || uniform over K bins)`` in nats, with ``p = counts / counts.sum(-1)``.

    ``counts`` is ``[..., K]``. Empty bins contribute ``0 * log 0 = 0`` (PacGAN's
    ``JSD().KLD`` skips ``p == 0``), so the value is ``log K - H(p)``: 0 for a uniform
    histogram, ``log(K / m)`` for ``m`` equally filled bins, ``log K`` for one bin.
    A histogram with no counts at all gives NaN (``p`` is undefined).
    """
    if not isinstance(counts, torch.Tensor):
        raise TypeError(f"counts must be a torch.Tensor [..., K], got {type(counts).__name__}")
    c = counts.to(torch.float64)
    total = c.sum(dim=-1, keepdim=True)
    p = c / total                                            # NaN row when total == 0
    k = counts.shape[-1]
    return torch.special.xlogy(p, p).sum(dim=-1) + math.log(k)


def _check_samples(samples: torch.Tensor, mixture) -> None:
    if not (hasattr(mixture, "means") and callable(getattr(mixture, "assign", None))):
        raise TypeError(f"mixture must be a ganlib.data.GaussianMixture, got {type(mixture).__name__}")
    if not isinstance(samples, torch.Tensor):
        raise TypeError(f"samples must be a torch.Tensor, got {type(samples).__name__}")
    dim = mixture.means.shape[-1]
    if samples.ndim not in (2, 3) or samples.shape[-1] != dim or samples.shape[-2] < 1:
        raise ValueError(
            f"samples must have shape [n, {dim}] or [S, n, {dim}] with n >= 1, "
            f"got {tuple(samples.shape)}")


def mode_statistics(samples: torch.Tensor, mixture, threshold: float = 3.0,
                    min_count: int = 1) -> ModeStats:
    """Modes covered, high-quality rate and reverse KL of generated samples (PacGAN protocol).

    Reproduces ``MetricLogger`` in PacGAN's code (Lin et al., 2018, Table 1; the
    VEEGAN protocol, Srivastava et al., 2017, Table 1): nearest mean by distance in units
    of ``mixture.std``; HQ if that distance is ``< threshold``; only HQ samples enter the
    per-mode histogram ``counts``; a mode is covered if it holds ``>= min_count`` HQ
    samples (PacGAN: 1; some papers use a stricter count, e.g. 20 of 2,500 -- numbers are
    then not comparable); reverse KL is ``KL(counts / counts.sum() || uniform(K))``
    (:func:`kl_to_uniform`; empty modes contribute 0; equals ``log K`` minus PacGAN's
    logged "entropy of coverage"). If no sample is HQ the reverse KL is NaN.
    PacGAN evaluates 2,500 samples per run.

    Args:
        samples: ``[n, D]`` or ``[S, n, D]`` generated points.
        mixture: a :class:`ganlib.data.mixtures.GaussianMixture` (its ``assign`` is used).
        threshold: HQ radius in standard deviations (PacGAN ``dis_thre = 3``).
        min_count: HQ samples a mode needs to count as covered (PacGAN: 1).
    """
    _check_samples(samples, mixture)
    if not threshold > 0:
        raise ValueError(f"threshold must be positive (in standard deviations), got {threshold}")
    if int(min_count) != min_count or min_count < 1:
        raise ValueError(f"min_count must be an integer >= 1, got {min_count}")
    idx, dist = mixture.assign(samples)                      # [..., n], [..., n]
    hq = dist < threshold
    counts = torch.zeros(*idx.shape[:-1], mixture.n_modes, dtype=torch.long, device=idx.device)
    counts.scatter_add_(-1, idx, hq.long())
    return ModeStats(
        modes_covered=(counts >= min_count).sum(dim=-1),
        high_quality_rate=hq.float().mean(dim=-1),
        reverse_kl=kl_to_uniform(counts),
        counts=counts,
    )


def mean_log_likelihood(samples: torch.Tensor, mixture) -> torch.Tensor:
    """Mean log density of generated samples under the true mixture, ``(1/n) sum log p_data(x)``.

    The "log-likelihood of generated samples" of The Bid Picture (arXiv 2403.13866), read
    as the mean over samples of ``log p_data`` with ``p_data = (1/K) sum_k N(mu_k, std^2 I)``
    (the paper's exact formula is not published; this is our reading). It rewards
    precision, not coverage: samples collapsed onto one mode score *higher* than samples
    spread over all modes, so always report it next to :func:`mode_statistics`.

    **Deviation from PacGAN's logged "loglikelihood":** that code sums (not averages) over
    samples, omits the ``1/K`` mixture weight and passes the variance as scipy's ``scale``;
    we use the mixture's true density.

    Returns a tensor of shape ``[]`` for ``[n, D]`` input, ``[S]`` for ``[S, n, D]``.
    """
    _check_samples(samples, mixture)
    return mixture.log_prob(samples).mean(dim=-1)
