"""Feature-space sample metrics: Fréchet distance (FID), KID and precision/recall.

All functions take feature matrices ``[n, d]`` (rows are samples), compute on the
features' device and return 0-d tensors. Features must be finite: a NaN or inf is refused
with a ``ValueError`` naming the argument (``f_real``/``f_fake``) and counting the bad values,
instead of surfacing as a failed eigendecomposition. The Fréchet step always runs in float64:
float32 errors in the matrix square root reach 1e-2 in FID units.

References:
    Heusel et al., 2017, "GANs trained by a two time-scale update rule converge to a
    local Nash equilibrium" (NeurIPS; the FID definition).
    Bińkowski et al., 2018, "Demystifying MMD GANs" (ICLR; KID: the unbiased MMD^2
    estimator with the cubic polynomial kernel ``k(x, y) = (x.y / d + 1)^3``).
    Kynkäänniemi et al., 2019, "Improved precision and recall metric for assessing
    generative models" (NeurIPS; k-NN balls, k = 3).
"""

from __future__ import annotations

import torch

from ..validation import as_int, check_finite, check_generator

__all__ = ["gaussian_stats", "trace_sqrt_product", "frechet_distance", "fid_from_features",
           "kid", "precision_recall"]


def _check_features(name: str, f: torch.Tensor, min_n: int) -> None:
    if not isinstance(f, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(f).__name__}")
    if f.ndim != 2:
        raise ValueError(f"{name} must be a 2-D feature matrix [n, d], got shape {tuple(f.shape)}")
    if f.shape[0] < min_n:
        raise ValueError(f"{name} has {f.shape[0]} samples; this metric needs at least {min_n}")
    if f.shape[1] < 1:
        raise ValueError(f"{name} has no feature dimensions (shape {tuple(f.shape)})")
    check_finite(name, f, "features")


