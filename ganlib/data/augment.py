"""Batched random affine augmentation and the *phased* schedule of Mimura (2023).

Phased data augmentation (Mimura, "Phased Data Augmentation for Training a Likelihood-Based
Generative Model with Limited Data", arXiv 2305.12681): the **ranges** of the augmentation
parameters are narrowed in phases during training, and the last phase leaves the data
distribution unchanged, so a likelihood model ends up fitting the real data and not the
augmented data. The model keeps its weights across phases. The paper's exact phases, ranges
and lengths could not be checked for this library: :class:`PhasedAugmentation` takes them as
arguments and only enforces the principle (ranges shrink, the last phase preserves the data).

Images are ``[B, C, H, W]`` tensors on any device; every random number comes from the
``torch.Generator`` passed in, so a run is reproducible. One call to
:func:`torch.nn.functional.grid_sample` transforms the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from ..validation import as_float, as_int

__all__ = ["AugmentPhase", "PhasedAugmentation", "affine_transform", "random_affine", "PADDING_MODES"]

PADDING_MODES = ("constant", "border", "reflection")


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected images [B, C, H, W], got {got}")
    if not x.is_floating_point():
        raise TypeError(f"images must be a floating-point tensor, got {x.dtype}")


def affine_transform(x: torch.Tensor, angle: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor,
                     flip: torch.Tensor, padding_mode: str = "constant", fill: float = 0.0) -> torch.Tensor:
    r"""Rotate, zoom, shift and mirror each image of ``x`` with its own parameters (bilinear).

    Per image ``b``: ``angle[b]`` in degrees (positive = counter-clockwise as displayed, so
    90 equals ``torch.rot90(x, 1, dims=(-2, -1))``), ``scale[b] > 0`` (above 1 zooms in),
    ``shift[b] = (dx, dy)`` in fractions of the side (the content moves right / down) and
    ``flip[b]`` (mirror left-right first). In the normalised coordinates ``p ∈ [-1, 1]^2`` of
    the output, the input is read at :math:`R_{\text{angle}}\,M\,p / \text{scale} - 2\,\text{shift}`
    (``M`` the optional mirror). Outside the image: ``"constant"`` reads ``fill`` (use the
    background value, -1 for digits in ``[-1, 1]``), ``"border"`` repeats the edge,
    ``"reflection"`` mirrors the image (natural images).
    """
    _check_images(x)
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    b = x.shape[0]
    for name, t, shape in (("angle", angle, (b,)), ("scale", scale, (b,)), ("shift", shift, (b, 2)),
                           ("flip", flip, (b,))):
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {shape} (one per image), got {tuple(t.shape)}")
    if (scale <= 0).any():
        raise ValueError("scale must be positive")
    a = torch.deg2rad(angle.to(x.device, torch.float64))
    s = scale.to(x.device, torch.float64)
    m = 1.0 - 2.0 * flip.to(x.device, torch.float64)              # -1 mirrors x
    cos, sin = torch.cos(a) / s, torch.sin(a) / s
    t = -2.0 * shift.to(x.device, torch.float64)
    theta = torch.stack([torch.stack([cos * m, -sin, t[:, 0]], 1),
                         torch.stack([sin * m, cos, t[:, 1]], 1)], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if padding_mode == "constant":                                # grid_sample pads with 0: shift so 0 = fill
        return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def _uniform(n: int, half_range: float, generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=generator, device=device) * 2 - 1) * half_range


def random_affine(x: torch.Tensor, rotation: float = 0.0, translation: float = 0.0, zoom: float = 0.0,
                  hflip: bool = False, padding_mode: str = "constant", fill: float = 0.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Random affine augmentation of a batch: angle ~ U(±rotation) degrees, shift ~ U(±translation)
    of the side per axis, scale ~ U(1 ± zoom), mirrored with probability 1/2 if ``hflip``.

    With every range 0 and ``hflip=False`` the input itself is returned (exact identity, no
    resampling and no random numbers drawn). Random numbers are drawn on the generator's device.
    """
    _check_images(x)
    phase = AugmentPhase(rotation, translation, zoom, hflip)      # validates (and parses) the ranges
    rotation, translation, zoom = phase.rotation, phase.translation, phase.zoom
    if phase.is_identity:
        return x
    n = x.shape[0]
    dev = generator.device if generator is not None else x.device
    angle = _uniform(n, rotation, generator, dev)
    shift = torch.stack([_uniform(n, translation, generator, dev), _uniform(n, translation, generator, dev)], 1)
    scale = 1 + _uniform(n, zoom, generator, dev)
    if hflip:
        flip = torch.rand(n, generator=generator, device=dev) < 0.5
    else:
        flip = torch.zeros(n, dtype=torch.bool, device=dev)
    return affine_transform(x, angle, shift, scale, flip, padding_mode=padding_mode, fill=fill)


