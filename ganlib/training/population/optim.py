"""One optimizer for P stacked models: Adam or RMSprop, with a mask that updates only some members.

Adam (Kingma & Ba, 2015, Algorithm 1) and RMSprop (Tieleman & Hinton, 2012; WGAN's choice,
Arjovsky et al., 2017, Algorithm 1) are elementwise, so one optimizer over parameters stacked along
a leading member axis ``[P, ...]`` is P independent optimizers -- as long as every step updates
every member. A *masked* step (the auction's auxiliary update skips the winner) must leave a
masked-out member exactly as if its own optimizer had not been called: parameters, moments and
step count untouched. ``torch.optim`` keeps one step count per tensor, so it cannot do that; this
optimizer keeps one per member.

While no masked step has happened every member has the same step count, and the update is
computed with the same Python-float coefficients and the same in-place kernels as
``torch.optim.Adam`` / ``torch.optim.RMSprop`` (single-tensor path, PyTorch's eps placement): the
result is bit-identical to P separate PyTorch optimizers (a test checks it). After a masked step,
the coefficients become per-member tensors (same formula, last-bit rounding may differ). No host
sync either way.
"""

from __future__ import annotations

from typing import Sequence

import torch

KINDS = ("adam", "rmsprop")
RMSPROP_ALPHA = 0.99          # torch.optim.RMSprop's defaults (make_optimizer uses them too)
EPS = 1e-8


