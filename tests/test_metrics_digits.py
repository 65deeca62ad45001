"""The shipped digits classifier: integrity, accuracy, FID behaviour, stacked-digit modes."""

import hashlib
import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from ganlib.data.images import load_digits, stacked_digits
from ganlib.metrics import (classifier_info, classify_digits, digits_features, digits_fid,
                            digits_inception_score, digits_kid, digits_split, fid_from_features,
                            kid, kl_to_uniform, load_digits_classifier, stacked_digit_modes)
from ganlib.metrics.digits import INFO_PATH, WEIGHTS_PATH


@pytest.fixture(scope="module")
def data():
    images, labels = load_digits()
    test = torch.tensor(classifier_info()["test_indices"])
    is_train = torch.ones(len(images), dtype=torch.bool)
    is_train[test] = False
    return dict(labels=labels, x_train=images[is_train], x_test=images[test], y_test=labels[test],
                y_train=labels[is_train], f_train=digits_features(images[is_train]))


def test_shipped_files_match_their_record():
    info = classifier_info()
    assert WEIGHTS_PATH.stat().st_size < 1_000_000
    assert hashlib.sha256(WEIGHTS_PATH.read_bytes()).hexdigest() == info["sha256"]
    assert info["n_train"] + info["n_test"] == 1797 and len(info["test_indices"]) == info["n_test"]


def test_held_out_accuracy_is_the_recorded_one(data):
    acc = (classify_digits(data["x_test"]) == data["y_test"]).double().mean().item()
    assert acc >= classifier_info()["test_accuracy"] - 0.005
    assert acc >= 0.97


def test_larger_images_are_pooled_to_8x8(data):
    x16, _ = load_digits(16)
    test = torch.tensor(classifier_info()["test_indices"])
    acc = (classify_digits(x16[test]) == data["y_test"]).double().mean().item()
    assert acc >= 0.95
    assert digits_features(x16[:5]).shape == (5, 64)


def test_split_is_stratified_disjoint_and_seeded(data):
    labels = data["labels"]
    train, test = digits_split(labels, n_test=397, seed=0)
    assert len(train) == 1400 and len(test) == 397
    assert len(set(train.tolist()) | set(test.tolist())) == 1797
    share = labels[test].bincount(minlength=10).double() / labels.bincount(minlength=10).double()
    assert (share - 397 / 1797).abs().max() < 0.01
    assert torch.equal(digits_split(labels, seed=0)[1], test)
    assert not torch.equal(digits_split(labels, seed=1)[1], test)


def test_fid_real_vs_real_is_far_below_noise_vs_real(data):
    real = digits_fid(data["x_test"], data["x_train"])
    noise = torch.rand(397, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert real.item() < 0.1 * fid_from_features(data["f_train"], digits_features(noise)).item()
    # extracting real features once and reusing them gives the same number
    assert_close(fid_from_features(data["f_train"], digits_features(data["x_test"])), real)


def test_fid_grows_with_noise_and_blur(data):
    g = torch.Generator().manual_seed(1)
    x = data["x_test"]
    noise = torch.randn(x.shape, generator=g)
    by_noise = [fid_from_features(data["f_train"], digits_features((x + s * noise).clamp(-1, 1))).item()
                for s in (0.0, 0.2, 0.4, 0.8)]
    assert by_noise == sorted(by_noise) and by_noise[-1] > 5 * by_noise[0]
    kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]])[None, None] / 16
    by_blur, blurred = [], x
    for _ in range(3):
        by_blur.append(fid_from_features(data["f_train"], digits_features(blurred)).item())
        blurred = 0.5 * blurred + 0.5 * F.conv2d(F.pad(blurred, (1, 1, 1, 1), mode="replicate"), kernel)
    assert by_blur == sorted(by_blur) and by_blur[-1] > 5 * by_blur[0]


