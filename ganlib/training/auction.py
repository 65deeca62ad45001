"""Auction-inspired multi-player GAN training ("The Bid Picture", Shim, Choe & Kim, arXiv 2403.13866).

A *population* of N GAN pairs ``(G_i, D_i)`` trains side by side. Every ``every`` steps an
auction values the pairs:

1. **lots** -- each generator, as auctioneer, presents a lot of ``L`` fresh samples
   ``X_i = G_i(z)``;
2. **bids** -- every discriminator *except its own partner* bids on each lot: the mean of its
   assessments ``s_j`` of the lot, ``B[i, j] = (1/L) sum_b s_j(X_{i,b})`` (the diagonal
   ``j = i`` is computed, for plots, but never enters the valuation);
3. **value** -- the bids give each pair a cross-GAN score ``S(i)`` (:func:`cross_scores`);
4. **selection** -- the best pair ``i* = argmax_i S(i)`` is selected;
5. **auxiliary update** -- an auxiliary loss ``L_aux`` pulls every other discriminator toward
   the winner's discriminator (:func:`aux_loss`), one extra Adam step on each ``D_i, i != i*``:
   a collapsed pair meets an external reference it has not fooled.

Training alternates the pairs' ordinary (independent) updates and these auxiliary updates.

**What is the paper's and what is ours.** The paper's method section could not be read (only
its abstract and secondary summaries; see the book's chapter 9). *Sourced*: N pairs; each
generator presents a lot; every discriminator but its partner bids the mean of its
assessments; the bids give a cross-GAN score S(i); the best pair is selected each step; an
auxiliary loss aligns the other discriminators with the best one; training alternates
independent and auxiliary updates; vanilla GAN and WGAN backbones. *Ours* (each a named
option of :class:`AuctionConfig`): the assessment function ``score``, the aggregation
``aggregate``, the form of ``L_aux`` (``aux="output"`` or ``"relative"``), its weight, the
schedule (``every``, ``start``), the lot size and the reuse of the discriminator's Adam for
the auxiliary step.

Two implementations share every random draw:

* :class:`AuctionPopulation` -- the N (or ``n_groups x N``) players as **one batched
  computation**: parameters stacked with ``torch.func.stack_module_state``; ganlib's MLPs run as
  grouped layers (one ``baddbmm`` per layer for all players), any other module through
  ``torch.func.vmap(functional_call)``; per-player Adam on the stacked leaves
  (:class:`StackedAdam`); the full bid matrix in one discriminator call; no host syncs in the
  step and static shapes (with ``rng="shared"`` a step is a fixed sequence of kernels, the
  precondition for CUDA graphs / ``torch.compile``; capturing it also needs the population's
  ``torch.Generator`` objects registered with the graph);
* :class:`LoopPopulation` -- a plain Python loop over ``nn.Module`` players with one
  ``torch.optim.Adam`` each: the readable version and the test oracle.

With ``auction=None`` (or the auction's ``aux=None``) the pairs train independently: the
paper's "classic" control. With ``rng="per_player"`` player ``p`` draws its batches from the
same streams as ``Trainer(config with seed=seeds[p])``, so the control reproduces N separate
:class:`~ganlib.training.Trainer` runs.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ..losses import get_loss
from ..regularizers import input_gradients
from .trainer import TrainConfig

__all__ = [
    "AuctionConfig", "AuctionPopulation", "LoopPopulation", "StackedAdam",
    "assess", "bid_matrix_from_logits", "cross_scores", "select_winner", "aux_loss",
    "SCORES", "AGGREGATES", "AUX_FORMS",
]

SCORES = ("prob", "logit", "centered")
AGGREGATES = ("mean", "median", "min")
AUX_FORMS = (None, "output", "relative")
_CRITIC_LOSSES = ("wgan", "wgan-gp", "wgan_gp", "hinge")


# --- the auction's pure pieces --------------------------------------------------------------------

def assess(logits: torch.Tensor, real_mean: torch.Tensor | None, score: str) -> torch.Tensor:
    """A discriminator's assessment ``s_j(x)`` of samples from its raw outputs (**ours**: the paper
    says only that a bid is "the mean of [the bidder's] assessments").

    * ``"prob"``: ``sigmoid(D_j(x))``, the probability that ``x`` is real (vanilla GAN);
    * ``"logit"``: the raw output ``D_j(x)``;
    * ``"centered"``: ``D_j(x) - mean D_j(real batch)`` -- a critic's scores have an arbitrary
      offset per critic, centering on a shared real batch makes them comparable (WGAN).
      ``real_mean`` must broadcast against ``logits``.
    """
    if score == "prob":
        return torch.sigmoid(logits)
    if score == "logit":
        return logits
    if score == "centered":
        if real_mean is None:
            raise ValueError("score='centered' needs the bidder's mean output on a real batch")
        return logits - real_mean
    raise ValueError(f"unknown score {score!r}; choose one of {SCORES}")


def bid_matrix_from_logits(lot_logits: torch.Tensor, real_logits: torch.Tensor | None = None,
                           score: str = "prob") -> torch.Tensor:
    """The bid matrix from every bidder's raw outputs on every lot.

    Args:
        lot_logits: ``[..., N_bidders, N_lots, L]``, ``lot_logits[j, i, b] = D_j(X_{i,b})``.
        real_logits: ``[..., N_bidders, M]`` outputs of each bidder on a shared real batch
            (needed by ``score="centered"``).
        score: see :func:`assess`.

    Returns:
        ``B`` of shape ``[..., N_lots, N_bidders]``: ``B[i, j]`` is bidder ``j``'s bid on lot ``i``,
        the mean of its assessments of the lot (diagonal included; :func:`cross_scores` drops it).
    """
    if lot_logits.ndim < 3:
        raise ValueError(f"lot_logits must be [..., N_bidders, N_lots, L], got {tuple(lot_logits.shape)}")
    real_mean = None if real_logits is None else real_logits.mean(-1)[..., None, None]
    return assess(lot_logits, real_mean, score).mean(-1).transpose(-1, -2)


def cross_scores(bids: torch.Tensor, aggregate: str = "mean") -> torch.Tensor:
    """The cross-GAN score ``S(i)`` of every pair from the bids on its lot, own partner excluded.

    ``bids`` is ``[..., N, N]`` with ``bids[i, j]`` = bid of ``D_j`` on ``G_i``'s lot. The diagonal
    (a discriminator on its own partner's lot) never enters: whatever it holds, even NaN or
    inf, ``S`` is the same. Aggregations (**ours**; the paper's formula is not available):
    ``"mean"`` ``S(i) = 1/(N-1) sum_{j != i} B[i, j]`` (the sum gives the same winner),
    ``"median"`` and ``"min"`` (the harshest bidder).
    """
    if bids.ndim < 2 or bids.shape[-1] != bids.shape[-2]:
        raise ValueError(f"bids must be a square [..., N, N] matrix, got {tuple(bids.shape)}")
    n = bids.shape[-1]
    if n < 2:
        raise ValueError("an auction needs at least 2 players (every lot needs a bidder other than its partner)")
    eye = torch.eye(n, dtype=torch.bool, device=bids.device)
    if aggregate == "mean":
        return bids.masked_fill(eye, 0).sum(-1) / (n - 1)
    if aggregate == "min":
        return bids.masked_fill(eye, math.inf).amin(-1)
    if aggregate == "median":
        # drop the diagonal by gathering the N-1 off-diagonal entries of each row
        idx = torch.arange(n, device=bids.device)
        off = (idx[None, :] + 1 + idx[:, None]) % n          # row i: i+1, ..., i+N-1 (mod N)
        off = off[:, : n - 1].expand(*bids.shape[:-1], n - 1)
        return bids.gather(-1, off).median(-1).values
    raise ValueError(f"unknown aggregate {aggregate!r}; choose one of {AGGREGATES}")


def select_winner(scores: torch.Tensor) -> torch.Tensor:
    """``argmax_i S(i)`` over the last axis; ties go to the lowest index (``torch.argmax``)."""
    return scores.argmax(-1)


def aux_loss(own_real: torch.Tensor, own_lot: torch.Tensor, ref_real: torch.Tensor, ref_lot: torch.Tensor,
             form: str = "output") -> torch.Tensor:
    """``L_aux`` of one discriminator against the winner's (**ours**: the formula is not available).

    All four inputs are assessments (:func:`assess`), the last axis over samples: the
    discriminator's own on a real batch and on its own generator's lot, and the winner's
    discriminator's on the same samples (the reference, not differentiated).

    * ``"output"``: ``mean over x in (real, lot) of (s_i(x) - s_{i*}(x))^2`` -- match the winner's
      outputs;
    * ``"relative"``: ``(Delta_i - Delta_{i*})^2`` with ``Delta = mean s(real) - mean s(lot)`` --
      match only the winner's *gap* between real data and this lot ("relative" reading).

    Both are zero, with zero gradient, when the discriminator is the winner's.
    """
    ref_real, ref_lot = ref_real.detach(), ref_lot.detach()
    if form == "output":
        return 0.5 * ((own_real - ref_real).square().mean(-1) + (own_lot - ref_lot).square().mean(-1))
    if form == "relative":
        gap_own = own_real.mean(-1) - own_lot.mean(-1)
        gap_ref = ref_real.mean(-1) - ref_lot.mean(-1)
        return (gap_own - gap_ref).square()
    raise ValueError(f"unknown aux form {form!r}; choose 'output' or 'relative' (or aux=None for selection only)")


def gradient_penalty_at(critic, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor,
                        batch_dims: int = 1) -> torch.Tensor:
    """WGAN-GP's penalty (Gulrajani et al., 2017, Eq. 3) at given interpolation weights:
    ``mean (||grad_x D(x_hat)||_2 - 1)^2``, ``x_hat = alpha real + (1 - alpha) fake``, the norm per
    flattened sample. ``batch_dims`` leading axes are batch axes (2 for a stacked population,
    whose penalty is returned per player). The weights are passed in so that the batched and
    the looped population use the same draws; the per-sample input gradients come from
    :func:`ganlib.regularizers.input_gradients` (``gradient_penalty`` there is the one-model
    version that draws its own weights)."""
    grad = input_gradients(critic, alpha * real + (1 - alpha) * fake)
    norms = torch.linalg.vector_norm(grad.flatten(batch_dims), dim=-1)
    return (norms - 1).square().mean(-1)


# --- configuration -------------------------------------------------------------------------------

@dataclass
class AuctionConfig:
    """The auction's options. Everything here except the skeleton is **ours** (see module doc).

    Attributes:
        n_players: N, players per auction. The population's pairs are split into
            ``len(generators) // n_players`` independent groups (e.g. seeds) of N consecutive
            pairs; each group holds its own auction. ``None``: one group of all pairs.
        score: assessment ``s_j`` (:func:`assess`); ``"auto"`` = ``"prob"`` for the logistic
            losses, ``"centered"`` for critics (``wgan``, ``hinge``...).
        aggregate: ``S(i)`` from the bids (:func:`cross_scores`).
        aux: ``None`` (selection only: the auction is run and logged, training is untouched),
            ``"output"`` or ``"relative"`` (:func:`aux_loss`).
        aux_weight: lambda of the auxiliary loss.
        every: run the auction every ``every`` steps (the summaries say "in each step": 1).
        start: no auction before this step (a warm-up; 0 = from the first step).
        lot_size: samples per lot (default: the batch size).
    """

    n_players: int | None = None
    score: str = "auto"
    aggregate: str = "mean"
    aux: str | None = "output"
    aux_weight: float = 1.0
    every: int = 1
    start: int = 0
    lot_size: int | None = None

    def __post_init__(self):
        if self.n_players is not None and (int(self.n_players) != self.n_players or self.n_players < 2):
            raise ValueError(f"n_players must be an integer >= 2 (an auction needs bidders), got {self.n_players!r}")
        if self.score not in SCORES + ("auto",):
            raise ValueError(f"unknown score {self.score!r}; choose one of {SCORES + ('auto',)}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"unknown aggregate {self.aggregate!r}; choose one of {AGGREGATES}")
        if self.aux not in AUX_FORMS:
            raise ValueError(f"unknown aux {self.aux!r}; choose None, 'output' or 'relative'")
        if not self.aux_weight >= 0:
            raise ValueError(f"aux_weight must be >= 0, got {self.aux_weight!r}")
        if int(self.every) != self.every or self.every < 1:
            raise ValueError(f"every must be an integer >= 1, got {self.every!r}")
        if self.start < 0:
            raise ValueError(f"start must be >= 0, got {self.start!r}")
        if self.lot_size is not None and (int(self.lot_size) != self.lot_size or self.lot_size < 1):
            raise ValueError(f"lot_size must be a positive integer, got {self.lot_size!r}")

    def resolved_score(self, loss_name: str) -> str:
        if self.score != "auto":
            return self.score
        return "centered" if loss_name in _CRITIC_LOSSES else "prob"


# --- per-player Adam over stacked leaves ----------------------------------------------------------

class StackedAdam:
    """P independent Adam optimizers on parameters stacked along a leading player axis.

    Why not ``torch.optim.Adam`` on the stacked leaves: Adam is elementwise, so it would be
    exact for steps that update every player, but the auxiliary step skips the winner -- a
    zero gradient would still move the winner through its momentum and advance its step
    count. This optimizer keeps one step count per player and applies a ``mask``: masked-out
    players keep their parameters *and* moments untouched, exactly as if their own optimizer
    had not been called. Same update as ``torch.optim.Adam`` (Kingma & Ba, 2015, Alg. 1, with
    PyTorch's eps placement); all state on the parameters' device, no host sync.
    """

    def __init__(self, params: Sequence[torch.Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        if not self.params:
            raise ValueError("StackedAdam needs at least one parameter tensor")
        self.n = self.params[0].shape[0]
        if any(p.shape[0] != self.n for p in self.params):
            raise ValueError("all stacked parameters must share the leading player axis")
        if not lr > 0 or not all(0 <= b < 1 for b in betas) or not eps > 0:
            raise ValueError(f"bad Adam hyperparameters lr={lr}, betas={betas}, eps={eps}")
        self.lr, self.betas, self.eps = float(lr), tuple(float(b) for b in betas), float(eps)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = torch.zeros(self.n, device=self.params[0].device)

    def _views(self, t: torch.Tensor) -> list[torch.Tensor]:
        """``[P]`` per-player coefficients shaped to broadcast over each parameter."""
        return [t.view(-1, *([1] * (p.ndim - 1))) for p in self.params]

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor], mask: torch.Tensor | None = None) -> None:
        """One Adam step with ``grads`` (aligned with ``params``); ``mask`` (bool ``[P]``) selects
        the players that step (default: all). A masked-out player's coefficients are zero, so its
        moments, parameters and step count stay exactly as they were."""
        b1, b2 = self.betas
        grads = list(grads)
        w = torch.ones_like(self.steps) if mask is None else mask.to(self.steps.dtype)
        self.steps += w
        t = self.steps.clamp(min=1)
        step_size = w * self.lr / (1 - b1 ** t)                   # [P]; 0 for masked-out players
        bc2_sqrt = (1 - b2 ** t).sqrt()
        # m <- m + (1 - b1) w (g - m);  v <- v + (1 - b2) w (g^2 - v)   (torch.optim.Adam's moments)
        torch._foreach_lerp_(self.exp_avg, grads, self._views((1 - b1) * w))
        torch._foreach_lerp_(self.exp_avg_sq, torch._foreach_mul(grads, grads), self._views((1 - b2) * w))
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, self._views(bc2_sqrt))
        torch._foreach_add_(denom, self.eps)
        update = torch._foreach_div(self.exp_avg, denom)
        torch._foreach_mul_(update, self._views(step_size))
        torch._foreach_sub_(self.params, update)

    def state_dict(self) -> dict:
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "steps": self.steps}


# --- the population, shared parts ------------------------------------------------------------------

_STAT_KEYS = ("d_loss", "g_loss", "d_real", "d_fake")


class _Population:
    """Everything both implementations share: configuration, random draws, history, the loop."""

    def __init__(self, generators: Sequence[nn.Module], discriminators: Sequence[nn.Module], source,
                 config: TrainConfig, auction: AuctionConfig | None = None, seeds: Sequence[int] | None = None,
                 rng: str = "shared", gp_weight: float = 0.0, clip_value: float | None = None):
        generators, discriminators = list(generators), list(discriminators)
        if len(generators) == 0 or len(generators) != len(discriminators):
            raise ValueError(f"need as many generators as discriminators (>= 1), got {len(generators)} and "
                             f"{len(discriminators)}")
        if not isinstance(config, TrainConfig):
            raise TypeError("config must be a ganlib.training.TrainConfig")
        if config.ema_decay is not None or config.amp_dtype is not None or config.checkpoint_dir is not None:
            raise ValueError("populations do not support ema_decay, amp_dtype or checkpoint_dir; leave them None")
        if rng not in ("shared", "per_player"):
            raise ValueError(f"rng must be 'shared' (one batched draw per tensor) or 'per_player' (the streams of "
                             f"N separate Trainers), got {rng!r}")
        if not gp_weight >= 0:
            raise ValueError(f"gp_weight must be >= 0, got {gp_weight!r}")
        if clip_value is not None and not clip_value > 0:
            raise ValueError(f"clip_value must be positive or None, got {clip_value!r}")
        self.n_pairs = P = len(generators)
        self.config, self.auction, self.rng_mode = config, auction, rng
        self.gp_weight, self.clip_value = float(gp_weight), clip_value
        self.loss = get_loss(config.loss)
        self.loss_name = self.loss.name
        self.device = next(generators[0].parameters()).device
        self.latent_dim = generators[0].latent_dim
        self.source = source.to(self.device) if hasattr(source, "to") else source
        n = P if auction is None or auction.n_players is None else auction.n_players
        if P % n != 0:
            raise ValueError(f"{P} pairs cannot be split into auctions of n_players={n}; use a multiple of it")
        self.n_players, self.n_groups = n, P // n
        if auction is not None and n < 2:
            raise ValueError("an auction needs at least 2 pairs per group")
        self.score = auction.resolved_score(self.loss_name) if auction is not None else None
        self.lot_size = (auction.lot_size or config.batch_size) if auction is not None else None
        self.seeds = [config.seed + 1000 * p for p in range(P)] if seeds is None else [int(s) for s in seeds]
        if len(self.seeds) != P:
            raise ValueError(f"need one seed per pair ({P}), got {len(self.seeds)}")
        dev = self.device
        if rng == "per_player":   # exactly the streams of Trainer(TrainConfig(seed=s)) for each pair
            self.noise_rngs = [torch.Generator(dev).manual_seed(s) for s in self.seeds]
            self.data_rngs = [torch.Generator(dev).manual_seed(s + 1) for s in self.seeds]
        else:
            self.noise_rng = torch.Generator(dev).manual_seed(config.seed)
            self.data_rng = torch.Generator(dev).manual_seed(config.seed + 1)
        # draws that N separate Trainers would not make (auction lots, GP weights) have their own
        # stream, so switching the auction on or off never shifts the training batches
        self.extra_rng = torch.Generator(dev).manual_seed(config.seed + 3)
        self.fixed_noise = torch.randn(P, config.n_fixed_samples, self.latent_dim,
                                       generator=torch.Generator(dev).manual_seed(config.seed + 2), device=dev)
        self.step = 0
        self.elapsed = 0.0
        self.history: dict[str, list] = {"step": [], **{k: [] for k in _STAT_KEYS}}
        self.auctions: dict[str, list] = {"step": [], "bids": [], "scores": [], "winner": [], "aux_loss": []}
        self.snapshots: list[tuple[int, torch.Tensor]] = []
        self._pending, self._pending_steps, self._pending_auctions = [], [], []

    # --- random draws (identical for both implementations) ---------------------------------------
    def real_batches(self, n: int) -> torch.Tensor:
        """``[P, n, ...]``: one real batch per pair."""
        if self.rng_mode == "per_player":
            return torch.stack([self.source.sample(n, r) for r in self.data_rngs])
        x = self.source.sample(self.n_pairs * n, self.data_rng)
        return x.view(self.n_pairs, n, *x.shape[1:])

    def latents(self, n: int) -> torch.Tensor:
        """``[P, n, latent_dim]``: one batch of codes per pair."""
        if self.rng_mode == "per_player":
            return torch.stack([torch.randn(n, self.latent_dim, generator=r, device=self.device)
                                for r in self.noise_rngs])
        return torch.randn(self.n_pairs, n, self.latent_dim, generator=self.noise_rng, device=self.device)

    def gp_weights(self, real: torch.Tensor) -> torch.Tensor:
        shape = real.shape[:2] + (1,) * (real.ndim - 2)
        return torch.rand(shape, generator=self.extra_rng, device=self.device)

    def draw_lots(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Lot codes ``[P, L, latent]`` and one shared real batch per group ``[G, L, ...]``."""
        L = self.lot_size
        z = torch.randn(self.n_pairs, L, self.latent_dim, generator=self.extra_rng, device=self.device)
        real = self.source.sample(self.n_groups * L, self.extra_rng)
        return z, real.view(self.n_groups, L, *real.shape[1:])

    def auction_due(self) -> bool:
        a = self.auction
        return a is not None and self.step >= a.start and (self.step - a.start) % a.every == 0

    # --- one training step -----------------------------------------------------------------------
    def train_step(self) -> None:
        """``n_critic`` discriminator updates, one generator update (each pair on its own), then --
        if due -- an auction (and auxiliary update). Nothing here waits for the device."""
        cfg = self.config
        for _ in range(cfg.n_critic):
            real = self.real_batches(cfg.batch_size)
            z = self.latents(cfg.batch_size)
            alpha = self.gp_weights(real) if self.gp_weight > 0 else None
            d_stats = self.d_update(real, z, alpha)
        z = self.latents(cfg.batch_size)
        real = self.real_batches(cfg.batch_size) if self.loss.g_needs_real else None
        g_loss = self.g_update(z, real)
        self.step += 1
        self._pending.append(torch.stack([d_stats[0], g_loss, d_stats[1], d_stats[2]]))
        self._pending_steps.append(self.step)
        if self.auction_due():
            z_lot, real_lot = self.draw_lots()
            self._pending_auctions.append((self.step, *self.run_auction(z_lot, real_lot)))
        if cfg.snapshot_every and self.step % cfg.snapshot_every == 0:
            with torch.no_grad():
                self.snapshots.append((self.step, self.generate(self.fixed_noise).float().cpu()))

    def run_auction(self, z_lot, real_lot):
        """Lots, bids, scores, winner and (if configured) the auxiliary update.
        Returns device tensors ``bids [G,N,N], scores [G,N], winner [G], aux_loss [P]``."""
        with torch.no_grad():
            lots = self.generate(z_lot)
            bids = self.bid_matrix(lots, real_lot)
        scores = cross_scores(bids, self.auction.aggregate)
        winner = select_winner(scores)
        if self.auction.aux is not None:
            aux = self.aux_update(lots, real_lot, winner)
        else:
            aux = torch.zeros(self.n_pairs, device=self.device)
        return bids, scores, winner, aux

    def winner_index(self, winner: torch.Tensor) -> torch.Tensor:
        """Global pair index of each pair's group winner, ``[P]``."""
        g = torch.arange(self.n_groups, device=winner.device)
        return (winner + g * self.n_players).repeat_interleave(self.n_players)

    # --- the loop --------------------------------------------------------------------------------
    def fit(self, steps: int | None = None) -> dict[str, list]:
        """Train until ``steps`` (default ``config.steps``) steps in total; returns ``history``."""
        from tqdm.auto import tqdm

        target = self.config.steps if steps is None else steps
        cfg = self.config
        bar = tqdm(total=target, initial=self.step, disable=not cfg.progress, desc="population", leave=False)
        start = time.perf_counter()
        try:
            while self.step < target:
                self.train_step()
                if self.step % cfg.log_every == 0 or self.step == target:
                    self._flush()
                    bar.update(self.step - bar.n)
        finally:
            bar.close()
            self._flush()
            self.elapsed += time.perf_counter() - start
        return self.history

    def _flush(self) -> None:
        if self._pending:
            rows = torch.stack(self._pending).cpu()          # [steps, 4, P]: one host copy
            steps, self._pending, self._pending_steps = self._pending_steps, [], []
            bad = ~torch.isfinite(rows)
            if bad.any():
                i, j, p = (int(v) for v in bad.nonzero()[0])
                raise FloatingPointError(
                    f"{_STAT_KEYS[j]} of pair {p} became {rows[i, j, p].item()} at step {steps[i]}: training "
                    "diverged. Lower the learning rates or add a gradient penalty.")
            self.history["step"].extend(steps)
            for j, key in enumerate(_STAT_KEYS):
                self.history[key].extend(rows[:, j])
        if self._pending_auctions:
            pend, self._pending_auctions = self._pending_auctions, []
            steps = [p[0] for p in pend]
            for k, key in enumerate(("bids", "scores", "winner", "aux_loss"), start=1):
                self.auctions[key].extend(torch.stack([p[k] for p in pend]).cpu())
            self.auctions["step"].extend(steps)

    # --- read-outs -------------------------------------------------------------------------------
    def auction_log(self) -> dict[str, torch.Tensor]:
        """The auction history as tensors: ``step [T]``, ``bids [T,G,N,N]``, ``scores [T,G,N]``,
        ``winner [T,G]``, ``aux_loss [T,P]``."""
        self._flush()
        if not self.auctions["step"]:
            raise ValueError("no auction has run (auction=None, or start/every skipped every step)")
        out = {k: torch.stack(v) for k, v in self.auctions.items() if k != "step"}
        out["step"] = torch.tensor(self.auctions["step"])
        return out

    def history_tensors(self) -> dict[str, torch.Tensor]:
        """``history`` as tensors: ``step [T]`` and each statistic ``[T, P]``."""
        self._flush()
        return {"step": torch.tensor(self.history["step"]),
                **{k: torch.stack(self.history[k]) if self.history[k] else torch.empty(0, self.n_pairs)
                   for k in _STAT_KEYS}}

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None) -> torch.Tensor:
        """``[P, n, ...]`` samples of every generator, on the CPU, from their own RNG."""
        rng = torch.Generator(self.device).manual_seed(self.config.seed + 10_007 if seed is None else seed)
        z = torch.randn(self.n_pairs, n, self.latent_dim, generator=rng, device=self.device)
        return self.generate(z).float().cpu()

    @torch.no_grad()
    def evaluate_auction(self, lot_size: int = 1024, seed: int = 12_345,
                         auction: AuctionConfig | None = None) -> dict[str, torch.Tensor]:
        """A fresh auction for read-out only (no update): ``bids``, ``scores``, ``winner`` on the CPU."""
        a = auction or self.auction or AuctionConfig()
        rng = torch.Generator(self.device).manual_seed(seed)
        z = torch.randn(self.n_pairs, lot_size, self.latent_dim, generator=rng, device=self.device)
        real = self.source.sample(self.n_groups * lot_size, rng)
        real = real.view(self.n_groups, lot_size, *real.shape[1:])
        saved = self.score
        self.score = a.resolved_score(self.loss_name)
        try:
            bids = self.bid_matrix(self.generate(z), real)
        finally:
            self.score = saved
        scores = cross_scores(bids, a.aggregate)
        return {"bids": bids.cpu(), "scores": scores.cpu(), "winner": select_winner(scores).cpu()}

    # --- implementation-specific -----------------------------------------------------------------
    def generate(self, z: torch.Tensor) -> torch.Tensor:          # [P, n, zd] -> [P, n, ...]
        raise NotImplementedError

    def d_update(self, real, z, alpha):                           # -> (loss [P], mean real [P], mean fake [P])
        raise NotImplementedError

    def g_update(self, z, real):                                  # -> loss [P]
        raise NotImplementedError

    def bid_matrix(self, lots: torch.Tensor, real: torch.Tensor) -> torch.Tensor:   # -> [G, N, N]
        raise NotImplementedError

    def aux_losses(self, lots, real, winner) -> torch.Tensor:     # -> [P], differentiable in D
        raise NotImplementedError

    def aux_update(self, lots, real, winner) -> torch.Tensor:
        raise NotImplementedError


# --- the batched population ------------------------------------------------------------------------

def _check_stackable(modules: Sequence[nn.Module], what: str) -> None:
    for m in modules:
        if any(True for _ in m.buffers()):
            raise ValueError(
                f"{what} with buffers (BatchNorm running stats, spectral-norm vectors) cannot be stacked into "
                f"one batched population; build them without (e.g. MLPDiscriminator(spectral_norm=False), "
                f"norm='none'|'layer') or use LoopPopulation")
    shapes = [tuple((k, tuple(p.shape)) for k, p in m.named_parameters()) for m in modules]
    if any(s != shapes[0] for s in shapes):
        raise ValueError(f"all {what} must have the same architecture to be stacked")


_ACTIVATIONS = {nn.ReLU: lambda h, m: F.relu(h), nn.LeakyReLU: lambda h, m: F.leaky_relu(h, m.negative_slope),
                nn.Tanh: lambda h, m: torch.tanh(h), nn.Sigmoid: lambda h, m: torch.sigmoid(h)}


def _grouped_mlp(module: nn.Module):
    """A batched forward ``(params, x [P, n, in]) -> [P, n, out]`` for ganlib's MLPs built from
    grouped layers (one ``baddbmm`` per linear layer), or ``None`` for other modules.

    Same result as ``vmap(functional_call(module))`` with a fraction of its per-call Python
    overhead, which dominates at the sizes of the 2-D experiments."""
    from ..models.mlp import MLPDiscriminator, MLPGenerator

    if type(module) not in (MLPGenerator, MLPDiscriminator) or not isinstance(getattr(module, "net", None), nn.Sequential):
        return None
    plan = []
    for i, layer in enumerate(module.net):
        if type(layer) is nn.Linear:
            plan.append(("linear", f"net.{i}.weight", f"net.{i}.bias", None))
        elif type(layer) in _ACTIVATIONS:
            plan.append(("act", None, None, layer))
        else:                                   # parametrized (spectral norm) or unknown layers
            return None
    squeeze = isinstance(module, MLPDiscriminator) and module.out_dim == 1

    def forward(params: dict, x: torch.Tensor) -> torch.Tensor:
        h = x
        for kind, w, b, layer in plan:
            if kind == "linear":
                h = torch.baddbmm(params[b].unsqueeze(1), h, params[w].transpose(1, 2))
            else:
                h = _ACTIVATIONS[type(layer)](h, layer)
        return h.squeeze(-1) if squeeze else h

    return forward


class AuctionPopulation(_Population):
    """N GAN pairs (or ``n_groups`` independent auctions of N pairs) trained as one batched computation.

    Args:
        generators, discriminators: lists of identically shaped modules (their current weights
            are the players' initialisations; modules without buffers).
        source: the data source (``sample(n, generator)``).
        config: a :class:`~ganlib.training.TrainConfig` (steps, batch_size, n_critic, lrs, betas,
            loss, log_every, snapshot_every, seed, progress).
        auction: an :class:`AuctionConfig`, or ``None`` for independent training (the paper's
            "classic" control).
        seeds: per-pair seeds for ``rng="per_player"`` (default ``config.seed + 1000 p``).
        rng: ``"shared"`` -- one batched draw per tensor (fast; CUDA-graph friendly) -- or
            ``"per_player"`` -- each pair draws from the streams of its own Trainer.
        gp_weight: WGAN-GP's lambda (0: no penalty; the paper's WGAN flavour is unknown).
        clip_value: WGAN weight clipping ``c`` (Arjovsky et al., 2017, Alg. 1) after every D update.
        grouped: run ganlib's MLPs as grouped layers (one ``baddbmm`` per layer for all players);
            ``False`` (or any other architecture) uses ``vmap(functional_call)``. Same numbers.
    """

    def __init__(self, generators, discriminators, source, config, auction=None, seeds=None, rng="shared",
                 gp_weight=0.0, clip_value=None, grouped: bool = True):
        super().__init__(generators, discriminators, source, config, auction, seeds, rng, gp_weight, clip_value)
        _check_stackable(generators, "generators")
        _check_stackable(discriminators, "discriminators")
        self.g_params, _ = stack_module_state(list(generators))
        self.d_params, _ = stack_module_state(list(discriminators))
        self.g_params = {k: v.detach().to(self.device).requires_grad_(True) for k, v in self.g_params.items()}
        self.d_params = {k: v.detach().to(self.device).requires_grad_(True) for k, v in self.d_params.items()}
        self._g_base = copy.deepcopy(generators[0]).to("meta")
        self._d_base = copy.deepcopy(discriminators[0]).to("meta")
        # ganlib's MLPs run as grouped layers (baddbmm); any other module through vmap(functional_call)
        self._G = (_grouped_mlp(generators[0]) if grouped else None) or vmap(
            lambda p, z: functional_call(self._g_base, p, (z,)))
        self._D = (_grouped_mlp(discriminators[0]) if grouped else None) or vmap(
            lambda p, x: functional_call(self._d_base, p, (x,)))
        self._loss_d = vmap(self.loss.d)
        self._loss_g = vmap(self.loss.g)
        self.opt_g = StackedAdam(list(self.g_params.values()), config.lr_g, config.betas_g)
        self.opt_d = StackedAdam(list(self.d_params.values()), config.lr_d, config.betas_d)
        self._players = torch.arange(self.n_pairs, device=self.device)

    def generate(self, z):
        return self._G(self.g_params, z)

    def discriminate(self, x: torch.Tensor, params: dict | None = None) -> torch.Tensor:
        """Every discriminator on its own inputs: ``x [P, n, ...] -> [P, n]``."""
        return self._D(self.d_params if params is None else params, x)

    def _clip(self):
        if self.clip_value is not None:
            with torch.no_grad():
                torch._foreach_clamp_min_(list(self.d_params.values()), -self.clip_value)
                torch._foreach_clamp_max_(list(self.d_params.values()), self.clip_value)

    def d_update(self, real, z, alpha):
        with torch.no_grad():
            fake = self.generate(z)
        B = real.shape[1]
        out = self.discriminate(torch.cat([real, fake], 1))
        real_logits, fake_logits = out[:, :B], out[:, B:]
        losses = self._loss_d(real_logits, fake_logits)                    # [P]
        if self.gp_weight > 0:
            critic = lambda x: self.discriminate(x)
            losses = losses + self.gp_weight * gradient_penalty_at(critic, real, fake, alpha, batch_dims=2)
        grads = torch.autograd.grad(losses.sum(), tuple(self.d_params.values()))
        self.opt_d.step(grads)
        self._clip()
        return losses.detach(), real_logits.detach().mean(1), fake_logits.detach().mean(1)

    def g_update(self, z, real):
        fake_logits = self.discriminate(self.generate(z))
        if self.loss.g_needs_real:
            losses = self._loss_g(fake_logits, self.discriminate(real))
        else:
            losses = self._loss_g(fake_logits)
        grads = torch.autograd.grad(losses.sum(), tuple(self.g_params.values()))
        self.opt_g.step(grads)
        return losses.detach()

    def bid_matrix(self, lots, real):
        """All ``G x N x N`` bids in ONE batched discriminator call: bidder ``j`` of group ``g`` sees
        the N lots of its group and the group's real batch (for centering)."""
        G, N, L = self.n_groups, self.n_players, lots.shape[1]
        feat = lots.shape[2:]
        per_group = torch.cat([lots.reshape(G, N * L, *feat), real], 1)          # [G, (N+1)L, ...]
        inputs = per_group.unsqueeze(1).expand(G, N, *per_group.shape[1:]).reshape(self.n_pairs, -1, *feat)
        out = self.discriminate(inputs).view(G, N, -1)                          # [G, bidder, (N+1)L]
        lot_logits = out[..., : N * L].reshape(G, N, N, L)                      # [G, bidder j, lot i, L]
        real_logits = out[..., N * L:]                                          # [G, bidder j, M]
        return bid_matrix_from_logits(lot_logits, real_logits, self.score)

    def aux_losses(self, lots, real, winner):
        """``L_aux`` of every discriminator against its group winner's (zero for the winner)."""
        ref = self.winner_index(winner)                                          # [P]
        L = lots.shape[1]
        x = torch.cat([real.repeat_interleave(self.n_players, 0), lots], 1)      # [P, M+L, ...]
        M = real.shape[1]
        own = self.discriminate(x)
        with torch.no_grad():
            ref_params = {k: v.detach()[ref] for k, v in self.d_params.items()}
            theirs = self.discriminate(x, ref_params)
        s_own = self._assess_pair(own, M)
        s_ref = self._assess_pair(theirs, M)
        return aux_loss(s_own[0], s_own[1], s_ref[0], s_ref[1], self.auction.aux)

    def _assess_pair(self, out, M):
        real_out, lot_out = out[:, :M], out[:, M:]
        real_mean = real_out.mean(-1, keepdim=True) if self.score == "centered" else None
        return assess(real_out, real_mean, self.score), assess(lot_out, real_mean, self.score)

    def aux_update(self, lots, real, winner):
        losses = self.aux_losses(lots, real, winner)
        grads = torch.autograd.grad(self.auction.aux_weight * losses.sum(), tuple(self.d_params.values()))
        self.opt_d.step(grads, mask=self._players != self.winner_index(winner))
        self._clip()
        return losses.detach()

    def export(self, p: int) -> tuple[nn.Module, nn.Module]:
        """Pair ``p`` as ordinary modules (copies), e.g. to plot or keep training with a Trainer."""
        if not 0 <= p < self.n_pairs:
            raise ValueError(f"pair index must be in [0, {self.n_pairs}), got {p}")
        G = copy.deepcopy(self._g_base).to_empty(device=self.device)
        D = copy.deepcopy(self._d_base).to_empty(device=self.device)
        with torch.no_grad():
            for k, t in G.named_parameters():
                t.copy_(self.g_params[k][p])
            for k, t in D.named_parameters():
                t.copy_(self.d_params[k][p])
        return G, D


# --- the loop population (readable version and test oracle) -----------------------------------------

class LoopPopulation(_Population):
    """The same algorithm as :class:`AuctionPopulation`, one player at a time: a Python loop over
    ``nn.Module`` pairs, each with its own ``torch.optim.Adam`` (as N Trainers would have). Slow;
    kept for teaching and as the test oracle. The modules are trained in place."""

    def __init__(self, generators, discriminators, source, config, auction=None, seeds=None, rng="shared",
                 gp_weight=0.0, clip_value=None):
        super().__init__(generators, discriminators, source, config, auction, seeds, rng, gp_weight, clip_value)
        self.G, self.D = list(generators), list(discriminators)
        self.opt_g = [torch.optim.Adam(g.parameters(), lr=config.lr_g, betas=config.betas_g) for g in self.G]
        self.opt_d = [torch.optim.Adam(d.parameters(), lr=config.lr_d, betas=config.betas_d) for d in self.D]

    def generate(self, z):
        return torch.stack([G(z[p]) for p, G in enumerate(self.G)])

    def d_update(self, real, z, alpha):
        stats = []
        for p, (G, D, opt) in enumerate(zip(self.G, self.D, self.opt_d)):
            with torch.no_grad():
                fake = G(z[p])
            real_logits, fake_logits = D(real[p]), D(fake)
            loss = self.loss.d(real_logits, fake_logits)
            if self.gp_weight > 0:
                loss = loss + self.gp_weight * gradient_penalty_at(D, real[p], fake, alpha[p], batch_dims=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if self.clip_value is not None:
                with torch.no_grad():
                    for w in D.parameters():
                        w.clamp_(-self.clip_value, self.clip_value)
            stats.append(torch.stack([loss.detach(), real_logits.detach().mean(), fake_logits.detach().mean()]))
        return tuple(torch.stack(stats, 1))

    def g_update(self, z, real):
        losses = []
        for p, (G, D, opt) in enumerate(zip(self.G, self.D, self.opt_g)):
            D.requires_grad_(False)
            fake_logits = D(G(z[p]))
            loss = self.loss.g(fake_logits, D(real[p]) if self.loss.g_needs_real else None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            D.requires_grad_(True)
            losses.append(loss.detach())
        return torch.stack(losses)

    def _assessments(self, D, x, real):
        real_out = D(real)
        real_mean = real_out.mean() if self.score == "centered" else None
        return assess(real_out, real_mean, self.score), assess(D(x), real_mean, self.score)

    def bid_matrix(self, lots, real):
        N = self.n_players
        bids = torch.zeros(self.n_groups, N, N, device=self.device)
        for g in range(self.n_groups):
            for i in range(N):                 # auctioneer i presents its lot
                for j in range(N):             # bidder j (the diagonal is filled too, for plots)
                    _, s = self._assessments(self.D[g * N + j], lots[g * N + i], real[g])
                    bids[g, i, j] = s.mean()
        return bids

    def aux_loss_of(self, p: int, lots, real, winner) -> torch.Tensor:
        """``L_aux`` of discriminator ``p`` against its group winner's (a scalar, differentiable)."""
        g = p // self.n_players
        ref = self.D[g * self.n_players + int(winner[g])]
        own_r, own_l = self._assessments(self.D[p], lots[p], real[g])
        with torch.no_grad():
            ref_r, ref_l = self._assessments(ref, lots[p], real[g])
        return aux_loss(own_r, own_l, ref_r, ref_l, self.auction.aux)

    def aux_losses(self, lots, real, winner):
        return torch.stack([self.aux_loss_of(p, lots, real, winner) for p in range(self.n_pairs)])

    def aux_update(self, lots, real, winner):
        N = self.n_players
        losses = []
        for p, (D, opt) in enumerate(zip(self.D, self.opt_d)):
            loss = self.aux_loss_of(p, lots, real, winner)      # before any update: all see the same winner
            losses.append(loss.detach())
            if p % N == int(winner[p // N]):
                continue                        # the winner is the reference: no auxiliary step
            opt.zero_grad(set_to_none=True)
            (self.auction.aux_weight * loss).backward()
            opt.step()
            if self.clip_value is not None:
                with torch.no_grad():
                    for w in D.parameters():
                        w.clamp_(-self.clip_value, self.clip_value)
        return torch.stack(losses)
