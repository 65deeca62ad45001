"""Image datasets that work offline, plus torchvision datasets where they can be had.

Offline (shipped inside packages, no download):

* scikit-learn's ``load_digits``: 1,797 greyscale 8x8 digits (16 grey levels);
* stacked digits: three digits as the R, G, B channels, 10^3 = 1,000 modes
  (the "stacked MNIST" benchmark of Metz et al. 2017 / VEEGAN / PacGAN, on 8x8 digits);
* scikit-image's ``lfw_subset``: 100 faces of 25x25 pixels (a genuinely limited face set).

Online (Colab or any machine with internet and torchvision): MNIST, Fashion-MNIST, CIFAR-10; read by
our own IDX / CIFAR-batch readers, torchvision only downloads them. The ``gpu-dry`` profile uses
:func:`synthetic_stand_in` instead (same shapes, no download).
All images are float tensors ``[N, C, H, W]`` scaled to ``[-1, 1]``.
"""

from __future__ import annotations

import math
import pickle

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


# name -> (torchvision class that downloads it, folder under root, raw shape of one image [C, H, W], classes)
_TORCHVISION = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}
_FORMAT = {"mnist": ("idx", "MNIST/raw", (1, 28, 28)), "fashion_mnist": ("idx", "FashionMNIST/raw", (1, 28, 28)),
           "cifar10": ("cifar", "cifar-10-batches-py", (3, 32, 32))}
_SPLIT_SIZE = {"mnist": (60000, 10000), "fashion_mnist": (60000, 10000), "cifar10": (50000, 10000)}
_PRETTY = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}


def read_idx(path) -> torch.Tensor:
    """One file of the IDX format MNIST and Fashion-MNIST ship in (``.gz`` or extracted), as a uint8 tensor.

    Header: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, then
    each dimension as a big-endian int32 (LeCun et al., "THE MNIST DATABASE" file format).
    """
    import gzip
    import struct

    path = str(path)
    with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (header {raw[:4]!r}); "
                         "delete it so that it is downloaded again")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}i", raw[4:4 + 4 * ndim])
    body = raw[4 + 4 * ndim:]
    if len(body) != math.prod(shape):
        raise ValueError(f"{path}: header says {shape} ({math.prod(shape)} bytes) but {len(body)} bytes follow; "
                         "the file is truncated: delete it so that it is downloaded again")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR-10 batches (dicts of bytes, lists and NumPy arrays) and nothing else:
    any other global in the file is refused, so a tampered file cannot run code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"CIFAR batch refers to {module}.{name}, which a data batch never does")


def read_cifar_batch(path) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file of CIFAR-10's "python version": ``(images [N, 3, 32, 32] uint8, labels [N])``."""
    with open(path, "rb") as fh:
        batch = _ArrayUnpickler(fh, encoding="bytes").load()
    try:
        data, labels = batch[b"data"], batch[b"labels"]
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a CIFAR-10 batch (no b'data' / b'labels')") from err
    images = torch.as_tensor(data, dtype=torch.uint8).reshape(-1, 3, 32, 32)
    return images, torch.as_tensor(labels, dtype=torch.long)


def _raw_files(name: str, folder) -> list:
    kind = _FORMAT[name][0]
    if kind == "idx":
        return [folder / f"{split}-{part}-idx{nd}-ubyte" for split in ("train", "t10k")
                for part, nd in (("images", 3), ("labels", 1))]
    return [folder / f"data_batch_{i}" for i in range(1, 6)] + [folder / "test_batch"]


