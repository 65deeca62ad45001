r"""Training PC-VQ2 (VQ-VAE-2 + gated PixelCNN priors) with phased data augmentation.

Mimura, "Phased Data Augmentation for Training a Likelihood-Based Generative Model with Limited
Data" (arXiv 2305.12681): the augmentation ranges are narrowed in phases over training and the
last phase leaves the data unchanged (:class:`ganlib.data.augment.PhasedAugmentation`); weights
and optimiser state are kept across phases. Two stages, each with its own step budget and the
same schedule applied to fractions of that budget (our reading; the paper's is unverified):

1. the VQ-VAE-2 on augmented images (:func:`vqvae_loss`, Razavi et al. 2019, Eq. 2);
2. the priors on codes extracted **on the fly** from freshly augmented images by the frozen
   VQ-VAE-2 (:func:`prior_loss`): top prior :math:`p(c^{t})`, bottom prior
   :math:`p(c^{b}\mid c^{t})`, both from the same augmented image. Pre-extracting the codes
   once would freeze one augmentation draw per image.

:func:`code_nll` scores held-out images in **bits per code**:
:math:`-\big(\log_2 p(c^t) + \log_2 p(c^b\mid c^t)\big) / (|c^t| + |c^b|)`.
:func:`sample_images` draws top codes, then bottom codes given them, then decodes.

:class:`PhasedTrainer` runs either stage with a resumable checkpoint (model, optimiser, step,
random-generator states, history), written atomically by :mod:`ganlib.training.checkpoint`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import PhasedAugmentation
from ..validation import as_float, as_int, check_source
from .checkpoint import CheckpointError, load_checkpoint, require_same_settings, save_checkpoint

__all__ = ["PhasedConfig", "PhasedTrainer", "vqvae_loss", "prior_loss", "code_nll", "sample_codes",
           "sample_images", "train_vqvae", "train_priors"]


@dataclass
class PhasedConfig:
    """One stage's settings. Adam 3e-4 and batch 128 are the VQ-VAE-2 reference settings
    (rosinality/vq-vae-2-pytorch); ``checkpoint_every=0`` saves only at the end.
    ``decay_from`` (a fraction of ``steps`` in [0, 1), default None: constant rate) lets the
    learning rate fall linearly from ``lr`` at that fraction to 0 at the last step, which
    settles short runs."""

    steps: int = 1000
    batch_size: int = 128
    lr: float = 3e-4
    seed: int = 0
    log_every: int = 50
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    progress: bool = False
    decay_from: float | None = None

    def __post_init__(self):  # numbers given as strings are parsed, as in TrainConfig
        for name in ("steps", "batch_size", "log_every"):
            setattr(self, name, as_int(name, getattr(self, name), low=1))
        self.checkpoint_every = as_int("checkpoint_every", self.checkpoint_every, low=0)
        self.seed = as_int("seed", self.seed)
        self.lr = as_float("lr", self.lr, low=0, low_open=True)
        if self.decay_from is not None:
            self.decay_from = as_float("decay_from", self.decay_from, low=0)
            if self.decay_from >= 1:
                raise ValueError(f"decay_from must be a fraction of the steps in [0, 1), got {self.decay_from}")

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based) of ``steps``."""
        if self.decay_from is None:
            return self.lr
        start = self.decay_from * self.steps
        return self.lr * min(1.0, (self.steps - step) / max(self.steps - start, 1e-12))


