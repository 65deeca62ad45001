"""Lipschitz regularizers for discriminators (critics): penalties and weight clipping.

Every penalty says *where* it looks at the critic's input gradient, because that is
what distinguishes them:

=====================  ==============================================  =========================
function               evaluated at                                    penalises
=====================  ==============================================  =========================
``gradient_penalty``   random interpolates between real and fake       ``(‖∇C‖ - 1)²``  (WGAN-GP)
``dragan_penalty``     random points near the real data                ``(‖∇C‖ - k)²``  (DRAGAN)
``r1_penalty``         the real data itself                            ``‖∇C‖²``        (R1)
=====================  ==============================================  =========================

Gradient norms are taken per sample over all non-batch dimensions (a 1x8x8 image is
one 64-vector) and averaged over the batch. The penalties are built with
``create_graph=True`` so that their gradient reaches the critic's weights.

The classes (:class:`GradientPenalty`, :class:`DRAGANPenalty`, :class:`R1Penalty`,
:class:`WeightClipper`) validate their hyperparameters once and plug into
``Trainer(d_penalty=..., d_after_step=...)``. Randomness (interpolation and
perturbation) uses the global torch RNG unless a ``torch.Generator`` is given; the
Trainer checkpoints the global RNG, so a resumed run draws the same points.
"""

from __future__ import annotations


import torch
from torch import nn

from .validation import as_float

__all__ = [
    "gradient_penalty", "dragan_penalty", "r1_penalty", "clip_weights", "input_gradients",
    "GradientPenalty", "DRAGANPenalty", "R1Penalty", "WeightClipper",
]


# --- checks ------------------------------------------------------------------------------------

def _non_negative(name: str, value: float) -> float:
    try:
        return as_float(name, value, low=0)          # numbers given as strings are parsed
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}") from None


def _positive(name: str, value: float) -> float:
    try:
        return as_float(name, value, low=0, low_open=True)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}") from None


def _check_critic(critic) -> None:
    """Refuse critics with BatchNorm in training mode (plain callables pass: nothing to inspect)."""
    if not callable(critic):
        raise TypeError(f"critic must be a module or callable returning one score per sample, got "
                        f"{type(critic).__name__}")
    for m in (critic.modules() if isinstance(critic, nn.Module) else ()):
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            raise ValueError(
                "gradient penalties need a critic without BatchNorm: BatchNorm mixes the samples of a "
                "batch, so the per-sample input gradient is not defined. Build the critic with "
                "norm='none' or norm='layer' (see Gulrajani et al. 2017, §4)."
            )


