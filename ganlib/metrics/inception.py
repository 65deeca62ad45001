"""Inception FID through torchmetrics, where it and its weights can be had (Colab).

Offline (CI, this book's CPU runs) use :func:`ganlib.metrics.digits_fid` instead.
"""

from __future__ import annotations

import torch

__all__ = ["inception_fid"]

_OFFLINE = ("Offline, use ganlib.metrics.digits_fid (a shipped digits network; not comparable "
            "with Inception FID).")


def inception_fid(fake_images: torch.Tensor, real_images: torch.Tensor, batch_size: int = 256,
                  device=None) -> torch.Tensor:
    """FID (Heusel et al., 2017) on Inception-v3 pool3 features via torchmetrics.

    Images are ``[n, C, H, W]`` in ``[-1, 1]`` with C = 1 or 3 (greyscale is repeated to
    RGB); torchmetrics resizes them to 299x299 (since torchmetrics 1.8 with antialiasing,
    which shifts values slightly against torch-fidelity/TF numbers). Needs
    ``pip install torchmetrics[image]`` (which brings torch-fidelity) and internet access
    for the weights on first use. Use the standard protocol (e.g. 50k vs 50k) to compare
    with papers; FID is biased upward at small n.
    """
    for name, x in (("fake_images", fake_images), ("real_images", real_images)):
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3) or len(x) < 2:
            raise ValueError(f"{name} must be [n >= 2, 1 or 3, H, W] in [-1, 1], got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except Exception as err:
        raise RuntimeError(f"inception_fid needs torchmetrics with torch-fidelity "
                           f"(pip install 'torchmetrics[image]'): {type(err).__name__}: {err}. {_OFFLINE}") from err
    device = torch.device(device) if device is not None else fake_images.device
    try:
        metric = FrechetInceptionDistance(feature=2048, normalize=True).to(device)
    except Exception as err:
        raise RuntimeError(f"could not build the Inception network (weights are downloaded on first use): "
                           f"{type(err).__name__}: {err}. {_OFFLINE}") from err
    metric.set_dtype(torch.float64)
    for images, real in ((real_images, True), (fake_images, False)):
        for s in range(0, len(images), batch_size):
            x = ((images[s:s + batch_size].to(device).float() + 1) / 2).clamp(0, 1)
            metric.update(x.expand(-1, 3, -1, -1), real=real)
    return metric.compute()