def vqvae_loss(vqvae: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Stage 1: ``||x - x_hat||^2 + β||z_e - sg[e]||^2`` (codebooks move by EMA, not by this loss)."""
    return vqvae.loss(x)


def prior_loss(vqvae: nn.Module, top_prior: nn.Module, bottom_prior: nn.Module,
               x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Stage 2: cross-entropy (nats per code) of both priors on the codes of ``x`` (frozen VQ-VAE)."""
    top, bottom = vqvae.encode_indices(x)
    l_top = F.cross_entropy(top_prior(top), top)
    l_bottom = F.cross_entropy(bottom_prior(bottom, top), bottom)
    return l_top + l_bottom, {"top_nats": l_top.detach(), "bottom_nats": l_bottom.detach()}


class PhasedTrainer:
    """Trains ``module`` with ``loss_fn(x) -> (loss, stats)`` on batches of ``source`` augmented
    by ``schedule`` at the phase of the current step (of ``config.steps``).

    Batches are drawn with one seeded generator, augmentation parameters with another, so a
    resumed run draws what an uninterrupted one would. ``history`` holds ``step``, ``phase``,
    ``loss`` and every stat, logged every ``log_every`` steps (one host copy per log).
    """

    checkpoint_name = "phased.pt"

    def __init__(self, module: nn.Module, loss_fn: Callable, source, schedule: PhasedAugmentation,
                 config: PhasedConfig):
        if not isinstance(schedule, PhasedAugmentation):
            raise TypeError(f"schedule must be a PhasedAugmentation, got {type(schedule).__name__}")
        if not isinstance(config, PhasedConfig):
            raise TypeError(f"config must be a PhasedConfig, got {type(config).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable loss_fn(x) -> (loss, stats), got {type(loss_fn).__name__}")
        check_source(source, "source")
        self.module, self.loss_fn, self.schedule, self.config = module, loss_fn, schedule, config
        self.device = next(module.parameters()).device
        self.source = source.to(self.device) if hasattr(source, "to") else source
        self.opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=config.lr,
                                    foreach=True)  # multi-tensor update: same values, fewer calls
        self.data_rng = torch.Generator(self.device).manual_seed(config.seed)
        self.aug_rng = torch.Generator(self.device).manual_seed(config.seed + 1)
        self.step, self.elapsed = 0, 0.0
        self.history: dict[str, list] = {"step": [], "phase": [], "loss": []}
        self._pending: list[tuple[int, int, dict]] = []

    def batch(self, step: int) -> torch.Tensor:
        x = self.source.sample(self.config.batch_size, self.data_rng)
        return self.schedule(x, step, self.config.steps, self.aug_rng)

    def fit(self) -> dict[str, list]:
        """Train to ``config.steps`` steps, resuming from ``checkpoint_dir`` if it holds a checkpoint."""
        cfg = self.config
        if self.step == 0 and self.checkpoint_path is not None and self.checkpoint_path.exists():
            self.load(self.checkpoint_path)
        from tqdm.auto import tqdm

        show = cfg.progress and os.environ.get("GANLIB_STATIC") != "1"
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not show, desc="phased training", leave=False)
        self.module.train()
        start = time.perf_counter()
        try:
            while self.step < cfg.steps:
                phase = self.schedule.phase_index(self.step, cfg.steps)
                loss, stats = self.loss_fn(self.batch(self.step))
                if cfg.decay_from is not None:
                    for group in self.opt.param_groups:
                        group["lr"] = cfg.lr_at(self.step)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                self.step += 1
                self._pending.append((self.step, phase, {"loss": loss.detach(), **stats}))
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    self._flush()
                    bar.update(self.step - bar.n)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.elapsed += time.perf_counter() - start
                    start = time.perf_counter()
                    self.save()
        finally:
            bar.close()
        self.elapsed += time.perf_counter() - start
        self._flush()
        self.module.eval()
        if self.checkpoint_path is not None:
            self.save()
        return self.history

    def _flush(self) -> None:
        if not self._pending:
            return
        keys = list(self._pending[0][2])
        rows = torch.stack([torch.stack([s[k].float().reshape(()) for k in keys]) for _, _, s in self._pending]).cpu()
        if not torch.isfinite(rows).all():
            raise FloatingPointError(f"a loss became non-finite before step {self._pending[-1][0]}; lower lr "
                                     "or resume from the last checkpoint")
        for (step, phase, _), row in zip(self._pending, rows.tolist()):
            self.history["step"].append(step)
            self.history["phase"].append(phase)
            for k, v in zip(keys, row):
                self.history.setdefault(k, []).append(v)
        self._pending = []

    @property
    def checkpoint_path(self) -> Path | None:
        d = self.config.checkpoint_dir
        return None if d is None else Path(d) / self.checkpoint_name

    def state_dict(self) -> dict:
        return {"step": self.step, "elapsed": self.elapsed, "module": self.module.state_dict(),
                "opt": self.opt.state_dict(), "history": self.history,
                "rng": {"data": self.data_rng.get_state(), "aug": self.aug_rng.get_state(),
                        "torch": torch.get_rng_state()},
                "config": dataclasses.asdict(self.config)}

    def save(self, path=None) -> Path:
        self._flush()
        path = path or self.checkpoint_path
        if path is None:
            raise ValueError("no path given and config.checkpoint_dir is None")
        return save_checkpoint(path, self.state_dict())

    def load(self, path) -> None:
        """Restore what :meth:`save` wrote; the next step continues exactly."""
        t = torch.Tensor
        state = load_checkpoint(path, required={
            "step": int, "elapsed": (int, float), "module": dict, "opt": dict, "history": dict, "config": dict,
            "rng": {"data": t, "aug": t, "torch": t}})
        require_same_settings(path, state["config"], self.config, ("steps", "batch_size", "seed", "lr"))
        try:
            self.module.load_state_dict(state["module"])
        except RuntimeError as err:
            raise CheckpointError(f"{path} holds a model of another shape: {err}") from err
        try:
            self.opt.load_state_dict(state["opt"])
        except (ValueError, KeyError, TypeError, RuntimeError) as err:
            raise CheckpointError(f"{path}: its optimizer state does not fit this run's Adam "
                                  f"({type(err).__name__}: {err})") from err
        self.step, self.elapsed, self.history = state["step"], state["elapsed"], state["history"]
        self.data_rng.set_state(state["rng"]["data"])
        self.aug_rng.set_state(state["rng"]["aug"])
        torch.set_rng_state(state["rng"]["torch"])


