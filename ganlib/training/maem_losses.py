"""MaEM-GAN's loss terms (Liu et al., 2023, arXiv 2208.12055 v4), one function per equation:
L_MaF (Eq. 7), DLLE (Eqs. 12-13), DIsoMap (Eq. 14) and the entropy estimate of RB-MaEM
(Eqs. 8-11). See :mod:`ganlib.training.maem` for the method, the paper-vs-code table and the
trainers. Every loss reduces over the sample and embedding axes and keeps any leading axes, so the
same functions train one model or a stack of members.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from .. import losses as _losses

__all__ = ["realness", "maf_d_loss", "maf_g_loss", "adversarial_d_loss", "adversarial_g_loss", "dlle_transform",
           "dlle_loss", "isomap_mix", "isomap_target", "isomap_loss", "nearest_neighbours", "nn_distances",
           "knn_entropy", "entropy_loss", "entropy_weight", "ENTROPY_METRICS", "ISOMAP_METRICS", "DLLE_METRICS",
           "ALPHAS", "TRANSFORMS", "BUFFERS", "ADVERSARIAL", "EULER_GAMMA", "LOG_EPS"]

ENTROPY_METRICS = ("cosine", "l2")
ISOMAP_METRICS = ("cosine", "mse")
DLLE_METRICS = ("l2", "mse")
ALPHAS = ("uniform", "normal")
TRANSFORMS = ("rotate_noise", "noise", "flip_noise", "identity")
BUFFERS = ("fifo", "official")
ADVERSARIAL = ("maf", "ns")
EULER_GAMMA = 0.5772156649015329   # -psi(1)
LOG_EPS = 1e-8   # our guard inside log(distance): finite on duplicate codes (the code has none)


def _check_codes(*codes: torch.Tensor) -> None:
    for c in codes:
        if not isinstance(c, torch.Tensor):
            raise TypeError(f"codes must be tensors, got {type(c).__name__}")
        if c.ndim < 2:
            raise ValueError(f"codes must have shape [..., n, m] (samples x embedding), got {tuple(c.shape)}")
    if len(codes) > 1 and any(c.shape != codes[0].shape for c in codes):
        raise ValueError(f"code tensors must have the same shape, got {[tuple(c.shape) for c in codes]}")


def _choice(name: str, value, options) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")


# --- L_MaF (Eq. 7) ------------------------------------------------------------------------------

def realness(codes: torch.Tensor) -> torch.Tensor:
    """``(1/m) sum_k V_k``, the realness of a code (Eq. 7): ``[..., n, m] -> [..., n]``."""
    _check_codes(codes)
    return codes.mean(dim=-1)


def maf_d_loss(real_codes: torch.Tensor, fake_codes: torch.Tensor) -> torch.Tensor:
    r"""Discriminator's L_MaF (Eq. 7), minimised:
    :math:`E_z[\frac1m\sum_k 𝔻_k(G(z))] - E_x[\frac1m\sum_k 𝔻_k(x)]`.

    ``[..., n, m]`` codes -> ``[...]`` (official: ``-mean(t_z) + mean(f_z)``).
    """
    _check_codes(real_codes, fake_codes)
    return fake_codes.mean(dim=(-2, -1)) - real_codes.mean(dim=(-2, -1))


def maf_g_loss(fake_codes: torch.Tensor) -> torch.Tensor:
    """Generator's side of Eq. 7 (G maximises L_MaF): ``-E_z[(1/m) sum_k 𝔻_k(G(z))]`` -> ``[...]``."""
    _check_codes(fake_codes)
    return -fake_codes.mean(dim=(-2, -1))


def _batched(fn, *scores: torch.Tensor) -> torch.Tensor:
    """Apply a ganlib loss on ``[n]`` scores to ``[..., n]`` scores, one value per leading index."""
    if scores[0].ndim == 1:
        return fn(*scores)
    lead = scores[0].shape[:-1]
    flat = [s.reshape(-1, s.shape[-1]) for s in scores]
    return torch.vmap(fn)(*flat).reshape(lead)


def adversarial_d_loss(real_codes, fake_codes, kind: str = "maf") -> torch.Tensor:
    """L_MaF (``"maf"``) or, for the reference arm, the non-saturating loss on the realness
    (``"ns"``: :func:`ganlib.losses.d_ns`; not part of the paper)."""
    _choice("adversarial", kind, ADVERSARIAL)
    if kind == "maf":
        return maf_d_loss(real_codes, fake_codes)
    return _batched(_losses.d_ns, realness(real_codes), realness(fake_codes))


