r"""Unrolled GANs (Metz, Poole, Pfau & Sohl-Dickstein, ICLR 2017).

The generator is trained against the discriminator it *would face* after ``k`` more
discriminator updates, differentiating through those updates (Metz et al., Sec. 2: the
unrolled step is their Eq. 7, the generator update through it Eq. 10, D's ordinary update Eq. 11):

.. math::

    \theta_D^{0} = \theta_D, \qquad
    \theta_D^{i+1} = \theta_D^{i} - \eta\,\mathrm{U}\!\left(\nabla_{\theta_D} L_D(\theta_G, \theta_D^{i})\right),
    \qquad
    f_K(\theta_G, \theta_D) = f\bigl(\theta_G, \theta_D^{K}(\theta_G, \theta_D)\bigr),

where :math:`\mathrm{U}` is the update rule of D's optimizer and :math:`L_D = -f` is the
discriminator's loss. The generator descends :math:`\mathrm{d} f_K / \mathrm{d}\theta_G`, which
has the usual term :math:`\partial f/\partial\theta_G` plus the term through
:math:`\theta_D^K(\theta_G)` (the paper's "missing gradient term"): how the discriminator
would *react* to a change of the generator. ``K = 0`` recovers the ordinary GAN. The
discriminator's own update stays the ordinary one-step rule.

Everything here is functional: the discriminator is evaluated with
``torch.func.functional_call`` on a dict of parameter tensors, the inner gradients are taken
with ``torch.autograd.grad(create_graph=True)`` and each update returns a new dict, so no module
is copied per step and the same code runs on one discriminator or on a population of stacked ones
(:class:`UnrolledSeedBatch`, on :class:`~ganlib.training.batched.SeedBatch`).

**Which update rule is unrolled.** Metz et al. unroll the optimizer actually used for D: the
official code (``poolio/unrolled_gan``) rewrites the graph of the Adam update, moment slots
included. :class:`FunctionalAdam` reproduces ``torch.optim.Adam``'s update exactly and
:meth:`FunctionalAdam.state_from` starts the unroll from D's *current* Adam moments and step
count, so :math:`\theta_D^1` equals what the real ``opt_d.step()`` would produce on the same
batch. :class:`FunctionalSGD` (:math:`\mathrm{U} = \mathrm{id}`) is there for teaching and for
hand-checkable tests. Like the official demo, every unrolled step reuses the same real and fake
batch (the graph rewrite re-evaluates the same data tensors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call

from ..losses import LossPair, get_loss
from .batched import SeedBatch
from .population import Population, Standard
from .population.schemes import _same
from .trainer import Trainer, TrainConfig, descend

__all__ = ["FunctionalSGD", "FunctionalAdam", "functional_forward", "detached_params", "batched_loss",
           "unroll_discriminator", "unrolled_generator_loss", "UnrolledTrainer", "UnrolledSeedBatch", "Unrolled",
           "OBJECTIVES"]

OBJECTIVES = ("auto", "generator", "value")
ZERO_SUM = ("minimax", "wgan")     # losses whose generator loss is minus D's loss (up to the real term)

Params = dict[str, torch.Tensor]


# --- functional optimizers ---------------------------------------------------------------------

class FunctionalSGD:
    r"""Plain gradient descent as a pure function: :math:`\theta' = \theta - \eta\, g` (no state)."""

    def __init__(self, lr: float):
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        self.lr = float(lr)

    def init(self, params: Params) -> dict:
        return {}

    def step(self, params: Params, grads: Params, state: dict) -> tuple[Params, dict]:
        return {n: p - self.lr * grads[n] for n, p in params.items()}, state

    def __repr__(self) -> str:
        return f"FunctionalSGD(lr={self.lr})"


def _safe_sqrt(v: torch.Tensor) -> torch.Tensor:
    """``sqrt(v)`` whose derivative at ``v = 0`` is 0 instead of ``inf`` (avoids ``0 * inf = NaN``
    when a parameter's gradient is exactly zero); the value equals ``v.sqrt()`` everywhere."""
    positive = v > 0
    return torch.where(positive, torch.where(positive, v, torch.ones_like(v)).sqrt(), torch.zeros_like(v))


class FunctionalAdam:
    r"""``torch.optim.Adam``'s update (Kingma & Ba, 2015, Algorithm 1) as a pure, differentiable function.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g^2,\quad
        \theta_t = \theta_{t-1} - \frac{\eta}{1-\beta_1^t}\,
        \frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    (the order of operations of PyTorch's implementation). No weight decay, no AMSGrad.
    Adam is elementwise, so it also applies unchanged to stacked (population) parameters.
    """

    def __init__(self, lr: float, betas: tuple = (0.9, 0.999), eps: float = 1e-8):
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps!r}")
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)

    @classmethod
    def from_optimizer(cls, optimizer: torch.optim.Optimizer) -> "FunctionalAdam":
        """The functional twin of a ``torch.optim.Adam`` (same lr, betas, eps)."""
        if not isinstance(optimizer, torch.optim.Adam):
            raise TypeError(f"expected a torch.optim.Adam, got {type(optimizer).__name__}; "
                            "use FunctionalSGD for other optimizers")
        group = optimizer.param_groups[0]
        if len(optimizer.param_groups) != 1 or group["weight_decay"] or group["amsgrad"] or group["maximize"]:
            raise ValueError("FunctionalAdam mirrors a plain Adam with one parameter group, no weight decay, "
                             "no amsgrad, no maximize")
        lr = group["lr"]
        return cls(float(lr), group["betas"], group["eps"])

    def init(self, params: Params) -> dict:
        return {"step": 0.0, "exp_avg": {n: torch.zeros_like(p) for n, p in params.items()},
                "exp_avg_sq": {n: torch.zeros_like(p) for n, p in params.items()}}

    def state_from(self, optimizer: torch.optim.Optimizer, named_params: dict[str, nn.Parameter]) -> dict:
        """The optimizer's current moments and step count for ``named_params`` (detached, not copied:
        the functional step never writes in place). Parameters it has not stepped yet start at zero."""
        steps, exp_avg, exp_avg_sq = set(), {}, {}
        for name, p in named_params.items():
            st = optimizer.state.get(p, {})
            if not st:
                steps.add(0.0)
                exp_avg[name] = torch.zeros_like(p, memory_format=torch.preserve_format).detach()
                exp_avg_sq[name] = torch.zeros_like(exp_avg[name])
                continue
            step = st["step"]
            steps.add(float(step))  # a CPU scalar tensor (non-capturable Adam): no device sync
            exp_avg[name], exp_avg_sq[name] = st["exp_avg"].detach(), st["exp_avg_sq"].detach()
        if len(steps) > 1:
            raise ValueError(f"the optimizer's parameters are at different step counts {sorted(steps)}")
        return {"step": steps.pop() if steps else 0.0, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}

    def step(self, params: Params, grads: Params, state: dict) -> tuple[Params, dict]:
        b1, b2 = self.betas
        t = state["step"] + 1
        step_size = self.lr / (1 - b1**t)
        bias2_sqrt = math.sqrt(1 - b2**t)
        new_p, new_m, new_v = {}, {}, {}
        for n, p in params.items():
            g = grads[n]
            m = torch.lerp(state["exp_avg"][n], g, 1 - b1)
            v = state["exp_avg_sq"][n] * b2 + (1 - b2) * g * g
            new_p[n] = p - step_size * m / (_safe_sqrt(v) / bias2_sqrt + self.eps)
            new_m[n], new_v[n] = m, v
        return new_p, {"step": t, "exp_avg": new_m, "exp_avg_sq": new_v}

    def __repr__(self) -> str:
        return f"FunctionalAdam(lr={self.lr}, betas={self.betas}, eps={self.eps})"


