"""Datasets and data sources.

A *source* is anything with ``sample(n, generator) -> Tensor``: the Trainer
draws every real batch through it with its own ``torch.Generator``, so a
resumed run draws exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import torch

from ..validation import as_int, check_finite, check_generator
from .augment import AugmentPhase, PhasedAugmentation, affine_transform, random_affine
from .images import load_digits, load_lfw_faces, load_torchvision, stacked_digits, synthetic_stand_in
from .mixtures import GaussianMixture, grid_of_gaussians, ring_of_gaussians

__all__ = [
    "GaussianMixture", "ring_of_gaussians", "grid_of_gaussians", "load_digits", "stacked_digits",
    "load_lfw_faces", "load_torchvision", "synthetic_stand_in", "TensorSource", "load_dataset", "DATASETS",
    "AugmentPhase", "PhasedAugmentation", "affine_transform", "random_affine",
]


class TensorSource:
    """Draws random rows (with replacement) of a fixed tensor, on that tensor's device.

    ``data`` must be a non-empty floating-point tensor ``[N, ...]`` of finite values: NaN or
    inf rows are counted and refused here, before they could surface as a "diverged" training
    run; integer images are refused with a hint to convert them.
    """

    def __init__(self, data: torch.Tensor):
        if not isinstance(data, torch.Tensor):
            raise TypeError(f"TensorSource needs a tensor of shape [N, ...] as data, got {type(data).__name__}; "
                            "convert with torch.as_tensor(x, dtype=torch.float32)")
        if data.ndim < 2 or len(data) == 0:
            raise ValueError(f"TensorSource needs non-empty data of shape [N, ...] (N samples of at least one "
                             f"dimension), got shape {tuple(data.shape)}; add a feature axis with x[:, None]")
        if not data.is_floating_point():
            raise TypeError(f"TensorSource data must be floating point, got {data.dtype}; convert it "
                            "(images: x.float() / 127.5 - 1 for values in [-1, 1])")
        check_finite("TensorSource data", data)
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def to(self, device) -> "TensorSource":
        return TensorSource(self.data.to(device))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        n = as_int("n", n, low=0)
        check_generator(generator)
        gen_device = generator.device if generator is not None else self.data.device
        idx = torch.randint(len(self.data), (n,), generator=generator, device=gen_device)
        return self.data[idx.to(self.data.device)]


class StackedDigitsSource:
    """Fresh stacked-digit images on every draw (1,000 modes), like the on-the-fly data of
    the Unrolled-GAN setting; ``digits`` are the pool of single digits to stack."""

    def __init__(self, size: int = 8, digits: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.digits = digits if digits is not None else load_digits(size)

    def to(self, device) -> "StackedDigitsSource":
        return StackedDigitsSource(digits=(self.digits[0].to(device), self.digits[1].to(device)))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return stacked_digits(n, generator=generator, digits=self.digits)[0]


def _digits(size: int = 8):
    return TensorSource(load_digits(size)[0])


DATASETS = {
    "ring": lambda **kw: ring_of_gaussians(**kw),
    "grid": lambda **kw: grid_of_gaussians(**kw),
    "digits": _digits,
    "stacked_digits": lambda size=8: StackedDigitsSource(size),
    "lfw": lambda: TensorSource(load_lfw_faces()),
    "mnist": lambda **kw: TensorSource(load_torchvision("mnist", **kw)[0]),
    "fashion_mnist": lambda **kw: TensorSource(load_torchvision("fashion_mnist", **kw)[0]),
    "cifar10": lambda **kw: TensorSource(load_torchvision("cifar10", **kw)[0]),
}


DOWNLOADED = ("mnist", "fashion_mnist", "cifar10")


def load_dataset(name: str, stand_in: bool = False, **kwargs):
    """A data source by name: one of ``DATASETS`` (clear error on an unknown name).

    ``stand_in=True`` (the ``gpu-dry`` profile) replaces a data set that needs a download by a
    synthetic one of the same shape (:func:`synthetic_stand_in`); offline data sets ignore it.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    if name in DOWNLOADED:
        kwargs["stand_in"] = stand_in
    return DATASETS[name](**kwargs)
