"""I-Variance (MaEM-GAN, Eq. 15 as its inception_variance.py computes it) and its digits analogue."""

import math

import pytest
import torch
from torch.testing import assert_close

from ganlib.data.images import load_digits
from ganlib.metrics import digits_i_variance, i_variance


def test_i_variance_by_hand():
    # two classes, three samples: class 0 gets probabilities 1, 1, 0 -> mean 2/3, population
    # variance (2 (1/3)^2 + (2/3)^2) / 3 = 2/9; class 1 is its mirror image; the mean of the two stds
    probs = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert_close(i_variance(probs), torch.tensor(math.sqrt(2 / 9), dtype=torch.float64))
    # two samples, each confident in its own class: each class's std is 0.5
    assert_close(i_variance(torch.eye(2)), torch.tensor(0.5, dtype=torch.float64))
    # identical outputs (collapse) have no spread
    assert i_variance(torch.full((5, 4), 0.25)).item() == 0.0


def test_i_variance_keeps_leading_axes_and_matches_numpy_std():
    np = pytest.importorskip("numpy")
    probs = torch.rand(3, 50, 10, generator=torch.Generator().manual_seed(0)).softmax(-1)
    out = i_variance(probs)
    assert out.shape == (3,)
    for s in range(3):
        assert out[s].item() == pytest.approx(float(np.mean(np.std(probs[s].numpy(), axis=0))), rel=1e-6)


def test_i_variance_refuses_a_vector():
    with pytest.raises(ValueError):
        i_variance(torch.rand(10))


def test_digits_i_variance_real_digits_against_one_repeated_digit():
    images, _ = load_digits()
    real = digits_i_variance(images[:1000])
    # ten roughly balanced, confidently classified classes: close to sqrt(9/100) = 0.3
    assert 0.25 < real.item() <= 0.3 + 1e-9
    one = digits_i_variance(images[:1].expand(200, -1, -1, -1))
    assert one.item() == pytest.approx(0.0, abs=1e-6)
    stacked = digits_i_variance(torch.stack([images[:300], images[:1].expand(300, -1, -1, -1)]))
    assert stacked.shape == (2,) and stacked[0] > 0.25 and stacked[1] < 1e-6
