import math

import pytest
import torch
from torch.testing import assert_close

from ganlib.data import (DATASETS, GaussianMixture, TensorSource, grid_of_gaussians, load_dataset,
                         load_digits, load_lfw_faces, load_torchvision, ring_of_gaussians, stacked_digits)


def test_ring_matches_pacgan_protocol():
    ring = ring_of_gaussians()
    assert ring.n_modes == 8 and ring.std == 0.01
    assert_close(ring.means.norm(dim=1), torch.ones(8))
    assert_close(ring.means[2], torch.tensor([0.0, 1.0]), atol=1e-6, rtol=0)


def test_grid_matches_pacgan_protocol():
    grid = grid_of_gaussians()
    assert grid.n_modes == 25 and grid.std == 0.05
    assert sorted(set(grid.means[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]


def test_log_prob_is_hand_computed_density():
    mix = GaussianMixture(torch.tensor([[0.0, 0.0], [10.0, 0.0]]), std=1.0)
    x = torch.tensor([[0.0, 0.0]])
    # at a mode of a far-apart 2-mode mixture: 0.5 * N(0; 0, I) + negligible = 0.5 / (2 pi)
    expected = math.log(0.5 / (2 * math.pi) + 0.5 / (2 * math.pi) * math.exp(-50))
    assert_close(mix.log_prob(x), torch.tensor([expected]))


def test_assign_gives_nearest_mode_and_distance_in_std():
    mix = grid_of_gaussians()
    x = torch.tensor([[4.0, 4.1], [-2.0, 0.15]])
    idx, dist = mix.assign(x)
    assert_close(mix.means[idx], torch.tensor([[4.0, 4.0], [-2.0, 0.0]]))
    assert_close(dist, torch.tensor([2.0, 3.0]), rtol=1e-5, atol=1e-5)


def test_samples_come_from_modes_and_are_reproducible():
    ring = ring_of_gaussians()
    a = ring.sample(2000, generator=torch.Generator().manual_seed(3))
    b = ring.sample(2000, generator=torch.Generator().manual_seed(3))
    assert_close(a, b)
    idx, dist = ring.assign(a)
    assert dist.max() < 6  # std-units: 6 sigma in 2-D is essentially never exceeded
    counts = torch.bincount(idx, minlength=8).float()
    assert counts.min() > 180  # ~250 per mode


def test_mixture_rejects_bad_input():
    with pytest.raises(ValueError, match="std"):
        GaussianMixture(torch.zeros(2, 2), std=0)
    with pytest.raises(ValueError, match="shape"):
        ring_of_gaussians().log_prob(torch.zeros(5, 3))


def test_digits_scaled_and_upsampled():
    images, labels = load_digits()
    assert images.shape == (1797, 1, 8, 8) and labels.shape == (1797,)
    assert images.min() == -1 and images.max() == 1
    big, _ = load_digits(size=16)
    assert big.shape == (1797, 1, 16, 16)
    # bilinear upsampling keeps the mean intensity of every image (up to edge effects)
    assert_close(big.mean(dim=(1, 2, 3)), images.mean(dim=(1, 2, 3)), atol=0.05, rtol=0)
    with pytest.raises(ValueError, match=">= 8"):
        load_digits(size=4)


def test_stacked_digits_labels_encode_the_three_channels():
    images, labels = load_digits()
    x, y = stacked_digits(500, generator=torch.Generator().manual_seed(0))
    assert x.shape == (500, 3, 8, 8) and 0 <= y.min() and y.max() < 1000
    # each channel is one of the dataset's digits with the label's digit
    for k in range(5):
        for c, d in enumerate((y[k] // 100, y[k] // 10 % 10, y[k] % 10)):
            match = (images[:, 0] == x[k, c]).all(dim=(1, 2))
            assert (labels[match] == d).all() and match.any()


def test_lfw_faces_subset():
    faces = load_lfw_faces()
    assert faces.shape == (100, 1, 25, 25)
    assert_close(faces.amin(dim=(1, 2, 3)), -torch.ones(100))


def test_tensor_source_draws_rows_reproducibly():
    data = torch.arange(10.0).unsqueeze(1)
    src = TensorSource(data)
    a = src.sample(50, torch.Generator().manual_seed(1))
    assert set(a.squeeze(1).tolist()) <= set(range(10))
    assert_close(a, src.sample(50, torch.Generator().manual_seed(1)))


def test_unknown_dataset_name_lists_the_choices():
    with pytest.raises(ValueError, match="available: ring, grid"):
        load_dataset("cifar100")
    assert set(DATASETS) >= {"ring", "grid", "digits", "stacked_digits", "lfw", "mnist"}


def test_torchvision_datasets_fail_clearly_offline(tmp_path):
    with pytest.raises(RuntimeError, match="offline dataset"):
        load_torchvision("mnist", root=str(tmp_path))
    with pytest.raises(ValueError, match="unknown torchvision dataset"):
        load_torchvision("svhn")
