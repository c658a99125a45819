"""Numba kernel of the HOG descriptor: gradient, orientation bin and cell histogram in one pass over
each map, with no angle computed; imported only when numba is installed.

The unsigned orientation of a gradient (gx, gy) is its angle folded into [0, pi); its bin is the
number of bin boundaries k * pi / orientations (k = 1 .. orientations - 1) at or below that angle.
After folding the gradient into the upper half plane, "angle >= phi" is the sign test
gy * cos(phi) - gx * sin(phi) >= 0, so no arctangent is needed. Pixels are visited in raster order,
as ``torch.scatter_add_`` visits them, so each histogram sum is formed in the same order.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt
from numba import njit, prange

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@njit(nogil=True, cache=True, parallel=True)
def hog_histograms(maps: F32 | F64, cell: int, cosines: tuple[float, ...], sines: tuple[float, ...], out: F64) -> None:
    """Add the magnitude-weighted orientation histograms of each (H, W) map (float32 or float64;
    differences are taken in float64) to ``out`` (B, cells * orientations). ``cosines``/``sines``: the
    bin boundaries' directions, ascending, as tuples (their length is then known when the kernel is
    compiled, and the boundary tests are unrolled). Each row is done in two passes: a branch-free one that
    the compiler vectorizes (magnitude and bin of every pixel), then the histogram additions, across the
    row's cells first (no addition waits for the one before; each histogram still sums in raster order).
    Maps run in parallel."""
    b, h, w = maps.shape
    boundaries = len(cosines)
    orientations = boundaries + 1
    cells_down, cells_across = h // cell, w // cell
    columns = cells_across * cell
    for n in prange(b):  # maps in parallel (numba's threads: ``hog`` sets their number to torch's)
        gx = np.zeros(w)
        gy = np.zeros(w)
        magnitude = np.empty(w)
        bins = np.empty(w, dtype=np.int64)
        x = maps[n]
        for i in range(cells_down * cell):
            for j in range(1, w - 1):  # the first and last columns keep gx = 0
                gx[j] = np.float64(x[i, j + 1]) - np.float64(x[i, j - 1])
            if 0 < i < h - 1:  # the first and last rows have gy = 0
                for j in range(w):
                    gy[j] = np.float64(x[i + 1, j]) - np.float64(x[i - 1, j])
            else:
                gy[:] = 0.0
            for j in range(columns):
                u, v = gx[j], gy[j]
                magnitude[j] = np.sqrt(u * u + v * v)
                sign = -1.0 if (v < 0.0) | ((v == 0.0) & (u < 0.0)) else 1.0  # orientation into [0, pi)
                u, v = sign * u, sign * v
                index = 0
                for k in range(boundaries):
                    index += v * cosines[k] - u * sines[k] >= 0.0
                bins[j] = index
            row = out[n, (i // cell) * cells_across * orientations :]
            for t in range(cell):  # across the cells first: consecutive additions hit different cells
                for cj in range(cells_across):
                    j = cj * cell + t
                    row[cj * orientations + bins[j]] += magnitude[j]


def run_hog(
    maps: F32 | F64, cell: int, cosines: tuple[float, ...], sines: tuple[float, ...], out: F64, threads: int
) -> None:
    """``hog_histograms`` on at most ``threads`` of numba's threads (the caller passes torch's count, so a
    process limited to one thread, a Ray actor say, is not oversubscribed)."""
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
    hog_histograms(maps, cell, cosines, sines, out)
