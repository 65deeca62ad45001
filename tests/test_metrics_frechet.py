"""Fréchet distance, KID and precision/recall against closed forms and brute force."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch.testing import assert_close

from ganlib.metrics import (fid_from_features, frechet_distance, gaussian_stats, kid, precision_recall,
                            trace_sqrt_product)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def random_spd(d, seed):
    a = torch.randn(d, d, generator=gen(seed), dtype=torch.float64)
    return a @ a.mT / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_isotropic_closed_form():
    d, a, b = 7, 0.5, 2.0
    mu1 = torch.randn(d, generator=gen(1), dtype=torch.float64)
    mu2 = torch.randn(d, generator=gen(2), dtype=torch.float64)
    eye = torch.eye(d, dtype=torch.float64)
    fd = frechet_distance(mu1, a**2 * eye, mu2, b**2 * eye)
    assert fd.dtype == torch.float64
    assert_close(fd, (mu1 - mu2).square().sum() + d * (a - b) ** 2)


def test_commuting_diagonal_closed_form():
    s1 = torch.tensor([1.0, 4.0, 9.0, 0.25], dtype=torch.float64)
    s2 = torch.tensor([4.0, 1.0, 9.0, 1.0], dtype=torch.float64)
    mu = torch.zeros(4, dtype=torch.float64)
    # sum_i (sqrt(s1_i) - sqrt(s2_i))^2 = 1 + 1 + 0 + 0.25
    assert_close(frechet_distance(mu, torch.diag(s1), mu, torch.diag(s2)), torch.tensor(2.25, dtype=torch.float64))


def test_trace_sqrt_matches_scipy_sqrtm_on_non_commuting_matrices():
    s1, s2 = random_spd(12, 3), random_spd(12, 4)
    ref = np.trace(scipy.linalg.sqrtm(s1.numpy() @ s2.numpy())).real
    assert_close(trace_sqrt_product(s1, s2), torch.tensor(ref, dtype=torch.float64), rtol=1e-9, atol=1e-9)


def test_gaussian_stats_match_numpy_cov_ddof1():
    f = torch.randn(50, 6, generator=gen(5)) * 3 + 1
    mu, cov = gaussian_stats(f)
    assert mu.dtype == cov.dtype == torch.float64
    assert_close(mu, torch.from_numpy(f.double().numpy().mean(0)))
    assert_close(cov, torch.from_numpy(np.cov(f.double().numpy(), rowvar=False)))


def test_fd_of_a_set_with_itself_is_zero():
    f = torch.randn(300, 16, generator=gen(6))
    assert fid_from_features(f, f).item() < 1e-8
    f_small = torch.randn(10, 16, generator=gen(6))        # n < d: the nuclear-norm route
    assert fid_from_features(f_small, f_small).item() < 1e-8


def test_low_rank_route_equals_eigh_route():
    x = torch.randn(20, 50, generator=gen(7), dtype=torch.float64)
    y = torch.randn(25, 50, generator=gen(8), dtype=torch.float64) * 1.5 + 0.3
    via_eigh = frechet_distance(*gaussian_stats(x), *gaussian_stats(y))
    assert_close(fid_from_features(x, y), via_eigh, rtol=1e-8, atol=1e-8)


def test_fid_of_shifted_gaussians_estimates_the_shift():
    x = torch.randn(20000, 4, generator=gen(9))
    y = torch.randn(20000, 4, generator=gen(10)) + torch.tensor([1.0, 0.0, -1.0, 0.0])
    assert abs(fid_from_features(x, y).item() - 2.0) < 0.05


def test_kid_hand_computed_two_points():
    # k(a, b) = (ab + 1)^3 with d = 1.  x = {0, 1}, y = {2, 3}:
    # off-diagonal xx: 2 * 1 = 2; yy: 2 * 7^3 = 686; xy: 1 + 1 + 27 + 64 = 93
    # MMD^2 = (2 + 686) / (2 * 1) - 2 * 93 / 4 = 297.5 for every subset (= the whole sets)
    x = torch.tensor([[0.0], [1.0]])
    y = torch.tensor([[2.0], [3.0]])
    mean, std = kid(x, y, n_subsets=5, subset_size=2)
    assert_close(mean, torch.tensor(297.5, dtype=torch.float64))
    assert_close(std, torch.tensor(0.0, dtype=torch.float64))


def test_kid_same_distribution_near_zero_shifted_positive():
    x = torch.randn(600, 8, generator=gen(11))
    y = torch.randn(600, 8, generator=gen(12))
    z = torch.randn(600, 8, generator=gen(13)) + 0.5
    same, same_std = kid(x, y, n_subsets=20, subset_size=300)
    shifted, shifted_std = kid(x, z, n_subsets=20, subset_size=300)
    assert abs(same.item()) < 2 * same_std.item() + 1e-3
    assert shifted.item() > 10 * abs(same.item()) and shifted.item() > 3 * shifted_std.item()


def test_kid_is_deterministic_and_clips_subset_size():
    x = torch.randn(40, 3, generator=gen(14))
    y = torch.randn(30, 3, generator=gen(15))
    a = kid(x, y, n_subsets=7)                             # subset_size 1000 -> 30
    b = kid(x, y, n_subsets=7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = kid(x, y, n_subsets=7, generator=gen(99))
    assert not torch.equal(a[0], c[0])
    # chunking over subsets does not change the value
    assert_close(kid(x, y, n_subsets=7, chunk_elements=1)[0], a[0])


def brute_precision_recall(real, fake, k):
    def radii(a):
        return torch.cdist(a, a).sort(dim=1).values[:, k]
    d = torch.cdist(fake, real)
    precision = (d <= radii(real)[None]).any(1).double().mean()
    recall = (d.mT <= radii(fake)[None]).any(1).double().mean()
    return precision, recall


def test_precision_recall_identical_and_disjoint_sets():
    x = torch.randn(200, 5, generator=gen(16), dtype=torch.float64)
    p, r = precision_recall(x, x.clone())
    assert p.item() == 1.0 and r.item() == 1.0
    p, r = precision_recall(x, x + 100.0)
    assert p.item() == 0.0 and r.item() == 0.0


def test_precision_recall_constructed_1d_case():
    real = torch.arange(10.0)[:, None]                      # k = 1: every real radius is 1
    fake = torch.tensor([[0.5], [20.0]])                    # fake radii: 19.5 each
    p, r = precision_recall(real, fake, k=1)
    assert p.item() == 0.5                                  # 0.5 is inside a real ball, 20 is not
    assert r.item() == 1.0                                  # every real is within 19.5 of 0.5
    # the boundary counts (<=): a fake exactly one unit past the last real is inside
    p_edge, _ = precision_recall(real, torch.tensor([[10.0], [30.0]]), k=1)
    assert p_edge.item() == 0.5


def test_precision_recall_matches_brute_force_with_chunking():
    real = torch.randn(150, 6, generator=gen(17), dtype=torch.float64)
    fake = torch.randn(120, 6, generator=gen(18), dtype=torch.float64) * 1.3 + 0.4
    ref = brute_precision_recall(real, fake, k=3)
    for block in (2**24, 7 * 150):                          # one block, and chunks of 7 rows
        got = precision_recall(real, fake, k=3, max_block_elements=block)
        assert_close(got[0], ref[0])
        assert_close(got[1], ref[1])
    assert 0.0 < ref[0].item() < 1.0 and 0.0 < ref[1].item() < 1.0


@pytest.mark.parametrize("fn", [fid_from_features, kid, precision_recall])
def test_bad_inputs_raise(fn):
    good = torch.randn(10, 4)
    with pytest.raises(ValueError, match="2-D"):
        fn(torch.randn(10), good)
    with pytest.raises(ValueError, match="feature dimensions differ"):
        fn(good, torch.randn(10, 5))
    with pytest.raises(ValueError, match="at least"):
        fn(good, torch.randn(1, 4))
    with pytest.raises(TypeError):
        fn(good.numpy(), good)


def test_precision_recall_needs_k_plus_one_samples():
    with pytest.raises(ValueError, match="at least 4"):
        precision_recall(torch.randn(3, 2), torch.randn(10, 2), k=3)
    with pytest.raises(ValueError):
        precision_recall(torch.randn(10, 2), torch.randn(10, 2), k=0)


def test_frechet_distance_shape_errors():
    with pytest.raises(ValueError):
        frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(4), torch.eye(4))
    with pytest.raises(ValueError):
        frechet_distance(torch.zeros(3), torch.eye(2), torch.zeros(3), torch.eye(3))
    with pytest.raises(ValueError):
        gaussian_stats(torch.zeros(1, 3))
    assert math.isfinite(frechet_distance(torch.zeros(2), torch.eye(2), torch.ones(2), torch.eye(2)).item())
