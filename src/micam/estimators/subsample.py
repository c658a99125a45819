"""The seeded pixel subsample shared by the value-based estimators ("ksg", "hsic").

Nearest-neighbour and kernel estimators cost O(N^2) per pair of rows: 2.5e9 distances for one
224 x 224 map, too many for every channel of a layer. They therefore look at the same ``samples``
positions of every row, drawn once per (N, samples, seed) without replacement by a seeded generator,
so a map's weight is reproducible and every channel of a layer sees the same pixels as the gray image.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

__all__ = ["DEFAULT_SAMPLES", "DEFAULT_SEED", "subsample_indices"]

DEFAULT_SAMPLES = 2048
DEFAULT_SEED = 0

# Pairwise entries (float64) per block of work. On the CPU 64 K (512 KiB per temporary): HSIC's Gram
# matrices then split into bands of rows and only their upper triangle is formed, half the work (with
# 4 M entries, 2,048 samples make one band: the whole square); the block size alone changed neither
# estimator's time measurably. On a GPU 4 M (32 MiB), so each kernel launch has enough work.
_CPU_ENTRIES_PER_BLOCK = 1 << 16
_GPU_ENTRIES_PER_BLOCK = 1 << 22


def check_samples(samples: object, name: str = "samples") -> int:
    """``samples`` as an int, or a ValueError when it is not an integer >= 2."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise ValueError(f"{name} must be an integer >= 2, got {samples!r}")
    return samples


def subsample_indices(
    n: int, samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED, device: torch.device | str | None = None
) -> Tensor:
    """The positions (int64, on ``device``) a value-based estimator looks at among ``n`` samples:
    all of them, in order, when ``n <= samples``, else ``samples`` distinct positions drawn by a
    generator seeded with ``seed`` (the same positions on every call and every device)."""
    return _indices(int(n), check_samples(samples), int(seed)).to(device=device or "cpu")


@lru_cache(maxsize=32)
def _indices(n: int, samples: int, seed: int) -> Tensor:
    if n <= samples:
        return torch.arange(n)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=generator)[:samples]


@lru_cache(maxsize=32)
def uniform_noise(samples: int, seed: int) -> Tensor:
    """(2, samples) float64 CPU noise in [0, 1): row 0 for ``a``, row 1 for ``b`` (independent, so that
    breaking ties cannot itself create dependence), seeded apart from the subsample's positions."""
    generator = torch.Generator().manual_seed(seed + 0x5EED)
    return torch.rand(2, samples, dtype=torch.float64, generator=generator)


def entries_per_block(device: torch.device) -> int:
    """Pairwise entries per block of work on ``device`` (float64): small on the CPU (HSIC in bands), large elsewhere."""
    return _CPU_ENTRIES_PER_BLOCK if device.type == "cpu" else _GPU_ENTRIES_PER_BLOCK


def rows_per_block(samples: int, columns: int, device: torch.device) -> int:
    """How many rows of a (rows, samples, columns) pairwise block fit in ``entries_per_block(device)``."""
    return max(1, entries_per_block(device) // (samples * columns))
