"""Several processes, one experiment: data-parallel training and sweeps with ``torch.distributed``.

Everything here is PyTorch's own stack: processes are started by ``torchrun``, talk through
``torch.distributed`` (``gloo`` on CPUs, ``nccl`` on NVIDIA GPUs) and the two networks of a
:class:`~ganlib.training.Trainer` are wrapped in ``DistributedDataParallel`` (DDP).

* :func:`init_from_env` turns the environment ``torchrun`` sets (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) into a process group. A script that already
  called ``torch.distributed.init_process_group`` itself does not need it: a ``Trainer`` built
  while a process group is initialised trains data-parallel over it.
* :class:`DistContext` is what a ``Trainer`` holds: rank, world size and the few collectives it
  uses (a mean of the logged statistics, gathering every rank's RNG state into the checkpoint,
  rank 0 reading files for everyone). In a single process every method is the identity, so the
  trainer's code has no ``if distributed`` branches.
* :func:`stream_seed` gives each rank its own data and noise streams: rank ``r`` of a run with
  seed ``s`` draws exactly what a single-process run would draw from a generator seeded with
  ``stream_seed(s, r)``. Rank 0 keeps the single-process seeds, so a one-rank run *is* the
  single-process run, and a two-rank run with per-rank batch ``B`` is a one-process run with
  batch ``2B`` whose batches are rank 0's ``B`` samples followed by rank 1's (a test checks it).
* :func:`sweep` splits a list of jobs (arms x seeds) across ranks, runs each rank's slice with a
  user callable (e.g. one vmapped :class:`~ganlib.training.batched.SeedBatch` per arm) and
  gathers the results, in job order, on every rank.

DDP and the two GAN updates (how :class:`~ganlib.training.Trainer` uses this module):

* **D's gradients from the G step.** The G step needs ``dD(G(z))/dθ_G``, which back-propagates
  *through* D. DDP averages a parameter's gradient in a hook that fires when autograd
  accumulates it, and only after a forward *through the DDP wrapper* armed it. So the G step
  calls the plain discriminator (not its wrapper) with ``requires_grad`` off: no gradient reaches
  D's parameters and D's reducer is never armed; the D step's ``zero_grad`` clears D anyway.
  The generator is called through its wrapper in the G step, so its gradients are averaged.
  A ``d_penalty`` receives the plain D inside the D step: autograd sums the penalty's gradient
  into each parameter before DDP's hook fires, so loss and penalty are averaged together (R1, a
  double backward, is in the two-rank test).
* **Buffers.** DDP copies rank 0's buffers to every rank before each forward through a wrapper
  (``broadcast_buffers=True``, the default, kept). Spectral norm's power-iteration vectors ``u``
  and ``v`` are buffers updated in place by every training-mode forward; since every rank holds
  the same weights (same initial broadcast, same averaged gradients, same optimizer) and the same
  ``u``, the iteration gives the same vectors on every rank and the broadcast changes nothing
  (the two-rank test finds them identical).
  BatchNorm is different: in training mode each rank normalises with the statistics of *its own*
  batch (so a two-rank run is not a one-process run with the double batch), and its running
  averages, used in eval mode, are rank 0's after every broadcast. ``sync_batchnorm=True``
  (CUDA only) converts BatchNorm to ``SyncBatchNorm``, which normalises over the global batch.
* **Statistics and checkpoints.** The per-step statistics are averaged over ranks when they are
  copied to the history (one collective every ``log_every`` steps); D's and G's gradient norms
  are computed after DDP's averaging and are the same on every rank. Rank 0 writes the
  checkpoint, which holds every rank's RNG states; resuming needs the same world size.
  Callbacks and the progress bar run on rank 0 only. The global ``torch`` generator (dropout,
  noise inside some penalties) is the user's: the trainer stores and restores it per rank but
  does not seed it per rank.
"""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from typing import Any, Callable, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

J = TypeVar("J")
R = TypeVar("R")

__all__ = ["DistContext", "init_from_env", "stream_seed", "split_jobs", "sweep"]


