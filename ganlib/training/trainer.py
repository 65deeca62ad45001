"""A small, resumable GAN trainer.

One *step* is ``n_critic`` discriminator updates (each on a fresh real batch and
a fresh fake batch) followed by one generator update, as in Algorithm 1 of
Goodfellow et al. (2014) and of WGAN (Arjovsky et al., 2017).

Design points:

* **No host syncs in the step.** Per-step statistics stay on the device and are
  copied to ``history`` every ``log_every`` steps; the NaN/inf guard checks them
  there and names the first bad step and quantity.
* **Exact resume.** Real batches come from ``source.sample(n, generator)`` with the
  trainer's own data generator, latent codes from its own noise generator; the
  checkpoint stores both, the global torch RNG (CPU and CUDA), models, optimizers,
  EMA weights, history, snapshots and the fixed sample noise. On CPU a resumed run
  reproduces an uninterrupted one exactly.
* **Override points** for the paper schemes: :meth:`d_step`, :meth:`g_step`.
* **Predictable resume.** A checkpoint resumes only with the same settings; every difference is
  listed in one error, and ``allow_changed`` opts in to new learning rates or EMA (see
  :meth:`Trainer.load` and the contract in :mod:`ganlib.training`).
* **Data-parallel** under ``torchrun``: built while a ``torch.distributed`` process group is
  initialised, the trainer wraps G and D in ``DistributedDataParallel``, gives every rank its
  own data and noise streams, averages the logged statistics over ranks, and logs, shows
  progress and writes checkpoints on rank 0 only (see :mod:`ganlib.training.distributed`).
* **CUDA fast path** (each a :class:`TrainConfig` switch): ``amp_dtype="bf16"`` (autocast),
  ``channels_last=True`` (NHWC memory layout for conv nets) and ``cuda_graph=True`` (the whole
  step, ``n_critic`` D updates + G update + EMA, captured once and replayed; see :meth:`Trainer._graphed_step`
  for its constraints). All three are numerically the same training; bf16 changes rounding.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from ..losses import get_loss
from ..validation import as_int, check_source
from .history import PendingStats
from .checkpoint import CheckpointError, load_checkpoint, require_same_settings, save_checkpoint
from .config import TrainConfig, descend, make_optimizer
from .distributed import DistContext, stream_seed

logger = logging.getLogger(__name__)

HISTORY_KEYS = ("d_loss", "g_loss", "d_real", "d_fake", "grad_norm_d", "grad_norm_g")


def _has_conv2d(module: nn.Module) -> bool:
    return any(p.ndim == 4 for p in module.parameters())


def _has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


class Trainer:
    """Trains ``generator`` against ``discriminator`` on batches from ``source``.

    Args:
        generator: module with ``latent_dim`` and ``sample_latent(n, generator, device)``.
        discriminator: module returning one raw score per sample.
        source: anything with ``sample(n, generator) -> Tensor`` (a GaussianMixture,
            ``ganlib.data.TensorSource``...); moved to the models' device if it has ``.to``.
            A raw tensor is refused (wrap it in ``TensorSource``).
        config: a :class:`TrainConfig`.
        d_penalty: optional ``f(discriminator, real, fake) -> scalar`` added to the D loss
            (gradient penalties; see ``ganlib.regularizers``).
        d_after_step: optional ``f(discriminator)`` run after every D update (weight clipping).
        callbacks: callables ``f(trainer)`` run every ``log_every`` steps (live plots); on rank 0
            only when data-parallel.
        sync_batchnorm: data-parallel on CUDA only: BatchNorm over the global batch
            (``SyncBatchNorm``) rather than each rank's own.

    Data-parallel (a process group is initialised, e.g. by
    :func:`ganlib.training.distributed.init_from_env` under ``torchrun``): ``config.batch_size``
    is the batch of each rank, the global batch is ``batch_size x world_size``. :meth:`save`
    and :meth:`fit` must be called on every rank (they hold collectives). A subclass trains
    data-parallel only if it sets ``supports_data_parallel = True`` itself, after checking that
    its own updates call :attr:`G_train` / :attr:`D_train`.
    """

    checkpoint_name = "checkpoint.pt"

    # Capabilities of Trainer's own step. A subclass that overrides the step must declare each one
    # itself in its body (they are not inherited): supports_data_parallel once its updates call
    # G_train / D_train; supports_cuda_graph once its step is graph-safe (the same computation every
    # step, no Python state that changes between steps, no host syncs).
    CAPABILITIES = ("supports_data_parallel", "supports_cuda_graph")
    supports_data_parallel = True
    supports_cuda_graph = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for flag in Trainer.CAPABILITIES:
            setattr(cls, flag, bool(cls.__dict__.get(flag, False)))

    def __init__(self, generator: nn.Module, discriminator: nn.Module, source, config: TrainConfig,
                 d_penalty: Callable | None = None, d_after_step: Callable | None = None,
                 callbacks: Sequence[Callable] = (), sync_batchnorm: bool = False):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a ganlib.training.TrainConfig, got {type(config).__name__}; "
                            "build one with TrainConfig(steps=..., batch_size=...)")
        for name, module in (("generator", generator), ("discriminator", discriminator)):
            if not isinstance(module, nn.Module) or next(module.parameters(), None) is None:
                raise TypeError(f"{name} must be an nn.Module with parameters, got {type(module).__name__}")
        if not callable(getattr(generator, "sample_latent", None)):
            raise TypeError("generator needs a sample_latent(n, generator, device) method (and latent_dim), as "
                            "ganlib.models' generators have; subclass ganlib.models.base.LatentGenerator or add one")
        check_source(source, "source")
        for name, fn in (("d_penalty", d_penalty), ("d_after_step", d_after_step)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable or None, got {type(fn).__name__}")
        callbacks = [callbacks] if callable(callbacks) else list(callbacks)
        for i, fn in enumerate(callbacks):
            if not callable(fn):
                raise TypeError(f"callbacks[{i}] must be callable f(trainer), got {type(fn).__name__}")
        self.G, self.D, self.config = generator, discriminator, config
        self.device = next(generator.parameters()).device
        if next(discriminator.parameters()).device != self.device:
            raise ValueError("generator and discriminator must be on the same device; call .to(device) on both")
        if d_penalty is not None and _has_batchnorm(discriminator):
            raise ValueError(
                "a gradient penalty needs a discriminator without BatchNorm: BatchNorm mixes the samples "
                "of a batch, so the per-sample gradient the penalty constrains is not defined. Build the "
                "discriminator with norm='none' or norm='layer'."
            )
        self._check_fast_path(config)
        if config.channels_last:
            generator.to(memory_format=torch.channels_last)
            discriminator.to(memory_format=torch.channels_last)
        self.source = source.to(self.device) if hasattr(source, "to") else source
        self.loss = get_loss(config.loss)
        self.d_penalty, self.d_after_step, self.callbacks = d_penalty, d_after_step, list(callbacks)
        self.dist = DistContext.detect()
        self._check_data_parallel()
        # G_train / D_train: what the updates call; DDP wrappers sharing G's and D's parameters when
        # data-parallel (their construction copies rank 0's weights and buffers to every rank)
        self.G_train = self.dist.wrap(generator, self.device, sync_batchnorm)
        self.D_train = self.dist.wrap(discriminator, self.device, sync_batchnorm)
        self.opt_d = make_optimizer(discriminator.parameters(), config, "d")
        self.opt_g = make_optimizer(generator.parameters(), config, "g")
        self.G_ema = None
        if config.ema_decay is not None:
            self.G_ema = copy.deepcopy(generator).eval().requires_grad_(False)
        stream = stream_seed(config.seed, self.dist.rank)   # = config.seed in one process
        self.noise_rng = torch.Generator(self.device).manual_seed(stream)
        self.data_rng = torch.Generator(self.device).manual_seed(stream + 1)
        fixed_rng = torch.Generator(self.device).manual_seed(config.seed + 2)
        self.fixed_noise = generator.sample_latent(config.n_fixed_samples, generator=fixed_rng, device=self.device)
        self.step = 0
        self.elapsed = 0.0
        self.history: dict[str, list] = {"step": [], **{k: [] for k in HISTORY_KEYS}}
        self.snapshots: list[tuple[int, torch.Tensor]] = []
        self._stats = PendingStats(HISTORY_KEYS)
        self._graph = None               # the captured step (cuda_graph=True), built by _graphed_step
        self._inputs = _StepInputs()     # its random inputs: real batches and latent codes

    def _check_fast_path(self, config: TrainConfig) -> None:
        if config.channels_last and not (_has_conv2d(self.G) or _has_conv2d(self.D)):
            raise ValueError("channels_last=True is for convolutional networks (4-D weights); neither network has "
                             "one. Leave it False for MLPs.")
        if config.cuda_graph:
            if self.device.type != "cuda":
                raise ValueError(f"cuda_graph=True needs the networks on a CUDA device, they are on {self.device}: "
                                 "CUDA graphs do not exist on the CPU or MPS. Leave cuda_graph False there.")
            if not type(self).supports_cuda_graph:
                raise ValueError(f"{type(self).__name__} does not support cuda_graph=True: its step changes with "
                                 "Python state between steps, which a captured graph would not see.")

    def _check_data_parallel(self) -> None:
        if self.dist.enabled and not type(self).supports_data_parallel:
            raise NotImplementedError(
                f"{type(self).__name__} does not support data-parallel training yet: its updates would not "
                "average gradients over ranks. Run it in one process (without torchrun), or use Trainer.")

    @property
    def global_batch_size(self) -> int:
        """Samples per update over all ranks: ``config.batch_size x world_size``."""
        return self.config.batch_size * self.dist.world_size

    # --- the two updates ---------------------------------------------------------------------
    def autocast(self):
        # a CUDA graph must not reuse autocast's cache of cast weights across replays
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.amp_dtype == "bf16",
                              cache_enabled=not self.config.cuda_graph)

    def latent_batch(self, n: int) -> torch.Tensor:
        """``n`` latent codes from the trainer's noise generator (a static buffer inside a CUDA graph)."""
        return self._inputs.take("latent", n, self._draw)

    def fake_batch(self, n: int) -> torch.Tensor:
        return self.G_train(self.latent_batch(n))

    def real_batch(self, n: int) -> torch.Tensor:
        """``n`` real samples from ``source`` with the trainer's data generator (NHWC under channels_last)."""
        return self._inputs.take("real", n, self._draw)

    def _draw(self, kind: str, n: int) -> torch.Tensor:
        if kind == "latent":
            return self.G.sample_latent(n, generator=self.noise_rng, device=self.device)
        real = self.source.sample(n, self.data_rng)
        if self.config.channels_last and real.ndim == 4:
            real = real.contiguous(memory_format=torch.channels_last)
        return real

    def d_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """One discriminator update; returns detached device scalars (no sync)."""
        with torch.no_grad(), self.autocast():
            fake = self.fake_batch(len(real))
        with self.autocast():
            real_logits, fake_logits = self.D_train(real), self.D_train(fake.float())
        loss = self.loss.d(real_logits.float(), fake_logits.float())
        if self.d_penalty is not None:
            loss = loss + self.d_penalty(self.D, real, fake.float())
        grad_norm = descend(self.opt_d, loss, self.D.parameters())
        if self.d_after_step is not None:
            self.d_after_step(self.D)
        return {"d_loss": loss.detach(), "d_real": real_logits.detach().float().mean(),
                "d_fake": fake_logits.detach().float().mean(), "grad_norm_d": grad_norm}

    def g_step(self, batch_size: int) -> dict[str, torch.Tensor]:
        """One generator update (D's parameters frozen for the backward pass).

        D is called unwrapped: when data-parallel its DDP hooks stay unarmed, so nothing of this
        backward pass is reduced into D's gradients (G is called through its wrapper).
        """
        self.D.requires_grad_(False)
        try:
            with self.autocast():
                fake_logits = self.D(self.fake_batch(batch_size))
                real_logits = self.D(self.real_batch(batch_size)) if self.loss.g_needs_real else None
            loss = self.loss.g(fake_logits.float(), None if real_logits is None else real_logits.float())
            grad_norm = descend(self.opt_g, loss, self.G.parameters())
        finally:
            self.D.requires_grad_(True)
        return {"g_loss": loss.detach(), "grad_norm_g": grad_norm}

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.config.ema_decay
        ema_p, p = list(self.G_ema.parameters()), list(self.G.parameters())
        torch._foreach_lerp_(ema_p, p, 1 - decay)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # --- the loop ------------------------------------------------------------------------------
    def fit(self, steps: int | None = None, allow_changed: Sequence[str] = ()) -> dict[str, list]:
        """Train until ``steps`` (default ``config.steps``; an integer >= 0) generator updates in total.

        If ``config.checkpoint_dir`` holds a checkpoint, training resumes from it (see :meth:`load`,
        which receives ``allow_changed``).
        """
        target = self.config.steps if steps is None else as_int("steps", steps, low=0)
        if self.step == 0 and self.checkpoint_path is not None and self.dist.from_main(self.checkpoint_path.exists):
            self.load(self.checkpoint_path, allow_changed=allow_changed)
        elif allow_changed:
            self._check_allow_changed(allow_changed)
        from tqdm.auto import tqdm

        cfg = self.config
        # GANLIB_STATIC=1 (set when the book is built) turns the bar off: a static page can't animate it
        show = cfg.progress and os.environ.get("GANLIB_STATIC") != "1" and self.dist.is_main
        if self.dist.enabled and self.dist.is_main:
            logger.info("data-parallel over %d ranks (%s): global batch = %d per rank x %d = %d",
                        self.dist.world_size, self.dist.backend, cfg.batch_size, self.dist.world_size,
                        self.global_batch_size)
        bar = tqdm(total=target, initial=self.step, disable=not show, desc="training", leave=False)
        start = time.perf_counter()
        try:
            while self.step < target:
                row = self._graphed_step() if cfg.cuda_graph else self._train_step()
                self.step += 1
                self._stats.add_row(self.step, row)
                if cfg.snapshot_every and self.step % cfg.snapshot_every == 0:
                    self.snapshots.append((self.step, self.sample_fixed()))
                if self.step % cfg.log_every == 0 or self.step == target:
                    self._flush()
                    bar.update(self.step - bar.n)
                    bar.set_postfix(d_loss=f"{self.history['d_loss'][-1]:.3f}",
                                    g_loss=f"{self.history['g_loss'][-1]:.3f}")
                    for callback in self.callbacks if self.dist.is_main else ():
                        callback(self)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.elapsed += time.perf_counter() - start
                    start = time.perf_counter()
                    self.save()
        finally:
            bar.close()
        self.elapsed += time.perf_counter() - start
        self._flush()
        if self.checkpoint_path is not None:
            self.save()
        return self.history

    def _train_step(self) -> torch.Tensor:
        """One step: ``n_critic`` D updates, one G update, the EMA; its statistics as one device row."""
        cfg = self.config
        for _ in range(cfg.n_critic):
            d_stats = self.d_step(self.real_batch(cfg.batch_size))
        g_stats = self.g_step(cfg.batch_size)
        if self.G_ema is not None:
            self._update_ema()
        stats = {**d_stats, **g_stats}
        return torch.stack([stats[k].float().reshape(()) for k in HISTORY_KEYS])

    def _graphed_step(self) -> torch.Tensor:
        """:meth:`_train_step` captured once in a CUDA graph and replayed (``cuda_graph=True``).

        The first ``graph_warmup`` steps run eagerly on a side stream (they create the optimizer
        state, autotune cuDNN, and record which random inputs a step draws); the next step is
        captured, and every step from then on is: draw the step's real batches and latent codes
        with the trainer's generators into static buffers (the same draws, in the same order, as an
        eager step), replay the graph, copy out its statistics. Constraints: every batch of a run has
        the same shape; nothing in the step may synchronise with the host (``.item()``, boolean
        masks, data-dependent shapes) or depend on Python state that changes between steps (a subclass
        whose step does must not declare ``supports_cuda_graph = True``); the optimizers are built
        ``capturable`` and must not be replaced afterwards (:meth:`load` drops the graph).
        """
        if self._graph is None and self._inputs.warmup_steps < self.config.graph_warmup:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                row = self._inputs.record(self._train_step)
            torch.cuda.current_stream(self.device).wait_stream(side)
            return row
        if self._graph is None:
            self._inputs.allocate()
            self.opt_d.zero_grad(set_to_none=True)
            self.opt_g.zero_grad(set_to_none=True)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), self._inputs.replaying():
                self._graph_row = self._train_step()
            self._graph = graph
        self._inputs.fill(self._draw)
        self._graph.replay()
        return self._graph_row.clone()

    def _flush(self) -> None:
        """Move pending per-step stats to ``history`` (one host copy) and check they are finite."""
        self._stats.flush(self.history, reduce=self.dist.average)   # the mean over ranks

    # --- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, ema: bool = False, seed: int | None = None) -> torch.Tensor:
        """``n`` (an integer >= 1) generated samples on the CPU, drawn in eval mode with their own RNG
        (training RNG untouched; the generator's train/eval mode is restored)."""
        n = as_int("n", n, low=1)
        G = self.G_ema if ema else self.G
        if G is None:
            raise ValueError("ema=True needs TrainConfig(ema_decay=...)")
        seed = self.config.seed + 10_007 if seed is None else as_int("seed", seed)
        rng = torch.Generator(self.device).manual_seed(seed)
        was_training = G.training
        G.eval()
        try:
            return G(G.sample_latent(n, generator=rng, device=self.device)).float().cpu()
        finally:
            G.train(was_training)

    @torch.no_grad()
    def sample_fixed(self, ema: bool = False) -> torch.Tensor:
        """The generator's output on the fixed noise (the same codes all run long), on the CPU."""
        G = self.G_ema if ema else self.G
        was_training = G.training
        G.eval()
        try:
            return G(self.fixed_noise).float().cpu()
        finally:
            G.train(was_training)

    # --- checkpoints ---------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        d = self.config.checkpoint_dir
        return None if d is None else Path(d) / self.checkpoint_name

    def _rng_state(self) -> dict:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        return {"torch": torch.get_rng_state(), "cuda": cuda,
                "noise": self.noise_rng.get_state(), "data": self.data_rng.get_state()}

    def state_dict(self) -> dict:
        """Everything :meth:`load` needs; data-parallel, a collective (every rank's RNG states)."""
        rank_rng = self.dist.all_gather(self._rng_state())
        return {
            "step": self.step, "elapsed": self.elapsed,
            "generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
            "g_ema": None if self.G_ema is None else self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "history": self.history, "snapshots": [[s, x] for s, x in self.snapshots],
            "fixed_noise": self.fixed_noise,
            "rng": rank_rng[0], "rank_rng": rank_rng, "world_size": self.dist.world_size,
            "config": dataclasses.asdict(self.config),
        }

    def save(self, path=None) -> Path:
        """Write a checkpoint (data-parallel: call on every rank; rank 0 writes it)."""
        self._flush()
        path = path or self.checkpoint_path
        if path is None:
            raise ValueError("no path given and config.checkpoint_dir is None")
        state = self.state_dict()
        if self.dist.is_main:
            save_checkpoint(path, state)
        self.dist.barrier()
        return Path(path)

    #: settings that may differ freely between a checkpoint and the run resuming it
    resume_free_settings = ("steps", "checkpoint_dir", "checkpoint_every", "log_every", "snapshot_every", "progress",
                            "channels_last", "cuda_graph", "graph_warmup")  # the fast path: same training
    #: settings a resume may change when the caller names them in ``allow_changed``
    resume_changeable_settings = ("lr_d", "lr_g", "ema_decay")

    def _check_allow_changed(self, allow_changed) -> set[str]:
        allow = {allow_changed} if isinstance(allow_changed, str) else set(allow_changed)
        bad = allow - set(self.resume_changeable_settings)
        if bad:
            raise ValueError(f"allow_changed may name only {self.resume_changeable_settings}, got {sorted(bad)}")
        return allow

    def checkpoint_layout(self) -> dict:
        """The entries :meth:`load` needs (checked before anything is restored)."""
        tensor = torch.Tensor
        return {"step": int, "elapsed": (int, float), "generator": dict, "discriminator": dict,
                "g_ema": (dict, type(None)), "opt_g": dict, "opt_d": dict, "history": dict, "snapshots": list,
                "fixed_noise": tensor, "config": dict,
                "rng": {"torch": tensor, "cuda": list, "noise": tensor, "data": tensor}}

    def extra_resume_settings(self, path, state: dict) -> dict[str, tuple]:
        """``{name: (saved, now)}`` of settings a subclass keeps outside its config; :meth:`load` lists
        their differences in the same error as the config's. Raise :class:`CheckpointError` here when
        ``state`` was written by another kind of trainer."""
        return {}

    def load(self, path, allow_changed: Sequence[str] = ()) -> None:
        """Restore everything saved by :meth:`save`; the next step continues exactly.

        Resume contract: every setting of the config except ``resume_free_settings`` (steps,
        checkpointing, logging, progress bar) must equal the checkpoint's; otherwise ONE
        :class:`CheckpointError` lists each differing setting with both values. Opt-ins, named in
        ``allow_changed``: ``"lr_d"``/``"lr_g"`` continue with this config's learning rates (set on
        the loaded optimizers; their moment estimates are kept); ``"ema_decay"`` continues with
        this config's EMA: turned on, the EMA generator starts from the LOADED generator; turned off,
        the saved EMA weights are dropped; changed, the saved EMA weights continue with the new decay.
        A malformed file raises :class:`CheckpointError` naming it and what is wrong.
        """
        allow = self._check_allow_changed(allow_changed)
        self._graph = None  # a captured step holds the old optimizer state: capture again
        state = self.dist.from_main(load_checkpoint, path, required=self.checkpoint_layout())  # rank 0 reads
        cfg = self.config
        defaults = {f.name: f.default for f in dataclasses.fields(cfg)
                    if f.default is not dataclasses.MISSING}
        keys = [f.name for f in dataclasses.fields(cfg) if f.name not in self.resume_free_settings]
        changed = require_same_settings(path, state["config"], cfg, keys, allow_changed=allow,
                                        changeable=self.resume_changeable_settings, defaults=defaults,
                                        extra=self.extra_resume_settings(path, state))
        if self.G_ema is not None and state["g_ema"] is None and "ema_decay" not in changed:
            raise CheckpointError(f"{path} holds no EMA generator although its config has ema_decay set; "
                                  "the file is incomplete")
        saved_world = state.get("world_size", 1)
        if saved_world != self.dist.world_size:
            raise CheckpointError(
                f"{path} was written by {saved_world} process(es) but this run has {self.dist.world_size}: every "
                "rank's data and noise streams are in it, so resume with the same number of processes "
                "(torchrun --nproc_per_node x --nnodes). To only use the weights, read "
                "load_checkpoint(path)['generator'].")
        try:
            self.G.load_state_dict(state["generator"])
            self.D.load_state_dict(state["discriminator"])
            if self.G_ema is not None:
                if state["g_ema"] is not None:
                    self.G_ema.load_state_dict(state["g_ema"])
                else:  # EMA turned on at resume: it starts from the loaded generator
                    self.G_ema.load_state_dict(self.G.state_dict())
        except RuntimeError as err:
            raise CheckpointError(f"{path} holds networks of another shape: {err}") from err
        for name, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            try:
                opt.load_state_dict(state[name])
            except (ValueError, KeyError, TypeError, RuntimeError) as err:
                raise CheckpointError(f"{path}: its {name} optimizer state does not fit this run's "
                                      f"{type(opt).__name__} ({type(err).__name__}: {err})") from err
        for player, opt in (("d", self.opt_d), ("g", self.opt_g)):
            if f"lr_{player}" in changed:
                for group in opt.param_groups:
                    group["lr"] = getattr(cfg, f"lr_{player}")
        self.step, self.elapsed = state["step"], state["elapsed"]
        self.history = state["history"]
        self.snapshots = [(int(s), x) for s, x in state["snapshots"]]
        self.fixed_noise = state["fixed_noise"].to(self.device)
        rng = state["rank_rng"][self.dist.rank] if "rank_rng" in state else state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.noise_rng.set_state(rng["noise"])
        self.data_rng.set_state(rng["data"])


