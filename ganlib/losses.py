"""GAN losses as pure functions on raw discriminator outputs (logits or critic scores).

Conventions (StudioGAN-style pairs):

* ``d_NAME(real_logits, fake_logits)`` is the discriminator's loss, to be minimised;
* ``g_NAME(fake_logits, real_logits=None)`` is the generator's loss, to be minimised;
  only the relativistic losses use ``real_logits``.

Every loss averages over the batch. ``get_loss(name)`` returns the pair.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F


def _check(*tensors: torch.Tensor) -> None:
    """Called as ``_check(real_logits, fake_logits)`` or ``_check(fake_logits)``."""
    names = ("real_logits", "fake_logits") if len(tensors) == 2 else ("fake_logits",)
    for name, t in zip(names, tensors):
        if t is not None and not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of scores [n], got {type(t).__name__}")
        if t is not None and t.ndim != 1:
            raise ValueError(f"losses take one score per sample: {name} must have shape [n], got {tuple(t.shape)}")


# --- Original GAN (Goodfellow et al., 2014, Eq. 1) ---------------------------------------------

def d_minimax(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    r"""Discriminator side of :math:`\min_G\max_D\ \mathbb{E}\log D(x) + \mathbb{E}\log(1-D(G(z)))`.

    With ``D = sigmoid(logit)``: ``-log D(x) = softplus(-l_real)`` and
    ``-log(1 - D(G(z))) = softplus(l_fake)`` (numerically stable forms).
    """
    _check(real_logits, fake_logits)
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_minimax(fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
    r"""Generator side of the original (saturating) game: minimise :math:`\mathbb{E}\log(1-D(G(z)))`.

    ``log(1 - sigmoid(l)) = -softplus(l)``. Its gradient vanishes when D confidently
    rejects the fakes, which is why Goodfellow et al. propose the non-saturating loss.
    """
    _check(fake_logits)
    return -F.softplus(fake_logits).mean()


def d_ns(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating GAN's discriminator loss is the minimax one (binary cross-entropy)."""
    return d_minimax(real_logits, fake_logits)


