"""Autograder tests for the exercises of chapter 6, Unrolled GANs and packing
(see tests/exercise_utils.py)."""

import pytest
import torch
from torch.testing import assert_close

from exercise_utils import load_exercise
from ganlib.losses import LossPair
from ganlib.training.packing import pack
from ganlib.training.unrolled import FunctionalSGD, unrolled_generator_loss

CHAPTER = "06_unrolled_and_packing"


def test_ch06_pack_with_cat():
    f = load_exercise(CHAPTER)["pack_with_cat"]
    x = torch.arange(12, dtype=torch.float32)[:, None] + 0.1 * torch.arange(2)      # sample i = [i, i + 0.1]
    assert_close(f(x, 3), pack(x, 3))
    assert_close(f(x, 3)[1], torch.tensor([3.0, 3.1, 4.0, 4.1, 5.0, 5.1]))        # pack 1 = samples 3, 4, 5
    images = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    assert_close(f(images, 4), pack(images, 4))                                   # channels: [n/m, m*C, H, W]
    assert_close(f(x, 1), x)
    with pytest.raises(ValueError):
        f(x, 5)


def test_ch06_unrolled_linear_gradient():
    f = load_exercise(CHAPTER)["unrolled_linear_grad"]
    linear = LossPair("linear", d=lambda r, fk: fk.mean() - r.mean(), g=lambda fk, r=None: -fk.mean())
    g = torch.Generator().manual_seed(1)
    for k, eta in [(0, 0.1), (1, 0.3), (4, 0.05)]:
        w0, theta, real = torch.randn(2, generator=g), torch.randn(2, generator=g), torch.randn(5, 2, generator=g)
        th = theta.clone().requires_grad_()
        loss = unrolled_generator_loss(lambda p, x: x @ p["w"], {"w": w0}, real, th.expand(3, 2), k=k,
                                       loss=linear, update=FunctionalSGD(eta))
        (want,) = torch.autograd.grad(loss, th)
        assert_close(f(w0, theta, real.mean(0), eta, k), want)
