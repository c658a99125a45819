"""Reference "methods" that look at nothing: a centre Gaussian and uniform noise.

They sit in every table so that a reader sees what the dataset's centre bias alone scores (the
shared ILSVRC2012 objects are large and central) and what chance scores. Each takes the same call
as a CAM (``micam.methods.Explainer``), ``ref(images, targets=None, keys=None)`` -> (B, H, W) maps in
[0, 1]: ``targets`` is accepted and ignored, ``keys`` (image names) seeds ``RandomMap``; a CAM method
likewise accepts and ignores ``keys``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from micam.methods import CONTROLS

if TYPE_CHECKING:
    from micam.methods.base import Explainer


class CentreGaussian:
    """exp(-d^2 / 2 sigma^2) around the image centre, sigma = ``spread`` x the shorter side."""

    name = "centre-gaussian"

    def __init__(self, spread: float = 0.25) -> None:
        if spread <= 0:
            raise ValueError(f"spread must be positive, got {spread}")
        self.spread = spread

    def __call__(self, images: Tensor, targets: object = None, keys: Sequence[str] | None = None) -> Tensor:
        b, _, h, w = images.shape
        sigma = self.spread * min(h, w)
        rows = torch.arange(h, device=images.device, dtype=torch.float32) - (h - 1) / 2
        cols = torch.arange(w, device=images.device, dtype=torch.float32) - (w - 1) / 2
        squared = rows[:, None] ** 2 + cols[None, :] ** 2
        bump = torch.exp(-squared / (2 * sigma**2))
        bump = (bump - bump.min()) / (bump.max() - bump.min())
        return bump.expand(b, h, w).clone()


class RandomMap:
    """Uniform noise in [0, 1]; the same image key always gets the same map (resumable runs)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def __call__(self, images: Tensor, targets: object = None, keys: Sequence[str] | None = None) -> Tensor:
        b, _, h, w = images.shape
        keys = list(keys) if keys is not None else [str(i) for i in range(b)]
        maps = []
        for key in keys:
            generator = torch.Generator().manual_seed(zlib.crc32(f"{self.seed}:{key}".encode()))
            maps.append(torch.rand(h, w, generator=generator))
        return torch.stack(maps).to(images.device)


REFERENCES: dict[str, Callable[..., Explainer]] = {"centre-gaussian": CentreGaussian, "random": RandomMap}
# Rows that are never ranked with the methods or bolded: the reference maps and MI-CAM's controls.
UNRANKED = frozenset(REFERENCES) | frozenset(CONTROLS)
