"""Train the book's GANs from the command line: one process, or several under ``torchrun``.

One GAN, data-parallel over two processes (``--batch-size`` is per process)::

    torchrun --nproc_per_node=2 -m ganlib.train --experiment ring --steps 2000 --batch-size 64 \\
        --checkpoint-dir runs/ring

A sweep (arms = losses, x seeds), the jobs split across the processes, each process training
its slice as one vmapped :class:`~ganlib.training.batched.SeedBatch` per arm::

    torchrun --nproc_per_node=2 -m ganlib.train --sweep --arms ns,hinge,lsgan --seeds 0,1,2 \\
        --steps 1000 --out sweep.pt

Without ``torchrun`` the same commands run in one process. ``--device cuda`` gives every
process its own GPU (``cuda:LOCAL_RANK``) and the ``nccl`` backend; on CPUs ``gloo`` is used.
Rank 0 prints the log, shows progress and writes the checkpoint / the ``--out`` file.
The experiments follow the book's chapters: ``ring`` (chapter 3's MLP GAN, on chapter 1's ring
of 8 Gaussians) and ``digits`` (a DCGAN on the 8x8 digits).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .data import load_dataset
from .metrics.mixture import mode_statistics
from .models import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from .training import TrainConfig, Trainer, seed_everything
from .training.batched import SeedBatch
from .training.distributed import DistContext, init_from_env, local_device, sweep

logger = logging.getLogger("ganlib.train")

EVAL_SEED = 10_007     # latent codes of the evaluation samples (the same for every job)


@dataclass(frozen=True)
class Experiment:
    """Data, the two networks and the chapter's optimizer settings (overridable on the command line)."""

    dataset: str
    make_generator: Callable
    make_discriminator: Callable
    config: dict = field(default_factory=dict)


EXPERIMENTS = {
    # chapter 3's MLPs (3 hidden layers of 64) and Adam settings (1e-3, betas (0.5, 0.999), batch 64),
    # on chapter 1's ring of eight Gaussians
    "ring": Experiment("ring", lambda: MLPGenerator(latent_dim=2, hidden=64, depth=3),
                       lambda: MLPDiscriminator(hidden=64, depth=3),
                       dict(batch_size=64, lr_d=1e-3, lr_g=1e-3, betas_d=(0.5, 0.999), betas_g=(0.5, 0.999))),
    # DCGAN (Radford et al., 2016) on the 8x8 digits: Adam 2e-4, betas (0.5, 0.999), batch 64.
    # Deviation: D uses spectral norm (Miyato et al., 2018) instead of DCGAN's BatchNorm
    "digits": Experiment("digits", lambda: DCGANGenerator(latent_dim=32, image_size=8, width=32),
                         lambda: DCGANDiscriminator(image_size=8, width=32, spectral_norm=True),
                         dict(batch_size=64)),
}


