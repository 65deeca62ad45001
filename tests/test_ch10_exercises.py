"""Autograder test for the exercise of chapter 10 (MaEM-GAN; see tests/exercise_utils.py)."""

import math

import torch
from torch.testing import assert_close

from exercise_utils import load_exercise
from ganlib.training.maem import knn_entropy


def test_ch10_entropy_1nn():
    f = load_exercise("10_maem_gan")["entropy_1nn"]
    x = torch.randn(60, 3, generator=torch.Generator().manual_seed(0))
    assert_close(f(x), knn_entropy(x), rtol=1e-4, atol=1e-4)
    # hand value: two points at distance 1 on a line: m = 1, V_1 = 2, psi(2) + gamma = 1 -> log 2 + 1
    assert_close(f(torch.tensor([[0.0], [1.0]])), torch.tensor(math.log(2) + 1), rtol=1e-5, atol=1e-5)
    # spreading every code by a factor c adds m log c nats
    assert_close(f(2.5 * x) - f(x), torch.tensor(3 * math.log(2.5)), rtol=0, atol=1e-4)
    # a collapsed batch (all codes equal) stays finite
    assert torch.isfinite(f(torch.ones(10, 3)))
