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

import copy
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from torch.nn.utils import parametrize

from ..losses import LossPair, get_loss
from .batched import SeedBatch
from .trainer import TrainConfig


def _spectral_norm_entries(template: nn.Module) -> tuple[nn.Module, list[tuple], dict[str, str]]:
    """A copy of ``template`` without its spectral-norm parametrizations, the list of
    ``(weight key, original key, u key, v key, eps, n_power_iterations)`` and the key renaming."""
    from torch.nn.utils.parametrizations import _SpectralNorm

    plain = copy.deepcopy(template)
    entries, rename = [], {}
    for path, module in list(plain.named_modules()):
        if not parametrize.is_parametrized(module):
            continue
        for name, plist in list(module.parametrizations.items()):
            if name != "weight" or len(plist) != 1 or not isinstance(plist[0], _SpectralNorm):
                raise NotImplementedError(f"only spectral_norm on 'weight' is supported (found {path}.{name})")
            sn = plist[0]
            if sn.dim != 0:
                raise NotImplementedError(f"batched spectral norm supports dim=0 (Linear, Conv); {path} uses {sn.dim}")
            pre = f"{path}." if path else ""
            original = f"{pre}parametrizations.weight.original"
            entries.append((f"{pre}weight", original, f"{pre}parametrizations.weight.0._u",
                            f"{pre}parametrizations.weight.0._v", sn.eps, sn.n_power_iterations))
            rename[original] = f"{pre}weight"
            # deepcopy shares the dynamically created parametrized class with ``template``;
            # removing the parametrization deletes the property from that class, which would
            # break ``template`` too. Give the copy a class of its own first.
            cls = module.__class__
            module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
    return plain, entries, rename


def stacked_spectral_norm(W: torch.Tensor, u: torch.Tensor, v: torch.Tensor, eps: float = 1e-12,
                          n_power_iterations: int = 1, update: bool = True) -> torch.Tensor:
    """``W / sigma(W)`` for a stack of S weights ``W [S, out, ...]``, with persistent power-iteration
    vectors ``u [S, out]`` and ``v [S, in]`` updated in place (when ``update``).

    One step of ``torch.nn.utils.parametrizations.spectral_norm`` per model:
    ``u <- normalize(W v)``, ``v <- normalize(W^T u)``, then ``sigma = u^T W v`` with ``u``, ``v``
    held constant for the backward pass (Miyato et al., 2018, Algorithm 1).
    """
    Wm = W.flatten(2)
    if update:
        with torch.no_grad():
            uu, vv = u, v
            for _ in range(n_power_iterations):
                uu = F.normalize(torch.bmm(Wm, vv.unsqueeze(2)).squeeze(2), dim=1, eps=eps)
                vv = F.normalize(torch.bmm(Wm.transpose(1, 2), uu.unsqueeze(2)).squeeze(2), dim=1, eps=eps)
            u.copy_(uu)
            v.copy_(vv)
    sigma = torch.einsum("so,soi,si->s", u.clone(), Wm, v.clone())
    return W / sigma.reshape(-1, *([1] * (W.ndim - 1)))


class _FlatCritic(nn.Module):
    """The S critics seen as one function of a flat ``[S * n, ...]`` batch (for penalties)."""

    def __init__(self, batch: "PenalizedSeedBatch", n_models: int):
        super().__init__()
        object.__setattr__(self, "batch", batch)
        self.n_models = n_models

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.batch.discriminate(x.reshape(self.n_models, -1, *x.shape[1:]))
        return out.reshape(-1, *out.shape[2:])