def _read_raw(name: str, folder, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images ``[N, C, H, W]`` and labels of a split, read from the files torchvision downloads."""
    from pathlib import Path

    folder = Path(folder)

    def find(path: Path) -> Path:  # torchvision keeps the extracted file; a manual copy may be the .gz
        return path if path.exists() else path.with_name(path.name + ".gz")

    if _FORMAT[name][0] == "idx":
        split = "train" if train else "t10k"
        images = read_idx(find(folder / f"{split}-images-idx3-ubyte")).unsqueeze(1)
        labels = read_idx(find(folder / f"{split}-labels-idx1-ubyte")).long()
    else:
        names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        parts = [read_cifar_batch(folder / n) for n in names]
        images, labels = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    if len(images) != len(labels):
        raise ValueError(f"{folder}: {len(images)} images but {len(labels)} labels; delete the folder to download again")
    return images, labels


def synthetic_stand_in(name: str, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8 images and labels with exactly the shape of a torchvision data set's split.

    The one place the ``gpu-dry`` profile gets data that would need a download: the same number
    of images, channels, height and width, dtype and value range (0-255, then the same conversion
    as the real files), ten balanced classes. Pixels are noise: this exercises the code, it is no data.
    """
    if name not in _TORCHVISION:
        raise ValueError(f"unknown torchvision dataset {name!r}; choose one of {sorted(_TORCHVISION)}")
    n = _SPLIT_SIZE[name][0 if train else 1]
    gen = torch.Generator().manual_seed(0 if train else 1)
    images = torch.randint(0, 256, (n, *_FORMAT[name][2]), generator=gen, dtype=torch.uint8)
    labels = torch.randperm(n, generator=gen) % 10
    return images, labels


def load_torchvision(name: str, root: str = "~/.cache/ganlib", train: bool = True,
                     size: int | None = None, stand_in: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST / Fashion-MNIST / CIFAR-10 as ``(images [N, C, H, W] in [-1, 1], labels [N])``.

    The files are read from ``root`` in the layout torchvision downloads them to (``MNIST/raw/*-ubyte``,
    ``cifar-10-batches-py/*``) by this module's own readers; only a missing file needs torchvision and
    a network connection (Colab has both) to download it. Offline, or without torchvision, it raises
    with the offline alternatives named. ``size`` resizes (bilinear). ``stand_in=True`` (the ``gpu-dry``
    profile) downloads nothing and returns :func:`synthetic_stand_in` data of the same shape, saying so.
    """
    if name not in _TORCHVISION:
        raise ValueError(f"unknown torchvision dataset {name!r}; choose one of {sorted(_TORCHVISION)}")
    import os
    from pathlib import Path

    if stand_in:
        images, labels = synthetic_stand_in(name, train)
        print(f"synthetic stand-in for {_PRETTY[name]} ({'train' if train else 'test'} split): {len(images)} random "
              f"uint8 images of {'x'.join(map(str, images.shape[1:]))}, not the data set (gpu-dry profile, no download)")
    else:
        folder = Path(os.path.expanduser(root)) / _FORMAT[name][1]
        if not all(p.exists() or p.with_name(p.name + ".gz").exists() for p in _raw_files(name, folder)):
            _download(name, root)
        images, labels = _read_raw(name, folder, train)
    images = images.float() / 255.0 * 2 - 1
    if size is not None:
        images = _resize(images, size)
    return images, labels


def _download(name: str, root: str) -> None:
    """Download a data set's files into ``root`` with torchvision (its layout is what :func:`_read_raw` reads)."""
    try:
        import torchvision
    except Exception as err:  # ImportError, or the operator error of a mismatched build
        raise RuntimeError(
            f"dataset {name!r} is not in {root!r} and downloading it needs a working torchvision "
            f"({type(err).__name__}: {err}). Install it next to your torch (Colab has it), or use an offline "
            f"dataset: {OFFLINE_ALTERNATIVES}."
        ) from err
    import os

    cls = getattr(torchvision.datasets, _TORCHVISION[name])
    try:
        for train in (True, False):
            cls(os.path.expanduser(root), train=train, download=True)
    except Exception as err:
        raise RuntimeError(
            f"could not download {name!r} into {root!r} ({type(err).__name__}: {err}). "
            f"This machine may be offline; use an offline dataset instead: {OFFLINE_ALTERNATIVES}."
        ) from err