class StackedOptimizer:
    """Adam or RMSprop over stacked leaves ``[P, ...]``, one step count per member.

    Args:
        params: leaf tensors sharing the leading member axis.
        kind: ``"adam"`` or ``"rmsprop"`` (``TrainConfig.optimizer``).
        lr: learning rate; betas: Adam's (ignored by RMSprop, as in :func:`ganlib.training.make_optimizer`).

    ``step(grads=None, mask=None)`` uses ``grads`` (aligned with ``params``) or each parameter's
    ``.grad``; ``mask`` (bool ``[P]``) selects the members that step. ``state`` mirrors
    ``torch.optim``'s (``{param: {"step", "exp_avg", "exp_avg_sq"}}`` for Adam; empty before the
    first step), so :meth:`ganlib.training.unrolled.FunctionalAdam.state_from` reads it.
    """

    def __init__(self, params: Sequence[torch.Tensor], kind: str = "adam", lr: float = 1e-3,
                 betas=(0.9, 0.999), eps: float = EPS):
        self.params = list(params)
        if not self.params:
            raise ValueError("a stacked optimizer needs at least one parameter tensor")
        if kind not in KINDS:
            raise ValueError(f"optimizer must be one of {KINDS}, got {kind!r}")
        self.n = self.params[0].shape[0]
        if any(p.ndim < 1 or p.shape[0] != self.n for p in self.params):
            raise ValueError("all stacked parameters must share the leading member axis")
        if not lr > 0 or len(betas) != 2 or not all(0 <= b < 1 for b in betas) or not eps > 0:
            raise ValueError(f"bad optimizer hyperparameters lr={lr}, betas={betas}, eps={eps}")
        self.kind, self.lr, self.betas, self.eps = kind, float(lr), tuple(float(b) for b in betas), float(eps)
        self.steps = torch.zeros(self.n, device=self.params[0].device)
        self._uniform: int | None = 0       # the common step count while no masked step happened
        self._slots: dict[str, list[torch.Tensor]] = {}

    @classmethod
    def from_config(cls, params, config, player: str) -> "StackedOptimizer":
        """The optimizer ``config`` asks for, for player ``"d"`` or ``"g"`` (as ``make_optimizer``)."""
        if player not in ("d", "g"):
            raise ValueError(f"player must be 'd' or 'g', got {player!r}")
        return cls(params, config.optimizer, getattr(config, f"lr_{player}"), getattr(config, f"betas_{player}"))

    # --- torch.optim look-alikes -----------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @property
    def state(self) -> dict:
        if not self._slots:
            return {}
        step = float(self._uniform) if self._uniform is not None else self.steps
        names = ("exp_avg", "exp_avg_sq") if self.kind == "adam" else ("square_avg",)
        return {p: {"step": step, **{k: self._slots[k][i] for k in names}} for i, p in enumerate(self.params)}

    def _init_slots(self) -> None:
        names = ("exp_avg", "exp_avg_sq") if self.kind == "adam" else ("square_avg",)
        self._slots = {k: [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
                       for k in names}

    def _views(self, t: torch.Tensor) -> list[torch.Tensor]:
        return [t.view(-1, *([1] * (p.ndim - 1))) for p in self.params]

    # --- the update --------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor] | None = None, mask: torch.Tensor | None = None) -> None:
        grads = [p.grad for p in self.params] if grads is None else list(grads)
        if any(g is None for g in grads):
            raise ValueError("every stacked parameter needs a gradient (call backward first)")
        if not self._slots:
            self._init_slots()
        if mask is None and self._uniform is not None:
            self._uniform += 1
            self.steps += 1
            (self._adam_uniform if self.kind == "adam" else self._rmsprop_uniform)(grads, self._uniform)
            return
        self._uniform = None
        w = torch.ones_like(self.steps) if mask is None else mask.to(self.steps.dtype)
        self.steps += w
        (self._adam_masked if self.kind == "adam" else self._rmsprop_masked)(grads, w)

    def _adam_uniform(self, grads, t: int) -> None:
        b1, b2 = self.betas
        m, v = self._slots["exp_avg"], self._slots["exp_avg_sq"]
        torch._foreach_lerp_(m, grads, 1 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
        step_size = self.lr / (1 - b1 ** t)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, (1 - b2 ** t) ** 0.5)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, m, denom, value=-step_size)

    def _rmsprop_uniform(self, grads, t: int) -> None:
        sq = self._slots["square_avg"]
        torch._foreach_mul_(sq, RMSPROP_ALPHA)
        torch._foreach_addcmul_(sq, grads, grads, value=1 - RMSPROP_ALPHA)
        denom = torch._foreach_sqrt(sq)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, grads, denom, value=-self.lr)

    def _adam_masked(self, grads, w: torch.Tensor) -> None:
        b1, b2 = self.betas
        m, v = self._slots["exp_avg"], self._slots["exp_avg_sq"]
        t = self.steps.clamp(min=1)
        step_size = w * self.lr / (1 - b1 ** t)                   # [P]; 0 for masked-out members
        bc2_sqrt = (1 - b2 ** t).sqrt()
        # m <- m + (1 - b1) w (g - m);  v <- v + (1 - b2) w (g^2 - v): w = 0 leaves them untouched
        torch._foreach_lerp_(m, grads, self._views((1 - b1) * w))
        torch._foreach_lerp_(v, torch._foreach_mul(grads, grads), self._views((1 - b2) * w))
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, self._views(bc2_sqrt))
        torch._foreach_add_(denom, self.eps)
        update = torch._foreach_div(m, denom)
        torch._foreach_mul_(update, self._views(step_size))
        torch._foreach_sub_(self.params, update)

    def _rmsprop_masked(self, grads, w: torch.Tensor) -> None:
        sq = self._slots["square_avg"]
        torch._foreach_lerp_(sq, torch._foreach_mul(grads, grads), self._views((1 - RMSPROP_ALPHA) * w))
        denom = torch._foreach_sqrt(sq)
        torch._foreach_add_(denom, self.eps)
        update = torch._foreach_div(grads, denom)
        torch._foreach_mul_(update, self._views(self.lr * w))
        torch._foreach_sub_(self.params, update)

    # --- checkpoints ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"kind": self.kind, "steps": self.steps.clone(), "uniform": self._uniform,
                "slots": {k: [t.clone() for t in v] for k, v in self._slots.items()}}

    def load_state_dict(self, state: dict) -> None:
        if state["kind"] != self.kind:
            raise ValueError(f"optimizer state of kind {state['kind']!r} cannot load into a {self.kind!r} optimizer")
        self.steps.copy_(state["steps"])
        self._uniform = state["uniform"]
        if not state["slots"]:
            self._slots = {}
            return
        self._init_slots()
        for k, tensors in state["slots"].items():
            for mine, saved in zip(self._slots[k], tensors):
                mine.copy_(saved)


def StackedAdam(params: Sequence[torch.Tensor], lr: float, betas=(0.9, 0.999), eps: float = EPS) -> StackedOptimizer:
    """P independent Adam optimizers on stacked parameters (see :class:`StackedOptimizer`)."""
    return StackedOptimizer(params, "adam", lr, betas, eps)
