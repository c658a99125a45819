"""Numba kernel of the HOG descriptor: gradient, orientation bin and cell histogram in one pass over
each map, with no angle computed; imported only when numba is installed.

The unsigned orientation of a gradient (gx, gy) is its angle folded into [0, pi); its bin is the
number of bin boundaries k * pi / orientations (k = 1 .. orientations - 1) at or below that angle.
With the gradient folded into the upper half plane as (u, v), "angle >= beta" is the sign test
v * cos(beta) - u * sin(beta) >= 0, so no arctangent is needed; the boundary at pi / 2 itself (an even
count of orientations) is tested exactly, as u <= 0 (its computed cosine is +-1e-16, of either sign
depending on the count, which misplaced exactly vertical gradients at 50 orientations, say). Only half
of the tests are made: a folded gradient in the first quadrant passes no test against a boundary past
pi / 2 (a "falling" one) and one in the second quadrant passes every test against a boundary before it
(a "rising" one). So each pixel tests (|gx|, |gy|) against one set, chosen by its quadrant, with the
products, signs and roundings of the tests on the folded gradient: the descriptor is that of testing
every boundary (only a gradient too small for its products to be nonzero may land in another bin, and
its magnitude, 0, adds nothing). Pixels are visited in raster order, as ``torch.scatter_add_`` visits
them, so each histogram sum is formed in the same order.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt
from numba import njit, prange

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Floats = tuple[float, ...]


@njit(nogil=True, cache=True, parallel=True)
def hog_histograms(
    maps: F32 | F64,
    cell: int,
    orientations: int,
    first_up: Floats,
    first_across: Floats,
    second_up: Floats,
    second_across: Floats,
    out: F64,
) -> None:
    """Add the magnitude-weighted orientation histograms of each (H, W) map (float32 or float64;
    differences are taken in float64) to ``out`` (B, cells * orientations). A pixel's k-th test is
    |gy| * up[k] + |gx| * across[k] >= 0, with ``first_*`` (cos, -sin of the rising boundaries) in the
    first quadrant and ``second_*`` (cos, sin of the falling ones, as many) in the second. Its bin is the
    tests passed, plus, with an even count of orientations, the pi / 2 boundary where it is at or below
    the angle (gx == 0 in the first quadrant, always in the second), plus the rising boundaries in the
    second quadrant. The tuples' length is known when the kernel is compiled, so the tests are
    unrolled. Each row is done in two passes: a branch-free one that the compiler vectorizes (magnitude
    and histogram slot of every pixel), then the histogram additions, across the row's cells first (no
    addition waits for the one before; each histogram still sums in raster order). Maps run in
    parallel."""
    b, h, w = maps.shape
    tests = len(first_up)  # rising boundaries, as many as falling ones
    right_angle = orientations % 2 == 0  # a boundary at pi / 2
    cells_down, cells_across = h // cell, w // cell
    columns = cells_across * cell
    first_slot = np.empty(columns, dtype=np.int64)  # where a column's cell histogram starts in a row of cells
    for j in range(columns):
        first_slot[j] = (j // cell) * orientations
    for n in prange(b):  # maps in parallel (numba's threads: ``hog`` sets their number to torch's)
        gx = np.zeros(w)
        gy = np.zeros(w)
        magnitude = np.empty(columns)
        slot = np.empty(columns, dtype=np.int64)
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
                second = ((u < 0.0) & (v > 0.0)) | ((u > 0.0) & (v < 0.0))
                across, up = abs(u), abs(v)
                passed = 0
                for k in range(tests):
                    up_k = second_up[k] if second else first_up[k]
                    across_k = second_across[k] if second else first_across[k]
                    passed += up * up_k + across * across_k >= 0.0
                upright = right_angle & (second | (across == 0.0))  # the pi / 2 boundary is at or below it
                slot[j] = first_slot[j] + passed + upright + (tests if second else 0)
            row = out[n, (i // cell) * cells_across * orientations :]
            for t in range(cell):  # across the cells first: consecutive additions hit different cells
                for cj in range(cells_across):
                    j = cj * cell + t
                    row[slot[j]] += magnitude[j]


def run_hog(maps: F32 | F64, cell: int, orientations: int, out: F64, threads: int) -> None:
    """``hog_histograms`` with ``orientations`` bins (at least 3: one boundary on each side of pi / 2),
    on at most ``threads`` of numba's threads (the caller passes torch's count, so a process limited to
    one thread, a Ray actor say, is not oversubscribed)."""
    if orientations < 3:
        raise ValueError(f"the HOG kernel needs at least 3 orientations, got {orientations}")
    below = range(1, (orientations + 1) // 2)  # boundaries k * pi / orientations below pi / 2
    above = range(orientations // 2 + 1, orientations)  # and past it
    angles = np.array([*below, *above], dtype=np.float64) * (np.pi / orientations)
    cosines, sines = np.cos(angles).tolist(), np.sin(angles).tolist()
    tests = len(below)
    first_up, first_across = tuple(cosines[:tests]), tuple(-s for s in sines[:tests])
    second_up, second_across = tuple(cosines[tests:]), tuple(sines[tests:])
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
    hog_histograms(maps, cell, orientations, first_up, first_across, second_up, second_across, out)
