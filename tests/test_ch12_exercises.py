"""Autograder test for the exercise of chapter 12 (DGL-GAN; see tests/exercise_utils.py)."""

import math

import pytest
import torch
from torch.testing import assert_close

from exercise_utils import load_exercise
from ganlib.training.distill import dgl_generator_loss


def test_ch12_dgl_g_loss():
    f = load_exercise("12_dgl_gan")["dgl_g_loss"]
    # hand values, ns: softplus(-0) = log 2 and softplus(-log 3) = log(4/3)
    assert_close(f(torch.zeros(2), torch.full((2,), math.log(3.0))), torch.tensor(math.log(2) + 0.1 * math.log(4 / 3)))
    # hinge: -mean(D_S) - lam mean(D_T) = -(-1) - 0.5 * 3
    assert_close(f(torch.tensor([1.0, -3.0]), torch.tensor([2.0, 4.0]), lam=0.5, kind="hinge"), torch.tensor(-0.5))
    assert_close(f(torch.tensor([1.0, -3.0]), torch.tensor([2.0, 4.0]), lam=0.0, kind="hinge"), torch.tensor(1.0))
    g = torch.Generator().manual_seed(3)
    ls, lt = torch.randn(32, generator=g), torch.randn(32, generator=g)
    for kind in ("ns", "hinge"):
        assert_close(f(ls, lt, 0.3, kind), dgl_generator_loss(ls, lt, lam=0.3, loss=kind))
    # the teacher's logits must carry the gradient (lam times the teacher's part)
    lt_req = lt.clone().requires_grad_(True)
    f(ls, lt_req, 0.1, "ns").backward()
    assert_close(lt_req.grad, -0.1 * torch.sigmoid(-lt) / 32)
    with pytest.raises(ValueError):
        f(ls, lt, -0.1)
    with pytest.raises(ValueError):
        f(ls, lt, 0.1, "wgan")
