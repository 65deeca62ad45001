"""Time per training step of the Trainer and of SeedBatch, on whatever device is present.

    python benchmarks/bench_trainer.py            # CPU here; CUDA (and bf16) where available
    python benchmarks/bench_trainer.py --steps 200

Prints milliseconds per step (median of repeats) for:
* a 2-D MLP GAN (the mixture experiments) through Trainer;
* S seeds of it one after another vs as one vmapped SeedBatch;
* a DCGAN-style pair on 8x8 and 32x32 images, fp32 and (on CUDA) bf16 autocast.
Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse

import torch

from ganlib.data import TensorSource, grid_of_gaussians
from ganlib.models import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from ganlib.training import TrainConfig, Trainer, seed_everything
from ganlib.training.batched import SeedBatch
from timing import ms_per_step


def trainer_fit(make_g, make_d, source, device, **cfg):
    seed_everything(0)
    tr = Trainer(make_g().to(device), make_d().to(device), source,
                 TrainConfig(steps=10**9, progress=False, log_every=10**6, **cfg))
    return lambda n: tr.fit(steps=tr.step + n)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")
    mix = grid_of_gaussians()
    mlp_g, mlp_d = (lambda: MLPGenerator(hidden=128, depth=3)), (lambda: MLPDiscriminator(hidden=128, depth=3))

    one = ms_per_step(trainer_fit(mlp_g, mlp_d, mix, device, batch_size=128), device, args.steps)
    print(f"MLP GAN, 1 model, Trainer:              {one:8.2f} ms/step")
    batch = SeedBatch(mlp_g, mlp_d, mix, TrainConfig(steps=10**9, batch_size=128, log_every=10**6),
                      seeds=range(args.seeds), device=device)
    vm = ms_per_step(lambda n: batch.fit(steps=batch.step + n), device, args.steps)
    print(f"MLP GAN, {args.seeds} seeds, SeedBatch (vmap):    {vm:8.2f} ms/step "
          f"(vs {args.seeds * one:.2f} one after another: {args.seeds * one / vm:.1f}x)")

    for size, width in [(8, 32), (32, 64)]:
        data = TensorSource(torch.rand(2048, 1, size, size, device=device) * 2 - 1)
        make_g = lambda: DCGANGenerator(latent_dim=64, image_size=size, width=width)
        make_d = lambda: DCGANDiscriminator(image_size=size, width=width)
        for amp in [None] + (["bf16"] if device.type == "cuda" else []):
            ms = ms_per_step(trainer_fit(make_g, make_d, data, device, batch_size=64, amp_dtype=amp), device,
                            max(args.steps // 5, 5))
            print(f"DCGAN {size}x{size} width {width}, {amp or 'fp32':4}:       {ms:8.2f} ms/step")


if __name__ == "__main__":
    main()