# --- pure pieces -------------------------------------------------------------------------------

def detached_params(module: nn.Module) -> Params:
    """``{name: parameter.detach()}``: the starting point :math:`\\theta_D^0` of an unroll (a constant
    for the generator's gradient)."""
    return {n: p.detach() for n, p in module.named_parameters()}


def functional_forward(module: nn.Module, buffers: dict[str, torch.Tensor] | None = None
                       ) -> Callable[[Params, torch.Tensor], torch.Tensor]:
    """``f(params, x) = module(x)`` with ``params`` substituted (``torch.func.functional_call``).

    Buffers are cloned once, so running statistics or spectral-norm vectors touched during an
    unroll never leak into the real module.
    """
    if buffers is None:
        buffers = {n: b.clone() for n, b in module.named_buffers()}

    def forward(params: Params, x: torch.Tensor) -> torch.Tensor:
        return functional_call(module, (params, buffers), (x,))

    return forward


def batched_loss(fn: Callable, *logits: torch.Tensor | None) -> torch.Tensor:
    """Apply a ganlib loss to logits ``[n]`` (-> ``[]``), or to ``[S, n]`` (a population of S
    independent models -> one loss per model, ``[S]``). Trailing ``None`` arguments are passed
    through (e.g. ``real_logits=None``)."""
    first = logits[0]
    if first.ndim == 1:
        return fn(*logits)
    if first.ndim != 2:
        raise ValueError(f"expected logits [n] or [S, n], got {tuple(first.shape)}")
    present = [x for x in logits if x is not None]
    missing = len(logits) - len(present)
    return torch.vmap(lambda *xs: fn(*xs, *([None] * missing)))(*present)


