"""An offline feature extractor and classifier for scikit-learn's 8x8 digits.

A small CNN trained by ``scripts/train_digits_classifier.py`` ships with ganlib
(``weights/digits_classifier.safetensors``, about 0.1 MB; accuracy, split and sha256 in
``weights/digits_classifier.json``). It plays two roles that need no download:

* **feature extractor** -- its 64-d penultimate layer feeds the Fréchet distance
  (:func:`digits_fid`), KID (:func:`digits_kid`) and precision/recall, in the spirit of
  the "Fréchet LeNet distance" for MNIST. These numbers are **not comparable** with
  Inception FID or with other papers: they are for comparing runs within this book at
  equal sample sizes;
* **mode counter** for stacked digits (:func:`stacked_digit_modes`): each of the three
  channels is classified, giving one of 1,000 modes, as in the Stacked-MNIST protocol of
  VEEGAN (Srivastava et al., 2017, Table 2) and PacGAN (Lin et al., 2018, Tables 2-3),
  which use an MNIST CNN instead.

Images are ``[n, 1, H, W]`` in ``[-1, 1]`` with ``H, W >= 8``; anything larger than 8x8
is reduced to 8x8 by adaptive average pooling first.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .frechet import fid_from_features, kid
from .mixture import ModeStats, kl_to_uniform

__all__ = [
    "DigitsClassifier", "load_digits_classifier", "classifier_info", "digits_split",
    "digits_features", "classify_digits", "digits_fid", "digits_kid",
    "digits_inception_score", "i_variance", "digits_i_variance", "stacked_digit_modes", "WEIGHTS_PATH",
    "INFO_PATH",
]

WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "digits_classifier.safetensors"
INFO_PATH = WEIGHTS_PATH.with_suffix(".json")
_FIX = "reinstall ganlib or retrain with scripts/train_digits_classifier.py"


class DigitsClassifier(nn.Module):
    """conv3x3(32)-ReLU-maxpool2 - conv3x3(64)-ReLU-maxpool2 - fc(64)-ReLU [features] - fc(10).

    Pooling early keeps it cheap on CPU (about 0.33 M multiply-adds per 8x8 image): counting the
    modes of 26,000 stacked digits classifies 78,000 images.
    """

    feature_dim = 64

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 2 * 2, self.feature_dim)
        self.head = nn.Linear(self.feature_dim, 10)
        self.dropout = nn.Dropout(0.3)

    @staticmethod
    def prepare(images: torch.Tensor) -> torch.Tensor:
        """Check ``[n, 1, H, W]`` with ``H, W >= 8`` and pool to 8x8."""
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.ndim != 4 or images.shape[1] != 1 or min(images.shape[-2:]) < 8:
            raise ValueError("digits networks take greyscale images [n, 1, H, W] in [-1, 1] with "
                             f"H, W >= 8, got shape {tuple(images.shape)}")
        images = images.float()
        if images.shape[-2:] != (8, 8):
            images = F.adaptive_avg_pool2d(images, (8, 8))
        return images

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.prepare(images)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)                # [n, 32, 4, 4]
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)                # [n, 64, 2, 2]
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``[n, 10]``."""
        return self.head(self.dropout(self.features(images)))


