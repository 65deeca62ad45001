"""Population step time before and after the population core, on CPU (or whatever device is present).

    python benchmarks/bench_population.py                          # this checkout's ganlib only
    python benchmarks/bench_population.py --before /path/to/old    # also an older checkout, interleaved

Times (median ms per training step) the two population cases the chapters run most:

* seed batch: ``SeedBatch`` of 5 seeds of the 2-D MLP GAN (hidden 128, depth 3, batch 128);
* auction: ``AuctionPopulation`` of N = 8 players (hidden 64, depth 2, batch 128): the control,
  selection only, and auction + L_aux.

The constructors are the same before and after the refactor, so one measurement script runs on
both; each repeat alternates the two checkouts (``--rounds``) so that load on a shared machine
hits both alike. Times are process CPU time (single-threaded by default), which a busy shared
machine disturbs less than wall-clock time. Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

MEASURE = r"""
import json, sys
sys.path.insert(0, {bench!r})
import torch
torch.set_num_threads({threads})
from ganlib.data import grid_of_gaussians, ring_of_gaussians
from ganlib.models import MLPDiscriminator, MLPGenerator
from ganlib.training import TrainConfig
from ganlib.training.auction import AuctionConfig, AuctionPopulation
from ganlib.training.batched import SeedBatch
import statistics, time

def ms_per_step(run, device, steps, repeats=3, warmup=5):
    # median CPU milliseconds per step: process time, so other jobs on a shared machine count less
    run(warmup)
    times = []
    for _ in range(repeats):
        start = time.process_time()
        run(steps)
        times.append((time.process_time() - start) / steps * 1000)
    return statistics.median(times)

cpu = torch.device("cpu")
cfg = dict(steps=10**9, batch_size=128, log_every=10**6, progress=False)
out = {{}}
batch = SeedBatch(lambda: MLPGenerator(hidden=128, depth=3), lambda: MLPDiscriminator(hidden=128, depth=3),
                  grid_of_gaussians(), TrainConfig(**cfg), seeds=range(5))
out["seed batch, 5 seeds"] = ms_per_step(lambda n: batch.fit(steps=batch.step + n), cpu, {steps})
for label, auction in [("control", None), ("selection only", AuctionConfig(aux=None)),
                       ("auction + L_aux", AuctionConfig(aux="output"))]:
    torch.manual_seed(0)
    Gs = [MLPGenerator(hidden=64, depth=2) for _ in range(8)]
    Ds = [MLPDiscriminator(hidden=64, depth=2) for _ in range(8)]
    pop = AuctionPopulation(Gs, Ds, ring_of_gaussians(), TrainConfig(**cfg, lr_d=1e-3, lr_g=1e-3), auction)
    out[f"auction N=8, {{label}}"] = ms_per_step(lambda n: pop.fit(steps=pop.step + n), cpu, {steps})
print(json.dumps(out))
"""


def measure(root: Path, steps: int, threads: int) -> dict:
    code = MEASURE.format(bench=str(Path(__file__).parent), threads=threads, steps=steps)
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=None, help="root of an older checkout to compare with")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the median is reported")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    roots = {"after": Path(__file__).resolve().parents[1]}
    if args.before is not None:
        roots = {"before": args.before.resolve(), **roots}
    runs = {name: [] for name in roots}
    for _ in range(args.rounds):
        for name, root in roots.items():
            runs[name].append(measure(root, args.steps, args.threads))
    median = lambda xs: sorted(xs)[len(xs) // 2]    # noqa: E731
    table = {name: {k: median([r[k] for r in rs]) for k in rs[0]} for name, rs in runs.items()}
    cases = list(table["after"])
    width = max(map(len, cases))
    print(f"CPU, {args.threads} thread(s), {args.steps} steps x {args.rounds} rounds; CPU ms per step (median)")
    print(f"{'':{width}}  " + "  ".join(f"{n:>8}" for n in table) + ("  after/before" if "before" in table else ""))
    for case in cases:
        row = "  ".join(f"{table[n][case]:8.2f}" for n in table)
        ratio = f"  {table['after'][case] / table['before'][case]:12.2f}" if "before" in table else ""
        print(f"{case:{width}}  {row}{ratio}")


if __name__ == "__main__":
    main()
