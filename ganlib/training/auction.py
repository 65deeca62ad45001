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

The method is the scheme :class:`Auction`, which plugs into the population core
(:class:`~ganlib.training.population.Population`: stacked players, one optimizer per player with
a member mask for the auxiliary step, the training loop, checkpoints). Two implementations share
every random draw:

* :class:`AuctionPopulation` -- the N (or ``n_groups x N``) players as **one batched
  computation** on the core: the full bid matrix in one discriminator call, no host syncs in the
  step, static shapes;
* :class:`~ganlib.training.auction_oracle.LoopPopulation` -- a plain Python loop over ``nn.Module``
  players with one ``torch.optim`` optimizer each: the readable version and the test oracle.

With ``auction=None`` (or the auction's ``aux=None``) the pairs train independently: the
paper's "classic" control. With ``rng="per_player"`` player ``p`` draws its batches from the
same streams as ``Trainer(config with seed=seeds[p])``, so the control reproduces N separate
:class:`~ganlib.training.Trainer` runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..losses import get_loss
from ..regularizers import input_gradients
from .population import Population, StackedAdam, Standard
from .population.schemes import _same
from .trainer import TrainConfig

__all__ = [
    "AuctionConfig", "Auction", "AuctionPopulation", "LoopPopulation", "StackedAdam",
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


# --- the scheme ----------------------------------------------------------------------------------

@dataclass(eq=False)
class Auction(Standard):
    """The Bid Picture as a population scheme: every pair's ordinary GAN step (any loss, optional
    WGAN-GP penalty ``gp_weight`` at weights drawn from the population's extra stream, optional
    clipping), then -- when due -- lots, bids, scores, the winner and the auxiliary update of every
    group's losers (a masked step of the discriminators' own optimizer: the winner's parameters,
    moments and step count stay untouched). ``auction=None``: the "classic" control.

    ``history["d_loss"]`` includes the penalty. The auctions' log: :meth:`AuctionPopulation.auction_log`.
    """

    auction: AuctionConfig | None = None
    gp_weight: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if not self.gp_weight >= 0:
            raise ValueError(f"gp_weight must be >= 0, got {self.gp_weight!r}")

    def bind(self, pop, arms):
        for field in ("auction", "gp_weight", "loss"):
            _same(arms, field)
        bound = super().bind(pop, arms)
        a, P = self.auction, pop.n_members
        n = P if a is None or a.n_players is None else a.n_players
        if P % n != 0:
            raise ValueError(f"{P} pairs cannot be split into auctions of n_players={n}; use a multiple of it")
        if a is not None and n < 2:
            raise ValueError("an auction needs at least 2 pairs per group")
        bound.n_players, bound.n_groups = n, P // n
        bound.pair = get_loss(pop.config.loss if self.loss is None else self.loss)
        bound.score = a.resolved_score(bound.pair.name) if a is not None else None
        bound.lot_size = (a.lot_size or pop.config.batch_size) if a is not None else None
        bound.players = torch.arange(P, device=pop.device)
        bound.log = {"step": [], "bids": [], "scores": [], "winner": [], "aux_loss": []}
        bound.pending = []
        return bound

    # --- the ordinary step ----------------------------------------------------------------------
    def gp_alpha(self, pop, real: torch.Tensor) -> torch.Tensor:
        shape = real.shape[:2] + (1,) * (real.ndim - 2)
        return torch.rand(shape, generator=pop.extra_rng, device=pop.device)

    def d_losses(self, pop, real, fake, alpha: torch.Tensor | None = None) -> dict:
        B = real.shape[1]
        out = pop.D(torch.cat([real, fake], 1))              # real and fake in one call
        real_logits, fake_logits = out[:, :B], out[:, B:]
        losses = self._d(real_logits, fake_logits)          # [P]
        if self.gp_weight > 0:
            alpha = self.gp_alpha(pop, real) if alpha is None else alpha
            losses = losses + self.gp_weight * gradient_penalty_at(lambda x: pop.D(x), real, fake, alpha, batch_dims=2)
        return {"objective": losses.sum(), "d_loss": losses.detach(), "d_real": real_logits.detach().mean(1),
                "d_fake": fake_logits.detach().mean(1)}

    # --- the auction ------------------------------------------------------------------------------
    def due(self, step: int) -> bool:
        a = self.auction
        return a is not None and step >= a.start and (step - a.start) % a.every == 0

    def draw_lots(self, pop) -> tuple[torch.Tensor, torch.Tensor]:
        """Lot codes ``[P, L, latent]`` and one shared real batch per group ``[G, L, ...]``."""
        L = self.lot_size
        z = pop.latent(L, [pop.extra_rng]).view(pop.n_members, L, -1)
        real = pop.source.sample(self.n_groups * L, pop.extra_rng)
        return z, real.view(self.n_groups, L, *real.shape[1:])

    def after_step(self, pop) -> None:
        if self.due(pop.step):
            self.pending.append((pop.step, *self.run(pop, *self.draw_lots(pop))))

    def run(self, pop, z_lot, real_lot):
        """Lots, bids, scores, winner and (if configured) the auxiliary update. Returns device
        tensors ``bids [G,N,N], scores [G,N], winner [G], aux_loss [P]``."""
        with torch.no_grad():
            lots = pop.G(z_lot)
            bids = self.bid_matrix(pop, lots, real_lot)
        scores = cross_scores(bids, self.auction.aggregate)
        winner = select_winner(scores)
        if self.auction.aux is not None:
            aux = self.aux_update(pop, lots, real_lot, winner)
        else:
            aux = torch.zeros(pop.n_members, device=pop.device)
        return bids, scores, winner, aux

    def bid_matrix(self, pop, lots, real, score: str | None = None):
        """All ``G x N x N`` bids in ONE batched discriminator call: bidder ``j`` of group ``g`` sees
        the N lots of its group and the group's real batch (for centering)."""
        G, N, L = self.n_groups, self.n_players, lots.shape[1]
        feat = lots.shape[2:]
        per_group = torch.cat([lots.reshape(G, N * L, *feat), real], 1)          # [G, (N+1)L, ...]
        inputs = per_group.unsqueeze(1).expand(G, N, *per_group.shape[1:]).reshape(pop.n_members, -1, *feat)
        out = pop.D(inputs).view(G, N, -1)                                      # [G, bidder, (N+1)L]
        lot_logits = out[..., : N * L].reshape(G, N, N, L)                      # [G, bidder j, lot i, L]
        real_logits = out[..., N * L:]                                          # [G, bidder j, M]
        return bid_matrix_from_logits(lot_logits, real_logits, score or self.score)

    def winner_index(self, winner: torch.Tensor) -> torch.Tensor:
        """Global pair index of each pair's group winner, ``[P]``."""
        g = torch.arange(self.n_groups, device=winner.device)
        return (winner + g * self.n_players).repeat_interleave(self.n_players)

    def _assess_pair(self, out, M):
        real_out, lot_out = out[:, :M], out[:, M:]
        real_mean = real_out.mean(-1, keepdim=True) if self.score == "centered" else None
        return assess(real_out, real_mean, self.score), assess(lot_out, real_mean, self.score)

    def aux_losses(self, pop, lots, real, winner):
        """``L_aux`` of every discriminator against its group winner's (zero for the winner)."""
        ref = self.winner_index(winner)                                          # [P]
        x = torch.cat([real.repeat_interleave(self.n_players, 0), lots], 1)      # [P, M+L, ...]
        M = real.shape[1]
        own = pop.D(x)
        with torch.no_grad():
            theirs = pop.D(x, params={k: v.detach()[ref] for k, v in pop.D.params.items()})
        s_own, s_ref = self._assess_pair(own, M), self._assess_pair(theirs, M)
        return aux_loss(s_own[0], s_own[1], s_ref[0], s_ref[1], self.auction.aux)

    def aux_update(self, pop, lots, real, winner):
        """One masked step of the losers' discriminators on ``aux_weight * L_aux``."""
        losses = self.aux_losses(pop, lots, real, winner)
        grads = torch.autograd.grad(self.auction.aux_weight * losses.sum(), pop.D.parameters())
        pop.opt_d.step(grads, mask=self.players != self.winner_index(winner))
        self.after_d_step(pop)
        return losses.detach()

    # --- log and checkpoints ------------------------------------------------------------------------
    def flush(self, pop) -> None:
        if self.pending:
            pend, self.pending = self.pending, []
            for k, key in enumerate(("bids", "scores", "winner", "aux_loss"), start=1):
                self.log[key].extend(torch.stack([p[k] for p in pend]).cpu())
            self.log["step"].extend(p[0] for p in pend)

    def state_dict(self) -> dict:
        return {"log": self.log}

    def load_state_dict(self, state: dict) -> None:
        self.log = {k: list(v) for k, v in state["log"].items()}


# --- the batched population ------------------------------------------------------------------------

def _check_stackable(modules: Sequence[nn.Module], what: str) -> None:
    for m in modules:
        if any(True for _ in m.buffers()):
            raise ValueError(
                f"{what} with buffers (BatchNorm running stats, spectral-norm vectors) cannot be stacked into "
                f"one batched population; build them without (e.g. MLPDiscriminator(spectral_norm=False), "
                f"norm='none'|'layer') or use LoopPopulation")


_STAT_KEYS = ("d_loss", "g_loss", "d_real", "d_fake")
RNG_MODES = ("shared", "per_player")


class AuctionPopulation(Population):
    """N GAN pairs (or ``n_groups`` independent auctions of N pairs) trained as one batched
    computation: a :class:`~ganlib.training.population.Population` with the :class:`Auction` scheme.

    Args:
        generators, discriminators: lists of identically shaped modules (their current weights
            are the players' initialisations; modules without buffers).
        source: the data source (``sample(n, generator)``).
        config: a :class:`~ganlib.training.TrainConfig` (steps, batch_size, n_critic, optimizer,
            lrs, betas, loss, ema_decay, log_every, snapshot_every, checkpointing, seed, progress).
        auction: an :class:`AuctionConfig`, or ``None`` for independent training (the paper's
            "classic" control).
        seeds: per-pair seeds for ``rng="per_player"`` (default ``config.seed + 1000 p``).
        rng: ``"shared"`` -- one batched draw per tensor (fast) -- or ``"per_player"`` -- each pair
            draws from the streams of its own Trainer.
        gp_weight: WGAN-GP's lambda (0: no penalty; the paper's WGAN flavour is unknown).
        clip_value: WGAN weight clipping ``c`` (Arjovsky et al., 2017, Alg. 1) after every D update.
        grouped: run ganlib's MLPs as grouped layers; ``False`` uses ``vmap(functional_call)``.
    """

    def __init__(self, generators, discriminators, source, config, auction=None, seeds=None, rng="shared",
                 gp_weight=0.0, clip_value=None, grouped: bool = True):
        if rng not in RNG_MODES:
            raise ValueError(f"rng must be 'shared' (one batched draw per tensor) or 'per_player' (the streams of "
                             f"N separate Trainers), got {rng!r}")
        if clip_value is not None and not clip_value > 0:
            raise ValueError(f"clip_value must be positive or None, got {clip_value!r}")
        _check_stackable(generators, "generators")
        _check_stackable(discriminators, "discriminators")
        scheme = Auction(clip=clip_value, auction=auction, gp_weight=float(gp_weight))
        self._init_modules(generators, discriminators, source, config, {"auction": scheme}, None, seeds,
                           "per_seed" if rng == "per_player" else "shared", grouped, ())

    # the names the chapter uses
    auction = property(lambda self: self.scheme.auction)
    n_pairs = property(lambda self: self.n_members)
    n_players = property(lambda self: self.scheme.n_players)
    n_groups = property(lambda self: self.scheme.n_groups)
    score = property(lambda self: self.scheme.score)
    lot_size = property(lambda self: self.scheme.lot_size)
    gp_weight = property(lambda self: self.scheme.gp_weight)
    clip_value = property(lambda self: self.scheme.clip)
    loss = property(lambda self: self.scheme.pair)
    g_params = property(lambda self: self.G.params)
    d_params = property(lambda self: self.D.params)
    auctions = property(lambda self: self.scheme.log)

    def real_batches(self, n: int) -> torch.Tensor:
        return self.real(n)

    def latents(self, n: int) -> torch.Tensor:
        return self.latent(n)

    def gp_weights(self, real: torch.Tensor) -> torch.Tensor:
        return self.scheme.gp_alpha(self, real)

    def draw_lots(self):
        return self.scheme.draw_lots(self)

    def generate(self, z):
        return self.G(z)

    def discriminate(self, x: torch.Tensor, params: dict | None = None) -> torch.Tensor:
        """Every discriminator on its own inputs: ``x [P, n, ...] -> [P, n]``."""
        return self.D(x, params=params)

    def d_update(self, real, z, alpha=None):
        """One discriminator update on given draws: ``(loss [P], mean real score [P], mean fake score [P])``."""
        with torch.no_grad():
            fake = self.G(z)
        out = self.scheme.d_losses(self, real, fake, alpha)
        grads = torch.autograd.grad(out["objective"], self.D.parameters())
        self.opt_d.step(grads)
        self.scheme.after_d_step(self)
        return out["d_loss"], out["d_real"], out["d_fake"]

    def bid_matrix(self, lots, real):
        return self.scheme.bid_matrix(self, lots, real)

    def winner_index(self, winner):
        return self.scheme.winner_index(winner)

    def aux_losses(self, lots, real, winner):
        return self.scheme.aux_losses(self, lots, real, winner)

    def aux_update(self, lots, real, winner):
        return self.scheme.aux_update(self, lots, real, winner)

    def auction_log(self) -> dict[str, torch.Tensor]:
        """The auction history as tensors: ``step [T]``, ``bids [T,G,N,N]``, ``scores [T,G,N]``,
        ``winner [T,G]``, ``aux_loss [T,P]``."""
        self.flush()
        log = self.scheme.log
        if not log["step"]:
            raise ValueError("no auction has run (auction=None, or start/every skipped every step)")
        out = {k: torch.stack(v) for k, v in log.items() if k != "step"}
        out["step"] = torch.tensor(log["step"])
        return out

    def history_tensors(self) -> dict[str, torch.Tensor]:
        """``history`` as tensors: ``step [T]`` and each statistic ``[T, P]``."""
        self.flush()
        return {"step": torch.tensor(self.history["step"]), **{k: self.history_of(k) for k in _STAT_KEYS}}

    def sample(self, n: int, seed: int | None = None, ema: bool = False) -> torch.Tensor:
        """``[P, n, ...]`` samples of every generator, on the CPU, from their own RNG."""
        return super().sample(n, self.config.seed + 10_007 if seed is None else seed, ema)

    @torch.no_grad()
    def evaluate_auction(self, lot_size: int = 1024, seed: int = 12_345,
                         auction: AuctionConfig | None = None) -> dict[str, torch.Tensor]:
        """A fresh auction for read-out only (no update): ``bids``, ``scores``, ``winner`` on the CPU."""
        a = auction or self.auction or AuctionConfig()
        rng = torch.Generator(self.device).manual_seed(seed)
        z = self.latent(lot_size, [rng]).view(self.n_pairs, lot_size, -1)
        real = self.source.sample(self.n_groups * lot_size, rng)
        real = real.view(self.n_groups, lot_size, *real.shape[1:])
        bids = self.scheme.bid_matrix(self, self.G(z), real, a.resolved_score(self.loss.name))
        scores = cross_scores(bids, a.aggregate)
        return {"bids": bids.cpu(), "scores": scores.cpu(), "winner": select_winner(scores).cpu()}

    def export(self, p: int, which: str | None = None, like: nn.Module | None = None):
        """Pair ``p`` as ordinary modules ``(G, D)`` (copies), or one of them with ``which``."""
        if not 0 <= p < self.n_pairs:
            raise ValueError(f"pair index must be in [0, {self.n_pairs}), got {p}")
        if which is not None:
            return super().export(p, which, like)
        return super().export(p, "generator"), super().export(p, "discriminator")


from .auction_oracle import LoopPopulation  # noqa: E402  (the oracle builds on the pieces above)
