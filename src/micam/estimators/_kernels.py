"""Numba kernels fusing upsampling, coding and histogramming; imported only when numba is installed.

Each kernel walks one activation map at a time (threads split the maps), and never holds a whole
upsampled map. The bilinear value of each pixel is computed with the same operations, in the same order
and with the same fused multiply-adds as ATen's CPU kernel (checked bit for bit at run time by
``micam.estimators.fused`` before this path is trusted), so the bins are those of the straightforward
computation. The binned kernel upsamples and counts pixel by pixel only the tiles whose values straddle
a bin boundary; a tile inside one bin adds its gray counts at once (``binned_tile_sums``).
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


@njit(inline="always")
def _pixel(rows: F32, r0: I64, r1: I64, a0: F32, a1: F32, i: int, j: int) -> np.float32:
    """The bilinear value of output pixel (i, j) from the horizontally interpolated source rows."""
    return _fma(a0[i], rows[r0[i], j], a1[i] * rows[r1[i], j])


@njit(inline="always")
def _code(value: np.float32, lo: np.float32, scale: np.float32, top_bin: np.int32) -> np.int32:
    """The bin of ``value``, with the same roundings as ``equal_width_bin_codes``; monotone in ``value``."""
    return min(np.int32(np.float32(np.float32(value - lo) * scale)), top_bin)  # >= lo: truncation is floor


@njit(inline="always")
def _row_codes(out: I32, top: F32, bottom: F32, w_top: np.float32, w_bottom: np.float32, gray: I32, lo: np.float32,
               scale: np.float32, top_bin: np.int32, bins: int) -> None:  # fmt: skip
    """Joint codes (map bin * bins + gray bin) of one output row (a loop the compiler vectorizes)."""
    for t in range(out.shape[0]):
        out[t] = _code(_fma(w_top, top[t], w_bottom * bottom[t]), lo, scale, top_bin) * bins + gray[t]


@njit(inline="always")
def _row_range(top: F32, bottom: F32, w_top: np.float32, w_bottom: np.float32, lo: np.float32, hi: np.float32
               ) -> tuple[np.float32, np.float32]:  # fmt: skip
    for t in range(top.shape[0]):
        value = _fma(w_top, top[t], w_bottom * bottom[t])
        lo = min(lo, value)
        hi = max(hi, value)
    return lo, hi


# A computed bilinear value lies within about 6.3 float32 ulps of the largest corner magnitude M of its cell
# from the exact one, which lies between the exact values at the corners of any rectangle of pixels
# inside the cell. A tile's bounds are its computed corner pixels widened by M * 2^-19 (32 ulps: over twice
# both errors) plus 2^-140 (subnormal values round in absolute, not relative, steps).
_RELATIVE_SLACK = 2.0**-19
_ABSOLUTE_SLACK = 2.0**-140


@njit(nogil=True, cache=True)
def binned_tile_sums(
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
    tile_rows: I64,
    tile_cols: I64,
    tile_gray: I32,
    start: int,
    stop: int,
    s_a: F64,
    s_ab: F64,
    constant: Bools,
) -> None:
    """For maps start:stop, fill the sum of c*log(c) over its bin counts (s_a) and over the joint (map
    bin, gray bin) counts (s_ab), and whether all its pixels fall in bin 0 (constant): the counts of
    upsampling every pixel and coding it, without doing so for most pixels.

    The output is cut into tiles (``tile_rows`` / ``tile_cols``: [first, stop) output rows / columns,
    each inside one source row's / column's band, so one source cell covers a tile). Within a tile the
    exact bilinear function is bilinear in the pixel's two weights, so its extremes lie at the tile's
    corners: the computed corners, widened by the rounding bound above, bound every computed pixel. The
    map's exact min and max come from the tiles that can hold them; then a tile whose bounds fall in one
    bin adds its gray counts (``tile_gray[image, tile]``) to that bin's row, and only the other tiles'
    pixels are upsampled, coded and counted. The counts, and so the sums, are those of the
    straightforward computation (bins are monotone in the value). Releases the GIL: callers run slices
    in threads.
    """
    h = acts.shape[1]
    w = acts.shape[2]
    big_w = c0.shape[0]
    n = r0.shape[0] * big_w
    n_r = tile_rows.shape[0]
    n_c = tile_cols.shape[0]
    fbins = np.float32(bins)
    top_bin = np.int32(bins - 1)
    rows = np.empty((h, big_w), np.float32)
    joint = np.zeros(bins * bins, np.int32)
    low = np.empty((n_r, n_c), np.float64)
    high = np.empty((n_r, n_c), np.float64)
    exact = np.empty((n_r, n_c), np.bool_)
    magnitude = np.empty((h, w), np.float64)
    sign = np.empty((h, w), np.int8)
    codes = np.empty(big_w, np.int32)
    mixed = np.empty(n_c, np.bool_)
    for m in range(start, stop):
        x = acts[m]
        image = image_of_map[m]
        gray = gray_codes[image]
        if not nearest:
            for r in range(h):  # horizontal pass once per source row
                for j in range(big_w):
                    rows[r, j] = _fma(b0[j], x[r, c0[j]], b1[j] * x[r, c1[j]])
        for r in range(h):  # per source cell: the largest corner magnitude, and the corners' common sign
            below = min(r + 1, h - 1)
            for c in range(w):
                right = min(c + 1, w - 1)
                small = min(min(x[r, c], x[below, c]), min(x[r, right], x[below, right]))
                large = max(max(x[r, c], x[below, c]), max(x[r, right], x[below, right]))
                magnitude[r, c] = max(abs(np.float64(small)), abs(np.float64(large)))
                sign[r, c] = 1 if small >= 0 else (-1 if large <= 0 else 0)
        lo = np.float32(np.inf)
        hi = np.float32(-np.inf)
        lowest = np.inf  # the smallest lower bound of an inexact tile, and which tile has it
        highest = -np.inf
        lowest_tile = -1
        highest_tile = -1
        for tr in range(n_r):
            i0 = tile_rows[tr, 0]
            i1 = tile_rows[tr, 1] - 1
            for tc in range(n_c):
                j0 = tile_cols[tc, 0]
                j1 = tile_cols[tc, 1] - 1
                r = r0[i0]
                c = c0[j0]
                if nearest or magnitude[r, c] == 0.0:  # one value for the whole tile: exact
                    value = x[r, c] if nearest else np.float32(0.0)
                    low[tr, tc] = value
                    high[tr, tc] = value
                    exact[tr, tc] = True
                    lo = min(lo, value)
                    hi = max(hi, value)
                    continue
                p0 = np.float64(_pixel(rows, r0, r1, a0, a1, i0, j0))
                p1 = np.float64(_pixel(rows, r0, r1, a0, a1, i0, j1))
                p2 = np.float64(_pixel(rows, r0, r1, a0, a1, i1, j0))
                p3 = np.float64(_pixel(rows, r0, r1, a0, a1, i1, j1))
                slack = magnitude[r, c] * _RELATIVE_SLACK + _ABSOLUTE_SLACK
                small = min(min(p0, p1), min(p2, p3)) - slack
                large = max(max(p0, p1), max(p2, p3)) + slack
                if sign[r, c] > 0:  # non-negative corners and weights: no value rounds below 0
                    small = max(small, 0.0)
                elif sign[r, c] < 0:
                    large = min(large, 0.0)
                low[tr, tc] = small
                high[tr, tc] = large
                exact[tr, tc] = False
                if small < lowest:
                    lowest = small
                    lowest_tile = tr * n_c + tc
                if large > highest:
                    highest = large
                    highest_tile = tr * n_c + tc
        # The exact min and max of the computed pixels: the two most promising tiles first, then any
        # tile whose bounds could still beat what they gave.
        for sweep in range(2):
            for tr in range(n_r):
                for tc in range(n_c):
                    tile = tr * n_c + tc
                    promising = tile in (lowest_tile, highest_tile)
                    if exact[tr, tc] or (sweep == 0) != promising:
                        continue
                    if sweep == 1 and low[tr, tc] >= lo and high[tr, tc] <= hi:
                        continue
                    j0 = tile_cols[tc, 0]
                    j1 = tile_cols[tc, 1]
                    for i in range(tile_rows[tr, 0], tile_rows[tr, 1]):
                        lo, hi = _row_range(rows[r0[i], j0:j1], rows[r1[i], j0:j1], a0[i], a1[i], lo, hi)
        span = np.float32(hi - lo)
        # torch evaluates ``bins / span`` as reciprocal(span) * bins: the same two roundings here.
        scale = np.float32(np.float32(np.float32(1.0) / span) * fbins) if span > 0 else np.float32(0.0)
        joint[:] = 0
        if np.isinf(scale):  # a span of (near-)subnormal values: every pixel, (value - lo) / span * bins
            for i in range(r0.shape[0]):
                for j in range(big_w):
                    value = x[r0[i], c0[j]] if nearest else _pixel(rows, r0, r1, a0, a1, i, j)
                    level = np.int32(np.float32(np.float32(np.float32(value - lo) / span) * fbins))
                    joint[min(level, top_bin) * bins + gray[i * big_w + j]] += 1
        else:
            for tr in range(n_r):
                any_mixed = False
                for tc in range(n_c):
                    first = _code(np.float32(max(low[tr, tc], np.float64(lo))), lo, scale, top_bin)
                    last = _code(np.float32(min(high[tr, tc], np.float64(hi))), lo, scale, top_bin)
                    mixed[tc] = first != last
                    if first == last:  # every pixel of the tile is in bin ``first``: add its gray counts
                        counts = tile_gray[image, tr * n_c + tc]
                        base = first * bins
                        for q in range(bins):
                            joint[base + q] += counts[q]
                    else:
                        any_mixed = True
                if not any_mixed:
                    continue
                for i in range(tile_rows[tr, 0], tile_rows[tr, 1]):
                    p = i * big_w
                    _row_codes(
                        codes, rows[r0[i]], rows[r1[i]], a0[i], a1[i], gray[p : p + big_w], lo, scale, top_bin, bins
                    )
                    for tc in range(n_c):
                        if mixed[tc]:
                            for j in range(tile_cols[tc, 0], tile_cols[tc, 1]):
                                joint[codes[j]] += 1
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