def _check_batch(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or len(x) == 0:
        raise ValueError(f"{name} must be a non-empty batch of shape [n, ...], got "
                         f"{getattr(x, 'shape', type(x))}")


def _uniform(n: int, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """``n`` draws of U[0, 1) shaped ``[n, 1, ..., 1]`` to broadcast over ``like``."""
    shape = (n,) + (1,) * (like.ndim - 1)
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


# --- the shared piece: per-sample input gradients -----------------------------------------------

def input_gradients(critic: nn.Module, x: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
    r"""``∇_x C(x)`` for every sample of ``x`` (same shape as ``x``).

    Samples do not interact in a critic without BatchNorm, so the gradient of
    ``C(x).sum()`` with respect to the batch holds each sample's own gradient. For a
    critic with several outputs the gradient is that of their sum. ``x`` is detached
    first: the penalty acts on the critic's weights, not on whatever produced ``x``.
    """
    x = x.detach().requires_grad_(True)
    out = critic(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=create_graph)
    return grad


def _norms(grad: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(grad.flatten(1), dim=1)


# --- WGAN-GP -----------------------------------------------------------------------------------

def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, weight: float = 10.0,
                     target: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""WGAN-GP penalty (Gulrajani et al., 2017, Eq. 3 and Algorithm 1, λ = 10):

    .. math:: \lambda\,\mathbb{E}_{\hat x}\big[(\lVert\nabla_{\hat x} C(\hat x)\rVert_2 - 1)^2\big],
              \qquad \hat x = \epsilon x_r + (1-\epsilon) x_f,\ \epsilon \sim U[0, 1]

    with one ε per sample, so each :math:`\hat x` lies on the segment between a real
    sample and the fake sample it is paired with. ``target`` is the "1" (the Lipschitz
    constant the critic should have along those segments).
    """
    _non_negative("weight (lambda)", weight)
    _non_negative("target", target)
    _check_batch(real, "real")
    if not isinstance(fake, torch.Tensor) or fake.shape != real.shape:
        raise ValueError("gradient_penalty pairs each real sample with a fake one: real and fake must have the "
                         f"same shape, got {tuple(real.shape)} and {tuple(getattr(fake, 'shape', ()))}")
    _check_critic(critic)
    eps = _uniform(len(real), real, generator)
    x_hat = eps * real.detach() + (1 - eps) * fake.detach()
    norms = _norms(input_gradients(critic, x_hat))
    return weight * (norms - target).square().mean()


# --- DRAGAN ------------------------------------------------------------------------------------

def dragan_penalty(critic: nn.Module, real: torch.Tensor, weight: float = 10.0, k: float = 1.0,
                   c: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""DRAGAN penalty (Kodali et al., 2017): :math:`\lambda\,\mathbb{E}[(\lVert\nabla C(\tilde x)\rVert - k)^2]`
    at points :math:`\tilde x` near the *real* data only.

    The paper writes :math:`\tilde x = x + \delta`, :math:`\delta \sim N(0, cI)`. This
    follows the authors' released code instead, which almost every implementation
    copies (``get_perturbed_batch``)::

        x_p   = x + c * std(x) * u,   u ~ U[0, 1]^shape(x)   (std of the whole minibatch)
        x~    = x + a * (x_p - x),    a ~ U[0, 1] per sample

    with ``c = 0.5``, ``k = 1``, ``λ = 10``. **Deviation from the paper**: the perturbation
    is one-sided (U[0, 1], not centred) and its scale is 0.5 std of the batch, as in the
    released code, not :math:`N(0, cI)`.
    """
    _non_negative("weight (lambda)", weight)
    _non_negative("k", k)
    _positive("c", c)
    _check_batch(real, "real")
    _check_critic(critic)
    real = real.detach()
    device = generator.device if generator is not None else real.device
    u = torch.rand(real.shape, generator=generator, device=device, dtype=real.dtype).to(real.device)
    perturbed = real + c * real.std() * u
    alpha = _uniform(len(real), real, generator)
    x_tilde = real + alpha * (perturbed - real)
    norms = _norms(input_gradients(critic, x_tilde))
    return weight * (norms - k).square().mean()


# --- R1 ----------------------------------------------------------------------------------------

def r1_penalty(critic: nn.Module, real: torch.Tensor, gamma: float = 10.0) -> torch.Tensor:
    r"""R1 regularizer (Mescheder, Geiger & Nowozin, 2018, Eq. 9):

    .. math:: R_1 = \frac{\gamma}{2}\,\mathbb{E}_{x\sim p_{data}}\big[\lVert\nabla_x D(x)\rVert^2\big]

    zero-centred and on real data only: it pushes the discriminator to be flat on the
    data manifold, so that at equilibrium the generator feels no gradient. Note the ½:
    the authors' code (``GAN_stability``) computes ``reg_param * E[‖∇D‖²]`` without it,
    so its ``reg_param = 10`` equals ``gamma = 20`` here.
    """
    _non_negative("gamma", gamma)
    _check_batch(real, "real")
    _check_critic(critic)
    grad = input_gradients(critic, real)
    return 0.5 * gamma * grad.flatten(1).square().sum(dim=1).mean()


# --- WGAN weight clipping ----------------------------------------------------------------------

@torch.no_grad()
def clip_weights(module: nn.Module, c: float = 0.01) -> None:
    """Clamp every parameter of ``module`` to ``[-c, c]`` in place (Arjovsky et al., 2017,
    Algorithm 1, line 7: ``w ← clip(w, -c, c)`` after every critic update; ``c = 0.01``).

    Like the reference code (``for p in netD.parameters(): p.data.clamp_(-c, c)``) this
    clips *all* parameters, biases included.
    """
    _positive("c (clip value)", c)
    params = [p for p in module.parameters()]
    if params:
        torch._foreach_clamp_min_(params, -c)
        torch._foreach_clamp_max_(params, c)


# --- callables for Trainer(d_penalty=..., d_after_step=...) -------------------------------------

class GradientPenalty:
    """``d_penalty`` for the Trainer: :func:`gradient_penalty` with fixed hyperparameters."""

    def __init__(self, weight: float = 10.0, target: float = 1.0, generator: torch.Generator | None = None):
        self.weight = _non_negative("weight (lambda)", weight)
        self.target = _non_negative("target", target)
        self.generator = generator

    def __call__(self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return gradient_penalty(critic, real, fake, self.weight, self.target, self.generator)

    def __repr__(self) -> str:
        return f"GradientPenalty(weight={self.weight}, target={self.target})"


class DRAGANPenalty:
    """``d_penalty`` for the Trainer: :func:`dragan_penalty` (the fake batch is ignored)."""

    def __init__(self, weight: float = 10.0, k: float = 1.0, c: float = 0.5,
                 generator: torch.Generator | None = None):
        self.weight = _non_negative("weight (lambda)", weight)
        self.k = _non_negative("k", k)
        self.c = _positive("c", c)
        self.generator = generator

    def __call__(self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor | None = None) -> torch.Tensor:
        return dragan_penalty(critic, real, self.weight, self.k, self.c, self.generator)

    def __repr__(self) -> str:
        return f"DRAGANPenalty(weight={self.weight}, k={self.k}, c={self.c})"


class R1Penalty:
    """``d_penalty`` for the Trainer: :func:`r1_penalty` (the fake batch is ignored)."""

    def __init__(self, gamma: float = 10.0):
        self.gamma = _non_negative("gamma", gamma)

    def __call__(self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor | None = None) -> torch.Tensor:
        return r1_penalty(critic, real, self.gamma)

    def __repr__(self) -> str:
        return f"R1Penalty(gamma={self.gamma})"


class WeightClipper:
    """``d_after_step`` for the Trainer: :func:`clip_weights` with clip value ``c``."""

    def __init__(self, c: float = 0.01):
        self.c = _positive("c (clip value)", c)

    def __call__(self, module: nn.Module) -> None:
        clip_weights(module, self.c)

    def __repr__(self) -> str:
        return f"WeightClipper(c={self.c})"