def _check_pair(f_real: torch.Tensor, f_fake: torch.Tensor, min_n: int) -> None:
    _check_features("f_real", f_real, min_n)
    _check_features("f_fake", f_fake, min_n)
    if f_real.shape[1] != f_fake.shape[1]:
        raise ValueError(f"feature dimensions differ: f_real has {f_real.shape[1]}, "
                         f"f_fake has {f_fake.shape[1]}; extract both with the same network")
    if f_real.device != f_fake.device:
        raise ValueError(f"f_real is on {f_real.device} but f_fake on {f_fake.device}; move them together")


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``[d]`` and unbiased covariance ``[d, d]`` (ddof = 1, as ``np.cov``) in float64."""
    _check_features("features", features, 2)
    f = features.to(torch.float64)
    mu = f.mean(dim=0)
    fc = f - mu
    return mu, fc.mT @ fc / (f.shape[0] - 1)


def trace_sqrt_product(sigma1: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """``Tr((Σ1 Σ2)^{1/2})`` for symmetric PSD matrices, via two symmetric eigendecompositions.

    ``Σ1 Σ2`` is similar to the symmetric PSD ``√Σ1 Σ2 √Σ1``, so the trace is the sum of
    the square roots of the latter's eigenvalues (``eigh``, exact and fast on GPU; never
    ``eigvalsh(Σ1 Σ2)``, which is wrong because the product is not symmetric).
    """
    s1, s2 = sigma1.to(torch.float64), sigma2.to(torch.float64)
    w, v = torch.linalg.eigh(s1)
    root1 = (v * w.clamp_min(0).sqrt()) @ v.mT
    m = root1 @ s2 @ root1
    m = 0.5 * (m + m.mT)                                      # re-symmetrise against round-off
    return torch.linalg.eigvalsh(m).clamp_min(0).sqrt().sum()


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor,
                     sigma2: torch.Tensor) -> torch.Tensor:
    """Fréchet (2-Wasserstein) distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    ``d^2 = ||mu1 - mu2||^2 + Tr(Σ1) + Tr(Σ2) - 2 Tr((Σ1 Σ2)^{1/2})`` (Heusel et al., 2017),
    in float64. A result below zero can only be round-off and is clamped to 0.
    """
    for name, mu, s in (("1", mu1, sigma1), ("2", mu2, sigma2)):
        if not (isinstance(mu, torch.Tensor) and isinstance(s, torch.Tensor)):
            raise TypeError(f"mu{name} and sigma{name} must be torch.Tensors, got {type(mu).__name__} and "
                            f"{type(s).__name__}")
        if mu.ndim != 1 or s.ndim != 2 or s.shape != (mu.shape[0], mu.shape[0]):
            raise ValueError(f"mu{name} must be [d] and sigma{name} [d, d]; got {tuple(mu.shape)} "
                             f"and {tuple(s.shape)}")
    if mu1.shape != mu2.shape:
        raise ValueError(f"dimensions differ: mu1 {tuple(mu1.shape)} vs mu2 {tuple(mu2.shape)}")
    for name, t in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        check_finite(name, t)
    mu1, mu2 = mu1.to(torch.float64), mu2.to(torch.float64)
    s1, s2 = sigma1.to(torch.float64), sigma2.to(torch.float64)
    fd = (mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * trace_sqrt_product(s1, s2)
    return fd.clamp_min(0)


def fid_from_features(f_real: torch.Tensor, f_fake: torch.Tensor) -> torch.Tensor:
    """Fréchet distance between Gaussians fitted to two feature sets (FID when the
    features are Inception pool3; see :mod:`ganlib.metrics.digits` for an offline network).

    When either set has fewer samples than dimensions the covariances are rank-deficient;
    the trace term is then computed exactly from the centred features,
    ``Tr((Σ1 Σ2)^{1/2}) = ||Xc Ycᵀ||_* / sqrt((n1 - 1)(n2 - 1))`` (nuclear norm of an
    ``n1 x n2`` matrix), which avoids square roots of singular ``d x d`` matrices. The
    estimate is biased upward at small n: compare FIDs only at equal sample sizes.
    """
    _check_pair(f_real, f_fake, 2)
    x = f_real.to(torch.float64)
    y = f_fake.to(torch.float64)
    n1, n2, d = x.shape[0], y.shape[0], x.shape[1]
    mu1, mu2 = x.mean(0), y.mean(0)
    xc, yc = x - mu1, y - mu2
    if min(n1, n2) < d:
        tr1 = xc.square().sum() / (n1 - 1)
        tr2 = yc.square().sum() / (n2 - 1)
        cross = torch.linalg.svdvals(xc @ yc.mT).sum() / ((n1 - 1) * (n2 - 1)) ** 0.5
        return ((mu1 - mu2).square().sum() + tr1 + tr2 - 2 * cross).clamp_min(0)
    return frechet_distance(mu1, xc.mT @ xc / (n1 - 1), mu2, yc.mT @ yc / (n2 - 1))


def kid(f_real: torch.Tensor, f_fake: torch.Tensor, n_subsets: int = 100, subset_size: int = 1000,
        generator: torch.Generator | None = None, chunk_elements: int = 2**24
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel Inception Distance: unbiased MMD² with ``k(x, y) = (xᵀy / d + 1)^3``.

    Bińkowski et al. (2018); the subset protocol of torch-fidelity / torchmetrics:
    ``n_subsets`` times, draw ``m = min(subset_size, n_real, n_fake)`` rows of each set
    without replacement and compute the unbiased estimator

    ``MMD² = [Σ_{i≠j} k(x_i, x_j) + Σ_{i≠j} k(y_i, y_j)] / (m(m-1)) - 2 Σ_{i,j} k(x_i, y_j) / m²``.

    Returns ``(mean, std)`` over subsets (float64, 0-d; population std, as torch-fidelity
    and torchmetrics report). The estimator is unbiased, so it
    can be slightly negative for equal distributions. Subsets are drawn with
    ``generator`` (default: a fresh CPU generator seeded 2020, torch-fidelity's seed),
    so repeated calls give the same value. Subsets are processed in chunks of about
    ``chunk_elements`` kernel entries to bound memory.
    """
    _check_pair(f_real, f_fake, 2)
    n_subsets = as_int("n_subsets", n_subsets, low=1)
    subset_size = as_int("subset_size", subset_size, low=2)
    if check_generator(generator) is None:
        generator = torch.Generator().manual_seed(2020)
    m = min(int(subset_size), f_real.shape[0], f_fake.shape[0])
    d = f_real.shape[1]
    x_all = f_real.to(torch.float64)
    y_all = f_fake.to(torch.float64)

    def subsets(n):  # [n_subsets, m] indices, without replacement within a subset
        keys = torch.rand(n_subsets, n, generator=generator, device=generator.device)
        return keys.topk(m, dim=1).indices.to(x_all.device)

    ix, iy = subsets(x_all.shape[0]), subsets(y_all.shape[0])
    chunk = max(1, chunk_elements // (3 * m * m))
    values = []
    for s in range(0, n_subsets, chunk):
        x, y = x_all[ix[s:s + chunk]], y_all[iy[s:s + chunk]]          # [c, m, d]
        kxx = (x @ x.mT / d + 1).pow(3)
        kyy = (y @ y.mT / d + 1).pow(3)
        kxy = (x @ y.mT / d + 1).pow(3)
        off_xx = kxx.sum((1, 2)) - kxx.diagonal(dim1=1, dim2=2).sum(1)
        off_yy = kyy.sum((1, 2)) - kyy.diagonal(dim1=1, dim2=2).sum(1)
        values.append((off_xx + off_yy) / (m * (m - 1)) - 2 * kxy.sum((1, 2)) / m**2)
    values = torch.cat(values)
    return values.mean(), values.std(correction=0)


def _kth_nn_sq_radius(x: torch.Tensor, k: int, rows: int) -> torch.Tensor:
    """Squared distance of every row of ``x`` to its k-th nearest other row."""
    sq = x.square().sum(1)
    out = []
    for s in range(0, x.shape[0], rows):
        d2 = (sq[s:s + rows, None] + sq[None] - 2 * x[s:s + rows] @ x.mT).clamp_min(0)
        out.append(d2.kthvalue(k + 1, dim=1).values)           # the (k+1)-th includes self (0)
    return torch.cat(out)


def _inside_any(query: torch.Tensor, ref: torch.Tensor, radius_sq: torch.Tensor, rows: int) -> torch.Tensor:
    """For each query row: is it within (<=) the radius of any reference row?"""
    sq_ref = ref.square().sum(1)
    out = []
    for s in range(0, query.shape[0], rows):
        q = query[s:s + rows]
        d2 = (q.square().sum(1)[:, None] + sq_ref[None] - 2 * q @ ref.mT).clamp_min(0)
        out.append((d2 <= radius_sq[None]).any(dim=1))
    return torch.cat(out)


def precision_recall(f_real: torch.Tensor, f_fake: torch.Tensor, k: int = 3,
                     max_block_elements: int = 2**23) -> tuple[torch.Tensor, torch.Tensor]:
    """Improved precision and recall (Kynkäänniemi et al., 2019).

    With ``f(φ, Φ) = 1`` if ``||φ - φ'|| <= ||φ' - NN_k(φ')||`` for at least one ``φ'`` in
    ``Φ`` (``NN_k``: the k-th nearest neighbour of ``φ'`` in its own set, self excluded),
    ``precision = mean over fakes of f(φ_g, Φ_r)`` and ``recall = mean over reals of
    f(φ_r, Φ_g)``. In words, each sample gets a ball whose radius is the distance to its
    k-th nearest neighbour in its own set. Precision = share of fake samples inside (``<=``) at least
    one real ball; recall = share of real samples inside at least one fake ball. Distances
    are squared Euclidean in float64, as in the official code; pairwise blocks are
    computed in row chunks of at most ``max_block_elements`` entries, so memory stays
    bounded for large N. Returns ``(precision, recall)`` as 0-d float tensors.
    """
    k = as_int("k", k, low=1)
    _check_pair(f_real, f_fake, k + 1)
    x = f_real.to(torch.float64)
    y = f_fake.to(torch.float64)
    rows = max(1, max_block_elements // max(x.shape[0], y.shape[0]))
    r_real = _kth_nn_sq_radius(x, k, rows)
    r_fake = _kth_nn_sq_radius(y, k, rows)
    precision = _inside_any(y, x, r_real, rows).double().mean()
    recall = _inside_any(x, y, r_fake, rows).double().mean()
    return precision, recall