def g_ns(fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
    r"""Non-saturating generator loss (Goodfellow et al., 2014, §3): minimise :math:`-\mathbb{E}\log D(G(z))`,
    i.e. ``softplus(-l_fake)``."""
    _check(fake_logits)
    return F.softplus(-fake_logits).mean()


# --- WGAN (Arjovsky, Chintala & Bottou, 2017, Algorithm 1) ---------------------------------

def d_wgan(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    r"""Critic loss of WGAN: minimise :math:`\mathbb{E}[f(G(z))] - \mathbb{E}[f(x)]`.

    The critic ``f`` outputs raw, unbounded scores (no sigmoid). Its negative,
    :math:`\mathbb{E}f(x) - \mathbb{E}f(G(z))`, estimates the Earth-Mover distance
    (up to the Lipschitz constant) only while ``f`` is kept Lipschitz: pair it with
    weight clipping, a gradient penalty or spectral normalization (``ganlib.regularizers``).
    """
    _check(real_logits, fake_logits)
    return fake_logits.mean() - real_logits.mean()


def g_wgan(fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
    r"""Generator loss of WGAN: minimise :math:`-\mathbb{E}[f(G(z))]`."""
    _check(fake_logits)
    return -fake_logits.mean()


# --- LSGAN (Mao et al., 2017, Eq. 2) ---------------------------------------------------------

def d_lsgan(real_logits: torch.Tensor, fake_logits: torch.Tensor, a: float = 0.0, b: float = 1.0) -> torch.Tensor:
    r"""Least-squares discriminator loss
    :math:`\tfrac12\mathbb{E}[(D(x)-b)^2] + \tfrac12\mathbb{E}[(D(G(z))-a)^2]`.

    ``a`` is the target for fakes, ``b`` for reals. The default is the paper's 0-1
    coding (Eq. 9, ``a=0, b=1, c=1``, used in its experiments); ``a=-1, b=1, c=0``
    (Eq. 8) makes the game minimise the Pearson :math:`\chi^2` divergence.
    ``D`` is the raw output (no sigmoid).
    """
    _check(real_logits, fake_logits)
    return 0.5 * (real_logits - b).square().mean() + 0.5 * (fake_logits - a).square().mean()


def g_lsgan(fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None, c: float = 1.0) -> torch.Tensor:
    r"""Least-squares generator loss :math:`\tfrac12\mathbb{E}[(D(G(z))-c)^2]` (``c``: the value
    G wants D to believe for fakes; 1 in the 0-1 coding)."""
    _check(fake_logits)
    return 0.5 * (fake_logits - c).square().mean()


# --- Hinge loss (Lim & Ye, 2017; used by SNGAN, SAGAN and BigGAN) ----------------------------

def d_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    r"""Hinge discriminator loss :math:`\mathbb{E}[\max(0, 1-D(x))] + \mathbb{E}[\max(0, 1+D(G(z)))]`.

    Scores beyond the margin (real > 1, fake < -1) contribute no gradient.
    """
    _check(real_logits, fake_logits)
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def g_hinge(fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
    r"""Generator loss of the hinge GAN: :math:`-\mathbb{E}[D(G(z))]` (the same as WGAN's)."""
    _check(fake_logits)
    return -fake_logits.mean()


# --- Relativistic GANs (Jolicoeur-Martineau, 2019) ---------------------------------------------
# C(x) is the raw critic output. The relativistic discriminator estimates the probability that a
# real sample is more realistic than a fake one; the generator's losses therefore see real data.

def _need_real(real_logits: torch.Tensor | None, name: str) -> torch.Tensor:
    if real_logits is None:
        raise ValueError(f"g_{name} is relativistic: pass real_logits (the critic's scores on a real batch)")
    return real_logits


def _check_pairs(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> None:
    _check(real_logits, fake_logits)
    if real_logits.shape != fake_logits.shape:
        raise ValueError("RSGAN pairs each real sample with one fake sample: real and fake batches must "
                         f"have the same size, got {real_logits.shape[0]} and {fake_logits.shape[0]}")


def d_rsgan(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    r"""Relativistic standard GAN, discriminator (Jolicoeur-Martineau 2019, with the
    standard GAN's :math:`f_1(y) = -\log\sigma(y)`):
    :math:`\mathbb{E}_{(x_r, x_f)}[-\log\sigma(C(x_r) - C(x_f))]`, real and fake paired in order."""
    _check_pairs(real_logits, fake_logits)
    return F.softplus(-(real_logits - fake_logits)).mean()


def g_rsgan(fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
    r"""RSGAN generator: :math:`\mathbb{E}[-\log\sigma(C(x_f) - C(x_r))]`."""
    real_logits = _need_real(real_logits, "rsgan")
    _check_pairs(real_logits, fake_logits)
    return F.softplus(-(fake_logits - real_logits)).mean()


def d_rasgan(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    r"""Relativistic average standard GAN (RaSGAN: the paper's RaGAN with the standard GAN
    loss), discriminator:

    .. math:: -\tfrac12\mathbb{E}_{x_r}\log\sigma(C(x_r) - \bar C_f)
              -\tfrac12\mathbb{E}_{x_f}\log(1 - \sigma(C(x_f) - \bar C_r))

    with :math:`\bar C` the minibatch means. The ½ follows the official code
    (``AlexiaJM/RelativisticGAN``, ``GAN_losses_iter.py``); the paper writes the plain sum.
    Halving scales the gradients by ½, which Adam largely undoes.
    """
    _check(real_logits, fake_logits)
    rel_real = real_logits - fake_logits.mean()
    rel_fake = fake_logits - real_logits.mean()
    return 0.5 * (F.softplus(-rel_real).mean() + F.softplus(rel_fake).mean())


def g_rasgan(fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
    r"""RaSGAN generator: the discriminator's loss with real and fake swapped,
    :math:`-\tfrac12\mathbb{E}\log(1-\sigma(C(x_r) - \bar C_f)) - \tfrac12\mathbb{E}\log\sigma(C(x_f) - \bar C_r)`."""
    real_logits = _need_real(real_logits, "rasgan")
    _check(real_logits, fake_logits)
    rel_real = real_logits - fake_logits.mean()
    rel_fake = fake_logits - real_logits.mean()
    return 0.5 * (F.softplus(rel_real).mean() + F.softplus(-rel_fake).mean())


def d_ralsgan(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    r"""Relativistic average LSGAN, discriminator (the official code's form, with its ½):
    :math:`\tfrac12\mathbb{E}[(C(x_r) - \bar C_f - 1)^2] + \tfrac12\mathbb{E}[(C(x_f) - \bar C_r + 1)^2]`."""
    _check(real_logits, fake_logits)
    rel_real = real_logits - fake_logits.mean()
    rel_fake = fake_logits - real_logits.mean()
    return 0.5 * ((rel_real - 1).square().mean() + (rel_fake + 1).square().mean())


def g_ralsgan(fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
    r"""RaLSGAN generator: :math:`\tfrac12\mathbb{E}[(C(x_r) - \bar C_f + 1)^2] + \tfrac12\mathbb{E}[(C(x_f) - \bar C_r - 1)^2]`."""
    real_logits = _need_real(real_logits, "ralsgan")
    _check(real_logits, fake_logits)
    rel_real = real_logits - fake_logits.mean()
    rel_fake = fake_logits - real_logits.mean()
    return 0.5 * ((rel_real + 1).square().mean() + (rel_fake - 1).square().mean())


def d_rahinge(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    r"""Relativistic average hinge, discriminator (the official code's form, with its ½):
    :math:`\tfrac12\mathbb{E}[\max(0, 1 - (C(x_r) - \bar C_f))] + \tfrac12\mathbb{E}[\max(0, 1 + (C(x_f) - \bar C_r))]`."""
    _check(real_logits, fake_logits)
    rel_real = real_logits - fake_logits.mean()
    rel_fake = fake_logits - real_logits.mean()
    return 0.5 * (F.relu(1 - rel_real).mean() + F.relu(1 + rel_fake).mean())


def g_rahinge(fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
    r"""RaHinge generator: :math:`\tfrac12\mathbb{E}[\max(0, 1 + (C(x_r) - \bar C_f))] + \tfrac12\mathbb{E}[\max(0, 1 - (C(x_f) - \bar C_r))]`."""
    real_logits = _need_real(real_logits, "rahinge")
    _check(real_logits, fake_logits)
    rel_real = real_logits - fake_logits.mean()
    rel_fake = fake_logits - real_logits.mean()
    return 0.5 * (F.relu(1 + rel_real).mean() + F.relu(1 - rel_fake).mean())


class LossPair(NamedTuple):
    """A discriminator loss and the generator loss that goes with it."""

    name: str
    d: Callable[..., torch.Tensor]
    g: Callable[..., torch.Tensor]
    g_needs_real: bool = False   # relativistic generator losses also look at real scores


LOSSES: dict[str, LossPair] = {
    "minimax": LossPair("minimax", d_minimax, g_minimax),
    "ns": LossPair("ns", d_ns, g_ns),
    "wgan": LossPair("wgan", d_wgan, g_wgan),
    "lsgan": LossPair("lsgan", d_lsgan, g_lsgan),
    "hinge": LossPair("hinge", d_hinge, g_hinge),
    "rsgan": LossPair("rsgan", d_rsgan, g_rsgan, g_needs_real=True),
    "rasgan": LossPair("rasgan", d_rasgan, g_rasgan, g_needs_real=True),
    "ralsgan": LossPair("ralsgan", d_ralsgan, g_ralsgan, g_needs_real=True),
    "rahinge": LossPair("rahinge", d_rahinge, g_rahinge, g_needs_real=True),
}


def get_loss(name: str | LossPair) -> LossPair:
    """The loss pair registered under ``name`` (a LossPair is returned unchanged)."""
    if isinstance(name, LossPair):
        return name
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; available: {', '.join(LOSSES)}")
    return LOSSES[name]