def test_kid_real_vs_noise(data):
    noise = torch.rand(397, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    real, real_std = digits_kid(data["x_test"], data["x_train"], n_subsets=20, subset_size=300)
    fake, _ = kid(data["f_train"], digits_features(noise), n_subsets=20, subset_size=300)
    assert abs(real.item()) < 3 * real_std.item() + 1e-6
    assert fake.item() > 20 * (abs(real.item()) + real_std.item())


def test_inception_score_of_digits(data):
    mean, _ = digits_inception_score(data["x_test"])
    assert 8.0 < mean.item() <= 10.0
    one, _ = digits_inception_score(data["x_test"][:1].expand(100, -1, -1, -1))
    assert_close(one, torch.tensor(1.0, dtype=torch.float64))


def test_stacked_real_digits_cover_many_modes(data):
    g = torch.Generator().manual_seed(3)
    images, labels = stacked_digits(2000, generator=g, digits=(data["x_test"], data["y_test"]))
    s = stacked_digit_modes(images)
    true_counts = labels.bincount(minlength=1000)
    assert s.counts.sum().item() == 2000 and s.high_quality_rate is None
    assert s.modes_covered.item() >= 0.95 * (true_counts > 0).sum().item()
    # 2,000 draws of 1,000 equally likely modes: about 1000 (1 - e^-2) = 865 distinct
    assert s.modes_covered.item() > 800
    assert s.reverse_kl.item() < 0.6
    assert abs(s.reverse_kl.item() - kl_to_uniform(true_counts).item()) < 0.05


def test_one_repeated_image_is_one_mode_with_kl_log_1000(data):
    images, _ = stacked_digits(1, generator=torch.Generator().manual_seed(4), digits=(data["x_test"], data["y_test"]))
    s = stacked_digit_modes(images.expand(50, -1, -1, -1))
    assert s.modes_covered.item() == 1
    assert_close(s.reverse_kl, torch.tensor(math.log(1000), dtype=torch.float64))


def test_stacked_modes_batched_equals_per_set(data):
    g = torch.Generator().manual_seed(5)
    sets = torch.stack([stacked_digits(64, generator=g, digits=(data["x_test"], data["y_test"]))[0]
                        for _ in range(3)])
    batched = stacked_digit_modes(sets)
    assert batched.counts.shape == (3, 1000)
    for i in range(3):
        single = stacked_digit_modes(sets[i])
        assert torch.equal(batched.counts[i], single.counts)
        assert_close(batched.reverse_kl[i], single.reverse_kl)


def test_corrupted_weights_give_a_clear_error(tmp_path):
    weights = tmp_path / WEIGHTS_PATH.name
    shutil.copy(WEIGHTS_PATH, weights)
    shutil.copy(INFO_PATH, weights.with_suffix(".json"))
    assert isinstance(load_digits_classifier(path=weights), torch.nn.Module)     # intact copy loads
    blob = bytearray(weights.read_bytes())
    blob[-10] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(RuntimeError, match="retrain with scripts/train_digits_classifier.py"):
        load_digits_classifier(path=weights)
    weights.write_bytes(b"not a safetensors file")
    info = json.loads(weights.with_suffix(".json").read_text())
    info["sha256"] = hashlib.sha256(b"not a safetensors file").hexdigest()
    weights.with_suffix(".json").write_text(json.dumps(info))
    with pytest.raises(RuntimeError, match="reinstall ganlib"):
        load_digits_classifier(path=weights)
    with pytest.raises(FileNotFoundError, match="reinstall ganlib"):
        load_digits_classifier(path=tmp_path / "missing.safetensors")


@pytest.mark.parametrize("shape", [(4, 8, 8), (4, 3, 8, 8), (4, 1, 4, 4), (4, 1, 8, 7)])
def test_bad_image_shapes_raise(shape):
    with pytest.raises(ValueError):
        digits_features(torch.zeros(shape))
    with pytest.raises(ValueError):
        classify_digits(torch.zeros(shape))


def test_stacked_shape_errors():
    with pytest.raises(ValueError):
        stacked_digit_modes(torch.zeros(4, 1, 8, 8))
    with pytest.raises(ValueError):
        stacked_digit_modes(torch.zeros(3, 8, 8))


def test_inception_fid_offline_error_names_the_alternative():
    try:
        import torchmetrics  # noqa: F401
    except Exception:
        pass
    else:
        pytest.skip("torchmetrics is installed; the offline error path is not reachable")
    from ganlib.metrics import inception_fid

    x = torch.zeros(4, 1, 8, 8)
    with pytest.raises(RuntimeError, match="digits_fid"):
        inception_fid(x, x)
    with pytest.raises(ValueError):
        inception_fid(torch.zeros(4, 8, 8), x)
