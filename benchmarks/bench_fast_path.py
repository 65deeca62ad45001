"""The Trainer's CUDA fast path against a plain PyTorch DCGAN loop: same nets, same batch, one run.

    python benchmarks/bench_fast_path.py                      # CUDA: 64x64, batches 128 and 1024
    python benchmarks/bench_fast_path.py --size 32 --batch 32 # what the CPU default is

Rows: a plain PyTorch loop (the baseline, fp32 eager: the same D update on a fresh fake batch
and G update on another, Adam, non-saturating loss, written out by hand), then ganlib's Trainer
in fp32, bf16 autocast, channels_last, both, a CUDA graph of the whole step, and all three.
A mode the device cannot run is printed as "n/a on cpu". The same table is printed on every
device; compare numbers only within one run. Not a test: timings depend on the machine's load.
The issue's target, measured earlier on an H100 for DCGAN 64x64: about 3x the plain fp32 step at
batch 128 and 2.4x at 1,024 (all three switches).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import ms_per_step  # noqa: E402

from ganlib.data import TensorSource  # noqa: E402
from ganlib.models import DCGANDiscriminator, DCGANGenerator  # noqa: E402
from ganlib.training import TrainConfig, Trainer, seed_everything  # noqa: E402

MODES = [  # name, TrainConfig switches (None: the plain PyTorch loop)
    ("plain PyTorch loop, fp32", None),
    ("Trainer fp32", {}),
    ("Trainer bf16", dict(amp_dtype="bf16")),
    ("Trainer channels_last", dict(channels_last=True)),
    ("Trainer bf16 + channels_last", dict(amp_dtype="bf16", channels_last=True)),
    ("Trainer cuda_graph", dict(cuda_graph=True)),
    ("Trainer bf16 + channels_last + cuda_graph", dict(amp_dtype="bf16", channels_last=True, cuda_graph=True)),
]


def nets(size: int, width: int, device):
    seed_everything(0)
    return (DCGANGenerator(latent_dim=100, channels=3, image_size=size, width=width).to(device),
            DCGANDiscriminator(channels=3, image_size=size, width=width).to(device))


def plain_loop(G, D, images: torch.Tensor, batch: int):
    """A DCGAN step written with nothing but PyTorch (the baseline every mode is compared with)."""
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    device = images.device

    def run(n: int) -> None:
        for _ in range(n):
            real = images[torch.randint(len(images), (batch,), device=device)]
            with torch.no_grad():
                fake = G(torch.randn(batch, G.latent_dim, device=device))
            d_loss = F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean()
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            D.requires_grad_(False)
            g_loss = F.softplus(-D(G(torch.randn(batch, G.latent_dim, device=device)))).mean()
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            D.requires_grad_(True)

    return run


def trainer_loop(G, D, images: torch.Tensor, batch: int, switches: dict):
    tr = Trainer(G, D, TensorSource(images), TrainConfig(steps=10**9, batch_size=batch, progress=False,
                                                          log_every=10**6, **switches))
    return lambda n: tr.fit(steps=tr.step + n)


def available(switches: dict | None, device: torch.device) -> bool:
    return not (switches or {}).get("cuda_graph") or device.type == "cuda"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=None, help="image size (default: 64 on CUDA, 32 on CPU)")
    parser.add_argument("--width", type=int, default=64, help="DCGAN width (channels of the first layer)")
    parser.add_argument("--batch", type=int, action="append", default=None,
                        help="batch size, repeatable (default: 128 and 1024 on CUDA, 32 on CPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per repeat (default: 50 CUDA, 3 CPU)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    size = args.size or (64 if cuda else 32)
    batches = args.batch or ([128, 1024] if cuda else [32])
    steps = args.steps or (50 if cuda else 3)
    repeats, warmup = (3, 8) if cuda else (1, 5)       # warm-up > graph_warmup + 1: the graph is captured in it
    if cuda:
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    print(f"device: {name}, torch {torch.__version__}, threads {torch.get_num_threads()}; DCGAN {size}x{size}x3, "
          f"width {args.width}, Adam, NS loss; median of {repeats} x {steps} steps after {warmup} warm-up steps")
    header = f"| {'mode':42} | batch | {'ms/step':>10} | vs plain fp32 |"
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for batch in batches:
        images = torch.rand(4096, 3, size, size, device=device) * 2 - 1
        baseline = None
        for mode, switches in MODES:
            if not available(switches, device):
                print(f"| {mode:42} | {batch:5d} | {'n/a on ' + device.type:>10} | {'':13} |")
                continue
            G, D = nets(size, args.width, device)
            run = plain_loop(G, D, images, batch) if switches is None else trainer_loop(G, D, images, batch, switches)
            ms = ms_per_step(run, device, steps, repeats=repeats, warmup=warmup)
            baseline = baseline or ms
            print(f"| {mode:42} | {batch:5d} | {ms:10.1f} | {baseline / ms:12.2f}x |", flush=True)


if __name__ == "__main__":
    main()
