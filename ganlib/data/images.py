"""Image datasets that work offline, plus torchvision datasets where they can be had.

Offline (shipped inside packages, no download):

* scikit-learn's ``load_digits``: 1,797 greyscale 8x8 digits (16 grey levels);
* stacked digits: three digits as the R, G, B channels, 10^3 = 1,000 modes
  (the "stacked MNIST" benchmark of Metz et al. 2017 / VEEGAN / PacGAN, on 8x8 digits);
* scikit-image's ``lfw_subset``: 100 faces of 25x25 pixels (a genuinely limited face set).

Online (Colab or any machine with internet and torchvision): MNIST, Fashion-MNIST, CIFAR-10.
All images are float tensors ``[N, C, H, W]`` scaled to ``[-1, 1]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

OFFLINE_ALTERNATIVES = "'digits', 'stacked_digits' or 'lfw'"


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if size == images.shape[-1]:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)


def load_digits(size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits in ``[-1, 1]``, optionally upsampled (bilinear) to ``size``.

    Returns ``(images [1797, 1, size, size], labels [1797])``.
    """
    if isinstance(size, (bool, str)) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an integer >= 8 (the digits are 8x8), got {size!r}")
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0 * 2 - 1
    return _resize(images, size), torch.tensor(bunch.target, dtype=torch.long)


def stacked_digits(n: int, size: int = 8, generator: torch.Generator | None = None,
                   digits: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` stacked-digit images: three independent random digits as R, G, B.

    The label of an image is ``100 * d_R + 10 * d_G + d_B`` (one of 1,000 modes).
    ``digits`` may pass pre-loaded ``(images, labels)`` to draw from (e.g. a train split).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    images, labels = digits if digits is not None else load_digits(size)
    idx = torch.randint(len(images), (n, 3), generator=generator, device=generator.device if generator else "cpu")
    idx = idx.to(images.device)
    stacked = images[idx].squeeze(2)                      # [n, 3, H, W]
    lab = labels[idx]
    return stacked, 100 * lab[:, 0] + 10 * lab[:, 1] + lab[:, 2]


def load_lfw_faces() -> torch.Tensor:
    """The 100 face images of scikit-image's ``data.lfw_subset()`` (25x25 grey) in ``[-1, 1]``.

    ``lfw_subset`` holds 200 images: the first 100 are faces, the last 100 are
    non-face crops; only the faces are returned.
    """
    try:
        from skimage.data import lfw_subset
    except ImportError as err:  # pragma: no cover - scikit-image is a dependency
        raise ImportError("load_lfw_faces needs scikit-image: pip install scikit-image") from err
    faces = torch.tensor(lfw_subset()[:100], dtype=torch.float32)
    lo, hi = faces.amin(dim=(1, 2), keepdim=True), faces.amax(dim=(1, 2), keepdim=True)
    return ((faces - lo) / (hi - lo).clamp_min(1e-8) * 2 - 1).unsqueeze(1)


_TORCHVISION = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def load_torchvision(name: str, root: str = "~/.cache/ganlib", train: bool = True,
                     size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST / Fashion-MNIST / CIFAR-10 through torchvision (downloads on first use).

    Needs torchvision and a network connection (Colab has both). Offline, or
    without torchvision, it raises with the offline alternatives named.
    """
    if name not in _TORCHVISION:
        raise ValueError(f"unknown torchvision dataset {name!r}; choose one of {sorted(_TORCHVISION)}")
    try:
        import torchvision
    except Exception as err:  # ImportError, or the operator error of a mismatched build
        raise RuntimeError(
            f"dataset {name!r} needs a working torchvision ({type(err).__name__}: {err}). "
            f"Install it next to your torch (Colab has it), or use an offline dataset: {OFFLINE_ALTERNATIVES}."
        ) from err
    import os

    cls = getattr(torchvision.datasets, _TORCHVISION[name])
    try:
        ds = cls(os.path.expanduser(root), train=train, download=True)
    except Exception as err:
        raise RuntimeError(
            f"could not download {name!r} into {root!r} ({type(err).__name__}: {err}). "
            f"This machine may be offline; use an offline dataset instead: {OFFLINE_ALTERNATIVES}."
        ) from err
    data = torch.as_tensor(ds.data)
    images = data.float().unsqueeze(1) if data.ndim == 3 else data.float().permute(0, 3, 1, 2)
    images = images / 255.0 * 2 - 1
    if size is not None:
        images = _resize(images, size)
    return images, torch.as_tensor(ds.targets, dtype=torch.long)
