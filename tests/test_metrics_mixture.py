"""Mode metrics on Gaussian mixtures: hand-computed PacGAN-protocol values."""

import math

import pytest
import torch
from torch.testing import assert_close

from ganlib.data.mixtures import grid_of_gaussians, ring_of_gaussians
from ganlib.metrics import kl_to_uniform, mean_log_likelihood, mode_statistics

RING = ring_of_gaussians()          # 8 modes, radius 1, std 0.01


def at_modes(mixture, modes, offset_std=0.0):
    """Points at the given mode indices, moved radially outwards by ``offset_std`` stds."""
    mu = mixture.means[torch.as_tensor(modes)]
    direction = mu / mu.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return mu + offset_std * mixture.std * direction


def f64(x):
    return torch.tensor(x, dtype=torch.float64)


def test_samples_at_every_mean_cover_all_with_zero_kl():
    s = mode_statistics(at_modes(RING, list(range(8)) * 10), RING)
    assert s.modes_covered.item() == 8
    assert_close(s.high_quality_rate, torch.tensor(1.0))
    assert_close(s.reverse_kl, f64(0.0))
    assert s.counts.tolist() == [10] * 8


def test_two_of_eight_modes_equally_gives_log_four():
    s = mode_statistics(at_modes(RING, [0, 3] * 5), RING)
    assert s.modes_covered.item() == 2
    assert_close(s.reverse_kl, f64(math.log(8 / 2)))


def test_unequal_histogram_matches_hand_kl():
    # p = (3/4, 1/4) on 2 of 8 modes: KL = 3/4 log(6) + 1/4 log(2)
    s = mode_statistics(at_modes(RING, [5, 5, 5, 1]), RING)
    assert_close(s.reverse_kl, f64(0.75 * math.log(6) + 0.25 * math.log(2)))


def test_threshold_is_in_std_units_and_strict():
    near = mode_statistics(at_modes(RING, [0, 1, 2, 3], offset_std=2.9), RING)
    far = mode_statistics(at_modes(RING, [0, 1, 2, 3], offset_std=3.5), RING)
    assert near.high_quality_rate.item() == 1.0 and near.modes_covered.item() == 4
    assert far.high_quality_rate.item() == 0.0 and far.modes_covered.item() == 0
    assert torch.isnan(far.reverse_kl)                # no HQ sample: the histogram is empty
    # a looser threshold accepts the 3.5-std points
    assert mode_statistics(at_modes(RING, [0], offset_std=3.5), RING, threshold=4.0).modes_covered.item() == 1


def test_only_high_quality_samples_enter_the_histogram():
    x = torch.cat([at_modes(RING, [0] * 4), at_modes(RING, [1, 2, 3, 4], offset_std=3.5)])
    s = mode_statistics(x, RING)
    assert s.counts.tolist() == [4, 0, 0, 0, 0, 0, 0, 0]
    assert s.modes_covered.item() == 1
    assert_close(s.high_quality_rate, torch.tensor(0.5))
    assert_close(s.reverse_kl, f64(math.log(8)))


def test_min_count_makes_coverage_stricter():
    x = at_modes(RING, [0] * 20 + [1] * 19)
    assert mode_statistics(x, RING).modes_covered.item() == 2
    assert mode_statistics(x, RING, min_count=20).modes_covered.item() == 1


def test_batched_sets_equal_per_set_results():
    sets = [at_modes(RING, list(range(8)) * 2), at_modes(RING, [0, 3] * 8),
            at_modes(RING, [1] * 16, offset_std=3.5)]
    batched = mode_statistics(torch.stack(sets), RING)
    assert batched.counts.shape == (3, 8)
    for i, x in enumerate(sets):
        single = mode_statistics(x, RING)
        assert batched.modes_covered[i] == single.modes_covered
        assert batched.high_quality_rate[i] == single.high_quality_rate
        assert torch.equal(batched.counts[i], single.counts)
        assert_close(batched.reverse_kl[i], single.reverse_kl, equal_nan=True)


def test_true_samples_match_the_chi_square_rate():
    # 2-D Gaussian: P(|z| < 3) = 1 - exp(-9/2) = 0.98889 (2,500 samples, as PacGAN)
    for mixture in (RING, grid_of_gaussians()):
        x = mixture.sample(2500, generator=torch.Generator().manual_seed(0))
        s = mode_statistics(x, mixture)
        assert s.modes_covered.item() == mixture.n_modes
        assert abs(s.high_quality_rate.item() - (1 - math.exp(-4.5))) < 0.006
        assert s.reverse_kl.item() < 0.02


def test_kl_to_uniform_cases():
    assert_close(kl_to_uniform(torch.tensor([3, 3, 3, 3])), f64(0.0))
    assert_close(kl_to_uniform(torch.tensor([7, 0, 0, 0])), f64(math.log(4)))
    assert_close(kl_to_uniform(torch.tensor([[1, 1, 0, 0], [2, 0, 0, 0]])), f64([math.log(2), math.log(4)]))


def test_mean_log_likelihood_at_the_means():
    # at a mean the other modes are >= 76 stds away: log p = log(1/8) - log(2 pi sigma^2)
    ll = mean_log_likelihood(at_modes(RING, list(range(8))), RING)
    assert_close(ll, torch.tensor(math.log(1 / 8) - math.log(2 * math.pi * 0.01**2)))
    # one std away (every point): the Gaussian factor adds -1/2
    ll1 = mean_log_likelihood(at_modes(RING, [2, 6], offset_std=1.0), RING)
    assert_close(ll1, ll - 0.5)
    batched = mean_log_likelihood(torch.stack([at_modes(RING, [0, 1]), at_modes(RING, [0, 1], offset_std=1.0)]), RING)
    assert batched.shape == (2,)
    assert_close(batched, torch.stack([ll, ll - 0.5]))


def test_collapsed_samples_score_higher_log_likelihood_than_spread_ones():
    collapsed = at_modes(RING, [0] * 16)
    spread = torch.cat([at_modes(RING, list(range(8))), torch.zeros(8, 2)])   # all modes + junk at the centre
    assert mean_log_likelihood(collapsed, RING) > mean_log_likelihood(spread, RING)
    assert mode_statistics(collapsed, RING).modes_covered < mode_statistics(spread, RING).modes_covered


@pytest.mark.parametrize("bad", [torch.zeros(5), torch.zeros(5, 3), torch.zeros(2, 2, 2, 2), torch.zeros(0, 2)])
def test_bad_shapes_raise(bad):
    with pytest.raises(ValueError):
        mode_statistics(bad, RING)
    with pytest.raises(ValueError):
        mean_log_likelihood(bad, RING)


def test_bad_arguments_raise():
    x = at_modes(RING, [0])
    with pytest.raises(ValueError):
        mode_statistics(x, RING, threshold=0.0)
    with pytest.raises(ValueError):
        mode_statistics(x, RING, min_count=0)
    with pytest.raises(TypeError):
        mode_statistics(x.tolist(), RING)