class _StepInputs:
    """The random inputs of one training step (real batches, latent codes), for CUDA-graph replay.

    Eagerly, :meth:`take` just draws. While warm-up steps are recorded it also notes what each
    step drew (kind and count, in order); inside the captured graph it hands out preallocated
    static buffers in that order, and before each replay :meth:`fill` draws the same inputs with
    the trainer's generators into those buffers.
    """

    def __init__(self):
        self.plan: list[tuple[str, int]] | None = None
        self.warmup_steps = 0
        self.buffers: list[torch.Tensor] = []
        self._last: list[torch.Tensor] = []              # the last recorded step's draws (shapes, layouts)
        self._recording: list[tuple[str, int, torch.Tensor]] | None = None
        self._cursor: int | None = None

    def take(self, kind: str, n: int, draw: Callable[[str, int], torch.Tensor]) -> torch.Tensor:
        if self._cursor is not None:                      # inside the graph: the next static buffer
            if self._cursor >= len(self.plan) or self.plan[self._cursor] != (kind, n):
                raise RuntimeError(f"the captured step drew {kind} x{n} where the warm-up steps drew "
                                   f"{self.plan[self._cursor] if self._cursor < len(self.plan) else 'nothing'}: "
                                   "a step must draw the same inputs every time to be replayed as a CUDA graph")
            self._cursor += 1
            return self.buffers[self._cursor - 1]
        x = draw(kind, n)
        if self._recording is not None:
            self._recording.append((kind, n, x))
        return x

    def record(self, step: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Run one eager (warm-up) step, noting what it draws."""
        self._recording = []
        try:
            row = step()
        finally:
            recorded, self._recording = self._recording, None
        drawn = [(kind, n) for kind, n, _ in recorded]
        if self.plan is not None and drawn != self.plan:
            raise RuntimeError("the warm-up steps drew different inputs (a step must draw the same real batches "
                               "and latent codes every time to be replayed as a CUDA graph)")
        self.plan, self.warmup_steps = drawn, self.warmup_steps + 1
        self._last = [x for _, _, x in recorded]
        return row

    def allocate(self) -> None:
        """Static buffers shaped (and laid out) like the last warm-up step's draws; draws nothing."""
        if self.plan is None:
            raise RuntimeError("allocate() needs at least one recorded warm-up step")
        self.buffers, self._last = [torch.empty_like(x) for x in self._last], []

    def fill(self, draw: Callable[[str, int], torch.Tensor]) -> None:
        for (kind, n), buffer in zip(self.plan, self.buffers):
            buffer.copy_(draw(kind, n))

    @contextlib.contextmanager
    def replaying(self):
        self._cursor = 0
        try:
            yield
        finally:
            taken, self._cursor = self._cursor, None
        if taken != len(self.plan):
            raise RuntimeError(f"the captured step drew {taken} inputs, the warm-up steps {len(self.plan)}")
