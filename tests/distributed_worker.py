"""What each of the 2 gloo processes of tests/test_distributed.py runs (importable by spawned children).

The process group is set up exactly as under ``torchrun``: the environment variables it sets,
then :func:`ganlib.training.distributed.init_from_env`.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta
from pathlib import Path

import torch

from ganlib.data import ring_of_gaussians
from ganlib.models import MLPDiscriminator, MLPGenerator
from ganlib.regularizers import r1_penalty
from ganlib.train import train_slice
from ganlib.training import CheckpointError, TrainConfig, Trainer, load_checkpoint, seed_everything
from ganlib.training.distributed import init_from_env, sweep

WORLD = 2
B = 8                          # per-rank batch
SWEEP_JOBS = [(arm, seed) for arm in ("ns", "hinge", "lsgan") for seed in (0, 1, 2)]
SWEEP_STEPS = 15
KILL_AT = 4


def make_models(seed=0):
    seed_everything(seed)
    # spectral norm: its u/v buffers must stay identical on every rank
    return MLPGenerator(hidden=16, depth=2), MLPDiscriminator(hidden=16, depth=2, spectral_norm=True)


def config(batch_size=B, **kw):
    return TrainConfig(steps=8, batch_size=batch_size, n_critic=2, log_every=3, snapshot_every=4, ema_decay=0.9,
                       progress=False, **kw)


def r1(D, real, fake):
    """R1 (a double backward through D): its gradient must be averaged over ranks with the loss's."""
    return r1_penalty(D, real, gamma=1.0)


def noisy_penalty(D, real, fake):
    """Draws from the global torch RNG, so resuming must restore each rank's."""
    return 0.01 * D(real + 0.1 * torch.randn_like(real)).square().mean()


class DiesAfterCheckpoint(Trainer):
    """Every rank dies (no clean-up at all) in the middle of a step, two steps after the checkpoint
    of step KILL_AT was written: after the first D update of step KILL_AT + 2."""

    supports_data_parallel = True

    def d_step(self, real):
        stats = super().d_step(real)
        if self.step == KILL_AT + 1:      # self.step counts finished steps
            os._exit(0)
        return stats


def outcome(trainer: Trainer) -> dict:
    return {"G": trainer.G.state_dict(), "D": trainer.D.state_dict(), "G_ema": trainer.G_ema.state_dict(),
            "history": trainer.history, "snapshots": trainer.snapshots}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, port: int, out: str, stage: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ctx = init_from_env("cpu", timeout=timedelta(seconds=60))
    assert (ctx.rank, ctx.world_size, ctx.backend) == (rank, WORLD, "gloo"), ctx
    out = Path(out)
    try:
        if stage == "first":
            tr = Trainer(*make_models(), ring_of_gaussians(), config(), d_penalty=r1)
            tr.fit()
            torch.save(outcome(tr), out / f"ddp_rank{rank}.pt")

            run_slice = lambda mine: train_slice(mine, steps=SWEEP_STEPS, batch_size=16, n_eval=200)
            by_arm = sweep(SWEEP_JOBS, run_slice, group=lambda job: job[0])   # ranks get 6 and 3 jobs
            by_count = sweep(SWEEP_JOBS, run_slice)                            # 5 and 4: hinge is split
            if rank == 0:
                torch.save({"by_arm": by_arm, "by_count": by_count}, out / "sweep.pt")

            straight = Trainer(*make_models(), ring_of_gaussians(), config(), d_penalty=noisy_penalty)
            torch.manual_seed(100 + rank)          # ranks' global RNGs differ, as they may in real runs
            straight.fit()
            if rank == 0:
                torch.save(outcome(straight), out / "straight.pt")

            doomed = DiesAfterCheckpoint(*make_models(), ring_of_gaussians(),
                                         config(checkpoint_dir=str(out / "ckpt"), checkpoint_every=KILL_AT),
                                         d_penalty=noisy_penalty)
            torch.manual_seed(100 + rank)
            doomed.fit()
            raise AssertionError("the run should have died at its checkpoint")
        elif stage == "resume":
            if rank == 0:
                found = load_checkpoint(out / "ckpt" / "checkpoint.pt")["step"]
                (out / "found_step.txt").write_text(str(found))
            torch.manual_seed(int(time.time()))   # a new process: its global RNG is anywhere
            resumed = Trainer(*make_models(), ring_of_gaussians(),
                              config(checkpoint_dir=str(out / "ckpt"), checkpoint_every=KILL_AT),
                              d_penalty=noisy_penalty)
            resumed.fit()
            if rank == 0:
                torch.save(outcome(resumed), out / "resumed.pt")
                (out / "bad").mkdir()
                (out / "bad" / "checkpoint.pt").write_bytes(b"not a checkpoint")
            ctx.barrier()
            try:   # rank 0 reads the file and must pass its error on, not leave rank 1 waiting
                Trainer(*make_models(), ring_of_gaussians(), config(checkpoint_dir=str(out / "bad"))).fit()
                (out / f"bad_rank{rank}.txt").write_text("no error")
            except CheckpointError as err:
                (out / f"bad_rank{rank}.txt").write_text(str(err))
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