def make_config(experiment: str, **overrides) -> TrainConfig:
    """The experiment's :class:`TrainConfig` with ``overrides`` (``None`` values are ignored)."""
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; choose one of {', '.join(EXPERIMENTS)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    return TrainConfig(**{**EXPERIMENTS[experiment].config, **given})


def train_slice(jobs: Sequence[tuple[str, int]], experiment: str = "ring", steps: int = 500,
                batch_size: int | None = None, device="cpu", n_eval: int = 1000) -> list[dict]:
    """Train the ``(loss, seed)`` jobs: one vmapped :class:`SeedBatch` per loss; one result per job.

    A result is ``{"arm", "seed", "history", "samples", "modes_covered", "high_quality_rate",
    "reverse_kl"}`` (CPU tensors and Python numbers). Model ``s`` of a ``SeedBatch`` draws only
    from generators seeded with its own seed and the evaluation codes are the same for every
    job, so a job's result does not depend on the other jobs of its slice, except in the last
    bits when its arm's batch has another size (measured: a seed trained alone vs beside two
    others, at most 2.4e-7 apart after 15 steps; seeds in batches of 2 and 3: identical).
    :func:`~ganlib.training.distributed.sweep` with ``group=`` by arm keeps the batches of one
    process, hence its results bit for bit.
    """
    spec = EXPERIMENTS[experiment]
    source = load_dataset(spec.dataset)
    results: dict[tuple[str, int], dict] = {}
    for arm in dict.fromkeys(arm for arm, _ in jobs):            # arms in order of appearance
        seeds = [seed for a, seed in jobs if a == arm]
        config = make_config(experiment, steps=steps, batch_size=batch_size, loss=arm, progress=False,
                             log_every=max(1, steps // 10))
        runs = SeedBatch(spec.make_generator, spec.make_discriminator, source, config, seeds, device=device)
        runs.fit()
        z = torch.randn(n_eval, runs.latent_dim, generator=torch.Generator().manual_seed(EVAL_SEED))
        samples = runs.generate(z.to(runs.device).expand(len(seeds), -1, -1)).detach().float().cpu()
        stats = mode_statistics(samples, source) if experiment == "ring" else None
        for s, seed in enumerate(seeds):
            result = {"arm": arm, "seed": seed, "samples": samples[s],
                      "history": {k: [row[s] if isinstance(row, list) else row for row in v]
                                  for k, v in runs.history.items()}}
            if stats is not None:
                result.update(modes_covered=int(stats.modes_covered[s]),
                              high_quality_rate=float(stats.high_quality_rate[s]),
                              reverse_kl=float(stats.reverse_kl[s]))
            results[(arm, seed)] = result
    return [results[(arm, seed)] for arm, seed in jobs]


def train_one(experiment: str, config: TrainConfig, device: torch.device) -> Trainer:
    """Build and fit one GAN (data-parallel when a process group is initialised)."""
    spec = EXPERIMENTS[experiment]
    seed_everything(config.seed)     # the same initial weights on every rank (DDP also broadcasts rank 0's)
    G, D = spec.make_generator().to(device), spec.make_discriminator().to(device)
    log = lambda tr: logger.info("step %d: d_loss %.4f, g_loss %.4f", tr.step, tr.history["d_loss"][-1],
                                 tr.history["g_loss"][-1])
    trainer = Trainer(G, D, load_dataset(spec.dataset), config, callbacks=[log])   # callbacks: rank 0 only
    trainer.fit()
    return trainer


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ganlib.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", choices=sorted(EXPERIMENTS), default="ring")
    p.add_argument("--steps", type=int, default=1000, help="generator updates")
    p.add_argument("--batch-size", type=int, default=None,
                   help="samples per update per process (global batch = this x processes); default: the experiment's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--loss", default=None, help="a loss of ganlib.losses (default: ns)")
    p.add_argument("--device", default="cpu", help="cpu, cuda (each process takes cuda:LOCAL_RANK) or cuda:N")
    p.add_argument("--checkpoint-dir", default=None, help="resume from / write checkpoints here (rank 0 writes)")
    p.add_argument("--checkpoint-every", type=int, default=0)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--sweep", action="store_true", help="train arms x seeds, split across the processes")
    p.add_argument("--arms", default="ns,hinge,lsgan", help="sweep: comma-separated losses")
    p.add_argument("--seeds", default="0,1,2", help="sweep: comma-separated seeds")
    p.add_argument("--out", default=None, help="sweep: save the gathered results here (torch.save, rank 0)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = local_device(args.device)
    ctx = init_from_env(device)
    logging.basicConfig(level=logging.INFO if ctx.is_main else logging.WARNING,
                        format=f"[rank {ctx.rank}] %(message)s", stream=sys.stdout)
    logger.info("%d process(es), backend %s, device %s", ctx.world_size, ctx.backend or "none", device)
    start = time.perf_counter()
    try:
        if args.sweep:
            run_sweep(args, ctx, device)
        else:
            config = make_config(args.experiment, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                                 loss=args.loss, checkpoint_dir=args.checkpoint_dir,
                                 checkpoint_every=args.checkpoint_every, log_every=args.log_every,
                                 progress=ctx.is_main and sys.stderr.isatty())
            logger.info("experiment %s: batch %d per process x %d = global batch %d", args.experiment,
                        config.batch_size, ctx.world_size, config.batch_size * ctx.world_size)
            trainer = train_one(args.experiment, config, device)
            logger.info("done: step %d, %.2f s of training (all sessions of this run), %.1f ms/step",
                        trainer.step, trainer.elapsed, 1000 * trainer.elapsed / max(1, trainer.step))
            if args.experiment == "ring" and ctx.is_main:
                stats = mode_statistics(trainer.sample(2500), trainer.source.to("cpu"))
                logger.info("modes covered %d of 8, high-quality rate %.3f", int(stats.modes_covered),
                            float(stats.high_quality_rate))
        logger.info("wall time %.2f s", time.perf_counter() - start)
    finally:
        if ctx.enabled:
            torch.distributed.destroy_process_group()
    return 0


def run_sweep(args, ctx: DistContext, device: torch.device) -> list[dict]:
    if args.experiment != "ring":
        raise SystemExit("--sweep trains vmapped MLPs (SeedBatch, no BatchNorm): use --experiment ring")
    jobs = [(arm, seed) for arm in args.arms.split(",") for seed in _ints(args.seeds)]
    logger.info("sweep: %d jobs (%s x seeds %s) over %d process(es)", len(jobs), args.arms, args.seeds,
                ctx.world_size)
    # group by arm: each arm's seeds form one vmapped batch, as in one process (bit-identical results)
    results = sweep(jobs, lambda mine: train_slice(mine, args.experiment, args.steps, args.batch_size, device),
                    group=lambda job: job[0], context=ctx)
    if ctx.is_main:
        for r in results:
            logger.info("  %-8s seed %-3d modes %d/8  HQ %.3f  reverse KL %.3f", r["arm"], r["seed"],
                        r["modes_covered"], r["high_quality_rate"], r["reverse_kl"])
        if args.out:
            torch.save(results, args.out)
            logger.info("results of %d jobs saved to %s", len(results), args.out)
    return results


if __name__ == "__main__":
    sys.exit(main())
