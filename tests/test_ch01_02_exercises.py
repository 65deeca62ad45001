"""Autograder tests for the exercises of chapters 1 and 2 (see tests/exercise_utils.py)."""

import torch
from torch.testing import assert_close

from exercise_utils import load_exercise
from ganlib.losses import g_ns


def test_ch01_non_saturating_loss():
    f = load_exercise("01_gan_game")["non_saturating_loss"]
    logits = torch.tensor([-100.0, -3.0, 0.0, 2.5, 40.0], requires_grad=True)
    value = f(logits)
    assert value.ndim == 0 and torch.isfinite(value)
    assert_close(value, g_ns(logits))
    (grad,) = torch.autograd.grad(value, logits)
    # d/dl softplus(-l) / m = -sigmoid(-l) / m: about -1/5 where D rejects the fake
    assert_close(grad, -torch.sigmoid(-logits.detach()) / 5)


def test_ch02_frechet_1d():
    from ganlib.metrics import fid_from_features

    f = load_exercise("02_measuring_gans")["frechet_1d"]
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(400, generator=g) * 2 + 1, torch.randn(300, generator=g) * 0.5 - 1
    assert_close(f(x, y).double(), fid_from_features(x[:, None], y[:, None]).double())
    # hand value: identical samples are at distance 0; a pure shift by c costs c^2
    assert_close(f(x, x + 3).double(), torch.tensor(9.0, dtype=torch.float64))
