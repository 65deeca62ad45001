"""Cost of auction-inspired population training (The Bid Picture), on whatever device is present.

    python benchmarks/bench_auction.py                 # CPU here; CUDA where available
    python benchmarks/bench_auction.py --players 8 --hidden 128 --batch 256 --steps 50

Prints milliseconds per training step (median of repeats) for:

* one player: a single (G, D) pair through ganlib's Trainer (the reference "one player's step");
* the N-player population as ONE batched computation (AuctionPopulation: stacked parameters,
  grouped layers for ganlib's MLPs): control (no auction),
  selection-only auction, auction + L_aux;
* the same N players as a Python loop (LoopPopulation), control and auction + L_aux;

and the ratios population / one player (the issue's target: <= 1.5 on a GPU for N = 8 small
players) and loop / batched. Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse

import torch

from ganlib.data import ring_of_gaussians
from ganlib.models import MLPDiscriminator, MLPGenerator
from ganlib.training import TrainConfig, Trainer
from ganlib.training.auction import AuctionConfig, AuctionPopulation, LoopPopulation
from timing import ms_per_step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=8, help="N, pairs in the population")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop-steps", type=int, default=None, help="steps for the (slow) loop version")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 is fastest for these tiny players on a shared machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}, threads {torch.get_num_threads()}; "
          f"N={args.players}, MLP hidden={args.hidden} depth={args.depth}, batch {args.batch}")
    N = args.players
    mix = ring_of_gaussians()

    def nets(n):
        torch.manual_seed(0)
        return ([MLPGenerator(hidden=args.hidden, depth=args.depth).to(device) for _ in range(n)],
                [MLPDiscriminator(hidden=args.hidden, depth=args.depth).to(device) for _ in range(n)])

    cfg = dict(steps=10**9, batch_size=args.batch, progress=False, log_every=10**6, lr_d=1e-3, lr_g=1e-3)
    results = {}

    G, D = nets(1)
    trainer = Trainer(G[0], D[0], mix, TrainConfig(**cfg))
    results["one player (Trainer)"] = ms_per_step(lambda n: trainer.fit(steps=trainer.step + n), device,
                                                 args.steps, args.repeats)

    def pop_runner(cls, auction):
        Gs, Ds = nets(N)
        pop = cls(Gs, Ds, mix, TrainConfig(**cfg), auction)
        return lambda n: pop.fit(steps=pop.step + n)

    variants = {
        "control": None,
        "selection only": AuctionConfig(aux=None),
        "auction + L_aux": AuctionConfig(aux="output"),
    }
    for label, auction in variants.items():
        results[f"batched {label}"] = ms_per_step(pop_runner(AuctionPopulation, auction), device,
                                                 args.steps, args.repeats)
    loop_steps = args.loop_steps or max(5, args.steps // 3)
    for label in ("control", "auction + L_aux"):
        results[f"loop {label}"] = ms_per_step(pop_runner(LoopPopulation, variants[label]), device,
                                              loop_steps, args.repeats, warmup=2)

    one = results["one player (Trainer)"]
    width = max(map(len, results))
    print(f"\n{'':{width}}  ms/step  x one player")
    for label, ms in results.items():
        print(f"{label:{width}}  {ms:7.2f}  {ms / one:6.2f}")
    print(f"\nloop / batched, control:         {results['loop control'] / results['batched control']:.2f}")
    print(f"loop / batched, auction + L_aux: {results['loop auction + L_aux'] / results['batched auction + L_aux']:.2f}")
    print(f"auction + L_aux / control (batched): "
          f"{results['batched auction + L_aux'] / results['batched control']:.2f}")


if __name__ == "__main__":
    main()