def adversarial_g_loss(fake_codes, kind: str = "maf") -> torch.Tensor:
    """Generator counterpart of :func:`adversarial_d_loss`."""
    _choice("adversarial", kind, ADVERSARIAL)
    if kind == "maf":
        return maf_g_loss(fake_codes)
    return _batched(_losses.g_ns, realness(fake_codes))


# --- DLLE (Eqs. 12-13) --------------------------------------------------------------------------

def _rand(shape, x: torch.Tensor, generator, kind="normal") -> torch.Tensor:
    fn = torch.randn if kind == "normal" else torch.rand
    return fn(shape, generator=generator, device=x.device, dtype=x.dtype)


def dlle_transform(x: torch.Tensor, kind: str | Callable = "rotate_noise", noise_std: float = 0.05,
                   max_degrees: float = 15.0, generator: torch.Generator | None = None,
                   sample_dim: int = 0) -> torch.Tensor:
    """A neighbouring view ``F(x)`` for DLLE (Eq. 12); ``x`` is ``[..., n, *sample_shape]``.

    * ``"rotate_noise"`` -- the paper's CIFAR choice (appendix): a random rotation of each
      sample by ``U(-max_degrees, max_degrees)`` (images: about the centre, bilinear,
      border padding; 2-D points: about the origin) plus ``noise_std * N(0, I)``. The paper
      gives neither the angle nor the noise level; 15 degrees and 0.05 are our choice.
    * ``"noise"`` -- Gaussian noise only (the paper's choice on CelebA and ANIMEFACE).
    * ``"flip_noise"`` -- the official code: flip every image of the batch along H *or* W
      (one random choice per batch) plus ``0.001 * N(0, I)`` (pass ``noise_std=0.001``).
    * ``"identity"`` or any callable ``F(x)``.

    ``sample_dim`` is the axis of the samples (0 for one model, 1 for a stack of seeds).
    """
    if callable(kind):
        return kind(x)
    _choice("dlle_transform", kind, TRANSFORMS)
    if kind == "identity":
        return x
    sample_shape = x.shape[sample_dim + 1:]
    if kind == "flip_noise":
        if len(sample_shape) != 3:
            raise ValueError(f"'flip_noise' flips images [.., C, H, W]; got samples of shape {tuple(sample_shape)}")
        along_h = _rand((), x, generator, "uniform") < 0.5        # a device scalar: no host sync
        x = torch.where(along_h, x.flip(-2), x.flip(-1))
    elif kind == "rotate_noise":
        lead = x.shape[:sample_dim + 1]
        angle = (2 * _rand(lead, x, generator, "uniform") - 1) * math.radians(max_degrees)
        cos, sin = angle.cos(), angle.sin()
        if len(sample_shape) == 1:
            if sample_shape[0] != 2:
                raise ValueError(f"rotating points needs 2-D samples, got dimension {sample_shape[0]}; "
                                 "use dlle_transform='noise'")
            rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)   # [..., n, 2, 2]
            x = (rot @ x.unsqueeze(-1)).squeeze(-1)
        elif len(sample_shape) == 3:
            zero = torch.zeros_like(cos)
            theta = torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1)], -2)
            flat = x.reshape(-1, *sample_shape)
            grid = F.affine_grid(theta.reshape(-1, 2, 3), list(flat.shape), align_corners=False)
            x = F.grid_sample(flat, grid, mode="bilinear", padding_mode="border", align_corners=False).reshape(x.shape)
        else:
            raise ValueError(f"'rotate_noise' needs 2-D points or images; got samples of shape {tuple(sample_shape)}")
    if noise_std:
        x = x + noise_std * _rand(x.shape, x, generator)
    return x


def dlle_loss(codes: torch.Tensor, transformed_codes: torch.Tensor, metric: str = "l2") -> torch.Tensor:
    r"""DLLE, Eq. 12: :math:`E\,\|𝔻(F(x)) - 𝔻(x)\|_2` (``metric="l2"``, the unsquared norm),
    or the official ``F.mse_loss(V, sg(V_F))`` (``"mse"``). The transformed view is a
    stop-gradient target (official code; the paper does not say). ``[..., n, m] -> [...]``."""
    _check_codes(codes, transformed_codes)
    _choice("dlle_metric", metric, DLLE_METRICS)
    diff = codes - transformed_codes.detach()
    if metric == "l2":
        return torch.linalg.vector_norm(diff, dim=-1).mean(dim=-1)
    return diff.square().mean(dim=(-2, -1))


