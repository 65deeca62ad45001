"""The one training loop for P GAN pairs trained as one stacked computation.

A :class:`Population` holds P *members*, each a (generator, discriminator) pair, laid out on two
named axes: **arms** (the variants a chapter compares: losses, unroll depths, λ's...) and
**seeds**. Member ``(arm, seed)`` is initialised after ``seed_everything(seed)``, so all arms of a
seed start from the same networks, and (``rng="per_seed"``) draws its real batches and latent
codes from its own generators seeded like :class:`~ganlib.training.Trainer` (``seed`` and
``seed + 1``): a member follows the trajectory of a Trainer run with that seed (up to float
round-off; tests check it).

One step is ``n_critic`` discriminator updates and one generator update for every member at once
(Algorithm 1 of Goodfellow et al., 2014); the paper's method lives in a small *scheme* object
(:mod:`.schemes`) that supplies the losses. The members are independent: the gradient of the
summed losses with respect to member ``p``'s parameters is member ``p``'s own gradient, and the
optimizer (:class:`.optim.StackedOptimizer`) is elementwise.

The loop keeps the Trainer's guarantees: no host sync in a step (statistics are flushed every
``log_every`` steps and checked for NaN/inf there), EMA generators, snapshots, callbacks, and
atomic checkpoints with exact resume (on CPU a resumed run reproduces an uninterrupted one bit
for bit).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from ...validation import check_source
from ..checkpoint import CheckpointError, load_checkpoint, require_same_settings, save_checkpoint
from ..history import PendingStats
from ..config import TrainConfig, seed_everything
from ..trainer import HISTORY_KEYS
from .optim import StackedOptimizer
from .schemes import Scheme, Standard
from .stack import Stack

RNG_MODES = ("per_seed", "shared")
SAVED_SETTINGS = ("batch_size", "n_critic", "seed", "optimizer")


def _norms(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-member gradient norms ``[P]`` of stacked gradients."""
    return torch.stack([g.flatten(1).square().sum(1) for g in grads]).sum(0).sqrt()


