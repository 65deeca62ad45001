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


def test_torchvision_datasets_fail_clearly_offline(tmp_path):  # torchvision is unusable here
    with pytest.raises(RuntimeError, match="offline dataset"):
        load_torchvision("mnist", root=str(tmp_path))
    with pytest.raises(ValueError, match="unknown torchvision dataset"):
        load_torchvision("svhn")


# --- downloaded data sets: our readers on files in the layout torchvision downloads -----------------
def _write_idx(path, array: torch.Tensor, gz: bool = False):
    import gzip
    import struct

    body = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape) + bytes(array.flatten().tolist())
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as fh:
        fh.write(body)


def _fake_mnist(root, folder="MNIST/raw", gz=False):
    raw = root / folder
    raw.mkdir(parents=True)
    splits = {}
    for split, n in (("train", 5), ("t10k", 3)):
        images = torch.arange(n * 28 * 28, dtype=torch.int64).reshape(n, 28, 28) % 256
        labels = torch.arange(n) % 10
        suffix = ".gz" if gz else ""
        _write_idx(raw / f"{split}-images-idx3-ubyte{suffix}", images, gz)
        _write_idx(raw / f"{split}-labels-idx1-ubyte{suffix}", labels, gz)
        splits[split] = (images, labels)
    return splits


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_is_read_from_local_idx_files_without_torchvision(tmp_path, gz):
    splits = _fake_mnist(tmp_path, gz=gz)
    images, labels = load_torchvision("mnist", root=str(tmp_path), train=False)
    assert images.shape == (3, 1, 28, 28) and images.dtype == torch.float32
    assert_close(images[:, 0], splits["t10k"][0].float() / 255 * 2 - 1)   # 0 -> -1, 255 -> 1
    assert labels.tolist() == [0, 1, 2]
    small, _ = load_torchvision("mnist", root=str(tmp_path), train=True, size=16)
    assert small.shape == (5, 1, 16, 16) and small.min() >= -1 and small.max() <= 1


def test_fashion_mnist_uses_its_own_folder(tmp_path):
    _fake_mnist(tmp_path, folder="FashionMNIST/raw")
    assert load_torchvision("fashion_mnist", root=str(tmp_path))[0].shape == (5, 1, 28, 28)
    with pytest.raises(RuntimeError, match="torchvision"):   # MNIST itself is not there
        load_torchvision("mnist", root=str(tmp_path))


def test_a_truncated_idx_file_is_refused(tmp_path):
    _fake_mnist(tmp_path)
    path = tmp_path / "MNIST/raw/t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        load_torchvision("mnist", root=str(tmp_path), train=False)
    path.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 12)   # float IDX, not a byte image file
    with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):
        load_torchvision("mnist", root=str(tmp_path), train=False)


def _fake_cifar(root):
    import pickle

    import numpy as np

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = np.full((2, 3072), 10 * i, dtype=np.uint8)
        data[:, 1024:2048] = 255                                   # the green plane of every image
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": data, b"labels": [i, (i + 1) % 10], b"batch_label": b"x"}, fh)
    return folder


def test_cifar10_is_read_from_local_python_batches(tmp_path):
    _fake_cifar(tmp_path)
    images, labels = load_torchvision("cifar10", root=str(tmp_path), train=True)
    assert images.shape == (10, 3, 32, 32) and labels.tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5]
    assert_close(images[:, 1], torch.ones(10, 32, 32))             # channels stay in R, G, B order
    assert_close(images[2, 0], torch.full((32, 32), 10 / 255 * 2 - 1))
    test_images, test_labels = load_torchvision("cifar10", root=str(tmp_path), train=False)
    assert test_images.shape == (2, 3, 32, 32) and test_labels.tolist() == [5, 6]


def test_a_cifar_batch_that_would_run_code_is_refused(tmp_path):
    import os
    import pickle

    folder = _fake_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": Evil(), b"labels": []}, fh)
    with pytest.raises(pickle.UnpicklingError, match="never does"):
        load_torchvision("cifar10", root=str(tmp_path), train=False)


@pytest.mark.parametrize("name, train, shape", [("mnist", True, (60000, 1, 28, 28)), ("mnist", False, (10000, 1, 28, 28)),
                                                ("cifar10", False, (10000, 3, 32, 32))])
def test_synthetic_stand_in_has_the_real_shape_and_is_labelled(tmp_path, capsys, name, train, shape):
    images, labels = load_torchvision(name, root=str(tmp_path / "empty"), train=train, stand_in=True)
    assert images.shape == shape and images.dtype == torch.float32 and labels.shape == (shape[0],)
    assert images.min() == -1 and images.max() == 1                     # the full uint8 range, converted
    assert torch.bincount(labels).tolist() == [shape[0] // 10] * 10      # ten balanced classes
    assert "synthetic stand-in for" in capsys.readouterr().out
    assert not (tmp_path / "empty").exists()                             # nothing downloaded or created
    src = load_dataset(name, stand_in=True, size=16, train=train)
    assert src.data.shape == (shape[0], shape[1], 16, 16)
