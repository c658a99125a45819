"""Numba kernels fusing upsampling, coding and histogramming; imported only when numba is installed.

Each kernel walks one activation map at a time (threads split the maps), so no more than one upsampled
map per thread ever exists. The bilinear value of each pixel is computed with the same operations, in
the same order and with the same fused multiply-adds as ATen's CPU kernel (checked bit for bit at run
time by ``micam.estimators.fused`` before this path is trusted), so the bins are those of the
straightforward computation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from numba import njit, types
from numba.extending import intrinsic

# The kernels' arrays; numba types the kernels from their arguments when it compiles them.
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@intrinsic
def _fma32(typingctx: Any, a: Any, b: Any, c: Any) -> tuple[Any, Callable[..., Any]]:
    """Single-rounding float32 a*b + c (LLVM's fma), as ATen's compiled kernel computes it."""
    signature = types.float32(types.float32, types.float32, types.float32)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.fma(*args)

    return signature, codegen


# The intrinsic as the kernels call it (numba supplies ``typingctx``); the same object as ``_fma32``.
_fma = cast(Callable[[np.float32, np.float32, np.float32], np.float32], _fma32)


@njit(inline="always")
def _upsample_into(
    x: F32,
    rows: F32,
    u: F32,
    r0: I64,
    r1: I64,
    a0: F32,
    a1: F32,
    c0: I64,
    c1: I64,
    b0: F32,
    b1: F32,
    nearest: bool,
) -> tuple[np.float32, np.float32]:
    """Fill ``u`` (H*W) with the upsampled map ``x`` (h, w); returns its (min, max)."""
    h = x.shape[0]
    big_h = r0.shape[0]
    big_w = c0.shape[0]
    lo = np.float32(np.inf)
    hi = np.float32(-np.inf)
    if nearest:
        for i in range(big_h):
            xr = x[r0[i]]
            base = i * big_w
            for j in range(big_w):
                v = xr[c0[j]]
                u[base + j] = v
                lo = min(lo, v)
                hi = max(hi, v)
        return lo, hi
    # Horizontal pass once per low-resolution row, then the vertical combination per pixel.
    for r in range(h):
        for j in range(big_w):
            rows[r, j] = _fma(b0[j], x[r, c0[j]], b1[j] * x[r, c1[j]])
    for i in range(big_h):
        top = rows[r0[i]]
        bottom = rows[r1[i]]
        w_top = a0[i]
        w_bottom = a1[i]
        base = i * big_w
        for j in range(big_w):
            v = _fma(w_top, top[j], w_bottom * bottom[j])
            u[base + j] = v
            lo = min(lo, v)
            hi = max(hi, v)
    return lo, hi


@njit(cache=True)
def upsample_maps(
    acts: F32, r0: I64, r1: I64, a0: F32, a1: F32, c0: I64, c1: I64, b0: F32, b1: F32, nearest: bool
) -> F32:
    """(M, h, w) -> (M, H*W) upsampled maps; used to check the kernels against ``F.interpolate``."""
    m_count, h, _ = acts.shape
    n = r0.shape[0] * c0.shape[0]
    out = np.empty((m_count, n), np.float32)
    rows = np.empty((h, c0.shape[0]), np.float32)
    for m in range(m_count):
        _upsample_into(acts[m], rows, out[m], r0, r1, a0, a1, c0, c1, b0, b1, nearest)
    return out


@njit(nogil=True, cache=True)
def binned_sums(
    acts: F32,
    image_of_map: I64,
    gray_codes: I32,
    r0: I64,
    r1: I64,
    a0: F32,
    a1: F32,
    c0: I64,
    c1: I64,
    b0: F32,
    b1: F32,
    nearest: bool,
    bins: int,
    xlogx_table: F64,
    start: int,
    stop: int,
    s_a: F64,
    s_ab: F64,
    constant: Bools,
) -> None:
    """For maps start:stop, fill the sum of c*log(c) over its bin counts (s_a) and over the joint (map
    bin, gray bin) counts (s_ab), and whether all its pixels fall in bin 0 (constant).
    ``gray_codes`` (B, H*W) holds each image's gray bins; ``xlogx_table[k]`` = k log k for k <= H*W.
    Releases the GIL: callers run slices in threads."""
    h = acts.shape[1]
    big_w = c0.shape[0]
    n = r0.shape[0] * big_w
    fbins = np.float32(bins)
    top_bin = np.int32(bins - 1)
    u = np.empty(n, np.float32)
    rows = np.empty((h, big_w), np.float32)
    joint = np.zeros(bins * bins, np.int32)
    codes = np.empty(n, np.int32)
    for m in range(start, stop):
        lo, hi = _upsample_into(acts[m], rows, u, r0, r1, a0, a1, c0, c1, b0, b1, nearest)
        span = np.float32(hi - lo)
        # torch evaluates ``bins / span`` as reciprocal(span) * bins: the same two roundings here.
        scale = np.float32(np.float32(np.float32(1.0) / span) * fbins) if span > 0 else np.float32(0.0)
        g = gray_codes[image_of_map[m]]
        # Codes first (a loop the compiler can vectorize), then the increments.
        for p in range(n):
            level = np.int32(np.float32(np.float32(u[p] - lo) * scale))  # >= 0: truncation is floor
            codes[p] = min(level, top_bin) * bins + g[p]
        joint[:] = 0
        for p in range(n):
            joint[codes[p]] += 1
        s_a_total = 0.0
        s_ab_total = 0.0
        for k in range(bins):
            row = 0
            for q in range(k * bins, (k + 1) * bins):
                row += joint[q]
                s_ab_total += xlogx_table[joint[q]]
            s_a_total += xlogx_table[row]
            if k == 0:
                constant[m] = row == n
        s_a[m] = s_a_total
        s_ab[m] = s_ab_total


@njit(inline="always")
def _add_cell_counts(
    cell: int, ptr: I64, gray_of_entry: I64, count_of_entry: I64, accumulator: I64, touched: I64, used: int
) -> int:
    """Add cell's gray counts to ``accumulator``, listing newly touched gray codes; returns the new count."""
    for e in range(ptr[cell], ptr[cell + 1]):
        gray = gray_of_entry[e]
        if accumulator[gray] == 0:
            touched[used] = gray
            used += 1
        accumulator[gray] += count_of_entry[e]
    return used


@njit(nogil=True, cache=True)
def reference_block_sums(
    acts: F32,
    image_of_map: I64,
    block_size: I64,
    cell_xlogx: F64,
    pointers: I64,
    gray_of_entry: I64,
    count_of_entry: I64,
    n_gray: int,
    gray_total: I64,
    total_xlogx: F64,
    xlogx_table: F64,
    start: int,
    stop: int,
    s_a: F64,
    s_ab: F64,
    distinct: I64,
) -> None:
    """Distinct-value MI sums for nearest-upsampled maps from per-cell gray counts.

    Every pixel of cell c (block_size[c] pixels) takes the map value of c, so the contingency table
    over (distinct map value, distinct gray value) sums, over the cells sharing a value, their
    per-cell gray counts. Entries pointers[i, c]:pointers[i, c + 1] of gray_of_entry/count_of_entry
    list cell c's gray codes and counts in image i; cell_xlogx[i, c] is their sum of c*log(c).
    Fills, for maps start:stop, the sums of c*log(c) over value counts and joint counts, and the
    number of distinct values.
    A group covering more than half of the pixels (typically the ReLU zeros) is summed through its
    complement: with T = the image's gray counts (gray_total[i], sum of c*log(c) total_xlogx[i]) and
    C = the counts of the cells outside the group, sum_g f(T_g - C_g) = total - sum_{C_g > 0}
    (f(T_g) - f(T_g - C_g)), which touches only the (fewer) entries outside the group. Counts are
    integers up to the number of pixels, so f comes from the table xlogx_table[k] = k log k.
    """
    cells = block_size.shape[0]
    pixels = 0
    for c in range(cells):
        pixels += block_size[c]
    accumulator = np.zeros(n_gray, np.int64)
    touched = np.empty(n_gray, np.int64)
    in_group = np.zeros(cells, np.bool_)
    for m in range(start, stop):
        values = acts[m].ravel()
        order = np.argsort(values, kind="mergesort")
        image = image_of_map[m]
        ptr = pointers[image]
        total_a = 0.0
        total_ab = 0.0
        groups = 0
        i = 0
        while i < cells:
            value = values[order[i]]
            j = i + 1
            while j < cells and values[order[j]] == value:
                j += 1
            size = 0
            members = 0
            last = -1
            for q in range(i, j):
                if block_size[order[q]] > 0:
                    size += block_size[order[q]]
                    members += 1
                    last = order[q]
            if size > 0:
                groups += 1
                total_a += xlogx_table[size]
                if members == 1:
                    total_ab += cell_xlogx[image, last]
                elif 2 * size > pixels:
                    for q in range(i, j):
                        in_group[order[q]] = True
                    used = 0
                    for c in range(cells):
                        if not in_group[c]:
                            used = _add_cell_counts(c, ptr, gray_of_entry, count_of_entry, accumulator, touched, used)
                    correction = 0.0
                    for e in range(used):
                        g = touched[e]
                        t = gray_total[image, g]
                        correction += xlogx_table[t] - xlogx_table[t - accumulator[g]]
                        accumulator[g] = 0
                    total_ab += total_xlogx[image] - correction
                    for q in range(i, j):
                        in_group[order[q]] = False
                else:
                    used = 0
                    for q in range(i, j):
                        c = order[q]
                        used = _add_cell_counts(c, ptr, gray_of_entry, count_of_entry, accumulator, touched, used)
                    for e in range(used):
                        total_ab += xlogx_table[accumulator[touched[e]]]
                        accumulator[touched[e]] = 0
            i = j
        s_a[m] = total_a
        s_ab[m] = total_ab
        distinct[m] = groups
