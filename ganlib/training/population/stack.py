"""P copies of one architecture as stacked tensors, called as one batched computation.

The parameters of P independently initialised modules are stacked along a leading member axis
(``torch.func.stack_module_state``) and the P forward passes run as one call over inputs
``[P, n, ...]``:

* ganlib's MLPs run as **grouped layers** -- one ``baddbmm`` per linear layer for all members --
  which has a fraction of ``vmap``'s per-call Python overhead (it dominates at the sizes of the
  2-D experiments); any other module runs through ``torch.func.vmap(functional_call)``;
* **spectral normalization** (Miyato et al., 2018, Algorithm 1): PyTorch's parametrization
  cannot run under ``vmap`` (it updates its power-iteration vectors with ``out=``), so the same
  rule runs here on the stacked weights -- one power iteration per call in training mode, ``u``
  and ``v`` constants in the backward pass, conv kernels flattened to ``[out, in*k*k]`` -- exactly
  what ``torch.nn.utils.parametrizations.spectral_norm`` does for each module alone (tests
  compare the two).

:meth:`Stack.export` gives member ``p`` back as an ordinary ``nn.Module``.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn.utils import parametrize

__all__ = ["Stack", "stacked_spectral_norm", "grouped_mlp"]


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
                raise NotImplementedError(f"stacked spectral norm supports dim=0 (Linear, Conv); {path} uses {sn.dim}")
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
    """``W / sigma(W)`` for a stack of P weights ``W [P, out, ...]``, with persistent power-iteration
    vectors ``u [P, out]`` and ``v [P, in]`` updated in place (when ``update``).

    One step of ``torch.nn.utils.parametrizations.spectral_norm`` per member:
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


_ACTIVATIONS = {nn.ReLU: lambda h, m: F.relu(h), nn.LeakyReLU: lambda h, m: F.leaky_relu(h, m.negative_slope),
                nn.Tanh: lambda h, m: torch.tanh(h), nn.Sigmoid: lambda h, m: torch.sigmoid(h)}


def grouped_mlp(module: nn.Module):
    """A batched forward ``(params, x [P, n, in]) -> [P, n, out]`` for ganlib's MLPs built from
    grouped layers (one ``baddbmm`` per linear layer), or ``None`` for other modules.

    Same result as ``vmap(functional_call(module))`` (up to float round-off) with a fraction of
    its per-call Python overhead."""
    from ...models.mlp import MLPDiscriminator, MLPGenerator

    if not isinstance(module, (MLPGenerator, MLPDiscriminator)) or type(module).forward not in (
            MLPGenerator.forward, MLPDiscriminator.forward) or not isinstance(getattr(module, "net", None), nn.Sequential):
        return None
    plan = []
    for i, layer in enumerate(module.net):
        if type(layer) is nn.Linear:
            plan.append(("linear", f"net.{i}.weight", f"net.{i}.bias", None))
        elif type(layer) in _ACTIVATIONS:
            plan.append(("act", None, None, layer))
        else:                                   # parametrized or unknown layers
            return None
    squeeze = isinstance(module, MLPDiscriminator) and module.out_dim == 1

    def forward(params: dict, x: torch.Tensor) -> torch.Tensor:
        h = x
        for kind, w, b, layer in plan:
            if kind == "linear":
                h = torch.baddbmm(params[b].unsqueeze(1), h, params[w].transpose(1, 2))
            else:
                h = _ACTIVATIONS[type(layer)](h, layer)
        return h.squeeze(-1) if squeeze else h

    return forward


class _MethodCall(nn.Module):
    def __init__(self, inner: nn.Module, method: str):
        super().__init__()
        self.inner, self.method = inner, method

    def forward(self, x):
        return getattr(self.inner, self.method)(x)