class PenalizedSeedBatch(SeedBatch):
    """:class:`SeedBatch` plus an optional gradient penalty and spectral-normalized discriminators.

    Args (beyond :class:`SeedBatch`'s):
        d_penalty: a penalty of ``ganlib.regularizers`` (``GradientPenalty()``, ``DRAGANPenalty()``,
            ``R1Penalty()``) or any ``f(critic, real, fake) -> scalar`` averaging per-sample terms.
        losses: optional loss name per model (``len(seeds)`` names); overrides ``config.loss``.
            The optimizer settings, ``n_critic``, penalty and clipping stay shared. In such a
            mixed batch every model draws a real batch for its generator step (only the
            relativistic losses read it), so a non-relativistic model's data stream differs
            from a solo run's; it is still an independent run of the same algorithm.

    Discriminators built with ``spectral_norm=True`` are normalized per model automatically.
    ``history["d_loss"]`` holds each model's adversarial loss **without** the penalty (for WGAN
    critics, minus the critic's Earth-Mover estimate). The DRAGAN perturbation scale
    ``std(x)`` is taken over all S models' real batches together (same distribution).
    """

    def __init__(self, make_generator: Callable[[], nn.Module], make_discriminator: Callable[[], nn.Module],
                 source, config: TrainConfig, seeds: Sequence[int], device=None,
                 clip_weights: float | None = None, d_penalty: Callable | None = None,
                 losses: Sequence[str] | None = None):
        super().__init__(make_generator, make_discriminator, source, config, seeds, device=device,
                         clip_weights=clip_weights)
        if losses is not None:
            self._use_losses(list(losses))
        if d_penalty is not None and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                         for m in self._d_base.modules()):
            raise ValueError("a gradient penalty needs a discriminator without BatchNorm; build it with "
                             "norm='none' or norm='layer'")
        self.d_penalty = d_penalty
        plain, self._sn, self._sn_rename = _spectral_norm_entries(self._d_base)
        self._sn_buffers = {e[2] for e in self._sn} | {e[3] for e in self._sn}
        self._d_plain = plain
        self._d_plain_call = vmap(lambda p, b, x: functional_call(self._d_plain, (p, b), (x,)))

    def _use_losses(self, names: list[str]) -> None:
        if len(names) != self.n_models:
            raise ValueError(f"losses names one loss per model: got {len(names)} names for {self.n_models} seeds")
        pairs = {name: get_loss(name) for name in names}
        self.model_losses = names
        groups = [(pairs[n], torch.tensor([i for i, m in enumerate(names) if m == n], device=self.device))
                  for n in dict.fromkeys(names)]
        order = torch.cat([idx for _, idx in groups])
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order), device=self.device)

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

        self._d_loss, self._g_loss = grouped("d"), grouped("g")
        # routes SeedBatch's generator step through _g_loss with real scores at hand
        self.loss = LossPair("+".join(dict.fromkeys(names)), self._d_loss, self._g_loss, g_needs_real=True)

    @property
    def spectral_norm(self) -> bool:
        return bool(self._sn)

    def discriminate(self, x: torch.Tensor, update_sn: bool = True) -> torch.Tensor:
        """Scores ``[S, n]`` of ``x [S, n, ...]``; with spectral norm, one power iteration per
        call (as a PyTorch SN module in training mode) unless ``update_sn=False``."""
        if not self._sn:
            return super().discriminate(x)
        params = {self._sn_rename.get(k, k): p for k, p in self.d_params.items()}
        for wkey, okey, ukey, vkey, eps, n_iter in self._sn:
            params[wkey] = stacked_spectral_norm(self.d_params[okey], self.d_buffers[ukey], self.d_buffers[vkey],
                                                 eps, n_iter, update=update_sn)
        buffers = {k: b for k, b in self.d_buffers.items() if k not in self._sn_buffers}
        return self._d_plain_call(params, buffers, x)

    def _d_step(self, real: torch.Tensor) -> dict:
        with torch.no_grad():
            fake = self.generate(self._latent(real.shape[1]))
        real_logits, fake_logits = self.discriminate(real), self.discriminate(fake)
        losses = self._d_loss(real_logits, fake_logits)                 # [S]
        total = losses.sum()
        if self.d_penalty is not None:
            S = real.shape[0]
            penalty = self.d_penalty(_FlatCritic(self, S), real.flatten(0, 1), fake.flatten(0, 1))
            total = total + S * penalty          # = sum of the S models' penalties
        return self._update_d(total, losses, real_logits, fake_logits)