@dataclass(frozen=True)
class AugmentPhase:
    """The parameter ranges of one phase: ``±rotation`` degrees, ``±translation`` (fraction of
    the side), ``1 ± zoom`` and an optional left-right mirror."""

    rotation: float = 0.0
    translation: float = 0.0
    zoom: float = 0.0
    hflip: bool = False

    def __post_init__(self):
        for name, hi in (("rotation", 180.0), ("translation", 1.0), ("zoom", 0.99)):
            v = getattr(self, name)
            try:  # numbers given as strings are parsed, as everywhere in ganlib
                x = as_float(name, v, low=0, high=hi)
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be a number in [0, {hi}] (a ± range), got {v!r}") from None
            object.__setattr__(self, name, x)
        if not isinstance(self.hflip, bool):
            raise TypeError(f"hflip must be True or False, got {self.hflip!r}")

    @property
    def is_identity(self) -> bool:
        return self.rotation == 0 and self.translation == 0 and self.zoom == 0 and not self.hflip

    def scaled(self, strength: float) -> "AugmentPhase":
        """The same transforms with every range multiplied by ``strength`` (the mirror is kept)."""
        if not 0 <= strength <= 1:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        return AugmentPhase(self.rotation * strength, self.translation * strength, self.zoom * strength, self.hflip)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None,
                 padding_mode: str = "constant", fill: float = 0.0) -> torch.Tensor:
        return random_affine(x, self.rotation, self.translation, self.zoom, self.hflip,
                             padding_mode=padding_mode, fill=fill, generator=generator)


def _as_phase(p) -> AugmentPhase:
    if isinstance(p, AugmentPhase):
        return p
    if isinstance(p, Mapping):
        known = {f.name for f in fields(AugmentPhase)}
        unknown = set(p) - known
        if unknown:
            raise ValueError(f"unknown augmentation parameter(s) {sorted(unknown)}; use {sorted(known)}")
        return AugmentPhase(**p)
    raise TypeError(f"a phase must be an AugmentPhase or a dict of its fields, got {type(p).__name__}")


class PhasedAugmentation:
    """Augmentation whose ranges shrink in phases over training (Mimura 2023).

    ``phases[k]`` holds from the fraction ``boundaries[k-1]`` of training to ``boundaries[k]``
    (cumulative fractions in (0, 1), one fewer than the phases). With ``strict=True`` (the
    method) the ranges must shrink monotonically, phase after phase, and the last phase must
    leave the data distribution unchanged: no rotation, shift or zoom, and a mirror only if
    ``flip_invariant=True`` (mirror-symmetric data such as faces; never digits).
    :meth:`constant` and :meth:`none` build the two baselines with the same interface.
    """

    def __init__(self, phases: Sequence, boundaries: Sequence[float] = (), padding_mode: str = "constant",
                 fill: float = 0.0, flip_invariant: bool = False, strict: bool = True):
        phases = [_as_phase(p) for p in phases]
        if not phases:
            raise ValueError("give at least one phase")
        boundaries = [as_float(f"boundaries[{i}]", b) for i, b in enumerate(boundaries)]
        if len(boundaries) != len(phases) - 1:
            raise ValueError(f"{len(phases)} phases need {len(phases) - 1} boundaries (cumulative fractions of "
                             f"training where the next phase starts), got {len(boundaries)}")
        if any(not 0 < b < 1 for b in boundaries) or any(b2 <= b1 for b1, b2 in zip(boundaries, boundaries[1:])):
            raise ValueError(f"boundaries must increase strictly inside (0, 1), got {boundaries}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        if strict:
            for k, (a, b) in enumerate(zip(phases, phases[1:])):
                for name in ("rotation", "translation", "zoom"):
                    if getattr(b, name) > getattr(a, name):
                        raise ValueError(f"phase {k + 1} widens {name} ({getattr(a, name)} -> {getattr(b, name)}): "
                                         "phased augmentation only narrows the ranges")
                if b.hflip and not a.hflip:
                    raise ValueError(f"phase {k + 1} turns the mirror on after phase {k}: ranges may only narrow")
            last = phases[-1]
            if last.rotation or last.translation or last.zoom:
                raise ValueError(f"the last phase must leave the data distribution unchanged (no rotation, shift or "
                                 f"zoom), got {last}; add a final identity phase, or pass strict=False for a baseline")
            if last.hflip and not flip_invariant:
                raise ValueError("the last phase mirrors the images, which changes the distribution unless the data "
                                 "are mirror-symmetric: pass flip_invariant=True (faces) or drop hflip (digits)")
        self.phases, self.boundaries = phases, boundaries
        self.padding_mode, self.fill = padding_mode, fill

    @classmethod
    def constant(cls, phase, **kwargs) -> "PhasedAugmentation":
        """Conventional augmentation: one phase held for the whole run (a baseline)."""
        return cls([phase], [], strict=False, **kwargs)

    @classmethod
    def none(cls, **kwargs) -> "PhasedAugmentation":
        """No augmentation (a baseline)."""
        return cls([AugmentPhase()], [], **kwargs)

    def __len__(self) -> int:
        return len(self.phases)

    def __repr__(self) -> str:
        return f"PhasedAugmentation(phases={self.phases}, boundaries={self.boundaries})"

    def phase_starts(self, total_steps: int) -> list[int]:
        """The first step of each phase in a run of ``total_steps`` steps (``round(boundary * total)``)."""
        total_steps = as_int("total_steps", total_steps, low=1)
        return [0] + [int(b * total_steps + 0.5) for b in self.boundaries]

    def phase_index(self, step: int, total_steps: int) -> int:
        """Which phase (0-based) step ``step`` of ``total_steps`` (0 ≤ step < total) is in."""
        starts = self.phase_starts(total_steps)
        step = as_int("step", step, low=0)
        if step >= total_steps:
            raise ValueError(f"step must be an integer in [0, {total_steps}), got {step}")
        return sum(step >= s for s in starts[1:])

    def phase(self, step: int, total_steps: int) -> AugmentPhase:
        return self.phases[self.phase_index(step, total_steps)]

    def __call__(self, x: torch.Tensor, step: int, total_steps: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment the batch ``x`` with the ranges of the phase that ``step`` is in."""
        return self.phase(step, total_steps)(x, generator, padding_mode=self.padding_mode, fill=self.fill)