def _resolve_objective(objective: str, loss: LossPair) -> str:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if objective == "auto":
        return "value" if loss.name in ZERO_SUM else "generator"
    return objective


def unroll_discriminator(d_loss_fn: Callable[[Params], torch.Tensor], params: Params, k: int,
                         update, state: dict | None = None,
                         member_steps: torch.Tensor | None = None) -> tuple[Params, dict]:
    r"""Advance the discriminator ``k`` functional optimizer steps on ``d_loss_fn``.

    ``d_loss_fn(params) -> scalar`` closes over the (fixed) real and fake batches; where the fake
    batch depends on the generator, so does every :math:`\theta_D^i`, and gradients flow back
    through all ``k`` steps: each inner gradient is taken with ``create_graph=True``, so it is
    itself differentiable (second-order terms included). Returns :math:`(\theta_D^k, \text{state}_k)`.

    ``member_steps`` (``LongTensor[S]``, for stacked parameters ``[S, ...]``) gives each population
    member its own number of steps: member ``s`` stops after ``member_steps[s]`` steps (``k`` must be
    their maximum), so variants with different ``K`` (``0`` included) can share one population.
    """
    if int(k) != k or k < 0:
        raise ValueError(f"k (the number of unrolled steps) must be an integer >= 0, got {k!r}")
    if member_steps is not None:
        member_steps = torch.as_tensor(member_steps)
        if member_steps.ndim != 1 or (member_steps < 0).any() or int(member_steps.max()) != k:
            raise ValueError(f"member_steps must be a 1-D tensor of steps >= 0 whose maximum is k={k}, "
                             f"got {member_steps.tolist()}")
    if state is None:
        state = update.init(params)
    # theta_D^0 is a constant for the generator; make it a leaf so autograd can differentiate
    # the D loss with respect to it (tensors that already require grad are kept as they are)
    params = {n: p if p.requires_grad else p.detach().requires_grad_(True) for n, p in params.items()}
    for i in range(int(k)):
        names = list(params)
        grads = torch.autograd.grad(d_loss_fn(params), [params[n] for n in names], create_graph=True)
        new_params, new_state = update.step(params, dict(zip(names, grads)), state)
        if member_steps is not None and int(member_steps.min()) <= i:     # some members have stopped
            go = (member_steps > i).to(next(iter(params.values())).device)
            params = {n: torch.where(go.view(-1, *[1] * (p.ndim - 1)), new_params[n], p) for n, p in params.items()}
            new_state = _select_state(go, new_state, state)
        else:
            params = new_params
        state = new_state
    return params, state


def _select_state(go: torch.Tensor, new, old):
    """Per-member choice between two optimizer states (tensors ``[S, ...]``; shared scalars from ``new``)."""
    if isinstance(new, dict):
        return {key: _select_state(go, new[key], old[key]) for key in new}
    if torch.is_tensor(new) and new.ndim >= 1 and new.shape[0] == go.shape[0]:
        return torch.where(go.view(-1, *[1] * (new.ndim - 1)), new, old)
    return new


