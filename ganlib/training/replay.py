"""Replay buffers of generated codes for RB-MaEM's entropy term (Liu et al., 2023, Eq. 8): the
intended first-in-first-out buffer and the official code's shrinking one (its bug is described in
:mod:`ganlib.training.maem`), kept on the device, stackable (one buffer per member) and checkpointable.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .checkpoint import CheckpointError
from .maem_losses import ENTROPY_METRICS, _choice, nearest_neighbours

__all__ = ["ReplayBuffer", "OfficialReplayBuffer", "SelectBuffer"]


class ReplayBuffer:
    """First-in-first-out buffer of the last ``capacity`` codes (RB-MaEM, Eq. 8), on the device.

    ``data`` is ``[*batch_shape, capacity, m]`` (``batch_shape`` stacks independent buffers, one
    per seed of an ensemble); a circular write pointer makes :meth:`push` O(B). Starts full of
    ``U(-1, 1)`` codes (the official code's initialisation) or empty (``init="empty"``).
    The state (tensor, pointer, count) goes into checkpoints via :meth:`state_dict`.
    """

    def __init__(self, capacity: int, dim: int, batch_shape: Sequence[int] = (), init: str = "uniform",
                 generator: torch.Generator | None = None, device=None, dtype=torch.float32):
        if int(capacity) != capacity or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        if int(dim) != dim or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        _choice("init", init, ("uniform", "empty"))
        device = generator.device if device is None and generator is not None else device
        self.capacity, self.dim, self.batch_shape = int(capacity), int(dim), tuple(batch_shape)
        shape = (*self.batch_shape, self.capacity, self.dim)
        if init == "uniform":
            self.data = torch.rand(shape, generator=generator, device=device, dtype=dtype) * 2 - 1
            self.count = self.capacity
        else:
            self.data = torch.zeros(shape, device=device, dtype=dtype)
            self.count = 0
        self.ptr = 0   # next slot to overwrite (the oldest entry once full)

    def __len__(self) -> int:
        return self.count

    def reference(self) -> torch.Tensor:
        """The stored codes ``[*batch_shape, len, m]`` in storage order (what the 1-NN search uses)."""
        return self.data if self.count == self.capacity else self.data[..., :self.count, :]

    def contents(self) -> torch.Tensor:
        """The stored codes from oldest to newest."""
        if self.count < self.capacity:
            return self.data[..., :self.count, :]
        return torch.cat([self.data[..., self.ptr:, :], self.data[..., :self.ptr, :]], dim=-2)

    def nearest(self, codes: torch.Tensor, metric: str = "l2") -> torch.Tensor:
        """The nearest stored code of every code in the batch, ``[..., B, m]`` (see :func:`nearest_neighbours`)."""
        return nearest_neighbours(codes, self.reference(), metric)[1]

    @torch.no_grad()
    def push(self, codes: torch.Tensor) -> None:
        """Append ``codes [*batch_shape, B, m]`` (detached); the oldest entries drop out."""
        if codes.shape[:-2] != self.batch_shape or codes.shape[-1] != self.dim:
            raise ValueError(f"expected codes [*{self.batch_shape}, B, {self.dim}], got {tuple(codes.shape)}")
        codes = codes.detach().to(self.data.dtype)[..., -self.capacity:, :]
        b = codes.shape[-2]
        idx = (self.ptr + torch.arange(b, device=self.data.device)) % self.capacity
        self.data.index_copy_(self.data.ndim - 2, idx, codes)
        self.ptr = (self.ptr + b) % self.capacity
        self.count = min(self.capacity, self.count + b)

    def state_dict(self) -> dict:
        return {"kind": "fifo", "data": self.data, "ptr": self.ptr, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != "fifo" or tuple(state["data"].shape) != tuple(self.data.shape):
            raise CheckpointError(f"checkpointed buffer ({state.get('kind')}, {tuple(state['data'].shape)}) does "
                                  f"not match this run's FIFO buffer {tuple(self.data.shape)}")
        self.data = state["data"].to(self.data.device)
        self.ptr, self.count = int(state["ptr"]), int(state["count"])


class OfficialReplayBuffer:
    """The released code's buffer, bug included (``train.py``: ``entropy_buffer``, ``enrtopy_loss``).

    ``data`` is ``[*batch_shape, slots, B, m]``, initialised with the same ``capacity`` U(-1, 1)
    codes at every batch index. ``push`` keeps ``data[B:]`` along the slot axis and appends
    one slot, so the slots go ``capacity -> capacity - B + 1 -> ... -> 1``; the nearest
    neighbour of code ``b`` is searched only among slots at batch index ``b`` (mean squared
    distance, or cosine for ``metric="cosine"``). Use it with a fixed batch size.
    """

    def __init__(self, capacity: int, dim: int, batch_size: int, batch_shape: Sequence[int] = (),
                 generator: torch.Generator | None = None, device=None, dtype=torch.float32):
        for name, v in (("capacity", capacity), ("dim", dim), ("batch_size", batch_size)):
            if int(v) != v or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        device = generator.device if device is None and generator is not None else device
        self.capacity, self.dim, self.batch_size, self.batch_shape = capacity, dim, batch_size, tuple(batch_shape)
        codes = torch.rand((*self.batch_shape, capacity, 1, dim), generator=generator, device=device, dtype=dtype)
        self.data = (codes * 2 - 1).expand(*self.batch_shape, capacity, batch_size, dim).clone()

    def __len__(self) -> int:
        return self.data.shape[-3]

    def nearest(self, codes: torch.Tensor, metric: str = "l2") -> torch.Tensor:
        """Per batch index ``b``: the stored code at index ``b`` closest to ``codes[b]``, ``[..., B, m]``."""
        _choice("metric", metric, ENTROPY_METRICS)
        if codes.shape != (*self.batch_shape, self.batch_size, self.dim):
            raise ValueError(f"the official buffer needs codes [*{self.batch_shape}, {self.batch_size}, {self.dim}] "
                             f"(it stores whole batches), got {tuple(codes.shape)}")
        with torch.no_grad():
            q = codes.detach().unsqueeze(-3)                                   # [..., 1, B, m]
            if metric == "l2":
                idx = (self.data - q).square().mean(dim=-1).argmin(dim=-2)    # [..., B]
            else:
                idx = F.cosine_similarity(self.data, q, dim=-1, eps=1e-8).argmax(dim=-2)
        index = idx.unsqueeze(-2).unsqueeze(-1).expand(*idx.shape[:-1], 1, idx.shape[-1], self.dim)
        return torch.gather(self.data, -3, index).squeeze(-3)

    @torch.no_grad()
    def push(self, codes: torch.Tensor) -> None:
        """``torch.cat((buffer[batch_size:], batch[None]))`` along the slot axis, as in the code."""
        if codes.shape != (*self.batch_shape, self.batch_size, self.dim):
            raise ValueError(f"expected codes [*{self.batch_shape}, {self.batch_size}, {self.dim}], "
                             f"got {tuple(codes.shape)}")
        self.data = torch.cat([self.data[..., self.batch_size:, :, :], codes.detach().unsqueeze(-3)], dim=-3)

    def state_dict(self) -> dict:
        return {"kind": "official", "data": self.data}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != "official" or tuple(state["data"].shape[-2:]) != (self.batch_size, self.dim):
            raise CheckpointError("checkpointed buffer does not match this run's official buffer")
        self.data = state["data"].to(self.data.device)


class SelectBuffer:
    """Per-member choice between a FIFO and an official buffer (arms of one ensemble)."""

    def __init__(self, fifo: ReplayBuffer, official: OfficialReplayBuffer, use_official: torch.Tensor):
        self.fifo, self.official, self.use_official = fifo, official, use_official

    def nearest(self, codes: torch.Tensor, metric: str = "l2") -> torch.Tensor:
        return torch.where(self.use_official[:, None, None], self.official.nearest(codes, metric),
                           self.fifo.nearest(codes, metric))

    def push(self, codes: torch.Tensor) -> None:
        self.fifo.push(codes)
        self.official.push(codes)
