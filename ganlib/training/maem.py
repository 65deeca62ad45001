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

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from .checkpoint import CheckpointError, load_checkpoint
from .maem_losses import *  # noqa: F401,F403  (the loss terms are part of this module's API)
from .maem_losses import (ADVERSARIAL, ALPHAS, BUFFERS, DLLE_METRICS, ENTROPY_METRICS, ISOMAP_METRICS, TRANSFORMS,
                          _choice, adversarial_d_loss, adversarial_g_loss, dlle_loss, dlle_transform, entropy_loss,
                          entropy_weight, isomap_loss, isomap_mix, isomap_target, realness)
from .population import Population, Scheme, Stack
from .replay import OfficialReplayBuffer, ReplayBuffer, SelectBuffer
from .trainer import TrainConfig, Trainer, descend

__all__ = [
    "maf_d_loss", "maf_g_loss", "realness", "dlle_transform", "dlle_loss", "isomap_mix", "isomap_target",
    "isomap_loss", "nearest_neighbours", "nn_distances", "knn_entropy", "entropy_loss", "entropy_weight",
    "ReplayBuffer", "OfficialReplayBuffer", "make_buffer", "MaEMConfig", "discriminator_losses",
    "generator_losses", "MaEMTrainer", "MaEM", "SeedEnsemble", "MaEMEnsemble", "MAEM_KEYS",
]

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


# --- many seeds and arms at once: the MaEM scheme on the population core ------------------------

ARM_FIELDS = ("isomap_weight", "dlle_weight", "entropy_weight", "buffer")
SeedEnsemble = Stack   # E copies of one module as one batched call (stacked spectral norm included)


@dataclass(eq=False)
class MaEM(Scheme):
    """MaEM-GAN's updates (:func:`discriminator_losses`, :func:`generator_losses`) as a population
    scheme: the same steps as :class:`MaEMTrainer`, applied to every member at once. Arms may differ
    only in :data:`ARM_FIELDS` (the term weights and the buffer kind); the entropy weight's warm-up
    is shared. The replay buffers hold one slot stack per member, and the transform and buffer
    draws come from the population's extra stream (``config.seed + 3``, as ``MaEMTrainer``'s)."""

    maem: MaEMConfig = field(default_factory=MaEMConfig)
    keys = MAEM_KEYS

    def bind(self, pop, arms):
        configs = [a.maem for a in arms]
        if not all(isinstance(c, MaEMConfig) for c in configs):
            raise TypeError("maem must be a MaEMConfig or a list of MaEMConfig")
        shared = [{k: v for k, v in c.to_dict().items() if k not in ARM_FIELDS} for c in configs]
        for sh in shared[1:]:
            if sh != shared[0]:
                diff = sorted(k for k in sh if sh[k] != shared[0][k])
                raise ValueError(f"the arms of one ensemble may differ only in {ARM_FIELDS}; they also differ in "
                                 f"{diff}: train those arms in separate ensembles")
        bound = MaEM(configs[0])
        bound.m = getattr(pop.D.base, "m", None)
        if not isinstance(bound.m, int):
            raise TypeError("the discriminator must expose its embedding size as .m (EmbeddingDiscriminator)")
        member_cfgs = pop.per_member(lambda arm: arm.maem)
        bound._w = {}
        for name in ("isomap_weight", "dlle_weight", "entropy_weight"):
            values = {getattr(c, name) for c in configs}      # a float when all arms agree, else one per member
            bound._w[name] = (float(values.pop()) if len(values) == 1 else
                              torch.tensor([float(getattr(c, name)) for c in member_cfgs], device=pop.device))
        B = pop.config.batch_size
        bound.buffer_gen = bound._make_buffer(pop, member_cfgs, B)
        bound.buffer_real = bound._make_buffer(pop, member_cfgs, B) if bound.maem.entropy_on_real else None
        return bound

    def _make_buffer(self, pop, member_cfgs, batch_size: int):
        if not any(c.entropy_weight > 0 for c in member_cfgs):
            return None
        kinds = [c.buffer for c in member_cfgs]
        make = lambda kind: make_buffer(dataclasses.replace(self.maem, buffer=kind, entropy_weight=1.0),  # noqa: E731
                                        self.m, batch_size, (pop.n_members,), pop.extra_rng)
        if len(set(kinds)) == 1:
            return make(kinds[0])
        return SelectBuffer(make("fifo"), make("official"),
                            torch.tensor([k == "official" for k in kinds], device=pop.device))

    def _sigma(self, pop):
        """sigma_t of every member: its weight times the shared warm-up factor."""
        return self._w["entropy_weight"] * entropy_weight(pop.step, 1.0, self.maem.entropy_warmup)

    def _masked(self, value: torch.Tensor, weight) -> torch.Tensor:
        return value * (weight > 0) if isinstance(weight, torch.Tensor) else value     # arms with a term off log 0

    def d_losses(self, pop, real, fake) -> dict:
        w = self._sigma(pop)
        loss, stats = discriminator_losses(pop.D, real, fake, self.maem, w, self.buffer_real, pop.extra_rng,
                                           sample_dim=1, dlle_weight=self._w["dlle_weight"],
                                           isomap_weight=self._w["isomap_weight"])
        return {"objective": loss.sum(), "d_loss": loss.detach(), "d_real": stats["d_real"], "d_fake": stats["d_fake"],
                "l_adv": stats["l_adv"], "l_dlle": self._masked(stats["l_dlle"], self._w["dlle_weight"]),
                "l_iso": self._masked(stats["l_iso"], self._w["isomap_weight"]),
                "l_ent_real": self._masked(stats["l_ent_real"], self._w["entropy_weight"])}

    def g_losses(self, pop, z) -> dict:
        w = self._sigma(pop)
        codes = pop.D(pop.G(z)).float()
        loss, stats = generator_losses(codes, self.maem, w, self.buffer_gen)
        ent_w = w if isinstance(w, torch.Tensor) else torch.full((pop.n_members,), w, device=pop.device)
        return {"objective": loss.sum(), "g_loss": loss.detach(), "nn_dist": stats["nn_dist"],
                "l_ent": self._masked(stats["l_ent"], self._w["entropy_weight"]), "ent_weight": ent_w}

    def _buffers(self) -> dict:
        out = {}
        for name in ("buffer_gen", "buffer_real"):
            buf = getattr(self, name)
            parts = {} if buf is None else ({"": buf} if not isinstance(buf, SelectBuffer)
                                            else {"fifo": buf.fifo, "official": buf.official})
            out.update({f"{name}.{k}": b for k, b in parts.items()})
        return out

    def state_dict(self) -> dict:
        return {"config": self.maem.to_dict(), "buffers": {k: b.state_dict() for k, b in self._buffers().items()}}

    def load_state_dict(self, state: dict) -> None:
        if state["config"] != self.maem.to_dict():
            raise CheckpointError("the checkpoint was written with other MaEM settings; resume with the same "
                                  "MaEMConfig arms or use another checkpoint_dir")
        for k, b in self._buffers().items():
            b.load_state_dict(state["buffers"][k])


