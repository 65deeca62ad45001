"""The one timing loop the benchmark scripts share (run them as ``python benchmarks/bench_*.py``)."""

from __future__ import annotations

import statistics
import time

import torch


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock interval measures the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ms_per_step(run, device: torch.device, steps: int, repeats: int = 3, warmup: int = 5) -> float:
    """Median milliseconds per step of ``run(n)`` (which trains ``n`` steps), after a warm-up.

    The warm-up pays for allocations, cuDNN autotuning and lazy initialisation once.
    """
    run(warmup)
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        run(steps)
        sync(device)
        times.append((time.perf_counter() - start) / steps * 1000)
    return statistics.median(times)
