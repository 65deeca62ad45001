"""Several seeds at once (:class:`~ganlib.training.batched.SeedBatch`) with Lipschitz constraints
(gradient penalties, spectral normalization) and, optionally, a different loss per model.

:class:`SeedBatch` runs S models through ``torch.func.vmap``. Two Lipschitz tools need more
than that:

* **gradient penalties** (``ganlib.regularizers``) need per-sample input gradients. The S
  models are independent, so the gradient of the summed critic output with respect to a
  ``[S * n, ...]`` batch holds every model's own per-sample gradients; a penalty computed on
  that flat batch (a mean over ``S * n`` samples) times S is the sum of the S models' penalties.
* **spectral normalization**: PyTorch's parametrization cannot run under ``vmap`` (it updates
  its power-iteration vectors with ``out=``). Here the same rule runs on the stacked weights
  (one power iteration per forward, ``u`` and ``v`` constants in the backward pass, conv
  kernels flattened to ``[out, in*k*k]``), exactly what ``torch.nn.utils.parametrizations
  .spectral_norm`` does for each model alone (tests compare the two).

``losses=[...]`` gives each model its own loss (e.g. five losses x three seeds in one run):
every loss is applied, through ``vmap``, to the models that use it, so a model trains
exactly as it would alone. Comparing losses this way costs one vmapped run instead of one
run per loss, which is what makes loss comparisons over several seeds fit a CPU budget.
"""

from __future__ import annotations

from typing import Callable, Sequence

from torch import nn

from .batched import SeedBatch
from .population import Population, Standard
from .population.schemes import _FlatCritic  # noqa: F401  (re-exported)
from .population.stack import _spectral_norm_entries, stacked_spectral_norm  # noqa: F401  (re-exported)
from .trainer import TrainConfig


class PenalizedSeedBatch(SeedBatch):
    """:class:`SeedBatch` plus an optional gradient penalty and spectral-normalized discriminators.

    Args (beyond :class:`SeedBatch`'s):
        d_penalty: a penalty of ``ganlib.regularizers`` (``GradientPenalty()``, ``DRAGANPenalty()``,
            ``R1Penalty()``) or any ``f(critic, real, fake) -> scalar`` averaging per-sample terms.
        losses: optional loss name per model (``len(seeds)`` names); overrides ``config.loss``.
            The optimizer settings, ``n_critic``, penalty and clipping stay shared; every model
            draws exactly the batches of its solo run.

    Discriminators built with ``spectral_norm=True`` are normalized per model automatically.
    ``history["d_loss"]`` holds each model's adversarial loss **without** the penalty (for WGAN
    critics, minus the critic's Earth-Mover estimate). The DRAGAN perturbation scale
    ``std(x)`` is taken over all S models' real batches together (same distribution).
    A one-arm-per-loss :class:`~ganlib.training.population.Population` with ``Standard`` arms.
    """

    def __init__(self, make_generator: Callable[[], nn.Module], make_discriminator: Callable[[], nn.Module],
                 source, config: TrainConfig, seeds: Sequence[int], device=None,
                 clip_weights: float | None = None, d_penalty: Callable | None = None,
                 losses: Sequence[str] | None = None):
        seeds = list(seeds)
        if losses is None:
            super().__init__(make_generator, make_discriminator, source, config, seeds, device=device,
                             clip_weights=clip_weights, scheme=Standard(penalty=d_penalty, clip=clip_weights))
            return
        losses = list(losses)
        if len(losses) != len(seeds):
            raise ValueError(f"losses names one loss per model: got {len(losses)} names for {len(seeds)} seeds")
        if clip_weights is not None and not clip_weights > 0:
            raise ValueError(f"clip_weights must be positive, got {clip_weights}")
        self.clip = clip_weights
        arms = {name: Standard(name, d_penalty, clip_weights) for name in dict.fromkeys(losses)}
        Population.__init__(self, make_generator, make_discriminator, source, config, arms=arms,
                            members=list(zip(losses, seeds)), device=device or "cpu")
        self.model_losses = losses

    @property
    def d_penalty(self):
        return self.scheme.penalty
