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