def init_from_env(device: str | torch.device | None = None, backend: str | None = None,
                  timeout: timedelta | None = None) -> "DistContext":
    """Initialise the default process group from ``torchrun``'s environment variables.

    Does nothing when the group already exists or when the process was not started by a
    launcher (no ``WORLD_SIZE`` in the environment): the returned context is then a
    single-process one. ``backend`` defaults to ``nccl`` for a CUDA ``device`` and ``gloo``
    otherwise. On CUDA every process takes the GPU ``LOCAL_RANK`` (``torchrun`` numbers the
    processes of one machine 0, 1, ...), so ``device="cuda"`` means "my GPU". ``timeout`` bounds
    every collective (PyTorch's default is long: 10 to 30 minutes, by backend).
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if "WORLD_SIZE" in os.environ and dist.is_available() and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        backend = backend or ("nccl" if device.type == "cuda" else "gloo")
        dist.init_process_group(backend, **({} if timeout is None else {"timeout": timeout}))
    return DistContext.detect()


def local_device(device: str | torch.device) -> torch.device:
    """``"cuda"`` -> this process's GPU (``cuda:LOCAL_RANK`` under ``torchrun``); others unchanged."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def stream_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s noise stream (its data stream uses this plus one).

    Rank 0 keeps ``seed``, exactly like a single-process :class:`~ganlib.training.Trainer`;
    other ranks get a 63-bit hash of ``(seed, rank)``, so no two ranks (and no two small seeds)
    share a stream.
    """
    if rank < 0:
        raise ValueError(f"rank must be >= 0, got {rank}")
    if rank == 0:
        return int(seed)
    digest = hashlib.sha256(f"ganlib-rank-stream:{int(seed)}:{int(rank)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class DistContext:
    """Rank, world size and the collectives a trainer needs; a no-op in one process.

    Build it with :meth:`detect` (reads the default process group, if any).
    """

    def __init__(self, rank: int = 0, world_size: int = 1, backend: str | None = None):
        self.rank, self.world_size, self.backend = rank, world_size, backend

    @classmethod
    def detect(cls) -> "DistContext":
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), dist.get_backend())
        return cls()

    @property
    def enabled(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs, shows progress and writes files."""
        return self.rank == 0

    def __repr__(self) -> str:
        return f"DistContext(rank={self.rank}, world_size={self.world_size}, backend={self.backend!r})"

    def wrap(self, module: nn.Module, device: torch.device, sync_batchnorm: bool = False) -> nn.Module:
        """``module`` in a ``DistributedDataParallel`` wrapper (the module itself in one process).

        The wrapper shares the module's parameters: optimizers, EMA and checkpoints keep using
        the plain module. Construction copies rank 0's parameters and buffers to every rank.
        """
        if not self.enabled:
            return module
        if sync_batchnorm:
            if device.type != "cuda":
                raise ValueError("sync_batchnorm needs CUDA GPUs (SyncBatchNorm has no CPU kernel); "
                                 "train on GPUs or leave sync_batchnorm=False")
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        device_ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def average(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of ``tensor`` over ranks (a new tensor; ``tensor`` itself is unchanged)."""
        if not self.enabled:
            return tensor
        total = tensor.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)   # gloo has no AVG
        return total / self.world_size

    def all_gather(self, obj: Any) -> list:
        """``[obj of rank 0, obj of rank 1, ...]`` on every rank (picklable objects)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def from_main(self, fn: Callable[..., R], *args, **kwargs) -> R:
        """``fn(*args, **kwargs)`` computed on rank 0 and sent to every rank.

        An exception on rank 0 is raised on every rank (nobody is left waiting in a collective).
        Used for reading checkpoints, so ranks on other machines need not see rank 0's disk.
        """
        if not self.enabled:
            return fn(*args, **kwargs)
        box: list = [None]
        if self.is_main:
            try:
                box[0] = (True, fn(*args, **kwargs))
            except Exception as err:  # sent to the other ranks, then re-raised everywhere
                box[0] = (False, err)
        dist.broadcast_object_list(box, src=0)
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def _slices(jobs: list, world_size: int, group: Callable | None) -> list[list[int]]:
    """Job indices of each rank: whole groups in order of first appearance, each on the rank whose
    share of the jobs (``len(jobs) / world_size`` each) holds the group's first job."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    members: dict = {}
    for i, job in enumerate(jobs):
        members.setdefault(group(job) if group is not None else i, []).append(i)
    out: list[list[int]] = [[] for _ in range(world_size)]
    done = 0
    for indices in members.values():
        out[done * world_size // len(jobs)].extend(indices)
        done += len(indices)
    return out


def split_jobs(jobs: Sequence[J], world_size: int, group: Callable[[J], Any] | None = None) -> list[list[J]]:
    """``jobs`` cut into ``world_size`` slices of about equal size, one per rank.

    Jobs with the same ``group(job)`` (e.g. the arm of an ``(arm, seed)`` pair) stay on one rank;
    without ``group`` consecutive jobs are cut into contiguous slices. A rank may get nothing
    when there are fewer groups than ranks.
    """
    jobs = list(jobs)
    return [[jobs[i] for i in indices] for indices in _slices(jobs, world_size, group)] if jobs else \
        [[] for _ in range(world_size)]


def sweep(jobs: Sequence[J], run_slice: Callable[[list[J]], Sequence[R]], group: Callable[[J], Any] | None = None,
          context: DistContext | None = None) -> list[R]:
    """Run ``jobs`` (e.g. ``(arm, seed)`` pairs) split across ranks; the results of all, in job order.

    Every rank calls ``run_slice`` on its slice (:func:`split_jobs`; a rank with no jobs does not
    call it) and must get back one picklable result per job, in order. The results are gathered
    with ``all_gather_object`` and returned on every rank in the order of ``jobs``: the list
    ``run_slice(list(jobs))`` returns in one process, as long as a job's result does not depend on
    which other jobs share its slice.

    For vmapped populations that holds only up to float round-off: a model trained alone and the
    same model trained beside others may differ in the last bit (the batched kernels change with
    the batch; one :class:`~ganlib.training.batched.SeedBatch` seed alone vs in a batch of three
    differed by at most 2.4e-7 after 15 steps). ``group=lambda job: job[0]`` keeps every arm on
    one rank, so each vmapped batch is the one-process batch and the results are bit for bit the
    one-process results. Results travel through pickle: keep them small (histories, metrics,
    CPU tensors).
    """
    context = context or DistContext.detect()
    jobs = list(jobs)
    if not jobs:
        raise ValueError("sweep needs at least one job")
    indices = _slices(jobs, context.world_size, group)[context.rank]
    mine = [jobs[i] for i in indices]
    results = list(run_slice(mine)) if mine else []
    if len(results) != len(mine):
        raise ValueError(f"run_slice returned {len(results)} results for {len(mine)} jobs; "
                         "it must return one result per job, in the order of the jobs it was given")
    ordered: list = [None] * len(jobs)
    for part in context.all_gather(list(zip(indices, results))):
        for i, result in part:
            ordered[i] = result
    return ordered
