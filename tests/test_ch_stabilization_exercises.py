"""Autograder tests for the exercises of chapters 3-5 (alternative losses, Lipschitz constraints,
TTUR); see tests/exercise_utils.py. Each test runs the chapter's exercise cells and checks the
functions they define against ganlib or against values worked out by hand."""

import time

import torch
from torch import nn
from torch.testing import assert_close

from exercise_utils import load_exercise
from ganlib.losses import d_ralsgan


def test_ch03_ralsgan_d():
    f = load_exercise("03_alternative_losses")["ralsgan_d"]
    g = torch.Generator().manual_seed(0)
    r, fk = torch.randn(20, generator=g), torch.randn(20, generator=g)
    assert_close(f(r, fk), d_ralsgan(r, fk))
    # hand value: r = [2, -1], f = [0, 4] -> 1/2 [(1 + 16)/2 + (0.25 + 20.25)/2] = 9.375
    assert_close(f(torch.tensor([2.0, -1.0]), torch.tensor([0.0, 4.0])), torch.tensor(9.375))


def test_ch03_w1_sorted():
    f = load_exercise("03_alternative_losses")["w1_sorted"]
    x = torch.randn(50, generator=torch.Generator().manual_seed(1))
    assert_close(f(x, x + 2.5), torch.tensor(2.5))                     # a shift costs its length
    assert_close(f(torch.tensor([0.0, 1.0]), torch.tensor([3.0, 0.0])), torch.tensor(1.0))   # pairs 0-0, 1-3


def test_ch04_top_singular_value():
    f = load_exercise("04_lipschitz")["top_singular_value"]
    W = torch.diag(torch.tensor([3.0, 1.0, 0.5], dtype=torch.float64))
    assert_close(f(W, 100), torch.tensor(3.0, dtype=torch.float64))
    W = torch.randn(8, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert_close(f(W, 300), torch.linalg.matrix_norm(W, ord=2))


def test_ch04_r2_penalty_on_fake_data():
    f = load_exercise("04_lipschitz")["r2_penalty"]

    class HalfSquare(nn.Module):          # gradient x: the penalty shows where it is evaluated
        def forward(self, x):
            return 0.5 * x.square().sum(1)

    fake = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
    # gamma/2 * mean |x|^2 = 0.5 * (5 + 9) / 2 with gamma = 1
    assert_close(f(HalfSquare(), fake, 1.0), torch.tensor(3.5))


def test_ch05_train_for():
    train_for = load_exercise("05_ttur")["train_for"]

    class Dummy:
        def __init__(self):
            self.step, self.calls = 0, []

        def fit(self, steps):
            self.calls.append(steps)
            time.sleep(0.001 * (steps - self.step))
            self.step = steps

    d = Dummy()
    spent = train_for(d, 0.03, chunk=3)
    assert spent >= 0.03
    assert d.calls == list(range(3, 3 * len(d.calls) + 1, 3))      # chunk after chunk, never skipping
    assert spent < 0.03 + 0.05                                    # stops soon after the budget
