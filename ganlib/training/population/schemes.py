"""Schemes: what a paper changes in the GAN step, as a small object the population loop calls.

A scheme supplies the losses of every member for one discriminator update and one generator
update; the loop (:class:`~ganlib.training.population.Population`) does everything else.
The paper modules define theirs next to their equations (:class:`ganlib.training.unrolled.Unrolled`,
:class:`ganlib.training.distill.DGL`, ...); here are the plain GAN (:class:`Standard`) and
PacGAN's packing (:class:`Packed`).

Protocol (all per-member tensors have a leading member axis ``[P]``):

* ``bind(pop, arms) -> bound scheme``: called once with the scheme of every arm (same class);
  returns the object the loop calls, holding per-member settings (e.g. one loss per member).
* ``d_losses(pop, real, fake) -> {"objective": scalar, "d_loss", "d_real", "d_fake": [P]}``:
  ``objective`` is what the discriminators descend; its gradient with respect to member ``p``'s
  parameters must be member ``p``'s own (sum independent per-member losses).
* ``g_losses(pop, z) -> {"objective": scalar, "g_loss": [P], ...extra keys}``.
* ``after_d_step(pop)``, ``after_step(pop)``, ``flush(pop)``, ``state_dict()`` /
  ``load_state_dict(state)`` (for checkpoints); ``keys``: extra history keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.func import vmap

from ...losses import LossPair, get_loss

__all__ = ["Scheme", "Standard", "Packed", "grouped_losses"]


class Scheme:
    """Base class of the schemes: defaults for the optional hooks, and a ``bind`` that requires
    every arm to hold the same settings (override to let arms differ)."""

    keys: tuple = ()

    def bind(self, pop, arms: list["Scheme"]) -> "Scheme":
        if any(a != arms[0] for a in arms):
            raise ValueError(f"the arms of this population differ in settings {type(self).__name__} cannot vary "
                             "per arm; train them in separate populations")
        return dataclasses.replace(self) if dataclasses.is_dataclass(self) else self

    def d_losses(self, pop, real: torch.Tensor, fake: torch.Tensor) -> dict:
        raise NotImplementedError

    def g_losses(self, pop, z: torch.Tensor) -> dict:
        raise NotImplementedError

    def after_d_step(self, pop) -> None:
        pass

    def after_step(self, pop) -> None:
        pass

    def flush(self, pop) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _same(arms, field: str):
    values = [getattr(a, field) for a in arms]
    if any(v is not values[0] and v != values[0] for v in values):
        raise ValueError(f"the arms of one population must share {field!r} (got {values}); train arms with "
                         f"different {field} in separate populations")
    return values[0]


def grouped_losses(names: list, device) -> tuple[Callable, Callable, bool]:
    """Per-member D and G losses ``([P, n], [P, n]) -> [P]`` when member ``p`` uses loss ``names[p]``:
    every loss is applied, through ``vmap``, to the members that use it, so a member trains exactly
    as it would alone. Returns ``(d, g, needs_real)``: ``needs_real`` lists the members whose
    generator loss reads real scores (the relativistic losses)."""
    pairs = {}
    for n in names:
        key = n if isinstance(n, str) else id(n)
        pairs.setdefault(key, get_loss(n))
    keys = [n if isinstance(n, str) else id(n) for n in names]
    if len(pairs) == 1:
        pair = next(iter(pairs.values()))
        d = vmap(pair.d)
        g = vmap(pair.g) if pair.g_needs_real else (lambda f, r=None: vmap(lambda x: pair.g(x))(f))
        return d, g, list(range(len(names))) if pair.g_needs_real else []
    groups = [(pairs[k], torch.tensor([i for i, m in enumerate(keys) if m == k], device=device)) for k in pairs]
    order = torch.cat([idx for _, idx in groups])
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order), device=device)

    def grouped(which):
        def loss(first, second=None):
            parts = []
            for pair, idx in groups:
                fn = getattr(pair, which)
                if which == "g" and not pair.g_needs_real:
                    parts.append(vmap(lambda f, _fn=fn: _fn(f))(first[idx]))
                else:
                    parts.append(vmap(fn)(first[idx], second[idx]))
            return torch.cat(parts)[inverse]
        return loss

    return grouped("d"), grouped("g"), [i for i, k in enumerate(keys) if pairs[k].g_needs_real]


class _FlatCritic(nn.Module):
    """The P critics seen as one function of a flat ``[P * n, ...]`` batch (for penalties)."""

    def __init__(self, pop, n_members: int | None = None, transform: Callable | None = None):
        super().__init__()
        object.__setattr__(self, "pop", pop)
        self.transform = transform or (lambda x: x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        P = self.pop.n_members
        out = self.pop.D(self.transform(x.reshape(P, -1, *x.shape[1:])))
        return out.reshape(-1, *out.shape[2:])


@dataclass(eq=False)
class Standard(Scheme):
    """The plain GAN step with any loss of :mod:`ganlib.losses`, an optional gradient penalty and
    optional weight clipping (Goodfellow et al., 2014, Algorithm 1; WGAN's clipping, Arjovsky et al.,
    2017, Algorithm 1; penalties of :mod:`ganlib.regularizers`).

    Args:
        loss: a loss name or :class:`~ganlib.losses.LossPair`; ``None``: ``config.loss``. Arms may
            differ in ``loss`` (e.g. five losses x three seeds in one population).
        penalty: ``f(critic, real, fake) -> scalar`` averaging per-sample terms (``GradientPenalty()``...).
            The P critics are independent, so the input gradients of the summed outputs over a flat
            ``[P * n, ...]`` batch are every member's own; the penalty's mean over ``P * n`` samples
            times P is the sum of the P members' penalties. Shared by all arms.
        clip: clamp every discriminator parameter to ``[-clip, clip]`` after each D update. Shared.

    ``history["d_loss"]`` holds the adversarial loss without the penalty.
    """

    loss: str | LossPair | None = None
    penalty: Callable | None = None
    clip: float | None = None

    def __post_init__(self):
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"clip must be positive (or None), got {self.clip!r}")
        if self.loss is not None:
            get_loss(self.loss)

    def __eq__(self, other):
        return type(other) is type(self) and all(getattr(self, f.name) is getattr(other, f.name) or
                                                 getattr(self, f.name) == getattr(other, f.name)
                                                 for f in dataclasses.fields(self))

    def bind(self, pop, arms: list["Standard"]) -> "Standard":
        bound = dataclasses.replace(self)
        bound.penalty, bound.clip = _same(arms, "penalty"), _same(arms, "clip")
        bound._bind_losses(pop)
        if bound.penalty is not None and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                             for m in pop.D.base.modules()):
            raise ValueError("a gradient penalty needs a discriminator without BatchNorm; build it with "
                             "norm='none' or norm='layer'")
        return bound

    def _bind_losses(self, pop) -> None:
        names = pop.per_member(lambda arm: arm.loss if arm.loss is not None else pop.config.loss)
        self.loss_names = names
        self._d, self._g, self.needs_real = grouped_losses(names, pop.device)
        self.g_needs_real = bool(self.needs_real)

    def real_for_g(self, pop, n: int) -> torch.Tensor | None:
        """A real batch for the members whose generator loss reads real scores (``None`` if none):
        the other members' data streams do not move, so every member replays its solo run."""
        if not self.needs_real:
            return None
        return pop.real(n, None if len(self.needs_real) == pop.n_members else self.needs_real)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """What the discriminators see of a batch ``[P, n, ...]`` (identity; packing overrides)."""
        return x

    def d_losses(self, pop, real, fake) -> dict:
        real_logits, fake_logits = pop.D(self.transform(real)), pop.D(self.transform(fake))
        losses = self._d(real_logits, fake_logits)                       # [P]
        objective = losses.sum()
        if self.penalty is not None:
            P = real.shape[0]
            objective = objective + P * self.penalty(_FlatCritic(pop, transform=self.transform), real.flatten(0, 1),
                                                     fake.flatten(0, 1))
        return {"objective": objective, "d_loss": losses.detach(), "d_real": real_logits.detach().mean(1),
                "d_fake": fake_logits.detach().mean(1)}

    def g_scores(self, pop, fake) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The discriminators' scores of ``fake`` (differentiable) and, if the loss needs them, of a
        fresh real batch (constants)."""
        fake_logits = pop.D(self.transform(fake))
        real_logits = None
        real = self.real_for_g(pop, fake.shape[1])
        if real is not None:
            with torch.no_grad():
                real_logits = pop.D(self.transform(real))
        return fake_logits, real_logits

    def g_losses(self, pop, z) -> dict:
        losses = self._g(*self.g_scores(pop, pop.G(z)))
        return {"objective": losses.sum(), "g_loss": losses.detach()}

    def after_d_step(self, pop) -> None:
        if self.clip is not None:
            with torch.no_grad():
                torch._foreach_clamp_min_(pop.D.parameters(), -self.clip)
                torch._foreach_clamp_max_(pop.D.parameters(), self.clip)


@dataclass(eq=False)
class Packed(Standard):
    """PacGAN (Lin et al., 2018, Eq. 2 with packs in place of samples): the discriminators judge
    packs of ``m`` samples, all real or all fake, concatenated along the feature (or channel) axis
    as in the official code; build the discriminator for ``m``-times wider inputs and use a batch
    size that is a multiple of ``m``. ``m = 1`` is :class:`Standard`."""

    m: int = 2

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.m, bool) or int(self.m) != self.m or self.m < 1:
            raise ValueError(f"the packing degree m must be an integer >= 1, got {self.m!r}")

    def bind(self, pop, arms):
        _same(arms, "m")
        if pop.config.batch_size % self.m:
            raise ValueError(f"batch_size={pop.config.batch_size} is not a multiple of the packing degree m={self.m}")
        return super().bind(pop, arms)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        P, n = x.shape[:2]
        return x.reshape(P, n // self.m, self.m * x.shape[2], *x.shape[3:])
