"""Progressive growing (Karras et al., ICLR 2018): the stage / fade-in schedule and its trainer.

Schedule (the official ``TrainingSchedule`` in ``train.py``, counted in steps instead of
thousands of images): the run starts at 4x4 and, for every further resolution, alternates

    stabilize (``stabilize_steps``, α = 1)  →  fade in the next block (``fade_steps``, α: 0 → 1)

ending with the last resolution stabilizing for as long as the run lasts. During a fade-in
the real images get the same blend as the generator's output: at resolution ``r`` they are
``(1-α)·upsample(avgpool(x_r)) + α·x_r`` (the official ``process_reals``), where ``x_r`` is the
data box-filtered (average-pooled) down to ``r``.

The paper shows 800k real images per stabilization and per fade-in (600k in the repository's
v2 presets); with one D step per G step and batch ``b`` that is ``800_000 / b`` steps.

Loss (official ``loss.py``): WGAN-GP, λ = 10, plus the drift term ``ε_drift·E[D(x)²]`` with
ε_drift = 0.001 (paper §A.1) that keeps the critic's scores from drifting away from 0.
Optimizer: Adam lr 1e-3, β = (0, 0.99), ε = 1e-8, one D step per G step, and the Adam state
is reset whenever a fade-in starts or ends (``reset_opt_for_new_lod=True`` in the official
``train.py``).

**Deviations:** the schedule is in optimizer steps at a fixed batch size (the paper changes the
minibatch size with resolution); the official code updates α every 4 minibatches
(``minibatch_repeats = 4``), here α is updated every step.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from ..losses import LossPair, get_loss
from ..models.progressive import downsample2x, upsample2x
from ..regularizers import GradientPenalty
from ..validation import as_float, as_int
from .trainer import TrainConfig, Trainer

__all__ = ["ProgressiveConfig", "ProgressiveTrainer", "progressive_schedule", "progressive_total_steps",
           "count_step_flops", "schedule_flops", "drift_loss"]


def progressive_schedule(step: int, n_stages: int, stabilize_steps: int, fade_steps: int) -> tuple[int, float]:
    """``(stage, alpha)`` of training step ``step`` (0-based).

    Stage 0 (4x4) stabilizes for ``stabilize_steps``; then each later stage fades in for
    ``fade_steps`` (α = t / fade_steps at the t-th step of the fade) and stabilizes for
    ``stabilize_steps`` (α = 1); the last stage keeps α = 1 forever.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if n_stages < 1 or stabilize_steps < 0 or fade_steps < 0 or stabilize_steps + fade_steps == 0:
        raise ValueError("need n_stages >= 1, stabilize_steps >= 0, fade_steps >= 0, and a positive phase length")
    phase = stabilize_steps + fade_steps
    idx, pos = divmod(step, phase)
    if idx >= n_stages - 1:                     # the last stage: stabilize until the end
        return n_stages - 1, 1.0
    if pos < stabilize_steps:
        return idx, 1.0
    return idx + 1, (pos - stabilize_steps) / fade_steps


def progressive_total_steps(n_stages: int, stabilize_steps: int, fade_steps: int) -> int:
    """Steps for the full schedule: every stage stabilizes once, every stage after 4x4 fades in once."""
    return n_stages * stabilize_steps + (n_stages - 1) * fade_steps


def drift_loss(loss: LossPair, epsilon: float = 1e-3) -> LossPair:
    """``loss`` with ProGAN's drift term ``ε·E[D(x_real)²]`` added to the discriminator side
    (Karras et al., 2018, §A.1: keeps WGAN critic scores near zero)."""
    d = loss.d

    def d_drift(real_logits, fake_logits):
        return d(real_logits, fake_logits) + epsilon * real_logits.square().mean()

    return LossPair(f"{loss.name}+drift", d_drift, loss.g, loss.g_needs_real)