def unrolled_generator_loss(d_forward: Callable[[Params, torch.Tensor], torch.Tensor], d_params: Params,
                            real: torch.Tensor, fake: torch.Tensor, *, k: int, loss: str | LossPair = "ns",
                            update=None, state: dict | None = None, objective: str = "auto",
                            member_steps: torch.Tensor | None = None) -> torch.Tensor:
    r"""The generator's surrogate loss :math:`f_K(\theta_G, \theta_D)` of Metz et al. (2017, Sec. 2).

    Args:
        d_forward: pure discriminator ``f(params, x) -> logits`` (:func:`functional_forward`);
            logits ``[n]``, or ``[S, n]`` for a population (losses are then summed over members).
        d_params: :math:`\theta_D^0`, usually :func:`detached_params` of the discriminator.
        real, fake: the batches used at every unrolled step; ``fake = G(z)`` must carry the
            generator's graph (it is not detached here).
        k: number of unrolled discriminator steps; ``k = 0`` is the plain generator loss.
        loss: a ganlib loss name or :class:`~ganlib.losses.LossPair`; the unrolled steps minimise
            its ``d`` part.
        update: :class:`FunctionalAdam` (Metz et al.'s choice: the optimizer D really uses) or
            :class:`FunctionalSGD`; required when ``k > 0``.
        state: the update's starting state (e.g. :meth:`FunctionalAdam.state_from` D's optimizer);
            fresh zero moments if ``None``.
        objective: what the generator minimises at :math:`\theta_D^K`. ``"value"``: the game's value
            :math:`f = -L_D(\theta_G, \theta_D^K)`, the paper's surrogate for the zero-sum minimax GAN
            (the real-data term matters: it depends on :math:`\theta_G` through :math:`\theta_D^K`).
            ``"generator"``: the loss pair's generator loss (e.g. non-saturating) at :math:`\theta_D^K`,
            the usual generalisation to non-zero-sum losses. ``"auto"``: ``"value"`` for the zero-sum
            losses (``"minimax"``, ``"wgan"``), else ``"generator"``.
        member_steps: per-member step counts for a population (see :func:`unroll_discriminator`);
            ``k`` is then their maximum.

    Returns the loss, ``[]`` (or ``[S]``, one per member, for a population).
    """
    loss = get_loss(loss)
    objective = _resolve_objective(objective, loss)
    if k and update is None:
        raise ValueError("k > 0 needs an update rule: FunctionalAdam(...) or FunctionalSGD(...)")

    def d_loss_fn(params: Params) -> torch.Tensor:
        # summed over population members: their parameters are disjoint, so each member's
        # gradient is exactly the gradient of its own loss
        return batched_loss(loss.d, d_forward(params, real), d_forward(params, fake)).sum()

    params_k, _ = (unroll_discriminator(d_loss_fn, d_params, k, update, state, member_steps) if k
                   else (d_params, None))
    fake_logits = d_forward(params_k, fake)
    if objective == "value":
        return -batched_loss(loss.d, d_forward(params_k, real), fake_logits)
    real_logits = d_forward(params_k, real) if loss.g_needs_real else None
    return batched_loss(loss.g, fake_logits, real_logits)


# --- the trainer -------------------------------------------------------------------------------

def _check_unroll_optimizer(unroll_optimizer: str, config) -> None:
    """Unrolling Adam starts from D's own Adam moments, so D must be trained with Adam."""
    if unroll_optimizer == "adam" and config.optimizer != "adam":
        raise ValueError(f"unroll_optimizer='adam' replays D's Adam update, but D is trained with "
                         f"optimizer={config.optimizer!r}: use TrainConfig(optimizer='adam') or unroll_optimizer='sgd'")


