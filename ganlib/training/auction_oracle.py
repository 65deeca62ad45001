"""The Bid Picture, one player at a time: the readable version of :mod:`ganlib.training.auction`
and the test oracle of :class:`~ganlib.training.auction.AuctionPopulation`.

A plain Python loop over ``nn.Module`` pairs, each with its own ``torch.optim`` optimizer (as N
Trainers would have), drawing every random number exactly as the batched population does (same
streams, same order), so the two can be compared step by step. Slow; never used for results.
"""

from __future__ import annotations

import time
from typing import Sequence

import torch
from torch import nn

from ..losses import get_loss
from .auction import (AuctionConfig, RNG_MODES, _STAT_KEYS, assess, aux_loss, cross_scores, gradient_penalty_at,
                      select_winner)
from .history import PendingStats
from .trainer import TrainConfig, make_optimizer

__all__ = ["LoopPopulation"]


class LoopPopulation:
    """The same algorithm as :class:`~ganlib.training.auction.AuctionPopulation` (same arguments
    but ``grouped``), one player at a time. The modules are trained in place."""

    def __init__(self, generators: Sequence[nn.Module], discriminators: Sequence[nn.Module], source,
                 config: TrainConfig, auction: AuctionConfig | None = None, seeds: Sequence[int] | None = None,
                 rng: str = "shared", gp_weight: float = 0.0, clip_value: float | None = None):
        self.G, self.D = list(generators), list(discriminators)
        if not self.G or len(self.G) != len(self.D):
            raise ValueError("need as many generators as discriminators (>= 1)")
        if rng not in RNG_MODES:
            raise ValueError(f"rng must be one of {RNG_MODES}, got {rng!r}")
        self.n_pairs = P = len(self.G)
        self.config, self.auction, self.rng_mode = config, auction, rng
        self.gp_weight, self.clip_value = float(gp_weight), clip_value
        self.loss = get_loss(config.loss)
        self.device = next(self.G[0].parameters()).device
        self.latent_dim = self.G[0].latent_dim
        self.source = source.to(self.device) if hasattr(source, "to") else source
        n = P if auction is None or auction.n_players is None else auction.n_players
        if P % n:
            raise ValueError(f"{P} pairs cannot be split into auctions of n_players={n}; use a multiple of it")
        self.n_players, self.n_groups = n, P // n
        self.score = auction.resolved_score(self.loss.name) if auction is not None else None
        self.lot_size = (auction.lot_size or config.batch_size) if auction is not None else None
        self.seeds = [config.seed + 1000 * p for p in range(P)] if seeds is None else [int(s) for s in seeds]
        dev = self.device
        if rng == "per_player":
            self.noise_rngs = [torch.Generator(dev).manual_seed(s) for s in self.seeds]
            self.data_rngs = [torch.Generator(dev).manual_seed(s + 1) for s in self.seeds]
        else:
            self.noise_rng = torch.Generator(dev).manual_seed(config.seed)
            self.data_rng = torch.Generator(dev).manual_seed(config.seed + 1)
        self.extra_rng = torch.Generator(dev).manual_seed(config.seed + 3)
        self.opt_g = [make_optimizer(g.parameters(), config, "g") for g in self.G]
        self.opt_d = [make_optimizer(d.parameters(), config, "d") for d in self.D]
        self.step = 0
        self.elapsed = 0.0
        self.history: dict[str, list] = {"step": [], **{k: [] for k in _STAT_KEYS}}
        self.auctions: dict[str, list] = {"step": [], "bids": [], "scores": [], "winner": [], "aux_loss": []}
        self._stats = PendingStats(_STAT_KEYS, lambda p: f"pair {p}")

    # --- random draws (the batched population's, in the same order) -------------------------------
    def real_batches(self, n: int) -> torch.Tensor:
        if self.rng_mode == "per_player":
            return torch.stack([self.source.sample(n, r) for r in self.data_rngs])
        x = self.source.sample(self.n_pairs * n, self.data_rng)
        return x.view(self.n_pairs, n, *x.shape[1:])

    def latents(self, n: int) -> torch.Tensor:
        if self.rng_mode == "per_player":
            return torch.stack([torch.randn(n, self.latent_dim, generator=r, device=self.device)
                                for r in self.noise_rngs])
        return torch.randn(self.n_pairs, n, self.latent_dim, generator=self.noise_rng, device=self.device)

    def gp_weights(self, real: torch.Tensor) -> torch.Tensor:
        return torch.rand(real.shape[:2] + (1,) * (real.ndim - 2), generator=self.extra_rng, device=self.device)

    def draw_lots(self) -> tuple[torch.Tensor, torch.Tensor]:
        L = self.lot_size
        z = torch.randn(self.n_pairs, L, self.latent_dim, generator=self.extra_rng, device=self.device)
        real = self.source.sample(self.n_groups * L, self.extra_rng)
        return z, real.view(self.n_groups, L, *real.shape[1:])

    # --- one step ----------------------------------------------------------------------------------
    def _clip(self, D: nn.Module) -> None:
        if self.clip_value is not None:
            with torch.no_grad():
                for w in D.parameters():
                    w.clamp_(-self.clip_value, self.clip_value)

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
            self._clip(D)
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

    def train_step(self) -> None:
        cfg = self.config
        for _ in range(cfg.n_critic):
            real = self.real_batches(cfg.batch_size)
            z = self.latents(cfg.batch_size)
            alpha = self.gp_weights(real) if self.gp_weight > 0 else None
            d_loss, d_real, d_fake = self.d_update(real, z, alpha)
        z = self.latents(cfg.batch_size)
        real = self.real_batches(cfg.batch_size) if self.loss.g_needs_real else None
        g_loss = self.g_update(z, real)
        self.step += 1
        self._stats.add(self.step, {"d_loss": d_loss, "g_loss": g_loss, "d_real": d_real, "d_fake": d_fake})
        a = self.auction
        if a is not None and self.step >= a.start and (self.step - a.start) % a.every == 0:
            z_lot, real_lot = self.draw_lots()
            with torch.no_grad():
                lots = self.generate(z_lot)
                bids = self.bid_matrix(lots, real_lot)
            winner = select_winner(cross_scores(bids, a.aggregate))
            aux = (self.aux_update(lots, real_lot, winner) if a.aux is not None
                   else torch.zeros(self.n_pairs, device=self.device))
            for key, value in zip(("step", "bids", "scores", "winner", "aux_loss"),
                                  (self.step, bids, cross_scores(bids, a.aggregate), winner, aux)):
                self.auctions[key].append(value if key == "step" else value.detach().cpu())

    def fit(self, steps: int | None = None) -> dict[str, list]:
        target = self.config.steps if steps is None else steps
        start = time.perf_counter()
        while self.step < target:
            self.train_step()
        self._stats.flush(self.history)
        self.elapsed += time.perf_counter() - start
        return self.history

    # --- the auction, bidder by bidder ----------------------------------------------------------------
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
        losses = [self.aux_loss_of(p, lots, real, winner) for p in range(self.n_pairs)]  # all see one winner
        for p, (D, opt, loss) in enumerate(zip(self.D, self.opt_d, losses)):
            if p % N == int(winner[p // N]):
                continue                        # the winner is the reference: no auxiliary step
            opt.zero_grad(set_to_none=True)
            (self.auction.aux_weight * loss).backward()
            opt.step()
            self._clip(D)
        return torch.stack([loss.detach() for loss in losses])

    # --- read-outs ----------------------------------------------------------------------------------
    def auction_log(self) -> dict[str, torch.Tensor]:
        if not self.auctions["step"]:
            raise ValueError("no auction has run (auction=None, or start/every skipped every step)")
        out = {k: torch.stack(v) for k, v in self.auctions.items() if k != "step"}
        out["step"] = torch.tensor(self.auctions["step"])
        return out

    def history_tensors(self) -> dict[str, torch.Tensor]:
        self._stats.flush(self.history)
        return {"step": torch.tensor(self.history["step"]),
                **{k: torch.tensor(self.history[k]).reshape(-1, self.n_pairs) for k in _STAT_KEYS}}