# --- DIsoMap (Eq. 14) ---------------------------------------------------------------------------

def isomap_mix(real: torch.Tensor, fake: torch.Tensor, alpha: str = "uniform",
               generator: torch.Generator | None = None, sample_dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``x_mix = a x_real + (1 - a) x_fake`` with one ``a`` per pair (real ``i`` with fake ``i``).

    ``alpha="uniform"``: ``a ~ U(0, 1)``, the convex combination of Eq. 14 (default);
    ``"normal"``: ``a ~ N(0, 1)`` as the official code's ``torch.randn`` (not convex: it
    extrapolates beyond the pair). Returns ``(x_mix, a)`` with ``a`` of shape ``[..., n]``.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake batches must have the same shape, got {tuple(real.shape)} "
                         f"and {tuple(fake.shape)}")
    _choice("isomap_alpha", alpha, ALPHAS)
    lead = real.shape[:sample_dim + 1]
    a = _rand(lead, real, generator, "uniform" if alpha == "uniform" else "normal")
    a_x = a.reshape(*lead, *([1] * (real.ndim - len(lead))))
    return a_x * real + (1 - a_x) * fake, a


def isomap_target(real_codes: torch.Tensor, fake_codes: torch.Tensor, a: torch.Tensor, noise_std: float = 0.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """``sg(a V_real + (1 - a) V_fake) + noise_std * N(0, I)``: the same mix in code space
    (official code adds ``N(0, 0.05^2)``; the paper does not). ``a`` is ``[..., n]``."""
    _check_codes(real_codes, fake_codes)
    a = a.unsqueeze(-1)
    target = (a * real_codes + (1 - a) * fake_codes).detach()
    if noise_std:
        target = target + noise_std * _rand(target.shape, target, generator)
    return target


def isomap_loss(mix_codes: torch.Tensor, target: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    r"""DIsoMap, Eq. 14, as a loss: ``1 - psi(V_{x_mix}, V_hat)`` with ``psi`` the cosine
    similarity (the paper maximises ``psi``), or the official ``F.mse_loss`` (``"mse"``).
    ``target`` is treated as a constant. ``[..., n, m] -> [...]``."""
    _check_codes(mix_codes, target)
    _choice("isomap_metric", metric, ISOMAP_METRICS)
    target = target.detach()
    if metric == "cosine":
        return (1 - F.cosine_similarity(mix_codes, target, dim=-1, eps=1e-8)).mean(dim=-1)
    return (mix_codes - target).square().mean(dim=(-2, -1))


# --- RB-MaEM (Eqs. 8-11) ------------------------------------------------------------------------

def nearest_neighbours(queries: torch.Tensor, reference: torch.Tensor,
                       metric: str = "l2") -> tuple[torch.Tensor, torch.Tensor]:
    """The nearest reference code of every query, batched on the device.

    ``queries [..., B, m]``, ``reference [..., K, m]`` -> ``(index [..., B], neighbours [..., B, m])``.
    ``"l2"``: smallest Euclidean distance (``torch.cdist``); ``"cosine"``: largest cosine
    similarity (``V*`` of Eq. 8). The search runs without gradient; the neighbours are gathered
    from ``reference`` (itself detached in a replay buffer), so losses recompute distances to
    them exactly and differentiably.
    """
    _check_codes(queries)
    _check_codes(reference)
    _choice("metric", metric, ENTROPY_METRICS)
    if queries.shape[-1] != reference.shape[-1] or queries.shape[:-2] != reference.shape[:-2]:
        raise ValueError(f"queries {tuple(queries.shape)} and reference {tuple(reference.shape)} must agree in "
                         "the leading axes and the embedding size")
    if reference.shape[-2] == 0:
        raise ValueError("the reference set is empty; push codes into the buffer first")
    with torch.no_grad():
        q, r = queries.detach(), reference.detach()
        if metric == "l2":
            idx = torch.cdist(q, r).argmin(dim=-1)
        else:
            idx = (F.normalize(q, dim=-1, eps=1e-8) @ F.normalize(r, dim=-1, eps=1e-8).mT).argmax(dim=-1)
    neighbours = torch.gather(reference, -2, idx.unsqueeze(-1).expand(*idx.shape, reference.shape[-1]))
    return idx, neighbours


def nn_distances(queries: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Euclidean distance of every query to its nearest reference code, ``[..., B]``.

    ``reference=None``: leave-one-out within ``queries`` (each code's nearest *other* code).
    For values only (``sqrt`` has no gradient at 0; losses use :func:`entropy_loss`).
    """
    return _nn_sq_dist(queries, reference).sqrt()


def _nn_sq_dist(queries, reference):
    if reference is None:
        _check_codes(queries)
        n = queries.shape[-2]
        if n < 2:
            raise ValueError("leave-one-out nearest neighbours need at least 2 codes")
        with torch.no_grad():
            d = torch.cdist(queries.detach(), queries.detach())
            d = d + torch.diag(torch.full((n,), float("inf"), device=d.device, dtype=d.dtype))
            idx = d.argmin(dim=-1)
        nb = torch.gather(queries, -2, idx.unsqueeze(-1).expand(*idx.shape, queries.shape[-1]))
    else:
        _, nb = nearest_neighbours(queries, reference, "l2")
    return (queries - nb).square().sum(dim=-1)


def knn_entropy(codes: torch.Tensor, reference: torch.Tensor | None = None, eps: float = 1e-12) -> torch.Tensor:
    r"""Kozachenko-Leonenko 1-NN entropy estimate in nats (the estimator behind Eqs. 9-11):

    .. math:: \hat H = \frac{m}{B}\sum_b \log\rho_b + \log V_m + \psi(K+1) - \psi(1),

    ``rho_b`` the distance of code ``b`` to its nearest neighbour among ``K`` reference codes
    (``reference=None``: the other ``B - 1`` codes), ``V_m = pi^{m/2} / Gamma(m/2 + 1)`` the
    volume of the unit m-ball, ``psi`` the digamma function. ``[..., B, m] -> [...]``.
    ``log rho = log(rho^2 + eps) / 2`` keeps it finite on duplicate codes (our guard).
    Scaling all codes by ``c`` adds exactly ``m log c``.
    """
    sq = _nn_sq_dist(codes, reference)
    m = codes.shape[-1]
    k = codes.shape[-2] - 1 if reference is None else reference.shape[-2]
    log_unit_ball = 0.5 * m * math.log(math.pi) - math.lgamma(0.5 * m + 1)
    psi_k1 = float(torch.special.digamma(torch.tensor(k + 1.0, dtype=torch.float64)))   # a CPU scalar: no device sync
    const = log_unit_ball + psi_k1 + EULER_GAMMA                                          # psi(K + 1) - psi(1)
    return 0.5 * m * torch.log(sq + eps).mean(dim=-1) + const


def entropy_loss(codes: torch.Tensor, neighbours: torch.Tensor, metric: str = "cosine", lam: float = 0.0,
                 eps: float = LOG_EPS) -> torch.Tensor:
    r"""RB-MaEM entropy term, minimised (it pushes each code away from its buffer neighbour).

    * ``"cosine"`` -- Eq. 8: ``mean_b [cos(V_b, V*_b) + lam ||V_b||]`` with ``V*`` the most
      cosine-similar buffer code (from :func:`nearest_neighbours` with ``"cosine"``).
    * ``"l2"`` -- official code: ``-log(mean_b mean_k (V_b,k - r_b,k)^2 + eps)`` with ``r_b``
      the nearest buffer code in squared L2 (a log of the *mean* 1-NN distance; Eqs. 9-11
      average the log instead). ``lam`` adds ``lam * mean ||V||`` here too (code: none).

    ``codes``/``neighbours`` ``[..., B, m]`` -> ``[...]``; finite for duplicate codes and all-equal buffers.
    """
    _check_codes(codes, neighbours)
    _choice("entropy_metric", metric, ENTROPY_METRICS)
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    nb = neighbours.detach()
    if metric == "cosine":
        loss = F.cosine_similarity(codes, nb, dim=-1, eps=1e-8).mean(dim=-1)
    else:
        loss = -torch.log((codes - nb).square().mean(dim=(-2, -1)) + eps)
    if lam:
        loss = loss + lam * torch.linalg.vector_norm(codes, dim=-1).mean(dim=-1)
    return loss


def entropy_weight(step: int, sigma: float, warmup_steps: int = 0) -> float:
    """sigma_t = sigma * min(1, step / warmup_steps): the code's linear warm-up
    (``epoch / 100 * entropy_lr`` over the first 100 epochs); ``warmup_steps=0``: constant."""
    if warmup_steps <= 0:
        return float(sigma)
    return float(sigma) * min(1.0, step / warmup_steps)