class UnrolledTrainer(Trainer):
    """:class:`~ganlib.training.Trainer` whose generator step uses the unrolled surrogate loss.

    Args:
        unroll_steps: ``K`` (Metz et al. use 1, 5, 10; 0 is exactly the parent's ``g_step``).
        unroll_optimizer: ``"adam"`` (default, faithful: unroll D's own Adam from its current
            moments) or ``"sgd"`` (plain steps of size ``unroll_lr``).
        unroll_lr: step size of the unrolled updates; default ``config.lr_d``.
        objective: see :func:`unrolled_generator_loss`.

    D's real update is the parent's ordinary :meth:`d_step`. Deviations from the official demo:
    D and G are updated alternately (D first), as everywhere in ganlib, where the demo applies
    both updates simultaneously; the unroll runs in float32 (no autocast).
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, source, config: TrainConfig,
                 unroll_steps: int = 5, unroll_optimizer: str = "adam", unroll_lr: float | None = None,
                 objective: str = "auto", d_penalty=None, d_after_step=None, callbacks=()):
        if int(unroll_steps) != unroll_steps or unroll_steps < 0:
            raise ValueError(f"unroll_steps must be an integer >= 0, got {unroll_steps!r}")
        if unroll_optimizer not in ("adam", "sgd"):
            raise ValueError(f"unroll_optimizer must be 'adam' or 'sgd', got {unroll_optimizer!r}")
        if unroll_steps and (d_penalty is not None or d_after_step is not None):
            raise ValueError("the unrolled steps use the plain discriminator loss; a d_penalty or d_after_step "
                             "would make D's real update differ from the unrolled one. Use unroll_steps=0 "
                             "or drop them.")
        super().__init__(generator, discriminator, source, config, d_penalty=d_penalty,
                         d_after_step=d_after_step, callbacks=callbacks)
        self.unroll_steps, self.unroll_optimizer = int(unroll_steps), unroll_optimizer
        self.objective = _resolve_objective(objective, self.loss)
        _check_unroll_optimizer(unroll_optimizer, config)
        lr = config.lr_d if unroll_lr is None else unroll_lr
        if unroll_optimizer == "adam":
            self.unroll_update = FunctionalAdam(lr, config.betas_d, self.opt_d.param_groups[0]["eps"])
        else:
            self.unroll_update = FunctionalSGD(lr)

    def g_step(self, batch_size: int) -> dict[str, torch.Tensor]:
        if self.unroll_steps == 0:
            return super().g_step(batch_size)
        real = self.real_batch(batch_size)
        fake = self.fake_batch(batch_size)
        state = None
        if isinstance(self.unroll_update, FunctionalAdam):
            state = self.unroll_update.state_from(self.opt_d, dict(self.D.named_parameters()))
        loss = unrolled_generator_loss(functional_forward(self.D), detached_params(self.D), real, fake,
                                       k=self.unroll_steps, loss=self.loss, update=self.unroll_update,
                                       state=state, objective=self.objective)
        grad_norm = descend(self.opt_g, loss, self.G.parameters())
        return {"g_loss": loss.detach(), "grad_norm_g": grad_norm}


@dataclass(eq=False)
class Unrolled(Standard):
    """The unrolled generator step as a population scheme: every member's generator descends
    :func:`unrolled_generator_loss` through ``k`` functional steps of its own discriminator's
    optimizer; the discriminators' real update is the ordinary one (:class:`UnrolledTrainer`'s rule).

    The unrolled steps run on the stacked discriminator parameters of all members at once: the
    unrolled D loss is the sum of the members' losses, whose gradient with respect to member ``p``'s
    parameters is member ``p``'s own, and Adam is elementwise, so every member unrolls exactly its
    own optimizer. Arms may differ in ``k`` (``0`` = the plain GAN); ``optimizer``, ``lr``,
    ``objective`` and the loss are shared.

    Args:
        k: unrolled steps (Metz et al. use 1, 5, 10).
        optimizer: ``"adam"`` (faithful: D's own Adam from its current moments) or ``"sgd"``.
        lr: step size of the unrolled updates (default ``config.lr_d``).
        objective: see :func:`unrolled_generator_loss`.
    """

    k: int = 5
    optimizer: str = "adam"
    lr: float | None = None
    objective: str = "auto"

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.k, bool) or int(self.k) != self.k or self.k < 0:
            raise ValueError(f"unroll_steps must be an integer >= 0, got {self.k!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"unroll_optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.penalty is not None or self.clip is not None:
            raise ValueError("the unrolled steps use the plain discriminator loss; a penalty or clipping would "
                             "make D's real update differ from the unrolled one")

    def bind(self, pop, arms):
        for field in ("optimizer", "lr", "objective", "loss"):
            _same(arms, field)
        bound = super().bind(pop, arms)
        if pop.D.spectral_norm:
            raise ValueError("unrolling differentiates through D's updates of its raw weights; build the "
                             "discriminator without spectral_norm")
        cfg = pop.config
        _check_unroll_optimizer(self.optimizer, cfg)
        bound.pair = get_loss(pop.config.loss if self.loss is None else self.loss)
        bound.resolved_objective = _resolve_objective(self.objective, bound.pair)
        lr = cfg.lr_d if self.lr is None else self.lr
        bound.update = FunctionalAdam(lr, cfg.betas_d, pop.opt_d.eps) if self.optimizer == "adam" else FunctionalSGD(lr)
        bound.member_steps = torch.tensor(pop.per_member(lambda arm: int(arm.k)))
        bound.max_k = int(bound.member_steps.max())
        bound.same = bool((bound.member_steps == bound.max_k).all())
        return bound

    def g_losses(self, pop, z) -> dict:
        if self.max_k == 0:
            return super().g_losses(pop, z)
        real = pop.real(z.shape[1])
        fake = pop.G(z)
        state = None
        if isinstance(self.update, FunctionalAdam):
            state = self.update.state_from(pop.opt_d, pop.D.params)
        losses = unrolled_generator_loss(lambda params, x: pop.D(x, params=params),
                                         {k: p.detach() for k, p in pop.D.params.items()}, real, fake,
                                         k=self.max_k, loss=self.pair, update=self.update, state=state,
                                         objective=self.resolved_objective,
                                         member_steps=None if self.same else self.member_steps)     # [P]
        return {"objective": losses.sum(), "g_loss": losses.detach()}


class UnrolledSeedBatch(SeedBatch):
    """:class:`~ganlib.training.batched.SeedBatch` (S models trained at once) with the unrolled
    generator step of :class:`UnrolledTrainer`: a population of :class:`Unrolled` arms, one per
    distinct ``K``. Arguments as in :class:`SeedBatch`, plus ``unroll_optimizer``, ``unroll_lr`` and
    ``objective`` as in :class:`UnrolledTrainer`, and two per-model options that let the variants
    of a comparison share one population:

    * ``unroll_steps``: one ``K`` for all models, or a list with one ``K`` per model (``0`` = plain GAN);
    * ``source``: one data source for all models, or a list with one source per model (e.g. the
      ring for some models and the grid for others).
    """

    def __init__(self, make_generator, make_discriminator, source, config: TrainConfig, seeds,
                 unroll_steps: int | Sequence[int] = 5, unroll_optimizer: str = "adam",
                 unroll_lr: float | None = None, objective: str = "auto", device=None):
        seeds = list(seeds)
        steps = list(unroll_steps) if isinstance(unroll_steps, (list, tuple)) else [unroll_steps] * len(seeds)
        if len(steps) != len(seeds) or any(isinstance(k, bool) or int(k) != k or k < 0 for k in steps):
            raise ValueError(f"unroll_steps must be an integer >= 0 or one such integer per seed "
                             f"({len(seeds)}), got {unroll_steps!r}")
        if isinstance(source, (list, tuple)) and len(source) != len(seeds):
            raise ValueError(f"give one source, or one source per seed ({len(seeds)}); got {len(source)}")
        arms = {f"K={int(k)}": Unrolled(k=int(k), optimizer=unroll_optimizer, lr=unroll_lr, objective=objective)
                for k in dict.fromkeys(steps)}
        self.clip = None
        Population.__init__(self, make_generator, make_discriminator, source, config, arms=arms,
                            members=[(f"K={int(k)}", s) for k, s in zip(steps, seeds)], device=device or "cpu")
        self.member_steps = self.scheme.member_steps
        self.unroll_steps = self.scheme.max_k
        self.unroll_update = self.scheme.update
        self.objective = self.scheme.resolved_objective