@dataclass
class ProgressiveConfig(TrainConfig):
    """:class:`TrainConfig` with the schedule and ProGAN's defaults (Adam 1e-3, β = (0, 0.99),
    WGAN loss + drift ε = 0.001; the trainer adds the gradient penalty).

    ``steps`` defaults to 0, meaning "the full schedule" (:func:`progressive_total_steps`).
    ``grow=False`` trains the full-resolution networks from the first step with everything
    else unchanged: the baseline that Karras et al. (2018) compare growing against.
    """

    steps: int = 0
    lr_d: float = 1e-3
    lr_g: float = 1e-3
    betas_d: tuple = (0.0, 0.99)
    betas_g: tuple = (0.0, 0.99)
    loss: str = "wgan"
    stabilize_steps: int = 500
    fade_steps: int = 500
    drift: float = 1e-3
    reset_optimizers: bool = True
    grow: bool = True

    def __post_init__(self):
        self.stabilize_steps = as_int("stabilize_steps", self.stabilize_steps, low=0)
        self.fade_steps = as_int("fade_steps", self.fade_steps, low=0)
        self.drift = as_float("drift", self.drift, low=0)
        if self.stabilize_steps < 0 or self.fade_steps < 0 or self.stabilize_steps + self.fade_steps == 0:
            raise ValueError("stabilize_steps and fade_steps must be >= 0 and not both 0, got "
                             f"{self.stabilize_steps} and {self.fade_steps}")
        if self.drift < 0:
            raise ValueError(f"drift must be >= 0, got {self.drift}")
        full = self.steps == 0
        if full:
            self.steps = 1                      # placeholder for the parent's check; set by the trainer
        super().__post_init__()
        if full:
            self.steps = 0


def _is_growing(module) -> bool:
    return hasattr(module, "set_progress") and hasattr(module, "n_stages")


class ProgressiveTrainer(Trainer):
    """:class:`~ganlib.training.Trainer` for a :class:`~ganlib.models.ProgressiveGenerator` /
    :class:`~ganlib.models.ProgressiveDiscriminator` pair.

    ``d_penalty`` defaults to ``"wgan-gp"``: :class:`~ganlib.regularizers.GradientPenalty` with
    λ = 10, the paper's (pass ``None`` for no penalty, or any ``f(D, real, fake)``).
    ``source`` yields images at the networks' ``max_resolution``; every real batch is
    average-pooled to the current resolution and, during a fade-in, blended as the
    generator's output is. Before the first batch of each step the schedule sets
    ``(stage, alpha)`` on G, D and the EMA generator; it is a pure function of the step, so a
    run resumed from a checkpoint (even mid-fade) continues exactly.

    :meth:`sample` and :meth:`sample_fixed` return images nearest-upsampled to
    ``max_resolution`` (as the official code's output), so snapshots of all stages line up.
    """

    def __init__(self, generator, discriminator, source, config: ProgressiveConfig, d_penalty="wgan-gp",
                 d_after_step=None, callbacks=()):
        if not isinstance(config, ProgressiveConfig):
            raise TypeError("ProgressiveTrainer needs a ProgressiveConfig (it holds the growth schedule)")
        if not (_is_growing(generator) and _is_growing(discriminator)):
            raise TypeError("ProgressiveTrainer trains ProgressiveGenerator / ProgressiveDiscriminator pairs")
        if generator.n_stages != discriminator.n_stages:
            raise ValueError(f"generator grows to {generator.max_resolution}px but the discriminator to "
                             f"{discriminator.max_resolution}px; build both with the same max_resolution")
        if isinstance(d_penalty, str):
            if d_penalty != "wgan-gp":
                raise ValueError(f"d_penalty must be 'wgan-gp', None or a callable, got {d_penalty!r}")
            d_penalty = GradientPenalty(weight=10.0)
        self.n_stages, self.max_resolution = generator.n_stages, generator.max_resolution
        if config.steps == 0:
            config = dataclasses.replace(config, steps=progressive_total_steps(
                self.n_stages, config.stabilize_steps, config.fade_steps))
        super().__init__(generator, discriminator, source, config, d_penalty, d_after_step, callbacks)
        if config.drift:
            self.loss = drift_loss(get_loss(config.loss), config.drift)
        self._scheduled_step = None
        self.stage, self.alpha = 0, 1.0
        self._apply_schedule()

    # --- schedule ------------------------------------------------------------------------------
    def schedule(self, step: int) -> tuple[int, float]:
        cfg = self.config
        if not cfg.grow:
            return self.n_stages - 1, 1.0
        return progressive_schedule(step, self.n_stages, cfg.stabilize_steps, cfg.fade_steps)

    def _apply_schedule(self) -> None:
        """Set (stage, α) for ``self.step`` on every network; reset Adam at phase boundaries."""
        if self._scheduled_step == self.step:
            return
        stage, alpha = self.schedule(self.step)
        for net in (self.G, self.D, self.G_ema):
            if net is not None:
                net.set_progress(stage, alpha)
        if self.config.reset_optimizers and self.step > 0:
            prev_stage, prev_alpha = self.schedule(self.step - 1)
            if (stage, alpha < 1) != (prev_stage, prev_alpha < 1):   # a fade-in starts or ends
                self.opt_d.state.clear()
                self.opt_g.state.clear()
        self.stage, self.alpha = stage, alpha
        self._scheduled_step = self.step

    # --- data ----------------------------------------------------------------------------------
    def downsample_reals(self, x: torch.Tensor) -> torch.Tensor:
        """Real images at the current resolution, blended during a fade-in (``process_reals``)."""
        if x.ndim != 4 or x.shape[-1] != self.max_resolution or x.shape[-2] != self.max_resolution:
            raise ValueError(f"the source must yield [n, C, {self.max_resolution}, {self.max_resolution}] "
                             f"images (the networks' max_resolution), got {tuple(x.shape)}")
        factor = self.max_resolution // (4 * 2**self.stage)
        if factor > 1:
            x = F.avg_pool2d(x, factor)
        if self.stage > 0 and self.alpha < 1.0:
            x = torch.lerp(upsample2x(downsample2x(x)), x, self.alpha)
        return x

    def real_batch(self, n: int) -> torch.Tensor:
        self._apply_schedule()                  # first call of every step: the schedule moves here
        return self.downsample_reals(self.source.sample(n, self.data_rng))

    def g_step(self, batch_size: int):
        self._apply_schedule()
        return super().g_step(batch_size)

    # --- sampling at full size -----------------------------------------------------------------
    def _full_size(self, x: torch.Tensor) -> torch.Tensor:
        factor = self.max_resolution // x.shape[-1]
        return x if factor == 1 else F.interpolate(x, scale_factor=factor, mode="nearest")

    def sample(self, n: int, ema: bool = False, seed: int | None = None) -> torch.Tensor:
        self._apply_schedule()
        return self._full_size(super().sample(n, ema=ema, seed=seed))

    def sample_fixed(self, ema: bool = False) -> torch.Tensor:
        self._apply_schedule()
        return self._full_size(super().sample_fixed(ema=ema))

    # --- checkpoints ---------------------------------------------------------------------------
    def load(self, path, allow_changed=()) -> None:
        """:meth:`Trainer.load` (whose settings check covers the schedule: stabilize_steps, fade_steps,
        drift, grow, reset_optimizers), then the schedule of the loaded step is applied."""
        super().load(path, allow_changed=allow_changed)
        self._scheduled_step = None
        self._apply_schedule()