class Population:
    """P = len(arms) x len(seeds) GAN pairs trained in lockstep as one stacked computation.

    Args:
        make_generator, make_discriminator: zero-argument factories of one pair (the generator
            has ``latent_dim`` and ``sample_latent``).
        source: a data source (``sample(n, generator)``), or one per member (``rng="per_seed"``).
        config: a :class:`~ganlib.training.TrainConfig` (``optimizer``, learning rates, betas,
            ``n_critic``, ``ema_decay``, ``log_every``, ``snapshot_every``, checkpointing).
        seeds: the seed axis.
        arms: a :class:`Scheme` (one arm, named ``"main"``) or ``{name: scheme}``; all of one
            scheme class (arms may differ in what that class allows per arm, e.g. the loss).
            Default: ``Standard()`` with ``config.loss``.
        device: where to train (default: where the factories put the modules).
        rng: ``"per_seed"`` (each member its own Trainer-like streams) or ``"shared"`` (one
            batched draw per tensor from ``config.seed``: faster; members see different batches).
        grouped: ganlib's MLPs as grouped layers (see :class:`.stack.Stack`).
        callbacks: ``f(population)`` run every ``log_every`` steps.

    Example::

        pop = Population(lambda: MLPGenerator(), lambda: MLPDiscriminator(), ring_of_gaussians(),
                         TrainConfig(steps=2000, batch_size=256),
                         arms={"gan": Standard("ns"), "lsgan": Standard("lsgan")}, seeds=range(5))
        pop.fit()
        pop.history_of("d_loss", arm="gan")      # Tensor [T, 5]
        pop.samples(1000)["lsgan"]               # Tensor [5, 1000, 2]
    """

    checkpoint_name = "population.pt"
    record_every_step = True     # False: history keeps one row per log_every steps
    _target = None

    def __init__(self, make_generator: Callable[[], nn.Module], make_discriminator: Callable[[], nn.Module],
                 source, config: TrainConfig, seeds: Sequence[int] = (0,),
                 arms: Scheme | dict[str, Scheme] | None = None, device=None, rng: str = "per_seed",
                 grouped: bool = True, callbacks: Sequence[Callable] = (), members: Sequence[tuple] | None = None):
        arms = self._arms(arms)
        seeds = [int(s) for s in seeds]
        if members is None:
            if not seeds:
                raise ValueError("seeds must name at least one seed")
            members = [(name, s) for name in arms for s in seeds]
        members = [(str(a), int(s)) for a, s in members]
        if not members:
            raise ValueError("a population needs at least one member")
        unknown = {a for a, _ in members} - set(arms)
        if unknown:
            raise ValueError(f"members name unknown arms {sorted(unknown)}; arms are {list(arms)}")
        gens, discs = [], []
        for _, s in members:
            seed_everything(s)
            gens.append(make_generator())
            discs.append(make_discriminator())
        if device is not None:
            gens, discs = [g.to(device) for g in gens], [d.to(device) for d in discs]
        self._setup(gens, discs, source, config, arms, members, rng, grouped, callbacks)

    @classmethod
    def from_modules(cls, generators: Sequence[nn.Module], discriminators: Sequence[nn.Module], source,
                     config: TrainConfig, arms: Scheme | dict[str, Scheme] | None = None,
                     member_arms: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
                     rng: str = "shared", grouped: bool = True, callbacks: Sequence[Callable] = ()) -> "Population":
        """A population of given, already initialised modules (their current weights are the start).
        ``member_arms`` names each member's arm (default: the only arm); ``seeds`` each member's seed
        (default ``config.seed + 1000 p``), used by ``rng="per_seed"``."""
        self = cls.__new__(cls)
        self._init_modules(generators, discriminators, source, config, arms, member_arms, seeds, rng, grouped, callbacks)
        return self

    def _init_modules(self, generators, discriminators, source, config, arms, member_arms, seeds, rng, grouped,
                      callbacks) -> None:
        generators, discriminators = list(generators), list(discriminators)
        if not generators or len(generators) != len(discriminators):
            raise ValueError(f"need as many generators as discriminators (>= 1), got {len(generators)} and "
                             f"{len(discriminators)}")
        arms = self._arms(arms)
        P = len(generators)
        names = list(member_arms) if member_arms is not None else [next(iter(arms))] * P
        seeds = [config.seed + 1000 * p for p in range(P)] if seeds is None else [int(s) for s in seeds]
        if len(names) != P or len(seeds) != P:
            raise ValueError(f"need one arm name and one seed per pair ({P}), got {len(names)} and {len(seeds)}")
        self._setup(generators, discriminators, source, config, arms, list(zip(names, seeds)), rng, grouped, callbacks)

    @staticmethod
    def _arms(arms) -> dict:
        if arms is None:
            arms = Standard()
        if not isinstance(arms, dict):
            arms = {"main": arms}
        if not arms:
            raise ValueError("arms must name at least one scheme")
        kinds = {type(s) for s in arms.values()}
        if len(kinds) > 1:
            raise ValueError(f"the arms of one population must use one scheme class, got {sorted(k.__name__ for k in kinds)}; "
                             "train the others in a population of their own")
        return dict(arms)

    def _setup(self, gens, discs, source, config, arms, members, rng, grouped, callbacks) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError("config must be a ganlib.training.TrainConfig")
        if rng not in RNG_MODES:
            raise ValueError(f"rng must be one of {RNG_MODES}, got {rng!r}")
        for i, one in enumerate(source if isinstance(source, (list, tuple)) else [source]):
            check_source(one, f"source[{i}]" if isinstance(source, (list, tuple)) else "source")
        if config.amp_dtype is not None:
            raise ValueError("populations run in float32: leave amp_dtype=None (use Trainer for bf16 autocast)")
        self.config, self.rng_mode, self.callbacks = config, rng, list(callbacks)
        self.arm_schemes, self.members = arms, members
        self.arm_names = list(arms)
        self._seeds = list(dict.fromkeys(s for _, s in members))
        self.G, self.D = Stack(gens, grouped=grouped), Stack(discs, grouped=grouped)
        if self.G.device != self.D.device:
            raise ValueError("generators and discriminators must be on the same device")
        self.device = self.G.device
        self._template = gens[0]
        self.latent_dim = gens[0].latent_dim
        P = self.n_members
        if isinstance(source, (list, tuple)):
            if len(source) != P or rng != "per_seed":
                raise ValueError(f"give one source, or one source per member ({P}) with rng='per_seed'")
            self.sources = [s.to(self.device) if hasattr(s, "to") else s for s in source]
        else:
            self.sources = None
        self.source = source[0] if isinstance(source, (list, tuple)) else source
        self.source = self.source.to(self.device) if hasattr(self.source, "to") else self.source
        dev = self.device
        if rng == "per_seed":
            self.noise_rngs = [torch.Generator(dev).manual_seed(s) for _, s in members]
            self.data_rngs = [torch.Generator(dev).manual_seed(s + 1) for _, s in members]
            self.fixed_noise = torch.stack([self._template.sample_latent(
                config.n_fixed_samples, generator=torch.Generator(dev).manual_seed(s + 2), device=dev)
                for _, s in members])
        else:
            self.noise_rngs = [torch.Generator(dev).manual_seed(config.seed)]
            self.data_rngs = [torch.Generator(dev).manual_seed(config.seed + 1)]
            self.fixed_noise = self._template.sample_latent(
                P * config.n_fixed_samples, generator=torch.Generator(dev).manual_seed(config.seed + 2),
                device=dev).view(P, config.n_fixed_samples, -1)
        # draws a plain GAN would not make (auction lots, penalty weights) have their own stream,
        # so switching a scheme's extra on or off never shifts the training batches
        self.extra_rng = torch.Generator(dev).manual_seed(config.seed + 3)
        self.opt_g = StackedOptimizer.from_config(self.G.parameters(), config, "g")
        self.opt_d = StackedOptimizer.from_config(self.D.parameters(), config, "d")
        self.g_ema = None
        if config.ema_decay is not None:
            self.g_ema = {k: v.detach().clone() for k, v in self.G.params.items()}
        schemes = list(arms.values())
        self.scheme = schemes[0].bind(self, schemes)
        self.step, self.elapsed = 0, 0.0
        self.keys = HISTORY_KEYS + tuple(getattr(self.scheme, "keys", ()))
        self.history: dict[str, list] = {"step": [], **{k: [] for k in self.keys}}
        self.snapshots: list[tuple[int, torch.Tensor]] = []
        self._stats = PendingStats(self.keys, self.member_name, checked=HISTORY_KEYS)

    # --- the axes ----------------------------------------------------------------------------------
    @property
    def arms(self) -> list[str]:
        """The arm axis: the arms' names."""
        return self.arm_names

    @property
    def n_members(self) -> int:
        return len(self.members)

    @property
    def seeds(self) -> list[int]:
        """The seed axis (distinct seeds in member order)."""
        return self._seeds

    @property
    def member_seeds(self) -> list[int]:
        return [s for _, s in self.members]

    @property
    def member_arms(self) -> list[str]:
        return [a for a, _ in self.members]

    def member_name(self, p: int) -> str:
        arm, seed = self.members[p]
        return f"member {p} (arm {arm!r}, seed {seed})" if len(self.arm_names) > 1 else f"model {p} (seed {seed})"

    def indices(self, arm: str | None = None) -> list[int]:
        """Member indices of ``arm`` (all members if ``None``), in member order."""
        if arm is None:
            return list(range(self.n_members))
        if arm not in self.arm_schemes:
            raise KeyError(f"no arm {arm!r}; arms are {self.arm_names}")
        return [p for p, (a, _) in enumerate(self.members) if a == arm]

    def index(self, arm: str, seed: int) -> int:
        for p, member in enumerate(self.members):
            if member == (arm, seed):
                return p
        raise KeyError(f"no member with arm {arm!r} and seed {seed}")

    def per_member(self, per_arm: Callable) -> list:
        """``[per_arm(scheme of member p's arm) for p]``: a per-member list from an arm attribute."""
        return [per_arm(self.arm_schemes[a]) for a, _ in self.members]

    # --- random draws ------------------------------------------------------------------------------
    def latent(self, n: int, rngs: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        """Latent codes ``[P, n, latent_dim]`` through the generator's ``sample_latent``."""
        rngs = self.noise_rngs if rngs is None else rngs
        if len(rngs) == 1 and self.n_members > 1:
            return self._template.sample_latent(self.n_members * n, generator=rngs[0],
                                                device=self.device).view(self.n_members, n, -1)
        return torch.stack([self._template.sample_latent(n, generator=g, device=self.device) for g in rngs])

    def real(self, n: int, members: Sequence[int] | None = None) -> torch.Tensor:
        """One real batch per member, ``[P, n, ...]``. ``members`` (``rng="per_seed"``): draw only
        for these members (the others get zeros and their streams do not move)."""
        if self.rng_mode == "shared":
            x = self.source.sample(self.n_members * n, self.data_rngs[0])
            return x.view(self.n_members, n, *x.shape[1:])
        sources = self.sources or [self.source] * self.n_members
        if members is None:
            return torch.stack([src.sample(n, g) for src, g in zip(sources, self.data_rngs)])
        drawn = {p: sources[p].sample(n, self.data_rngs[p]) for p in members}
        blank = torch.zeros_like(next(iter(drawn.values())))
        return torch.stack([drawn.get(p, blank) for p in range(self.n_members)])

    # --- one step ---------------------------------------------------------------------------------
    def d_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """One discriminator update of every member; returns per-member device statistics."""
        with torch.no_grad():
            fake = self.G(self.latent(real.shape[1]))
        out = self.scheme.d_losses(self, real, fake)
        grads = torch.autograd.grad(out.pop("objective"), self.D.parameters())
        self.opt_d.step(grads)
        self.scheme.after_d_step(self)
        return {**out, "grad_norm_d": _norms(grads)}

    def g_step(self, n: int) -> dict[str, torch.Tensor]:
        """One generator update of every member (the discriminators are not updated)."""
        out = self.scheme.g_losses(self, self.latent(n))
        grads = torch.autograd.grad(out.pop("objective"), self.G.parameters())
        self.opt_g.step(grads)
        if self.g_ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(list(self.g_ema.values()), self.G.parameters(), 1 - self.config.ema_decay)
        return {**out, "grad_norm_g": _norms(grads)}

    def train_step(self) -> None:
        cfg = self.config
        for _ in range(cfg.n_critic):
            d_stats = self.d_step(self.real(cfg.batch_size))
        g_stats = self.g_step(cfg.batch_size)
        self.step += 1
        self.scheme.after_step(self)
        if self.record_every_step or self.step % cfg.log_every == 0 or self.step == self._target:
            self._stats.add(self.step, {**d_stats, **g_stats})
        if cfg.snapshot_every and self.step % cfg.snapshot_every == 0:
            self.snapshots.append((self.step, self.sample_fixed()))

    # --- the loop ----------------------------------------------------------------------------------
    def fit(self, steps: int | None = None, callbacks: Sequence[Callable] = ()) -> dict[str, list]:
        """Train every member to ``steps`` generator updates in total (default ``config.steps``).
        If ``config.checkpoint_dir`` holds a checkpoint, training resumes from it."""
        from tqdm.auto import tqdm

        cfg = self.config
        target = self._target = cfg.steps if steps is None else steps
        if self.step == 0 and self.checkpoint_path is not None and self.checkpoint_path.exists():
            self.load(self.checkpoint_path)
        callbacks = [*self.callbacks, *callbacks]
        show = cfg.progress and os.environ.get("GANLIB_STATIC") != "1"
        bar = tqdm(total=target, initial=self.step, disable=not show, desc="population", leave=False)
        start = time.perf_counter()
        try:
            while self.step < target:
                self.train_step()
                if self.step % cfg.log_every == 0 or self.step == target:
                    self.flush()
                    bar.update(self.step - bar.n)
                    for callback in callbacks:
                        callback(self)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.checkpoint_path:
                    self.elapsed += time.perf_counter() - start
                    start = time.perf_counter()
                    self.save()
        finally:
            bar.close()
        self.elapsed += time.perf_counter() - start
        self.flush()
        if self.checkpoint_path is not None:
            self.save()
        return self.history

    def flush(self) -> None:
        """Move pending statistics to ``history`` (one host copy) and check them for NaN/inf."""
        self._stats.flush(self.history)
        self.scheme.flush(self)

    _flush = flush

    # --- read-outs ---------------------------------------------------------------------------------
    def history_of(self, key: str, arm: str | None = None) -> torch.Tensor:
        """``history[key]`` as a tensor ``[T, members of arm]`` (all members if ``arm`` is None)."""
        self.flush()
        if key not in self.history or key == "step":
            raise KeyError(f"no statistic {key!r}; have {list(self.keys)}")
        rows = torch.tensor(self.history[key], dtype=torch.float32).reshape(-1, self.n_members)
        return rows[:, self.indices(arm)]

    @torch.no_grad()
    def sample(self, n: int, seed: int = 10_007, ema: bool = False) -> torch.Tensor:
        """``n`` samples of every member, ``[P, n, ...]`` on the CPU (own RNG; ``ema``: EMA generators)."""
        params = None
        if ema:
            if self.g_ema is None:
                raise ValueError("ema=True needs TrainConfig(ema_decay=...)")
            params = self.g_ema
        z = self.latent(n, [torch.Generator(self.device).manual_seed(seed)])
        if self.n_members == 1:
            z = z.view(1, n, -1)
        self.G.eval()
        try:
            return self.G(z, params=params).float().cpu()
        finally:
            self.G.train()

    def samples(self, n: int, seed: int = 10_007, ema: bool = False) -> dict[str, torch.Tensor]:
        """``{arm: Tensor[members of arm, n, ...]}`` (see :meth:`sample`)."""
        x = self.sample(n, seed, ema)
        return {arm: x[self.indices(arm)] for arm in self.arm_names}

    @torch.no_grad()
    def sample_fixed(self) -> torch.Tensor:
        self.G.eval()
        try:
            return self.G(self.fixed_noise).float().cpu()
        finally:
            self.G.train()

    def export(self, p: int, which: str = "generator", like: nn.Module | None = None) -> nn.Module:
        """Member ``p`` as an ordinary module (a copy): ``which`` is ``"generator"``,
        ``"discriminator"`` or ``"ema"``."""
        if which == "ema":
            if self.g_ema is None:
                raise ValueError("which='ema' needs TrainConfig(ema_decay=...)")
            module = self.G.export(p, like)
            module.load_state_dict({**{k: v[p] for k, v in self.g_ema.items()},
                                    **{k: v[p] for k, v in self.G.buffers.items()}})
            return module
        if which not in ("generator", "discriminator"):
            raise ValueError(f"which must be 'generator', 'discriminator' or 'ema', got {which!r}")
        return (self.G if which == "generator" else self.D).export(p, like)

    # --- arms from a trained population -------------------------------------------------------------
    def branch(self, arms: dict[str, Scheme],
               wrap_discriminator: Callable[[nn.Module], nn.Module] | None = None) -> "Population":
        """``len(arms) x P`` members continuing this population's P from their current weights: arm
        ``a`` holds members ``a*P .. a*P+P-1`` (this population's order). Fresh optimizer states,
        copied RNG states (every arm of a member sees the same batches), tiled EMA weights, a new
        history; the step count continues (e.g. DGL-GAN's stage 2 from its stage 1).

        ``wrap_discriminator(module) -> module`` is applied to a copy of every new member's
        discriminator before they are stacked again, e.g. to switch spectral normalization on
        from this step (``torch.nn.utils.parametrizations.spectral_norm`` on each layer); the
        wrapped modules must share one architecture."""
        arms = self._arms(arms)
        self.flush()
        A = len(arms)
        new = copy.copy(self)
        new.arm_schemes, new.arm_names = arms, list(arms)
        new.members = [(name, s) for name in arms for _, s in self.members]
        new._seeds = list(dict.fromkeys(s for _, s in new.members))
        new.G, new.D = self.G.tile(A), self.D.tile(A)
        if wrap_discriminator is not None:
            new.D = Stack([wrap_discriminator(new.D.export(p)) for p in range(len(new.D))],
                          device=self.device, grouped=self.D._grouped is not None)
        new.opt_g = StackedOptimizer.from_config(new.G.parameters(), self.config, "g")
        new.opt_d = StackedOptimizer.from_config(new.D.parameters(), self.config, "d")
        new.g_ema = None if self.g_ema is None else {k: v.repeat(A, *([1] * (v.ndim - 1))) for k, v in self.g_ema.items()}

        def clone(rngs):
            if len(rngs) == 1:
                return [self._clone_rng(rngs[0])]
            return [self._clone_rng(g) for _ in range(A) for g in rngs]

        new.noise_rngs, new.data_rngs = clone(self.noise_rngs), clone(self.data_rngs)
        new.extra_rng = self._clone_rng(self.extra_rng)
        new.sources = None if self.sources is None else self.sources * A
        new.fixed_noise = self.fixed_noise.repeat(A, 1, 1)
        new.elapsed = 0.0
        schemes = list(arms.values())
        new.scheme = schemes[0].bind(new, schemes)
        new.keys = HISTORY_KEYS + tuple(getattr(new.scheme, "keys", ()))
        new.history = {"step": [], **{k: [] for k in new.keys}}
        new.snapshots = []
        new._stats = PendingStats(new.keys, new.member_name, checked=HISTORY_KEYS)
        return new

    def _clone_rng(self, g: torch.Generator) -> torch.Generator:
        h = torch.Generator(self.device)
        h.set_state(g.get_state())
        return h

    # --- checkpoints -------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        d = self.config.checkpoint_dir
        return None if d is None else Path(d) / self.checkpoint_name

    def _settings(self) -> dict:
        plain = (int, float, str, bool, tuple, type(None))
        return {k: v for k, v in dataclasses.asdict(self.config).items() if isinstance(v, plain)}

    def state_dict(self) -> dict:
        self.flush()
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        return {
            "kind": "population", "step": self.step, "elapsed": self.elapsed,
            "members": [[a, s] for a, s in self.members], "rng_mode": self.rng_mode,
            "generators": self.G.state_dict(), "discriminators": self.D.state_dict(), "g_ema": self.g_ema,
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "history": self.history, "snapshots": [[s, x] for s, x in self.snapshots],
            "fixed_noise": self.fixed_noise,
            "rng": {"torch": torch.get_rng_state(), "cuda": cuda, "noise": [g.get_state() for g in self.noise_rngs],
                    "data": [g.get_state() for g in self.data_rngs], "extra": self.extra_rng.get_state()},
            "scheme": self.scheme.state_dict(), "config": self._settings(),
        }

    def save(self, path=None) -> Path:
        path = path or self.checkpoint_path
        if path is None:
            raise ValueError("no path given and config.checkpoint_dir is None")
        return save_checkpoint(path, self.state_dict())

    def load(self, path) -> None:
        """Restore everything :meth:`save` wrote; the next step continues exactly. Refuses a
        checkpoint of another population (members, settings, architecture)."""
        state = load_checkpoint(path)
        if state.get("kind") != "population":
            raise CheckpointError(f"{path} was not written by a Population; use another checkpoint_dir")
        require_same_settings(path, state["config"], self.config, SAVED_SETTINGS)
        saved_members = [tuple(m) for m in state["members"]]
        if saved_members != self.members or state["rng_mode"] != self.rng_mode:
            raise CheckpointError(f"{path} holds members {saved_members} (rng {state['rng_mode']!r}) but this "
                                  f"population has {self.members} (rng {self.rng_mode!r}); resume with the same "
                                  "arms and seeds or use another checkpoint_dir")
        try:
            self.G.load_state_dict(state["generators"])
            self.D.load_state_dict(state["discriminators"])
        except ValueError as err:
            raise CheckpointError(f"{path}: {err}") from err
        if self.g_ema is not None and state["g_ema"] is not None:
            for k, v in self.g_ema.items():
                v.copy_(state["g_ema"][k])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.scheme.load_state_dict(state["scheme"])
        self.step, self.elapsed = state["step"], state["elapsed"]
        self.history = state["history"]
        self.snapshots = [(int(s), x) for s, x in state["snapshots"]]
        self.fixed_noise = state["fixed_noise"].to(self.device)
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        for g, s in zip(self.noise_rngs, rng["noise"]):
            g.set_state(s)
        for g, s in zip(self.data_rngs, rng["data"]):
            g.set_state(s)
        self.extra_rng.set_state(rng["extra"])