class Stack:
    """P modules of one architecture as stacked leaves ``params[name]: [P, ...]`` and one batched call.

    Args:
        modules: P modules with identical parameter shapes (their current weights are the
            members' initialisations); no BatchNorm (it mixes a batch, which a stacked
            call cannot reproduce member by member).
        device: where the stacked tensors live (default: the first module's device).
        grouped: run ganlib's MLPs as grouped layers (``False``: always ``vmap``). Same numbers.

    Call: ``stack(x [P, n, ...]) -> [P, n, ...]``; ``params=`` substitutes other stacked
    parameters (same keys, e.g. an unrolled copy), ``update_sn=False`` skips the power
    iteration, ``method="embed"`` calls another method of the module.
    """

    def __init__(self, modules: Sequence[nn.Module], device=None, grouped: bool = True):
        modules = list(modules)
        if not modules:
            raise ValueError("a Stack needs at least one module")
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules[0].modules()):
            raise ValueError("stacked models run as one batched call: use networks without BatchNorm "
                             "(norm='none' or norm='layer'), or train them one by one with Trainer")
        shapes = [tuple((k, tuple(p.shape)) for k, p in m.named_parameters()) for m in modules]
        if any(s != shapes[0] for s in shapes):
            raise ValueError("all stacked modules must have the same architecture (parameter names and shapes)")
        self.device = torch.device(device) if device is not None else next(modules[0].parameters()).device
        params, buffers = stack_module_state(modules)
        self.params = {k: v.detach().to(self.device).requires_grad_(True) for k, v in params.items()}
        self.buffers = {k: v.detach().to(self.device) for k, v in buffers.items()}
        self.base = copy.deepcopy(modules[0]).to("meta")
        plain, self.sn, self._rename = _spectral_norm_entries(self.base)
        self._sn_buffers = {e[2] for e in self.sn} | {e[3] for e in self.sn}
        self._plain = plain
        self._grouped = grouped_mlp(plain) if grouped else None
        if self._grouped is not None and any(k not in self._sn_buffers for k in self.buffers):
            self._grouped = None
        self._vmapped = vmap(lambda p, b, x: functional_call(plain, (p, b), (x,)), randomness="different")
        self._methods: dict[str, object] = {}
        self.training = True

    def __len__(self) -> int:
        return next(iter(self.params.values())).shape[0]

    @property
    def spectral_norm(self) -> bool:
        return bool(self.sn)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def train(self, mode: bool = True) -> "Stack":
        self.training = mode
        return self

    def eval(self) -> "Stack":
        return self.train(False)

    def weights(self, params: dict | None = None, update_sn: bool = True) -> tuple[dict, dict]:
        """The effective ``(weights, buffers)`` of the plain module: spectral norm applied."""
        params = self.params if params is None else params
        if not self.sn:
            return params, self.buffers
        weights = {self._rename.get(k, k): p for k, p in params.items()}
        for wkey, okey, ukey, vkey, eps, n_iter in self.sn:
            weights[wkey] = stacked_spectral_norm(params[okey], self.buffers[ukey], self.buffers[vkey],
                                                  eps, n_iter, update=update_sn and self.training)
        return weights, {k: b for k, b in self.buffers.items() if k not in self._sn_buffers}

    def __call__(self, x: torch.Tensor, params: dict | None = None, update_sn: bool = True,
                 method: str | None = None) -> torch.Tensor:
        if x.shape[0] != len(self):
            raise ValueError(f"inputs need a leading axis of {len(self)} (one slice per member), got {tuple(x.shape)}")
        weights, buffers = self.weights(params, update_sn)
        if method is not None:
            if method not in self._methods:
                wrapped = _MethodCall(self._plain, method)
                self._methods[method] = vmap(lambda p, b, xi: functional_call(wrapped, (p, b), (xi,)),
                                             randomness="different")
            weights = {f"inner.{k}": v for k, v in weights.items()}
            buffers = {f"inner.{k}": v for k, v in buffers.items()}
            return self._methods[method](weights, buffers, x)
        if self._grouped is not None:
            return self._grouped(weights, x)
        return self._vmapped(weights, buffers, x)

    def export(self, p: int, like: nn.Module | None = None) -> nn.Module:
        """Member ``p`` as an ordinary module (a copy; ``like`` gives the module to copy into)."""
        n = len(self)
        if not -n <= p < n:
            raise ValueError(f"member index must be in [0, {n}), got {p}")
        module = copy.deepcopy(like) if like is not None else copy.deepcopy(self.base).to_empty(device=self.device)
        module.load_state_dict({k: v[p].detach().clone() for k, v in {**self.params, **self.buffers}.items()})
        return module

    def tile(self, times: int) -> "Stack":
        """A stack of ``times * P`` members: this one repeated (new leaves, copied buffers)."""
        new = copy.copy(self)
        new.params = {k: v.detach().repeat(times, *([1] * (v.ndim - 1))).requires_grad_(True)
                      for k, v in self.params.items()}
        new.buffers = {k: v.repeat(times, *([1] * (v.ndim - 1))) for k, v in self.buffers.items()}
        return new

    def state_dict(self) -> dict:
        return {"params": {k: v.detach().clone() for k, v in self.params.items()},
                "buffers": {k: v.clone() for k, v in self.buffers.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Copy saved tensors in place (optimizers keep pointing at the same leaves)."""
        for part in ("params", "buffers"):
            mine, saved = getattr(self, part), state[part]
            if set(mine) != set(saved) or any(mine[k].shape != saved[k].shape for k in mine):
                raise ValueError(f"saved {part} do not match this stack's (another architecture or member count)")
            with torch.no_grad():
                for k, v in mine.items():
                    v.copy_(saved[k])
