r"""MaEM-GAN: manifold entropy estimation against mode collapse.

Liu et al., 2023, "Combating Mode Collapse in GANs
via Manifold Entropy Estimation" (AAAI; arXiv 2208.12055 v4). Official code:
github.com/HaozheLiu-ST/MEE (``train.py``, ``models.py``, commit f7d3d33).

The discriminator is an embedding 𝔻: x -> R^m (:class:`ganlib.models.embedding.EmbeddingDiscriminator`);
``V = 𝔻(x)`` is the *code* of ``x``. Four terms (paper equation -> function here):

* **L_MaF**, Eq. 7, an m-dimensional WGAN whose realness is the mean of the m outputs:
  ``L_MaF = E_z[(1/m) sum_k 𝔻_k(G(z))] - E_x[(1/m) sum_k 𝔻_k(x)]``, minimised by D and
  maximised by G -> :func:`maf_d_loss`, :func:`maf_g_loss`.
* **DLLE**, Eqs. 12-13, Deep Local Linear Embedding: a transformed view ``F(x)`` is a
  neighbour of ``x`` and must embed like it, ``L_LLE = E ||𝔻(F(x)) - 𝔻(x)||_2`` on real and
  generated images -> :func:`dlle_transform`, :func:`dlle_loss`.
* **DIsoMap**, Eq. 14, Deep Isometric feature Mapping: the code of a mix of two images must
  match the same mix of their codes, ``psi(𝔻(a x_i + (1-a) x_j), a V_i + (1-a) V_j)`` with
  ``psi`` the cosine similarity -> :func:`isomap_mix`, :func:`isomap_target`, :func:`isomap_loss`.
* **RB-MaEM**, Eq. 8, the generator maximises a 1-nearest-neighbour entropy estimate
  (Eqs. 9-11, after Beirlant et al., 1997) of its codes against a first-in-first-out replay
  buffer R of past codes: ``L_ent = cos(V_0, V*) + lambda ||V_0||`` with ``V*`` the most
  cosine-similar code in R, minimised, weighted by sigma (``--entropy_lr`` in the code) with a
  linear warm-up -> :class:`ReplayBuffer`, :func:`nearest_neighbours`, :func:`entropy_loss`,
  :func:`entropy_weight`; :func:`knn_entropy` is the estimator itself (for monitoring).

Paper vs official code, each a named option of :class:`MaEMConfig` (defaults = paper):

==================  ==================================  =========================================
option              paper (default)                     official code (``MaEMConfig.official()``)
==================  ==================================  =========================================
entropy_metric      "cosine" (Eq. 8) + lambda ||V||      "l2": ``-log(mean_b min_r mean_k (V-r)^2)``
buffer              "fifo": last K codes, 1-NN over all  "official": shrinks to the previous batch,
                                                        same-index comparison (a bug, see below)
entropy_on_real     False (text: generated codes only)  True: D also spreads *real* codes
isomap_metric       "cosine" (Eq. 14)                   "mse"
isomap_alpha        "uniform" (a convex combination)    "normal": ``torch.randn`` (extrapolates)
isomap_target_noise 0                                   0.05
dlle_metric         "l2" (Eq. 12, unsquared norm)       "mse"
dlle_transform      "rotate_noise" (appendix, CIFAR)    "flip_noise": flip H or W + 0.001 N(0, 1)
==================  ==================================  =========================================

**The replay-buffer bug** (``train.py``, ``entropy_buffer``/``enrtopy_loss``): the buffer is a
``[1024, B, m]`` tensor of 1,024 *batches*; each call keeps ``buffer[B:]`` (drops B slots) and
appends one, so it shrinks 1024 -> 961 -> ... -> 16 -> 1 slot after 17 calls, and code ``b`` is
only ever compared with stored codes at the same batch index ``b``. The released method is
therefore "distance to the previous batch's code at the same index", not a 1-NN estimate
over 1,024 codes. :class:`OfficialReplayBuffer` reproduces it to show its effect;
:class:`ReplayBuffer` is the intended FIFO.

Where the paper is silent the code is followed: both DLLE and DIsoMap targets are
stop-gradient; the buffer starts full of U(-1, 1) codes; the entropy term is computed
against the buffer *before* the batch is pushed. The code takes one generator step per three
discriminator steps (README ``--G_split_num 3``): ``TrainConfig(n_critic=3)`` (not enforced).

Every loss here reduces over the sample and embedding axes and keeps any leading axes, so
the same functions train one model (:class:`MaEMTrainer`) or a stack of seeds at once
(:class:`MaEMEnsemble`, via ``torch.func.vmap``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import losses as _losses
from .checkpoint import CheckpointError, load_checkpoint
from .trainer import TrainConfig, Trainer, descend, make_optimizer

__all__ = [
    "maf_d_loss", "maf_g_loss", "realness", "dlle_transform", "dlle_loss", "isomap_mix", "isomap_target",
    "isomap_loss", "nearest_neighbours", "nn_distances", "knn_entropy", "entropy_loss", "entropy_weight",
    "ReplayBuffer", "OfficialReplayBuffer", "make_buffer", "MaEMConfig", "discriminator_losses",
    "generator_losses", "MaEMTrainer", "SeedEnsemble", "MaEMEnsemble", "MAEM_KEYS",
]

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


class ReplayBuffer:
    """First-in-first-out buffer of the last ``capacity`` codes (RB-MaEM, Eq. 8), on the device.

    ``data`` is ``[*batch_shape, capacity, m]`` (``batch_shape`` stacks independent buffers, one
    per seed of an ensemble); a circular write pointer makes :meth:`push` O(B). Starts full of
    ``U(-1, 1)`` codes (the official code's initialisation) or empty (``init="empty"``).
    The state (tensor, pointer, count) goes into checkpoints via :meth:`state_dict`.
    """

    def __init__(self, capacity: int, dim: int, batch_shape: Sequence[int] = (), init: str = "uniform",
                 generator: torch.Generator | None = None, device=None, dtype=torch.float32):
        if int(capacity) != capacity or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        if int(dim) != dim or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        _choice("init", init, ("uniform", "empty"))
        device = generator.device if device is None and generator is not None else device
        self.capacity, self.dim, self.batch_shape = int(capacity), int(dim), tuple(batch_shape)
        shape = (*self.batch_shape, self.capacity, self.dim)
        if init == "uniform":
            self.data = torch.rand(shape, generator=generator, device=device, dtype=dtype) * 2 - 1
            self.count = self.capacity
        else:
            self.data = torch.zeros(shape, device=device, dtype=dtype)
            self.count = 0
        self.ptr = 0   # next slot to overwrite (the oldest entry once full)

    def __len__(self) -> int:
        return self.count

    def reference(self) -> torch.Tensor:
        """The stored codes ``[*batch_shape, len, m]`` in storage order (what the 1-NN search uses)."""
        return self.data if self.count == self.capacity else self.data[..., :self.count, :]

    def contents(self) -> torch.Tensor:
        """The stored codes from oldest to newest."""
        if self.count < self.capacity:
            return self.data[..., :self.count, :]
        return torch.cat([self.data[..., self.ptr:, :], self.data[..., :self.ptr, :]], dim=-2)

    def nearest(self, codes: torch.Tensor, metric: str = "l2") -> torch.Tensor:
        """The nearest stored code of every code in the batch, ``[..., B, m]`` (see :func:`nearest_neighbours`)."""
        return nearest_neighbours(codes, self.reference(), metric)[1]

    @torch.no_grad()
    def push(self, codes: torch.Tensor) -> None:
        """Append ``codes [*batch_shape, B, m]`` (detached); the oldest entries drop out."""
        if codes.shape[:-2] != self.batch_shape or codes.shape[-1] != self.dim:
            raise ValueError(f"expected codes [*{self.batch_shape}, B, {self.dim}], got {tuple(codes.shape)}")
        codes = codes.detach().to(self.data.dtype)[..., -self.capacity:, :]
        b = codes.shape[-2]
        idx = (self.ptr + torch.arange(b, device=self.data.device)) % self.capacity
        self.data.index_copy_(self.data.ndim - 2, idx, codes)
        self.ptr = (self.ptr + b) % self.capacity
        self.count = min(self.capacity, self.count + b)

    def state_dict(self) -> dict:
        return {"kind": "fifo", "data": self.data, "ptr": self.ptr, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != "fifo" or tuple(state["data"].shape) != tuple(self.data.shape):
            raise CheckpointError(f"checkpointed buffer ({state.get('kind')}, {tuple(state['data'].shape)}) does "
                                  f"not match this run's FIFO buffer {tuple(self.data.shape)}")
        self.data = state["data"].to(self.data.device)
        self.ptr, self.count = int(state["ptr"]), int(state["count"])


class OfficialReplayBuffer:
    """The released code's buffer, bug included (``train.py``: ``entropy_buffer``, ``enrtopy_loss``).

    ``data`` is ``[*batch_shape, slots, B, m]``, initialised with the same ``capacity`` U(-1, 1)
    codes at every batch index. ``push`` keeps ``data[B:]`` along the slot axis and appends
    one slot, so the slots go ``capacity -> capacity - B + 1 -> ... -> 1``; the nearest
    neighbour of code ``b`` is searched only among slots at batch index ``b`` (mean squared
    distance, or cosine for ``metric="cosine"``). Use it with a fixed batch size.
    """

    def __init__(self, capacity: int, dim: int, batch_size: int, batch_shape: Sequence[int] = (),
                 generator: torch.Generator | None = None, device=None, dtype=torch.float32):
        for name, v in (("capacity", capacity), ("dim", dim), ("batch_size", batch_size)):
            if int(v) != v or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        device = generator.device if device is None and generator is not None else device
        self.capacity, self.dim, self.batch_size, self.batch_shape = capacity, dim, batch_size, tuple(batch_shape)
        codes = torch.rand((*self.batch_shape, capacity, 1, dim), generator=generator, device=device, dtype=dtype)
        self.data = (codes * 2 - 1).expand(*self.batch_shape, capacity, batch_size, dim).clone()

    def __len__(self) -> int:
        return self.data.shape[-3]

    def nearest(self, codes: torch.Tensor, metric: str = "l2") -> torch.Tensor:
        """Per batch index ``b``: the stored code at index ``b`` closest to ``codes[b]``, ``[..., B, m]``."""
        _choice("metric", metric, ENTROPY_METRICS)
        if codes.shape != (*self.batch_shape, self.batch_size, self.dim):
            raise ValueError(f"the official buffer needs codes [*{self.batch_shape}, {self.batch_size}, {self.dim}] "
                             f"(it stores whole batches), got {tuple(codes.shape)}")
        with torch.no_grad():
            q = codes.detach().unsqueeze(-3)                                   # [..., 1, B, m]
            if metric == "l2":
                idx = (self.data - q).square().mean(dim=-1).argmin(dim=-2)    # [..., B]
            else:
                idx = F.cosine_similarity(self.data, q, dim=-1, eps=1e-8).argmax(dim=-2)
        index = idx.unsqueeze(-2).unsqueeze(-1).expand(*idx.shape[:-1], 1, idx.shape[-1], self.dim)
        return torch.gather(self.data, -3, index).squeeze(-3)

    @torch.no_grad()
    def push(self, codes: torch.Tensor) -> None:
        """``torch.cat((buffer[batch_size:], batch[None]))`` along the slot axis, as in the code."""
        if codes.shape != (*self.batch_shape, self.batch_size, self.dim):
            raise ValueError(f"expected codes [*{self.batch_shape}, {self.batch_size}, {self.dim}], "
                             f"got {tuple(codes.shape)}")
        self.data = torch.cat([self.data[..., self.batch_size:, :, :], codes.detach().unsqueeze(-3)], dim=-3)

    def state_dict(self) -> dict:
        return {"kind": "official", "data": self.data}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != "official" or tuple(state["data"].shape[-2:]) != (self.batch_size, self.dim):
            raise CheckpointError("checkpointed buffer does not match this run's official buffer")
        self.data = state["data"].to(self.data.device)


# --- configuration ------------------------------------------------------------------------------

@dataclass
class MaEMConfig:
    """Weights and variants of the MaEM-GAN terms; defaults follow the paper (CIFAR-10 appendix).

    A weight of 0 switches a term off, which gives the arms of the paper's Table 1 ablation:
    ``MaEMConfig(isomap_weight=0, dlle_weight=0, entropy_weight=0)`` is "L_MaF only".
    Unit weights for DIsoMap and DLLE are the official code's (the paper prints no total loss).

    Attributes:
        adversarial: ``"maf"`` (Eq. 7) or ``"ns"`` (reference arm: non-saturating loss on the realness).
        isomap_weight, isomap_metric, isomap_alpha, isomap_target_noise: DIsoMap (Eq. 14).
        dlle_weight, dlle_metric, dlle_transform, dlle_noise_std, dlle_max_degrees: DLLE (Eq. 12).
        entropy_weight: sigma (appendix: 5e-4 on CIFAR-10, 5e-2 for DCGAN on CelebA).
        entropy_warmup: generator steps of linear warm-up of sigma (code: 100 epochs).
        entropy_metric, entropy_lambda: Eq. 8 (``lambda = 0`` on CIFAR, 5.0 on ANIMEFACE).
        entropy_on_real: also maximise the entropy of real codes in D's step (code only).
        buffer_size: K = 1024 "in all our experiments". buffer: ``"fifo"`` or ``"official"``.
        buffer_init: ``"uniform"`` (code: U(-1, 1)) or ``"empty"``.
    """

    adversarial: str = "maf"
    isomap_weight: float = 1.0
    isomap_metric: str = "cosine"
    isomap_alpha: str = "uniform"
    isomap_target_noise: float = 0.0
    dlle_weight: float = 1.0
    dlle_metric: str = "l2"
    dlle_transform: str | Callable = "rotate_noise"
    dlle_noise_std: float = 0.05
    dlle_max_degrees: float = 15.0
    entropy_weight: float = 5e-4
    entropy_warmup: int = 0
    entropy_metric: str = "cosine"
    entropy_lambda: float = 0.0
    entropy_on_real: bool = False
    buffer_size: int = 1024
    buffer: str = "fifo"
    buffer_init: str = "uniform"

    def __post_init__(self):
        _choice("adversarial", self.adversarial, ADVERSARIAL)
        _choice("isomap_metric", self.isomap_metric, ISOMAP_METRICS)
        _choice("isomap_alpha", self.isomap_alpha, ALPHAS)
        _choice("dlle_metric", self.dlle_metric, DLLE_METRICS)
        if not callable(self.dlle_transform):
            _choice("dlle_transform", self.dlle_transform, TRANSFORMS)
        _choice("entropy_metric", self.entropy_metric, ENTROPY_METRICS)
        _choice("buffer", self.buffer, BUFFERS)
        _choice("buffer_init", self.buffer_init, ("uniform", "empty"))
        for name in ("isomap_weight", "isomap_target_noise", "dlle_weight", "dlle_noise_std", "dlle_max_degrees",
                     "entropy_weight", "entropy_lambda"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        for name in ("entropy_warmup", "buffer_size"):
            v = getattr(self, name)
            if int(v) != v or v < (1 if name == "buffer_size" else 0):
                raise ValueError(f"{name} must be an integer >= {1 if name == 'buffer_size' else 0}, got {v!r}")
        if self.buffer == "official" and self.buffer_init != "uniform":
            raise ValueError("the official buffer always starts full of U(-1, 1) codes; use buffer_init='uniform'")

    @classmethod
    def paper(cls, **overrides) -> "MaEMConfig":
        """The paper's method (the defaults), with overrides."""
        return cls(**overrides)

    @classmethod
    def official(cls, **overrides) -> "MaEMConfig":
        """What the released code does (README CIFAR-10 command, ``--entropy_lr 5e-4``), buffer bug included."""
        base = dict(isomap_metric="mse", isomap_alpha="normal", isomap_target_noise=0.05, dlle_metric="mse",
                    dlle_transform="flip_noise", dlle_noise_std=0.001, entropy_metric="l2", entropy_on_real=True,
                    buffer="official")
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict:
        """Plain values (a callable transform becomes its name), for checkpoints."""
        out = dataclasses.asdict(self)
        if callable(self.dlle_transform):
            out["dlle_transform"] = getattr(self.dlle_transform, "__name__", repr(self.dlle_transform))
        return out


def make_buffer(cfg: MaEMConfig, dim: int, batch_size: int, batch_shape: Sequence[int] = (),
                generator: torch.Generator | None = None, device=None):
    """The replay buffer ``cfg`` asks for (``None`` when the entropy term is off)."""
    if cfg.entropy_weight == 0:
        return None
    if cfg.buffer == "official":
        return OfficialReplayBuffer(cfg.buffer_size, dim, batch_size, batch_shape, generator, device)
    return ReplayBuffer(cfg.buffer_size, dim, batch_shape, cfg.buffer_init, generator, device)


# --- the two updates' losses, shared by MaEMTrainer and MaEMEnsemble ----------------------------

MAEM_KEYS = ("l_adv", "l_dlle", "l_iso", "l_ent", "l_ent_real", "ent_weight", "nn_dist")


def discriminator_losses(D: Callable, real: torch.Tensor, fake: torch.Tensor, cfg: MaEMConfig,
                         ent_weight: float | torch.Tensor = 0.0, buffer_real=None,
                         generator: torch.Generator | None = None, sample_dim: int = 0,
                         dlle_weight: float | torch.Tensor | None = None,
                         isomap_weight: float | torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """The discriminator's MaEM loss (official ``training_ours`` D step) and its parts.

    ``L_adv + w_dlle (L_DLLE(real) + L_DLLE(fake)) + w_iso L_Iso + sigma_t L_ent(real codes)``,
    the last only with ``buffer_real`` (``entropy_on_real``). All inputs of the step go through
    ``D`` in **one** call (faster; the official code makes five calls, so its spectral norm
    runs five power iterations per step where ours runs one). ``dlle_weight``/``isomap_weight``
    override ``cfg``'s (a tensor gives one weight per leading index, as for the arms of an
    ensemble). Returns ``(loss [...], stats)``.
    """
    n = real.shape[sample_dim]
    parts = [real, fake]
    w_dlle = cfg.dlle_weight if dlle_weight is None else dlle_weight
    w_iso = cfg.isomap_weight if isomap_weight is None else isomap_weight
    use_dlle, use_iso = _active(w_dlle), _active(w_iso)
    if use_dlle:
        kw = dict(kind=cfg.dlle_transform, noise_std=cfg.dlle_noise_std, max_degrees=cfg.dlle_max_degrees,
                  generator=generator, sample_dim=sample_dim)
        parts += [dlle_transform(real, **kw), dlle_transform(fake, **kw)]
    if use_iso:
        x_mix, a = isomap_mix(real, fake, cfg.isomap_alpha, generator, sample_dim)
        parts.append(x_mix)
    codes = D(torch.cat(parts, dim=sample_dim)).float()
    chunks = codes.split(n, dim=-2)
    real_c, fake_c = chunks[0], chunks[1]
    zero = real_c.new_zeros(real_c.shape[:-2])
    l_adv = adversarial_d_loss(real_c, fake_c, cfg.adversarial)
    loss = l_adv
    l_dlle = l_iso = l_ent = zero
    if use_dlle:
        l_dlle = dlle_loss(real_c, chunks[2], cfg.dlle_metric) + dlle_loss(fake_c, chunks[3], cfg.dlle_metric)
        loss = loss + w_dlle * l_dlle
    if use_iso:
        target = isomap_target(real_c, fake_c, a, cfg.isomap_target_noise, generator)
        l_iso = isomap_loss(chunks[-1], target, cfg.isomap_metric)
        loss = loss + w_iso * l_iso
    if buffer_real is not None:
        l_ent = entropy_loss(real_c, buffer_real.nearest(real_c, cfg.entropy_metric), cfg.entropy_metric,
                             cfg.entropy_lambda)
        buffer_real.push(real_c)
        loss = loss + ent_weight * l_ent
    stats = {"l_adv": l_adv.detach(), "l_dlle": l_dlle.detach(), "l_iso": l_iso.detach(), "l_ent_real": l_ent.detach(),
             "d_real": realness(real_c).detach().mean(-1), "d_fake": realness(fake_c).detach().mean(-1)}
    return loss, stats


def _active(weight) -> bool:
    """A term is computed when its weight is a tensor (per-member weights) or a positive number."""
    return isinstance(weight, torch.Tensor) or weight > 0


def generator_losses(codes: torch.Tensor, cfg: MaEMConfig, ent_weight: float | torch.Tensor = 0.0,
                     buffer_gen=None) -> tuple[torch.Tensor, dict]:
    """The generator's loss ``-E[realness] + sigma_t L_ent(codes, buffer)`` (the entropy term
    only with a buffer); the batch is pushed into the buffer after the loss is computed."""
    l_adv = adversarial_g_loss(codes, cfg.adversarial)
    loss, zero = l_adv, codes.new_zeros(codes.shape[:-2])
    l_ent = nn_dist = zero
    if buffer_gen is not None:
        nb = buffer_gen.nearest(codes, cfg.entropy_metric)
        l_ent = entropy_loss(codes, nb, cfg.entropy_metric, cfg.entropy_lambda)
        nn_dist = (codes.detach() - nb).square().sum(-1).sqrt().mean(-1)
        buffer_gen.push(codes)
        loss = loss + ent_weight * l_ent
    return loss, {"l_ent": l_ent.detach(), "nn_dist": nn_dist}


# --- one model: the Trainer ---------------------------------------------------------------------

class MaEMTrainer(Trainer):
    """:class:`~ganlib.training.Trainer` with the MaEM-GAN updates (official ``training_ours``).

    ``discriminator`` returns codes ``[n, m]`` (an
    :class:`~ganlib.models.embedding.EmbeddingDiscriminator`); ``config.loss`` is ignored,
    the adversarial loss is ``maem.adversarial``. Use ``TrainConfig(n_critic=3, lr_d=1e-4,
    lr_g=1e-4, betas_d=(0.0, 0.999), betas_g=(0.0, 0.999))`` for the paper's CIFAR settings
    (not enforced). The replay buffers, the transform RNG and the extra history keys
    (:data:`MAEM_KEYS`) are checkpointed, so a resumed run continues exactly.

    **Deviations:** fresh latent codes for the generator step (the code reuses the D step's);
    no StepLR decay (x0.9 every 50 epochs in the paper); one D call per D step (see
    :func:`discriminator_losses`).
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, source, config: TrainConfig,
                 maem: MaEMConfig | None = None, callbacks: Sequence[Callable] = ()):
        super().__init__(generator, discriminator, source, config, callbacks=callbacks)
        self.maem = maem if maem is not None else MaEMConfig()
        if not isinstance(self.maem, MaEMConfig):
            raise TypeError(f"maem must be a MaEMConfig, got {type(self.maem).__name__}")
        self.m = getattr(discriminator, "m", None)
        if not isinstance(self.m, int):
            raise TypeError("discriminator must expose its embedding size as .m (use "
                            "ganlib.models.embedding.EmbeddingDiscriminator)")
        self.maem_rng = torch.Generator(self.device).manual_seed(config.seed + 3)
        self.buffer_gen = make_buffer(self.maem, self.m, config.batch_size, generator=self.maem_rng)
        self.buffer_real = (make_buffer(self.maem, self.m, config.batch_size, generator=self.maem_rng)
                            if self.maem.entropy_on_real else None)
        self.history.update({k: [] for k in MAEM_KEYS})
        self._maem_pending: list[torch.Tensor] = []
        self._last_d: dict = {}

    def ent_weight(self) -> float:
        """sigma_t at the current step (linear warm-up, :func:`entropy_weight`)."""
        return entropy_weight(self.step, self.maem.entropy_weight, self.maem.entropy_warmup)

    def d_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad(), self.autocast():
            fake = self.fake_batch(len(real)).float()
        with self.autocast():
            loss, stats = discriminator_losses(self.D, real, fake, self.maem, self.ent_weight(), self.buffer_real,
                                               self.maem_rng)
        grad_norm = descend(self.opt_d, loss, self.D.parameters())
        self._last_d = stats
        return {"d_loss": loss.detach(), "d_real": stats["d_real"], "d_fake": stats["d_fake"], "grad_norm_d": grad_norm}

    def g_step(self, batch_size: int) -> dict[str, torch.Tensor]:
        w = self.ent_weight()
        self.D.requires_grad_(False)
        try:
            with self.autocast():
                codes = self.D(self.fake_batch(batch_size))
            loss, stats = generator_losses(codes.float(), self.maem, w, self.buffer_gen)
            grad_norm = descend(self.opt_g, loss, self.G.parameters())
        finally:
            self.D.requires_grad_(True)
        d = self._last_d
        extra = {**{k: d[k] for k in ("l_adv", "l_dlle", "l_iso", "l_ent_real")}, **stats,
                 "ent_weight": loss.detach().new_full((), w)}                # a fill on the device, no copy
        self._maem_pending.append(torch.stack([extra[k].float().reshape(()) for k in MAEM_KEYS]))
        return {"g_loss": loss.detach(), "grad_norm_g": grad_norm}

    def _flush(self) -> None:
        if self._maem_pending:
            rows = torch.stack(self._maem_pending).cpu()
            self._maem_pending = []
            for j, key in enumerate(MAEM_KEYS):
                self.history[key].extend(rows[:, j].tolist())
        super()._flush()

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["maem"] = {
            "config": self.maem.to_dict(), "rng": self.maem_rng.get_state(),
            "buffer_gen": None if self.buffer_gen is None else self.buffer_gen.state_dict(),
            "buffer_real": None if self.buffer_real is None else self.buffer_real.state_dict(),
        }
        return state

    def extra_resume_settings(self, path, state: dict) -> dict[str, tuple]:
        """Every field of the :class:`MaEMConfig` (as ``maem.<field>``) must match the checkpoint's."""
        saved = state.get("maem")
        if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
            raise CheckpointError(f"{path} was written by a plain Trainer, not a MaEMTrainer; use another "
                                  "checkpoint_dir")
        now = self.maem.to_dict()
        return {f"maem.{k}": (saved["config"].get(k), now.get(k)) for k in {**saved["config"], **now}}

    def load(self, path, allow_changed=()) -> None:
        """Restore a checkpoint written by :meth:`save`, including the replay buffers
        (``allow_changed``: see :meth:`Trainer.load`)."""
        super().load(path, allow_changed=allow_changed)
        saved = load_checkpoint(path)["maem"]
        self.maem_rng.set_state(saved["rng"])
        for name in ("buffer_gen", "buffer_real"):
            buf = getattr(self, name)
            if buf is not None:
                buf.load_state_dict(saved[name])


# --- many seeds at once: torch.func.vmap over stacked parameters --------------------------------

class SeedEnsemble:
    """``E`` independently initialised copies of one architecture, evaluated as one batched call.

    Parameters are stacked to ``[E, ...]`` leaf tensors (``torch.func.stack_module_state``)
    and the forward pass is ``torch.func.vmap(functional_call)`` over inputs ``[E, n, ...]``
    (``randomness="different"``: each copy draws its own reparameterisation noise). One Adam
    over the stacked tensors is exactly ``E`` independent Adams (its update is elementwise).

    **Spectral norm:** PyTorch's parametrization updates its power-iteration vectors with
    ``out=`` ops that vmap cannot batch, so the parametrizations run in eval mode (they only
    divide ``W`` by ``sigma = u^T W v``) and the one power iteration per call that training mode
    does is run here on the stacked ``u, v`` -- the same steps as
    ``torch.nn.utils.parametrizations.spectral_norm`` (``dim=0``; no transposed convs).
    """

    def __init__(self, modules: Sequence[nn.Module]):
        from torch.nn.utils.parametrizations import _SpectralNorm

        if len(modules) < 1:
            raise ValueError("SeedEnsemble needs at least one module")
        self.n_members = len(modules)
        self.params, self.buffers = torch.func.stack_module_state(list(modules))
        self.base = copy.deepcopy(modules[0]).to("meta")
        self.sn = []          # (stacked weight name, u buffer name, v buffer name, eps)
        for name, mod in self.base.named_modules():
            if isinstance(mod, _SpectralNorm):
                if mod.dim != 0:
                    raise TypeError(f"{name}: only spectral norm with dim=0 is supported in a SeedEnsemble")
                owner = name.rsplit(".", 1)[0]           # "<layer>.parametrizations.weight"
                self.sn.append((f"{owner}.original", f"{name}._u", f"{name}._v", mod.eps))
                mod.eval()   # the parametrization only divides by u^T W v; power iterations happen in weights()
        self.training = True

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def train(self, mode: bool = True) -> "SeedEnsemble":
        self.training = mode
        return self

    def eval(self) -> "SeedEnsemble":
        return self.train(False)

    def requires_grad_(self, flag: bool) -> "SeedEnsemble":
        for p in self.params.values():
            p.requires_grad_(flag)
        return self

    @torch.no_grad()
    def _power_iteration(self) -> None:
        """One power iteration on every stacked ``u, v`` (as the parametrization does in training)."""
        for w_name, u_name, v_name, eps in self.sn:
            mat = self.params[w_name].flatten(2)                               # [E, out, in]
            u = F.normalize(torch.einsum("eoi,ei->eo", mat, self.buffers[v_name]), dim=-1, eps=eps)
            v = F.normalize(torch.einsum("eoi,eo->ei", mat, u), dim=-1, eps=eps)
            self.buffers[u_name].copy_(u)
            self.buffers[v_name].copy_(v)

    def __call__(self, x: torch.Tensor, method: str | None = None) -> torch.Tensor:
        """``x [E, n, ...]`` -> the stacked outputs ``[E, n, ...]``; ``method`` calls another
        method of the module (e.g. ``"embed"``) instead of ``forward``."""
        if x.shape[0] != self.n_members:
            raise ValueError(f"inputs need a leading axis of {self.n_members} (one slice per member), "
                             f"got {tuple(x.shape)}")
        if self.training:
            self._power_iteration()
        base = self.base if method is None else _MethodCall(self.base, method)
        prefix = "" if method is None else "inner."
        weights = {prefix + k: v for k, v in self.params.items()}
        buffers = {prefix + k: v for k, v in self.buffers.items()}

        def one(p, b, xi):
            return torch.func.functional_call(base, (p, b), (xi,))

        return torch.func.vmap(one, randomness="different")(weights, buffers, x)

    def state_dict(self) -> dict:
        return {"params": {k: v.detach() for k, v in self.params.items()}, "buffers": dict(self.buffers)}


class _MethodCall(nn.Module):
    def __init__(self, inner: nn.Module, method: str):
        super().__init__()
        self.inner, self.method = inner, method

    def forward(self, x):
        return getattr(self.inner, self.method)(x)


ARM_FIELDS = ("isomap_weight", "dlle_weight", "entropy_weight", "buffer")


class _SelectBuffer:
    """Per-member choice between a FIFO and an official buffer (arms of one ensemble)."""

    def __init__(self, fifo: ReplayBuffer, official: OfficialReplayBuffer, use_official: torch.Tensor):
        self.fifo, self.official, self.use_official = fifo, official, use_official

    def nearest(self, codes: torch.Tensor, metric: str = "l2") -> torch.Tensor:
        return torch.where(self.use_official[:, None, None], self.official.nearest(codes, metric),
                           self.fifo.nearest(codes, metric))

    def push(self, codes: torch.Tensor) -> None:
        self.fifo.push(codes)
        self.official.push(codes)


class MaEMEnsemble:
    """Trains MaEM-GAN for several seeds -- and several ablation arms -- at once (``torch.func.vmap``).

    The same updates as :class:`MaEMTrainer` (:func:`discriminator_losses`,
    :func:`generator_losses`, ``n_critic`` D steps per G step, Adam), applied to
    ``E = len(arms) x len(seeds)`` stacked copies (member ``i`` is arm ``i // len(seeds)``,
    seed ``seeds[i % len(seeds)]``). Each copy's initial weights come from
    ``torch.manual_seed(seed)``, so all arms start from the same networks for a given seed;
    real batches, latent codes and transform noise are drawn for all copies at once from
    generators seeded with ``config.seed`` (so, unlike :class:`ganlib.training.batched.SeedBatch`,
    member ``s`` does not replay a solo run's data stream; it is an independent run of the same
    algorithm). Arms may differ only in :data:`ARM_FIELDS`
    (the term weights and the buffer kind); every other option must agree. For the book's
    many-seed ablations on a CPU; it does not checkpoint (use :class:`MaEMTrainer` for long runs).

    Args:
        make_generator, make_discriminator: zero-argument constructors of one copy.
        source: a data source (``sample(n, generator)``).
        config: a :class:`TrainConfig` (``steps``, ``batch_size``, ``n_critic``, learning
            rates and betas, ``seed``, ``log_every`` are used).
        maem: a :class:`MaEMConfig`, or a list of them (the arms).
        seeds: the initialisation seeds (the same for every arm).
    """

    def __init__(self, make_generator: Callable[[], nn.Module], make_discriminator: Callable[[], nn.Module], source,
                 config: TrainConfig, maem: MaEMConfig | Sequence[MaEMConfig], seeds: Sequence[int], device=None):
        arms = [maem] if isinstance(maem, MaEMConfig) else list(maem)
        seeds = list(seeds)
        if not seeds or not arms:
            raise ValueError("give at least one seed and one MaEMConfig")
        if not all(isinstance(a, MaEMConfig) for a in arms):
            raise TypeError("maem must be a MaEMConfig or a list of MaEMConfig")
        shared = [{k: v for k, v in a.to_dict().items() if k not in ARM_FIELDS} for a in arms]
        for a, sh in zip(arms[1:], shared[1:]):
            if sh != shared[0]:
                diff = sorted(k for k in sh if sh[k] != shared[0][k])
                raise ValueError(f"the arms of one ensemble may differ only in {ARM_FIELDS}; they also differ in "
                                 f"{diff}: train those arms in separate ensembles")
        Gs, Ds = [], []
        for _ in arms:
            for s in seeds:
                torch.manual_seed(s)
                Gs.append(make_generator().to(device))
                Ds.append(make_discriminator().to(device))
        self.m = getattr(Ds[0], "m", None)
        if not isinstance(self.m, int):
            raise TypeError("the discriminator must expose its embedding size as .m (EmbeddingDiscriminator)")
        self.latent_dim = Gs[0].latent_dim
        self.device = next(Gs[0].parameters()).device
        self.config, self.arms, self.seeds = config, arms, seeds
        self.maem = arms[0]                      # the shared options
        self.G, self.D = SeedEnsemble(Gs), SeedEnsemble(Ds)
        self.source = source.to(self.device) if hasattr(source, "to") else source
        self.opt_g = make_optimizer(self.G.parameters(), config, "g")
        self.opt_d = make_optimizer(self.D.parameters(), config, "d")
        self.noise_rng = torch.Generator(self.device).manual_seed(config.seed)
        self.data_rng = torch.Generator(self.device).manual_seed(config.seed + 1)
        self.maem_rng = torch.Generator(self.device).manual_seed(config.seed + 3)
        E, B = self.n_members, config.batch_size
        per_member = lambda field: torch.tensor([float(getattr(a, field)) for a in arms for _ in seeds],
                                                device=self.device)
        # a weight is a float when it is the same for all arms, else one weight per member
        self._w = {}
        for field in ("isomap_weight", "dlle_weight", "entropy_weight"):
            values = {getattr(a, field) for a in arms}
            self._w[field] = float(values.pop()) if len(values) == 1 else per_member(field)
        self.buffer_gen = self._make_buffer(B)
        self.buffer_real = self._make_buffer(B) if self.maem.entropy_on_real else None
        self.step = 0
        self.history: dict[str, list] = {"step": [], "d_loss": [], "g_loss": [], "d_real": [], "d_fake": [],
                                         **{k: [] for k in MAEM_KEYS}}
        self._pending: list[tuple[int, torch.Tensor]] = []
        self._keys = [k for k in self.history if k != "step"]

    def _make_buffer(self, batch_size: int):
        if not any(a.entropy_weight > 0 for a in self.arms):
            return None
        kinds = [a.buffer for a in self.arms for _ in self.seeds]
        E, cfg = self.n_members, self.maem
        make = lambda kind: make_buffer(dataclasses.replace(cfg, buffer=kind, entropy_weight=1.0), self.m,
                                        batch_size, (E,), self.maem_rng)
        if len(set(kinds)) == 1:
            return make(kinds[0])
        use_official = torch.tensor([k == "official" for k in kinds], device=self.device)
        return _SelectBuffer(make("fifo"), make("official"), use_official)

    def member_arm(self, i: int) -> int:
        """The arm index of member ``i``."""
        return i // len(self.seeds)

    @property
    def n_members(self) -> int:
        return len(self.arms) * len(self.seeds)

    def _latent(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(self.n_members, n, self.latent_dim, generator=generator, device=self.device)

    def _real(self, n: int) -> torch.Tensor:
        x = self.source.sample(self.n_members * n, self.data_rng)
        return x.reshape(self.n_members, n, *x.shape[1:])

    def fit(self, steps: int | None = None) -> dict[str, list]:
        """Train until ``steps`` generator updates in total; ``history`` holds per-seed lists."""
        cfg, maem = self.config, self.maem
        target = cfg.steps if steps is None else steps
        E, B = self.n_members, cfg.batch_size
        w_iso, w_dlle, sigma = self._w["isomap_weight"], self._w["dlle_weight"], self._w["entropy_weight"]
        while self.step < target:
            w = sigma * entropy_weight(self.step, 1.0, maem.entropy_warmup)      # warm-up shared by all arms
            for _ in range(cfg.n_critic):
                real = self._real(B)
                with torch.no_grad():
                    fake = self.G(self._latent(B, self.noise_rng))
                loss_d, d_stats = discriminator_losses(self.D, real, fake, maem, w, self.buffer_real, self.maem_rng,
                                                       sample_dim=1, dlle_weight=w_dlle, isomap_weight=w_iso)
                self.opt_d.zero_grad(set_to_none=True)
                loss_d.sum().backward()        # members are independent: the sum gives each its own gradient
                self.opt_d.step()
            self.D.requires_grad_(False)
            try:
                codes = self.D(self.G(self._latent(B, self.noise_rng)))
                loss_g, g_stats = generator_losses(codes.float(), maem, w, self.buffer_gen)
                self.opt_g.zero_grad(set_to_none=True)
                loss_g.sum().backward()
                self.opt_g.step()
            finally:
                self.D.requires_grad_(True)
            self.step += 1
            if self.step % cfg.log_every == 0 or self.step == target:
                ent_w = w if isinstance(w, torch.Tensor) else torch.full((E,), w, device=self.device)
                row = {"d_loss": loss_d.detach(), "g_loss": loss_g.detach(), **d_stats, **g_stats, "ent_weight": ent_w}
                for key, weight in (("l_dlle", w_dlle), ("l_iso", w_iso), ("l_ent", sigma), ("l_ent_real", sigma)):
                    if isinstance(weight, torch.Tensor):          # arms with the term off log 0, not its value
                        row[key] = row[key] * (weight > 0)
                self._pending.append((self.step, torch.stack([row[k].float().reshape(E) for k in self._keys])))
        self._flush()
        return self.history

    def _flush(self) -> None:
        if not self._pending:
            return
        steps = [s for s, _ in self._pending]
        rows = torch.stack([r for _, r in self._pending]).cpu()      # [T, keys, E]
        self._pending = []
        if not torch.isfinite(rows).all():
            raise FloatingPointError("a MaEM ensemble run produced NaN/inf losses; lower the learning rates or "
                                     "the entropy weight")
        self.history["step"].extend(steps)
        for j, key in enumerate(self._keys):
            self.history[key].extend(rows[:, j].tolist())

    @torch.no_grad()
    def sample(self, n: int, seed: int = 10_007) -> torch.Tensor:
        """``[E, n, ...]`` samples on the CPU (own RNG; generators in eval mode)."""
        rng = torch.Generator(self.device).manual_seed(seed)
        self.G.eval()
        try:
            return self.G(self._latent(n, rng)).float().cpu()
        finally:
            self.G.train()

    @torch.no_grad()
    def embed(self, x: torch.Tensor, per_member: bool = False) -> torch.Tensor:
        """Deterministic codes ``mu(x)`` of every member, ``[E, n, m]``, on the CPU. ``x`` is ``[n, ...]``
        (the same inputs for all members) or, with ``per_member=True``, ``[E, n, ...]``.
        Spectral norm is not updated."""
        x = x.to(self.device)
        if not per_member:
            x = x.unsqueeze(0).expand(self.n_members, *x.shape)
        self.D.eval()
        try:
            return self.D(x, method="embed").float().cpu()
        finally:
            self.D.train()
