r"""DGL-GAN: compressing a GAN with a frozen teacher *discriminator*.

Tian et al., "DGL-GAN: Discriminator Guided Learning for GAN Compression" (arXiv 2112.06502;
v2: "Discriminator Guided GAN Compression"). Official code: github.com/yuesongtian/DGL-GAN
(``stylegan2_dgl/training/loss.py`` and ``BigGAN-PyTorch-code/losses.py``).

A narrow student generator G_S is trained against its own discriminator D_S as usual, and
also against the discriminator D_T of a pretrained wide teacher, which stays **fixed**:

.. math::

    \min_{G_S}\max_{D_S}\; V(G_S, D_S) + \lambda\, V(G_S, D_T), \qquad \lambda = 0.1,

so the only changed update is the student generator's (the real-data half of V(G_S, D_T)
does not depend on G_S):

.. math::

    L_{G_S} = \ell_G(D_S(G_S(z))) + \lambda\,\ell_G(D_T(G_S(z))),

with ℓ_G the host GAN's generator loss (non-saturating ``"ns"`` in the StyleGAN2 branch,
``"hinge"`` in the BigGAN branch; any pair of :mod:`ganlib.losses` works). Gradients flow
*through* D_T into G_S; D_T is never updated (no optimizer, ``requires_grad_(False)``,
``eval()`` so spectral-norm vectors and BatchNorm statistics stay put). Only D_T is used,
never the teacher's generator.

**Two stages** (the paper's stabiliser): stage 1 trains G_S, D_S from scratch with λ = 0;
stage 2 starts from the stage-1 weights with fresh Adam states (the BigGAN code resumes with
``load_optim=False``) and λ = 0.1. The fair baseline continues stage 1 with λ = 0 for the same
number of steps. :meth:`DGLTrainer.branch` / :meth:`DGLSeedBatch.branch` fork a run at the
stage boundary and :func:`two_stage` runs the whole schedule.

:func:`count_parameters` and :func:`count_macs` give the compression ratios.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import vmap

from ..losses import get_loss
from .checkpoint import CheckpointError
from .penalized import PenalizedSeedBatch
from .population import Population, Standard
from .population.schemes import _same
from .trainer import TrainConfig, Trainer, descend

__all__ = ["PAPER_LAMBDA", "DGL_KEYS", "check_lambda", "freeze_teacher", "check_teacher", "dgl_generator_loss",
           "DGLTrainer", "DGLSeedBatch", "two_stage", "count_parameters", "count_macs"]

PAPER_LAMBDA = 0.1          # ``alpha=0.1`` (StyleGAN2 config line) and the hard-coded 0.1 (BigGAN)
DGL_KEYS = ("g_student", "g_teacher", "t_fake")   # the two terms of L_{G_S}; D_T's mean score on fakes


def check_lambda(lam) -> float:
    """λ as a float; refuses negatives, NaN and infinity (a negative λ would reward fooling D_T less)."""
    if isinstance(lam, bool) or not isinstance(lam, (int, float)):
        raise TypeError(f"lam must be a number, got {type(lam).__name__}")
    lam = float(lam)
    if not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam (the teacher weight λ) must be a finite number >= 0, got {lam}; "
                         f"the paper uses {PAPER_LAMBDA}, and 0 turns the teacher off (stage 1, baseline)")
    return lam


def freeze_teacher(discriminator: nn.Module) -> nn.Module:
    """Make a trained discriminator the fixed teacher D_T, in place: ``requires_grad_(False)``
    (no gradient accumulates in it, no optimizer can move it) and ``eval()`` (spectral norm's
    power iteration and BatchNorm statistics stop updating). Returns the module."""
    if not isinstance(discriminator, nn.Module):
        raise TypeError(f"the teacher must be an nn.Module, got {type(discriminator).__name__}")
    return discriminator.requires_grad_(False).eval()


def check_teacher(teacher: nn.Module, generator: nn.Module, student_discriminator: nn.Module | None = None) -> None:
    """Refuse a teacher that is not frozen, is the student's own D, sits on another device, or
    does not take the student's samples (one probe forward pass, generator in eval mode, so no
    RNG stream or BatchNorm statistic of the run is touched)."""
    if not isinstance(teacher, nn.Module):
        raise TypeError(f"the teacher discriminator must be an nn.Module, got {type(teacher).__name__}")
    if student_discriminator is not None and teacher is student_discriminator:
        raise ValueError("the teacher discriminator is the student's own discriminator; D_T must be a separate, "
                         "pretrained network (the student's D_S keeps training)")
    trainable = [n for n, p in teacher.named_parameters() if p.requires_grad]
    if trainable:
        raise ValueError(f"the teacher discriminator has trainable parameters ({', '.join(trainable[:3])}"
                         f"{', ...' if len(trainable) > 3 else ''}); DGL-GAN never updates D_T. Pass "
                         "freeze_teacher(D_T) (requires_grad_(False) + eval()).")
    if teacher.training:
        raise ValueError("the teacher discriminator is in training mode, so its spectral-norm vectors or BatchNorm "
                         "statistics would change while the student trains; pass freeze_teacher(D_T).")
    device = next(generator.parameters()).device
    tensors = list(teacher.parameters()) + list(teacher.buffers())
    if any(t.device != device for t in tensors):
        raise ValueError(f"the teacher discriminator is on {tensors[0].device}, the student on {device}; "
                         "call .to(device) on the teacher")
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            rng = torch.Generator(device).manual_seed(0)
            probe = generator(generator.sample_latent(2, generator=rng, device=device))
            try:
                scores = teacher(probe)
            except (ValueError, RuntimeError) as err:
                raise ValueError(f"the teacher discriminator does not accept the student's samples of shape "
                                 f"{tuple(probe.shape[1:])}: {err}. Teacher and student must model the same data "
                                 "(same channels and image size).") from err
    finally:
        generator.train(was_training)
    if tuple(scores.shape) != (2,):
        raise ValueError(f"the teacher discriminator must return one score per sample, shape [n]; it returned "
                         f"{tuple(scores.shape)} for 2 samples")


def dgl_generator_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, lam: float = PAPER_LAMBDA,
                       loss: str = "ns", student_real_logits: torch.Tensor | None = None,
                       teacher_real_logits: torch.Tensor | None = None) -> torch.Tensor:
    r"""The student generator's loss :math:`\ell_G(D_S(G_S(z))) + \lambda\,\ell_G(D_T(G_S(z)))`.

    ``student_logits``, ``teacher_logits``: scores ``[n]`` of the same fakes by D_S and D_T;
    ``loss``: the host GAN's pair (``"ns"``: StyleGAN2 branch, ``"hinge"``: BigGAN branch).
    Relativistic losses also need each discriminator's scores on a real batch.
    """
    lam, pair = check_lambda(lam), get_loss(loss)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher must score the same fakes: shapes {tuple(student_logits.shape)} "
                         f"and {tuple(teacher_logits.shape)}")
    student = pair.g(student_logits, student_real_logits)
    if lam == 0:
        return student
    return student + lam * pair.g(teacher_logits, teacher_real_logits)


class DGLTrainer(Trainer):
    """:class:`~ganlib.training.Trainer` whose generator step adds the frozen teacher's term
    (``L_{G_S} = ℓ_G(D_S(G_S(z))) + λ ℓ_G(D_T(G_S(z)))``, Tian et al., arXiv 2112.06502).

    Args (beyond :class:`Trainer`'s):
        teacher: the teacher discriminator D_T, frozen with :func:`freeze_teacher` (refused otherwise).
        lam: λ (default 0.1, the paper's); 0 is a plain Trainer step (stage 1, baseline).
        monitor_teacher: with λ = 0, still score the fakes with D_T (no gradient) for the history
            (off by default: it costs a teacher forward pass per step).

    The D_S step is the host GAN's, unchanged. ``history`` gains :data:`DGL_KEYS`: the two terms
    of the generator loss and D_T's mean score on the fakes (NaN where not computed).
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, source, config: TrainConfig,
                 teacher: nn.Module, lam: float = PAPER_LAMBDA, monitor_teacher: bool = False,
                 d_penalty: Callable | None = None, d_after_step: Callable | None = None,
                 callbacks: Sequence[Callable] = ()):
        check_teacher(teacher, generator, discriminator)
        super().__init__(generator, discriminator, source, config, d_penalty=d_penalty, d_after_step=d_after_step,
                         callbacks=callbacks)
        self.teacher = teacher
        self.lam = lam
        self.monitor_teacher = bool(monitor_teacher)
        self.history.update({k: [] for k in DGL_KEYS})
        self._dgl_pending: list[torch.Tensor] = []

    @property
    def lam(self) -> float:
        return self._lam

    @lam.setter
    def lam(self, value) -> None:
        self._lam = check_lambda(value)

    def g_step(self, batch_size: int) -> dict[str, torch.Tensor]:
        use_teacher = self._lam > 0
        self.D.requires_grad_(False)
        try:
            with self.autocast():
                fake = self.fake_batch(batch_size)
                fake_logits = self.D(fake)
                real = self.real_batch(batch_size) if self.loss.g_needs_real else None
                real_logits = self.D(real) if real is not None else None
                t_fake = t_real = None
                if use_teacher:
                    t_fake = self.teacher(fake)                    # not detached: G_S learns through D_T
                elif self.monitor_teacher:
                    with torch.no_grad():
                        t_fake = self.teacher(fake.detach())
                if t_fake is not None and real is not None:
                    with torch.no_grad():
                        t_real = self.teacher(real)
            student = self.loss.g(fake_logits.float(), None if real_logits is None else real_logits.float())
            loss = student
            if t_fake is not None:
                teacher_term = self.loss.g(t_fake.float(), None if t_real is None else t_real.float())
                if use_teacher:
                    loss = student + self._lam * teacher_term
            grad_norm = descend(self.opt_g, loss, self.G.parameters())
        finally:
            self.D.requires_grad_(True)
        nan = student.detach().new_full((), float("nan"))
        extra = (student.detach(), nan if t_fake is None else teacher_term.detach(),
                 nan if t_fake is None else t_fake.detach().float().mean())
        self._dgl_pending.append(torch.stack([e.float().reshape(()) for e in extra]))
        return {"g_loss": loss.detach(), "grad_norm_g": grad_norm}

    def _flush(self) -> None:
        if self._dgl_pending:
            rows = torch.stack(self._dgl_pending).cpu()
            self._dgl_pending = []
            for j, key in enumerate(DGL_KEYS):
                self.history[key].extend(rows[:, j].tolist())
        super()._flush()

    def branch(self, lam: float, fresh_optimizers: bool = True, checkpoint_dir: str | None = None) -> "DGLTrainer":
        """A copy of this run that continues from the current weights with teacher weight ``lam``.

        Stage 2 is ``stage1.branch(0.1)``, the fair baseline ``stage1.branch(0.0)``: both copy the
        networks, the EMA generator, the step count, the history and the noise/data RNG states (so
        the two continuations see the same batches) and, as the paper's stage 2, start fresh Adam
        states (``fresh_optimizers=False`` copies them instead). The teacher is shared, not copied.
        """
        lam = check_lambda(lam)
        config = dataclasses.replace(self.config, checkpoint_dir=checkpoint_dir)
        self._flush()
        G, D = copy.deepcopy(self.G), copy.deepcopy(self.D)
        new = DGLTrainer(G, D, self.source, config, self.teacher, lam=lam, monitor_teacher=self.monitor_teacher,
                         d_penalty=self.d_penalty, d_after_step=self.d_after_step, callbacks=self.callbacks)
        if self.G_ema is not None:
            new.G_ema.load_state_dict(self.G_ema.state_dict())
        if not fresh_optimizers:
            new.opt_g.load_state_dict(self.opt_g.state_dict())
            new.opt_d.load_state_dict(self.opt_d.state_dict())
        new.noise_rng.set_state(self.noise_rng.get_state())
        new.data_rng.set_state(self.data_rng.get_state())
        new.fixed_noise = self.fixed_noise.clone()
        new.step, new.elapsed = self.step, self.elapsed
        new.history = copy.deepcopy(self.history)
        new.snapshots = list(self.snapshots)
        return new

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["dgl"] = {"lam": self._lam, "monitor_teacher": self.monitor_teacher}
        return state

    def extra_resume_settings(self, path, state: dict) -> dict[str, tuple]:
        """λ must match the checkpoint's (the teacher is not stored: pass the same one)."""
        saved = state.get("dgl")
        if not isinstance(saved, dict) or "lam" not in saved:
            raise CheckpointError(f"{path} was written by a plain Trainer, not a DGLTrainer; use another "
                                  "checkpoint_dir")
        return {"lam": (saved["lam"], self._lam)}


@dataclasses.dataclass(eq=False)
class DGL(Standard):
    """DGL-GAN's generator step as a population scheme (Eq. 3 of the paper, per member):
    ``L_{G_S} = L_G(D_S(G_S(z))) + λ L_G(D_T(G_S(z)))`` with the frozen ``teacher`` D_T shared by
    all members; the student discriminators train as in :class:`Standard` (penalty, clipping,
    spectral norm allowed). Arms may differ in ``lam``; ``teacher``, ``monitor_teacher`` and the
    loss are shared. History gains :data:`DGL_KEYS` (NaN where not computed)."""

    teacher: nn.Module | None = None
    lam: float = PAPER_LAMBDA
    monitor_teacher: bool = False
    keys = DGL_KEYS

    def __post_init__(self):
        super().__post_init__()
        self.lam = check_lambda(self.lam)
        if self.teacher is None and (self.lam > 0 or self.monitor_teacher):
            raise ValueError("DGL with λ > 0 (or monitor_teacher) needs the frozen teacher discriminator: pass "
                             "teacher=D_T (DGLSeedBatch(..., teacher=D_T) or branch(lams, teacher=D_T)); only "
                             "a stage-1 arm (λ = 0) may leave it out")

    def bind(self, pop, arms):
        for field in ("teacher", "monitor_teacher", "loss"):
            _same(arms, field)
        bound = super().bind(pop, arms)
        if self.teacher is not None:
            check_teacher(self.teacher, pop.G.export(0))
        bound.set_lams(pop, pop.per_member(lambda arm: arm.lam))
        return bound

    def set_lams(self, pop, values: list[float]) -> None:
        self.lam_values = [check_lambda(v) for v in values]
        self.lams = torch.tensor(self.lam_values, dtype=torch.float32, device=pop.device)

    def _teacher(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher(x.flatten(0, 1)).reshape(x.shape[:2])

    def g_losses(self, pop, z) -> dict:
        use_teacher = max(self.lam_values) > 0
        fake = pop.G(z)
        fake_logits = pop.D(fake)
        real_logits = t_real = t_fake = None
        real = self.real_for_g(pop, z.shape[1])
        if real is not None:
            with torch.no_grad():
                real_logits = pop.D(real)
        student = self._g(fake_logits, real_logits)                      # [P]
        losses = student
        if use_teacher or self.monitor_teacher:
            with torch.set_grad_enabled(use_teacher):
                t_fake = self._teacher(fake if use_teacher else fake.detach())   # G_S learns through D_T
            if real is not None:
                with torch.no_grad():
                    t_real = self._teacher(real)
            teacher_term = self._g(t_fake, t_real)
            if use_teacher:
                losses = student + self.lams * teacher_term
        nan = torch.full_like(student, float("nan")).detach()
        return {"objective": losses.sum(), "g_loss": losses.detach(), "g_student": student.detach(),
                "g_teacher": nan if t_fake is None else teacher_term.detach(),
                "t_fake": nan if t_fake is None else t_fake.detach().mean(1)}


def _lam_arms(teacher, lams: Sequence[float], monitor_teacher: bool, penalty) -> dict:
    return {f"lam={v}": DGL(penalty=penalty, teacher=teacher, lam=v, monitor_teacher=monitor_teacher)
            for v in dict.fromkeys(lams)}


class DGLSeedBatch(PenalizedSeedBatch):
    """S student GANs trained as one stacked run (see :class:`~ganlib.training.batched.SeedBatch`)
    with DGL-GAN's generator step: a population of :class:`DGL` arms, one per distinct λ.

    ``lam``: one λ for all models or one per model. ``monitor_teacher`` logs the teacher term even
    at λ = 0. ``teacher=None`` is allowed when every λ is 0: stage 1 never reads D_T, so it can
    train before (or beside) the teacher, and :meth:`branch` brings the teacher in for stage 2.
    The student discriminators are trained on ``D_S``'s loss only; real batches and
    latent codes per model exactly as :class:`SeedBatch` draws them (so λ = 0 equals a
    :class:`PenalizedSeedBatch` bit for bit), the teacher scoring the same ``G_S(z)`` fakes. Gradient
    penalties and spectral-normalized student discriminators work as in :class:`PenalizedSeedBatch`.
    ``history`` gains :data:`DGL_KEYS` (lists of S floats; NaN where not computed).
    ``config.ema_decay`` keeps an EMA of every generator (the paper compares EMA generators):
    ``sample(n, ema=True)``.
    """

    def __init__(self, make_generator: Callable[[], nn.Module], make_discriminator: Callable[[], nn.Module],
                 source, config: TrainConfig, seeds: Sequence[int], teacher: nn.Module | None,
                 lam: float | Sequence[float] = PAPER_LAMBDA, device=None, monitor_teacher: bool = False,
                 d_penalty: Callable | None = None):
        seeds = list(seeds)
        lams = self._lams(lam, len(seeds))
        self.clip = None
        Population.__init__(self, make_generator, make_discriminator, source, config,
                            arms=_lam_arms(teacher, lams, monitor_teacher, d_penalty),
                            members=[(f"lam={v}", s) for v, s in zip(lams, seeds)], device=device or "cpu")

    @staticmethod
    def _lams(lam, n: int) -> list[float]:
        values = [check_lambda(lam)] * n if isinstance(lam, (int, float)) else [check_lambda(v) for v in lam]
        if len(values) != n:
            raise ValueError(f"lam names one λ per model: got {len(values)} values for {n} models")
        return values

    @property
    def teacher(self) -> nn.Module | None:
        return self.scheme.teacher

    @property
    def monitor_teacher(self) -> bool:
        return self.scheme.monitor_teacher

    @property
    def lam_values(self) -> list[float]:
        return self.scheme.lam_values

    @property
    def lams(self) -> torch.Tensor:
        return self.scheme.lams

    def set_lam(self, lam: float | Sequence[float]) -> None:
        """λ for every model (a number) or per model (a sequence of ``n_models`` numbers)."""
        self.scheme.set_lams(self, self._lams(lam, self.n_models))

    def branch(self, lams: Sequence[float], teacher: nn.Module | None = None) -> "DGLSeedBatch":
        """``len(lams) x S`` models continuing the current S from their current weights: arm ``a``
        (models ``a*S .. a*S+S-1``, in seed order) uses λ = ``lams[a]``. Fresh Adam states (the
        paper's stage 2), copied RNG states (every arm of a seed sees the same batches) and EMA
        weights, a new history; the step count continues. ``teacher`` (frozen) replaces this
        batch's teacher, e.g. for a stage 1 trained without one."""
        if isinstance(lams, (int, float)):
            lams = [lams]
        lams = [check_lambda(v) for v in lams]
        if not lams:
            raise ValueError("lams must name at least one arm")
        if len(set(lams)) != len(lams):
            raise ValueError(f"branch takes distinct λ values, got {lams}")
        teacher = self.teacher if teacher is None else teacher
        return super().branch(_lam_arms(teacher, lams, self.monitor_teacher, self.d_penalty))


def two_stage(stage1: DGLTrainer | DGLSeedBatch, stage1_steps: int, stage2_steps: int,
              lam: float = PAPER_LAMBDA, baseline: bool = True):
    """The paper's schedule: ``stage1`` (λ = 0, from scratch) to ``stage1_steps``, then from those
    weights with fresh Adam states λ = ``lam`` for ``stage2_steps`` more, and (``baseline``) the
    fair baseline λ = 0 for the same steps.

    A :class:`DGLTrainer` gives ``{"stage1": it, "dgl": ..., "baseline": ...}``; a
    :class:`DGLSeedBatch` gives ``{"stage1": it, "stage2": batch}`` with the baseline arm first
    (models ``0..S-1``) and the DGL arm second.
    """
    lam = check_lambda(lam)
    for name, value in (("stage1_steps", stage1_steps), ("stage2_steps", stage2_steps)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    lams = [stage1.lam] if isinstance(stage1, DGLTrainer) else stage1.lam_values
    if any(v != 0 for v in lams):
        raise ValueError("stage 1 trains without the teacher: build it with lam=0")
    if stage1.step != 0:
        raise ValueError(f"stage 1 starts from scratch, but this run is at step {stage1.step}")
    stage1.fit(stage1_steps)
    end = stage1_steps + stage2_steps
    if isinstance(stage1, DGLTrainer):
        out = {"stage1": stage1, "dgl": stage1.branch(lam)}
        if baseline:
            out["baseline"] = stage1.branch(0.0)
            out["baseline"].fit(end)
        out["dgl"].fit(end)
        return out
    stage2 = stage1.branch([0.0, lam] if baseline else [lam])
    stage2.fit(end)
    return {"stage1": stage1, "stage2": stage2}


# --- how much smaller: parameters and multiply-accumulates ----------------------------------------

def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Exact number of parameters (spectral norm's ``original`` weight counts once, its ``u``/``v``
    are buffers and do not count)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def count_macs(module: nn.Module, example_input: torch.Tensor) -> int:
    """Multiply-accumulates per sample of one forward pass of ``module`` on ``example_input``.

    Convention: one MAC per weight use in ``Linear`` (in x out), ``Conv`` (in/groups x k x k per
    output value) and ``ConvTranspose`` layers, the transposed convolution counted at its **input**
    resolution (each input value scatters into out/groups x k x k outputs; the convention of
    CAGAN's StyleGAN2 FLOP counts). Biases, activations, normalisation and matrix products outside
    these layers (self-attention's) are not counted.
    """
    if not isinstance(example_input, torch.Tensor) or example_input.ndim < 1 or len(example_input) < 1:
        raise ValueError("example_input must be a batch tensor [n, ...] with n >= 1")
    total = [0]

    def hook(layer, inputs, output):
        x = inputs[0]
        n = x.shape[0]
        if isinstance(layer, nn.Linear):
            total[0] += output.numel() // n * layer.in_features
        elif isinstance(layer, nn.modules.conv._ConvTransposeNd):
            k = math.prod(layer.kernel_size)
            total[0] += x.numel() // n * (layer.out_channels // layer.groups) * k
        else:
            k = math.prod(layer.kernel_size)
            total[0] += output.numel() // n * (layer.in_channels // layer.groups) * k

    kinds = (nn.Linear, nn.modules.conv._ConvNd)
    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, kinds)]
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(example_input)
    finally:
        module.train(was_training)
        for h in handles:
            h.remove()
    return total[0]