def count_step_flops(trainer: Trainer, step: int | None = None) -> int:
    """Matmul/convolution FLOPs of one training step (``n_critic`` D updates and one G update,
    forward and backward, penalties included) of ``trainer``, counted with torch's FLOP
    formulas (``torch.utils.flop_counter``) on a deep copy (the trainer is untouched).

    ``step`` picks the step to measure (it matters for a :class:`ProgressiveTrainer`, whose
    networks grow); default: the trainer's current step. Element-wise work (activations,
    normalization, pooling) is not counted.
    """
    clone = copy.deepcopy(trainer)
    if step is not None:
        clone.step = int(step)
    with _FlopCount() as counter:
        for _ in range(clone.config.n_critic):
            clone.d_step(clone.real_batch(clone.config.batch_size))
        clone.g_step(clone.config.batch_size)
    return counter.total


class _FlopCount(TorchDispatchMode):
    """Sums torch's registered FLOP formulas (matmul, conv, attention; forward and backward).

    :class:`torch.utils.flop_counter.FlopCounterMode` cannot be used here: its module hooks
    break ``torch.autograd.grad``, which gradient penalties call.
    """

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += int(formula(*args, **kwargs, out_val=out))
        return out


def schedule_flops(trainer: "ProgressiveTrainer", steps: int | None = None) -> dict:
    """FLOPs of the first ``steps`` steps (default: the configured run) of a progressive run.

    Returns ``{"total": int, "phases": [(stage, fading, n_steps, flops_per_step), ...]}``,
    one entry per stabilization / fade-in phase, each measured once with :func:`count_step_flops`.
    """
    steps = trainer.config.steps if steps is None else int(steps)
    phases: list[list] = []
    for t in range(steps):
        stage, alpha = trainer.schedule(t)
        key = (stage, alpha < 1.0)
        if phases and tuple(phases[-1][:2]) == key:
            phases[-1][2] += 1
        else:
            phases.append([stage, alpha < 1.0, 1, t])
    out, total = [], 0
    for stage, fading, n, first in phases:
        f = count_step_flops(trainer, step=first)
        out.append((stage, fading, n, f))
        total += n * f
    return {"total": total, "phases": out}
