"""SelfAttention2d's forward + backward against the same block written with four conv calls and SDPA.

    python benchmarks/bench_attention.py                          # chapter 8's size: C=32, 8x8, batch 32
    python benchmarks/bench_attention.py --channels 64 --size 16 --batch 64

Rows: ganlib's block (f, g, h as one product of their stacked weights, two ``bmm`` and an explicit
softmax), then the conv formulation it replaced (each 1x1 projection a ``Conv2d`` call, the weighted
sum through ``scaled_dot_product_attention`` with ``scale=1``); with and without spectral norm on
the four projections. Both compute the same numbers (checked before timing). Not a test: timings
depend on the machine's load; compare rows within one run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import ms_per_step  # noqa: E402

from ganlib.models import SelfAttention2d  # noqa: E402


def conv_formulation(block: SelfAttention2d, x: torch.Tensor) -> torch.Tensor:
    """The block as four 1x1 conv calls and SDPA (variant "paper": no pooling)."""
    n, _, H, W = x.shape
    q = block.g(x).flatten(2).transpose(1, 2)
    k = block.f(x).flatten(2).transpose(1, 2)
    val = block.h(x).flatten(2).transpose(1, 2)
    o = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), val.unsqueeze(1), scale=1.0)
    return x + block.gamma * block.v(o.squeeze(1).transpose(1, 2).reshape(n, -1, H, W))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--size", type=int, default=8, help="feature map height and width")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200, help="forward+backward passes per timing")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(1)  # as the chapters run on a CPU
    print(f"{device}, C={args.channels}, {args.size}x{args.size}, batch {args.batch}: ms per forward+backward")
    for sn in (False, True):
        torch.manual_seed(0)
        block = SelfAttention2d(args.channels, spectral_norm=sn).to(device)
        with torch.no_grad():
            block.gamma.fill_(0.5)
        x = torch.randn(args.batch, args.channels, args.size, args.size, device=device, requires_grad=True)
        block.eval()  # fixed spectral-norm vectors for the check
        torch.testing.assert_close(block(x), conv_formulation(block, x), rtol=1e-4, atol=1e-5)
        block.train()
        for name, fn in (("ganlib SelfAttention2d", block), ("four conv calls + SDPA", lambda t: conv_formulation(block, t))):
            def run(n, fn=fn):
                for _ in range(n):
                    fn(x).sum().backward()
            print(f"  {name:24s} spectral norm {'on ' if sn else 'off'}  {ms_per_step(run, device, args.steps):7.2f}")


if __name__ == "__main__":
    main()