def digits_split(labels: torch.Tensor, n_test: int = 397, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A stratified train/test split of the digits: ``(train_idx, test_idx)`` (sorted).

    Each class gets ``n_test * n_class / N`` test images, rounded by largest remainder so
    the total is exactly ``n_test``; which images is decided by a seeded permutation. The
    shipped classifier's test indices are stored in its JSON (:func:`classifier_info`), so
    its evaluation does not depend on this function's random stream.
    """
    labels = labels.cpu()
    n = len(labels)
    if not 0 < n_test < n:
        raise ValueError(f"n_test must be in (0, {n}), got {n_test}")
    classes, counts = labels.unique(return_counts=True)
    exact = counts.double() * n_test / n
    quota = exact.floor().long()
    extra = n_test - int(quota.sum())
    order = torch.argsort(-(exact - quota), stable=True)       # largest remainders first
    quota[order[:extra]] += 1
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    grouped = perm[torch.argsort(labels[perm], stable=True)]    # by class, random within class
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n) - starts.repeat_interleave(counts)
    is_test = rank < quota.repeat_interleave(counts)
    test = grouped[is_test].sort().values
    train = grouped[~is_test].sort().values
    return train, test


def classifier_info(path: str | Path | None = None) -> dict:
    """The JSON record of the shipped classifier (sha256, accuracy, split, command)."""
    info_path = Path(path).with_suffix(".json") if path is not None else INFO_PATH
    if not info_path.exists():
        raise FileNotFoundError(f"digits classifier record {info_path} is missing; {_FIX}")
    return json.loads(info_path.read_text())


_CACHE: dict[str, DigitsClassifier] = {}


def load_digits_classifier(device=None, path: str | Path | None = None) -> DigitsClassifier:
    """The trained digits classifier in eval mode, frozen, on ``device`` (default CPU).

    The file's sha256 is checked against the JSON record before loading (safetensors, no
    pickle). A missing, corrupted or mismatched file raises with the fix. The shipped
    weights are loaded once per device and shared; do not modify the returned module.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    key = str(device)
    if path is None and key in _CACHE:
        return _CACHE[key]
    weights = Path(path) if path is not None else WEIGHTS_PATH
    if not weights.exists():
        raise FileNotFoundError(f"digits classifier weights {weights} are missing; {_FIX}")
    info = classifier_info(weights)
    blob = weights.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != info.get("sha256"):
        raise RuntimeError(f"digits classifier weights {weights} are corrupted or do not match their "
                           f"record (sha256 {digest[:12]}... != {str(info.get('sha256'))[:12]}...); {_FIX}")
    from safetensors.torch import load as load_safetensors

    try:
        state = load_safetensors(blob)
        model = DigitsClassifier()
        model.load_state_dict(state)
    except Exception as err:
        raise RuntimeError(f"could not load digits classifier weights {weights} ({err}); {_FIX}") from err
    model = model.to(device).eval().requires_grad_(False)
    if path is None:
        _CACHE[key] = model
    return model


