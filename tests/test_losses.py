"""Every loss against values worked out by hand, plus sign, reduction and registry checks.

One fixed batch is used throughout: critic scores ``r = [2, -1]`` on real samples and
``f = [0, 4]`` on fakes, so ``mean(r) = 0.5`` and ``mean(f) = 2``. ``sp`` is softplus,
``sp(t) = log(1 + e^t)``; ``-log sigmoid(t) = sp(-t)`` and ``-log(1 - sigmoid(t)) = sp(t)``.
"""

import math

import pytest
import torch
from torch.testing import assert_close

from ganlib import losses as L
from ganlib.training import TrainConfig

R = torch.tensor([2.0, -1.0])
FK = torch.tensor([0.0, 4.0])


def sp(t: float) -> float:
    return math.log1p(math.exp(t))


def val(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


# --- hand-computed values ----------------------------------------------------------------------
# Each entry: d loss, g loss, and their values on (R, FK) derived in the comment.
HAND = {
    # D: mean sp(-r) + mean sp(f);  G (saturating): -mean sp(f)
    "minimax": ((sp(-2) + sp(1)) / 2 + (sp(0) + sp(4)) / 2, -(sp(0) + sp(4)) / 2),
    # same D; G (non-saturating): mean sp(-f)
    "ns": ((sp(-2) + sp(1)) / 2 + (sp(0) + sp(4)) / 2, (sp(0) + sp(-4)) / 2),
    # D: mean f - mean r = 2 - 0.5;  G: -mean f
    "wgan": (1.5, -2.0),
    # D (a=0, b=1): 1/2 mean (r-1)^2 + 1/2 mean f^2 = 1/2 (1+4)/2 + 1/2 (0+16)/2;  G (c=1): 1/2 (1+9)/2
    "lsgan": (0.5 * 2.5 + 0.5 * 8.0, 0.5 * 5.0),
    # D: mean relu(1-r) + mean relu(1+f) = (0+2)/2 + (1+5)/2;  G: -mean f
    "hinge": (1.0 + 3.0, -2.0),
    # D: mean sp(-(r-f)), r-f = [2, -5];  G: mean sp(-(f-r)), f-r = [-2, 5]
    "rsgan": ((sp(-2) + sp(5)) / 2, (sp(2) + sp(-5)) / 2),
    # rel_r = r - mean f = [0, -3];  rel_f = f - mean r = [-0.5, 3.5]
    # D: 1/2 [mean sp(-rel_r) + mean sp(rel_f)];  G: 1/2 [mean sp(rel_r) + mean sp(-rel_f)]
    "rasgan": (0.5 * ((sp(0) + sp(3)) / 2 + (sp(-0.5) + sp(3.5)) / 2),
               0.5 * ((sp(0) + sp(-3)) / 2 + (sp(0.5) + sp(-3.5)) / 2)),
    # D: 1/2 [mean (rel_r-1)^2 + mean (rel_f+1)^2] = 1/2 [(1+16)/2 + (0.25+20.25)/2]
    # G: 1/2 [mean (rel_r+1)^2 + mean (rel_f-1)^2] = 1/2 [(1+4)/2 + (2.25+6.25)/2]
    "ralsgan": (0.5 * (8.5 + 10.25), 0.5 * (2.5 + 4.25)),
    # D: 1/2 [mean relu(1-rel_r) + mean relu(1+rel_f)] = 1/2 [(1+4)/2 + (0.5+4.5)/2]
    # G: 1/2 [mean relu(1+rel_r) + mean relu(1-rel_f)] = 1/2 [(1+0)/2 + (1.5+0)/2]
    "rahinge": (0.5 * (2.5 + 2.5), 0.5 * (0.5 + 0.75)),
}
RELATIVISTIC = {"rsgan", "rasgan", "ralsgan", "rahinge"}


def test_every_registered_loss_has_a_hand_value():
    assert set(L.LOSSES) == set(HAND)


@pytest.mark.parametrize("name", sorted(HAND))
def test_hand_values(name):
    pair = L.get_loss(name)
    d_expected, g_expected = HAND[name]
    assert_close(pair.d(R, FK), val(d_expected))
    real_for_g = R if pair.g_needs_real else None
    assert_close(pair.g(FK, real_for_g), val(g_expected))


@pytest.mark.parametrize("name", sorted(HAND))
def test_registry_flags_relativistic_generators(name):
    pair = L.get_loss(name)
    assert pair.name == name
    assert pair.g_needs_real == (name in RELATIVISTIC)


def test_lsgan_targets_are_the_papers_a_b_c():
    # Pearson chi^2 coding a=-1, b=1, c=0 (Mao et al. Eq. 8):
    # D = 1/2 mean (r-1)^2 + 1/2 mean (f+1)^2 = 1/2 (1+4)/2 + 1/2 (1+25)/2;  G = 1/2 mean f^2 = 1/2 (0+16)/2
    assert_close(L.d_lsgan(R, FK, a=-1.0, b=1.0), val(1.25 + 6.5))
    assert_close(L.g_lsgan(FK, c=0.0), val(4.0))
    # swapping the real and fake targets must change the value (targets are not interchangeable)
    assert not torch.allclose(L.d_lsgan(R, FK, a=1.0, b=0.0), L.d_lsgan(R, FK))


# --- signs: D wants high real / low fake scores; G wants high fake scores --------------------------

def _grads(fn, *args):
    args = [a.clone().requires_grad_(True) for a in args]
    fn(*args).backward()
    return [a.grad for a in args]


@pytest.mark.parametrize("name", sorted(HAND))
def test_signs(name):
    pair = L.get_loss(name)
    # real scores in (0, 1), fake scores in (0, 0.5): inside every margin, between the LSGAN targets
    r, f = torch.tensor([0.3, 0.6, 0.5]), torch.tensor([0.1, 0.2, 0.05])
    g_real, g_fake = _grads(pair.d, r, f)
    assert (g_real < 0).all(), "raising a real score must lower the discriminator's loss"
    assert (g_fake > 0).all(), "raising a fake score must raise the discriminator's loss"
    if pair.g_needs_real:
        (g_gen, _) = _grads(pair.g, f, r)
    else:
        (g_gen,) = _grads(lambda x: pair.g(x), f)
    assert (g_gen < 0).all(), "raising a fake score must lower the generator's loss"


def test_saturating_vs_non_saturating_gradient():
    # D confidently rejects a fake (logit -10): the minimax G gradient vanishes, the NS one does not.
    f = torch.tensor([-10.0])
    (g_mm,) = _grads(lambda x: L.g_minimax(x), f)
    (g_ns,) = _grads(lambda x: L.g_ns(x), f)
    assert_close(g_mm, -torch.sigmoid(f), rtol=1e-4, atol=0)      # d/dl [-sp(l)] = -sigmoid(l) ~ -4.5e-5
    assert_close(g_ns, -torch.sigmoid(-f), rtol=1e-4, atol=0)     # d/dl [sp(-l)] = -sigmoid(-l) ~ -1
    assert g_mm.abs() < 1e-4 < 0.9 < g_ns.abs()


def test_hinge_ignores_scores_beyond_the_margin():
    g_real, g_fake = _grads(L.d_hinge, torch.tensor([1.5, 0.5]), torch.tensor([-1.5, -0.5]))
    assert_close(g_real, torch.tensor([0.0, -0.5]))
    assert_close(g_fake, torch.tensor([0.0, 0.5]))


# --- reduction: means, not sums --------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(HAND))
def test_reduction_is_a_mean(name):
    """Repeating the batch leaves every loss unchanged (a sum would double it)."""
    pair = L.get_loss(name)
    r2, f2 = R.repeat(2), FK.repeat(2)
    assert_close(pair.d(r2, f2), pair.d(R, FK))
    args = (f2, r2) if pair.g_needs_real else (f2,)
    assert_close(pair.g(*args), pair.g(FK, R) if pair.g_needs_real else pair.g(FK))


def test_relativistic_average_uses_the_other_batchs_mean():
    # Shifting every score by the same constant changes nothing for a relativistic loss
    # (only differences matter) but does change the absolute (standard) loss.
    for name in ("rsgan", "rasgan", "ralsgan", "rahinge"):
        pair = L.get_loss(name)
        assert_close(pair.d(R + 3, FK + 3), pair.d(R, FK))
        assert_close(pair.g(FK + 3, R + 3), pair.g(FK, R))
    assert not torch.allclose(L.d_ns(R + 3, FK + 3), L.d_ns(R, FK))


# --- errors ----------------------------------------------------------------------------------------

def test_unknown_loss_name():
    with pytest.raises(ValueError, match="unknown loss 'wgan-gp'.*available: .*hinge"):
        L.get_loss("wgan-gp")
    with pytest.raises(ValueError, match="unknown loss"):
        TrainConfig(loss="lsgan2")


@pytest.mark.parametrize("name", sorted(RELATIVISTIC))
def test_relativistic_generator_needs_real_scores(name):
    with pytest.raises(ValueError, match="relativistic: pass real_logits"):
        L.get_loss(name).g(FK)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"shape \[n\]"):
        L.d_hinge(R[:, None], FK)
    with pytest.raises(ValueError, match="same size"):
        L.d_rsgan(R, torch.zeros(3))