class MaEMEnsemble(Population):
    """Trains MaEM-GAN for several seeds -- and several ablation arms -- at once: a
    :class:`~ganlib.training.population.Population` of :class:`MaEM` arms.

    ``E = len(arms) x len(seeds)`` members (member ``i`` is arm ``i // len(seeds)``, seed
    ``seeds[i % len(seeds)]``). Each member's initial weights come from ``torch.manual_seed(seed)``,
    so all arms start from the same networks for a given seed; real batches, latent codes and
    transform noise are drawn for all members at once from generators seeded with ``config.seed``
    (``rng="shared"``: member ``s`` does not replay a solo run's data stream; it is an independent
    run of the same algorithm). Arms may differ only in :data:`ARM_FIELDS`. ``history`` holds one
    row per ``log_every`` steps (lists of E floats). Checkpoints with ``config.checkpoint_dir``.

    Args:
        make_generator, make_discriminator: zero-argument constructors of one copy.
        source: a data source (``sample(n, generator)``).
        config: a :class:`TrainConfig`.
        maem: a :class:`MaEMConfig`, or a list of them (the arms).
        seeds: the initialisation seeds (the same for every arm).
    """

    record_every_step = False

    def __init__(self, make_generator: Callable[[], nn.Module], make_discriminator: Callable[[], nn.Module], source,
                 config: TrainConfig, maem: MaEMConfig | Sequence[MaEMConfig], seeds: Sequence[int], device=None):
        configs = [maem] if isinstance(maem, MaEMConfig) else list(maem)
        if not list(seeds) or not configs:
            raise ValueError("give at least one seed and one MaEMConfig")
        if not all(isinstance(a, MaEMConfig) for a in configs):
            raise TypeError("maem must be a MaEMConfig or a list of MaEMConfig")
        self.maem_arms = configs
        super().__init__(make_generator, make_discriminator, source, config, seeds=seeds, device=device,
                         arms={f"arm {i}": MaEM(c) for i, c in enumerate(configs)}, rng="shared")
        self.m = self.scheme.m
        self.maem = self.scheme.maem

    @property
    def arms(self) -> list[MaEMConfig]:
        return self.maem_arms

    @property
    def buffer_gen(self):
        return self.scheme.buffer_gen

    @property
    def buffer_real(self):
        return self.scheme.buffer_real

    def member_arm(self, i: int) -> int:
        """The arm index of member ``i``."""
        return self.arm_names.index(self.members[i][0])

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