def train_vqvae(vqvae: nn.Module, source, schedule: PhasedAugmentation, config: PhasedConfig) -> PhasedTrainer:
    """Stage 1; returns the finished trainer (``.history``, ``.elapsed``). The VQ-VAE ends in eval mode."""
    trainer = PhasedTrainer(vqvae, lambda x: vqvae_loss(vqvae, x), source, schedule, config)
    trainer.fit()
    return trainer


def train_priors(vqvae: nn.Module, top_prior: nn.Module, bottom_prior: nn.Module, source,
                 schedule: PhasedAugmentation, config: PhasedConfig) -> PhasedTrainer:
    """Stage 2 with the VQ-VAE-2 frozen (eval mode: its codebooks do not move)."""
    vqvae.eval().requires_grad_(False)
    priors = nn.ModuleDict({"top": top_prior, "bottom": bottom_prior})
    trainer = PhasedTrainer(priors, lambda x: prior_loss(vqvae, top_prior, bottom_prior, x), source, schedule,
                            config)
    trainer.fit()
    return trainer


@torch.no_grad()
def code_nll(vqvae: nn.Module, top_prior: nn.Module, bottom_prior: nn.Module, images: torch.Tensor,
             batch_size: int = 1024) -> dict[str, float]:
    """Mean negative log-likelihood of the codes of ``images`` (not augmented) in bits:
    ``bits_per_code`` (both levels together), ``top_bits_per_code``, ``bottom_bits_per_code``
    and ``bits_per_image``. This is the likelihood of the *codes* under the priors, not of
    the pixels (the decoder is trained with a squared error, not a likelihood)."""
    was = [m.training for m in (vqvae, top_prior, bottom_prior)]
    for m in (vqvae, top_prior, bottom_prior):
        m.eval()
    try:
        bt, bb, nt, nb = 0.0, 0.0, 0, 0
        for s in range(0, len(images), batch_size):
            top, bottom = vqvae.encode_indices(images[s:s + batch_size])
            bt += top_prior.nll(top).sum().item()
            bb += bottom_prior.nll(bottom, top).sum().item()
            nt, nb = nt + top.numel(), nb + bottom.numel()
    finally:
        for m, w in zip((vqvae, top_prior, bottom_prior), was):
            m.train(w)
    n = len(images)
    return {"bits_per_code": (bt + bb) / (nt + nb), "top_bits_per_code": bt / nt,
            "bottom_bits_per_code": bb / nb, "bits_per_image": (bt + bb) / n}


@torch.no_grad()
def sample_codes(top_prior: nn.Module, bottom_prior: nn.Module, n: int, top_shape: tuple[int, int],
                 generator: torch.Generator | None = None,
                 temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Ancestral sampling: top codes from the top prior, then bottom codes given them."""
    top = top_prior.sample(n, shape=top_shape, generator=generator, temperature=temperature)
    bottom = bottom_prior.sample(n, cond=top, generator=generator, temperature=temperature)
    return top, bottom


@torch.no_grad()
def sample_images(vqvae: nn.Module, top_prior: nn.Module, bottom_prior: nn.Module, n: int,
                  image_size: int | tuple[int, int], generator: torch.Generator | None = None,
                  temperature: float = 1.0) -> torch.Tensor:
    """``n`` images: top prior -> bottom prior | top -> VQ-VAE-2 decoder, clamped to [-1, 1]."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    top_shape, _ = vqvae.latent_shapes(h, w)
    vqvae.eval()
    top, bottom = sample_codes(top_prior, bottom_prior, n, top_shape, generator, temperature)
    return vqvae.decode_indices(top, bottom).clamp(-1, 1)