def _batched(fn, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    DigitsClassifier.prepare(images)                             # validate before any work
    if len(images) == 0:
        raise ValueError("no images given (shape [0, 1, H, W])")
    with torch.no_grad():
        return torch.cat([fn(images[s:s + batch_size]) for s in range(0, len(images), batch_size)])


def _device(images, name: str) -> torch.device:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of images [n, 1, H, W], got {type(images).__name__}")
    return images.device


def digits_features(images: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """64-d penultimate-layer features ``[n, 64]`` (float32, on the images' device)."""
    model = load_digits_classifier(images.device if isinstance(images, torch.Tensor) else None)
    return _batched(model.features, images, batch_size)


def classify_digits(images: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Predicted digit ``[n]`` (long) of each image."""
    model = load_digits_classifier(images.device if isinstance(images, torch.Tensor) else None)
    return _batched(lambda x: model(x).argmax(dim=1), images, batch_size)


def _real_or_default(real_images, device):
    if real_images is None:
        from ganlib.data.images import load_digits

        real_images = load_digits()[0]
    return real_images.to(device)


def digits_fid(fake_images: torch.Tensor, real_images: torch.Tensor | None = None) -> torch.Tensor:
    """Fréchet distance (Heusel et al., 2017) between digits-classifier features.

    ``real_images`` defaults to all 1,797 scikit-learn digits. **Not comparable with
    Inception FID** (different network, 64-d features, 8x8 images) and biased upward at
    small n: compare values only within this book, at equal sample sizes. To score many
    fakes against fixed reals, extract the real features once with :func:`digits_features`
    and call :func:`ganlib.metrics.fid_from_features`.
    """
    real = _real_or_default(real_images, _device(fake_images, "fake_images"))
    return fid_from_features(digits_features(real), digits_features(fake_images))


def digits_kid(fake_images: torch.Tensor, real_images: torch.Tensor | None = None,
               **kid_kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """KID (Bińkowski et al., 2018) on digits-classifier features: ``(mean, std)``.

    Keyword arguments go to :func:`ganlib.metrics.kid`; same caveats as :func:`digits_fid`.
    """
    real = _real_or_default(real_images, _device(fake_images, "fake_images"))
    return kid(digits_features(real), digits_features(fake_images), **kid_kwargs)


def digits_inception_score(images: torch.Tensor, splits: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Inception Score with the digits classifier: ``exp(E_x KL(p(y|x) || p(y)))``.

    Salimans et al. (2016); like torch-fidelity, the images are cut into ``splits``
    groups and the mean and (population) std over groups are returned. The maximum is 10 (ten classes).
    """
    device = _device(images, "images")
    if int(splits) != splits or splits < 1 or len(images) < splits:
        raise ValueError(f"splits must be an integer in [1, n_images], got {splits}")
    model = load_digits_classifier(device)
    logp = _batched(lambda x: model(x).log_softmax(dim=1), images, 4096).double()
    n = (len(logp) // splits) * splits
    logp = logp[:n].reshape(splits, -1, 10)
    log_marginal = torch.logsumexp(logp, dim=1, keepdim=True) - math.log(logp.shape[1])
    kl = (logp.exp() * (logp - log_marginal)).sum(-1).mean(-1)
    scores = kl.exp()
    return scores.mean(), scores.std(correction=0)


def i_variance(probs: torch.Tensor) -> torch.Tensor:
    """I-Variance of class probabilities ``[..., n, C]`` -> ``[...]``: the mean over the C classes
    of the (population) standard deviation of each class's probability over the n samples.

    Liu et al., 2023 (MaEM-GAN), Eq. 15 writes it as a spread of Inception outputs; their
    ``inception_variance.py`` computes exactly this (``np.mean(np.std(preds, axis=0))`` on
    softmax outputs, one split). Higher means more diverse *and* confident samples: a generator
    stuck on one class scores 0, uniform confident samples over C classes score
    ``sqrt((C - 1) / C**2)``.
    """
    if not isinstance(probs, torch.Tensor) or probs.ndim < 2 or probs.shape[-2] < 1:
        raise ValueError("probs must be a tensor [..., n, C] of class probabilities, got "
                         f"{tuple(probs.shape) if isinstance(probs, torch.Tensor) else type(probs).__name__}")
    return probs.double().std(dim=-2, correction=0).mean(dim=-1)


def digits_i_variance(images: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """:func:`i_variance` of the digits classifier's softmax outputs, an offline analogue of
    MaEM-GAN's I-Variance (10 digit classes instead of Inception's 1,000, so the scale differs).
    ``images`` is ``[n, 1, H, W]`` (a scalar) or ``[S, n, 1, H, W]`` (one value per sample set)."""
    if not isinstance(images, torch.Tensor) or images.ndim not in (4, 5):
        raise ValueError("images must be [n, 1, H, W] or [S, n, 1, H, W], got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    model = load_digits_classifier(images.device)
    flat = images.reshape(-1, *images.shape[-3:])
    probs = _batched(lambda x: model(x).softmax(dim=1), flat, batch_size)
    return i_variance(probs.reshape(*images.shape[:-3], 10))


def stacked_digit_modes(images: torch.Tensor, batch_size: int = 4096) -> ModeStats:
    """Modes covered and reverse KL of stacked-digit images (VEEGAN / PacGAN protocol).

    Each of the three channels is classified; the mode is ``100 d_R + 10 d_G + d_B``.
    ``counts`` is the histogram over the 1,000 modes of **all** samples (no quality
    filter, as in PacGAN's ``log_metrics``); a mode is covered if it holds at least one
    sample; ``reverse_kl = KL(counts / n || uniform(1000))`` in nats (empty modes add 0),
    so one repeated image gives ``log 1000``. PacGAN evaluates 26,000 samples (VEEGAN
    setting) or 25,600 (Unrolled setting). ``images`` is ``[n, 3, H, W]`` or
    ``[S, n, 3, H, W]`` (S sample sets at once); ``high_quality_rate`` is ``None``.
    """
    if not isinstance(images, torch.Tensor) or images.ndim not in (4, 5) or images.shape[-3] != 3:
        raise ValueError("stacked digits must be [n, 3, H, W] or [S, n, 3, H, W], got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    lead = images.shape[:-3]
    labels = classify_digits(images.reshape(-1, 1, *images.shape[-2:]), batch_size).reshape(*lead, 3)
    codes = 100 * labels[..., 0] + 10 * labels[..., 1] + labels[..., 2]
    counts = torch.zeros(*lead[:-1], 1000, dtype=torch.long, device=codes.device)
    counts.scatter_add_(-1, codes, torch.ones_like(codes))
    return ModeStats(modes_covered=(counts > 0).sum(-1), high_quality_rate=None,
                     reverse_kl=kl_to_uniform(counts), counts=counts)
