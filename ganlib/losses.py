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
    for t in tensors:
        if t is not None and t.ndim != 1:
            raise ValueError(f"losses take one score per sample, shape [n]; got {tuple(t.shape)}")


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


class LossPair(NamedTuple):
    """A discriminator loss and the generator loss that goes with it."""

    name: str
    d: Callable[..., torch.Tensor]
    g: Callable[..., torch.Tensor]
    g_needs_real: bool = False   # relativistic generator losses also look at real scores


LOSSES: dict[str, LossPair] = {
    "minimax": LossPair("minimax", d_minimax, g_minimax),
    "ns": LossPair("ns", d_ns, g_ns),
}


def get_loss(name: str | LossPair) -> LossPair:
    """The loss pair registered under ``name`` (a LossPair is returned unchanged)."""
    if isinstance(name, LossPair):
        return name
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; available: {', '.join(LOSSES)}")
    return LOSSES[name]
