"""Triton kernels of the binned estimator for GPUs: upsample, bin and count activation maps on chip,
never writing an upsampled map to memory; imported only where Triton is installed.

``binned_map_sums``: one program per (image, channel) map walks the output pixels in blocks twice:
first for the upsampled map's minimum and maximum, then to bin each value with
``equal_width_bin_codes``' float32 arithmetic ((value - min) * (bins / span), floor, clamp; divided where
bins / span overflows) and to add the (map bin, gray bin) pairs to a joint histogram (``tl.histogram``).
From that histogram it writes the sums of c log c over the joint and the map's marginal counts, which
``micam.estimators.fused`` finishes into MI exactly as the other routes do. ``binned_map_sums_dot`` does
the same for several maps of one image per program and counts on the tensor cores instead: a block's
joint counts are an int8 product of one-hot codes, summed in int32 (exact).

The bilinear value is computed with the fused multiply-adds of ATen's CPU kernel, which the fused CPU
route reproduces too: along the row ``fma(col_w0, v00, col_w1 * v01)``, then
``fma(row_w0, top, row_w1 * bottom)`` (a fused multiply-add rounds once on every device), with the
source indices and weights of ``micam.estimators.fused._plan`` (nearest upsampling: weights 1 and 0,
which return the source value). Every float division is ``tl.math.div_rn``: Triton compiles a float32
``/`` to an approximate division (``div.full.f32``), which moved ``bins / span`` by an ulp and pixels
across bin edges on an H100; ``tests/test_gpu_kernel.py`` refuses a ``/`` in this file and compiles
both kernels for sm_90 (no GPU needed) to check that their PTX divides only with ``div.rn``. On a GPU the
values, so the bins, are then meant to be those of the CPU path bit for bit, not those of CUDA's
``F.interpolate``.

Run on the CPU with ``TRITON_INTERPRET=1`` set before Triton is first imported (the tests do), the
kernels are executed by Triton's interpreter, which is how they are checked without a GPU; the
interpreter rounds a fused multiply-add twice (product, then sum), which the tests' reference does too,
and divides exactly whatever the operator.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def binned_map_sums(
    maps_ptr,
    gray_codes_ptr,
    plan,
    s_a_ptr,
    s_ab_ptr,
    constant_ptr,
    channels,
    h,
    w,
    big_w,
    n,
    BINS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Per map m: s_a[m] = sum of c log c over its bin counts, s_ab[m] over its joint counts with its
    image's gray bins, constant[m] = 1 where every value falls in bin 0."""
    m = tl.program_id(0)
    image = m // channels
    source = maps_ptr + m.to(tl.int64) * h * w + tl.zeros((1,), dtype=tl.int64)  # (1,): one map
    alive = tl.full((1,), 1, dtype=tl.int1)
    lo = float("inf")
    hi = float("-inf")
    for start in range(0, n, BLOCK):
        value, valid = _upsampled_map(source, alive, start, n, w, big_w, plan, BLOCK)  # fmt: skip
        lo = tl.minimum(lo, tl.min(tl.where(valid, value, float("inf")), axis=0))
        hi = tl.maximum(hi, tl.max(tl.where(valid, value, float("-inf")), axis=0))
    span = hi - lo
    scale = tl.where(span > 0, tl.math.div_rn(BINS * 1.0, tl.where(span > 0, span, 1.0)), 0.0)
    overflow = scale == float("inf")  # spans of (near-)subnormal values: divide instead
    joint = tl.zeros((BINS * BINS,), dtype=tl.int32)
    top = 0
    for start in range(0, n, BLOCK):
        value, valid = _upsampled_map(source, alive, start, n, w, big_w, plan, BLOCK)  # fmt: skip
        offsets = value - lo
        scaled = tl.where(overflow, tl.math.div_rn(offsets, tl.zeros_like(offsets) + span) * BINS, offsets * scale)
        code = tl.minimum(tl.maximum(tl.floor(scaled), 0.0), BINS - 1.0).to(tl.int32)
        pixel = start + tl.arange(0, BLOCK)
        gray = tl.load(gray_codes_ptr + image.to(tl.int64) * n + pixel, mask=valid, other=0)
        joint += tl.histogram(code * BINS + gray, BINS * BINS, mask=valid)
        top = tl.maximum(top, tl.max(tl.where(valid, code, 0), axis=0))
    counts = joint.to(tl.float64)
    s_ab = tl.sum(tl.where(counts > 0, counts * tl.log(tl.where(counts > 0, counts, 1.0)), 0.0), axis=0)
    marginal = tl.sum(tl.reshape(counts, (BINS, BINS)), axis=1)
    s_a = tl.sum(tl.where(marginal > 0, marginal * tl.log(tl.where(marginal > 0, marginal, 1.0)), 0.0), axis=0)
    tl.store(s_a_ptr + m, s_a)
    tl.store(s_ab_ptr + m, s_ab)
    tl.store(constant_ptr + m, (top == 0).to(tl.int8))


@triton.jit
def binned_map_sums_dot(
    maps_ptr,
    gray_codes_ptr,
    plan,
    s_a_ptr,
    s_ab_ptr,
    constant_ptr,
    channels,
    h,
    w,
    big_w,
    n,
    BINS: tl.constexpr,
    MAPS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """``binned_map_sums`` for MAPS maps of one image per program, counting on the tensor cores: a block's
    joint counts are one-hot(map bins) (MAPS * BINS, BLOCK) @ one-hot(gray bins) (BLOCK, BINS) in int8,
    accumulated in int32, so exact; the plan and the gray codes are read once for the MAPS maps."""
    groups = tl.cdiv(channels, MAPS)
    image = tl.program_id(0) // groups
    channel = (tl.program_id(0) % groups) * MAPS + tl.arange(0, MAPS)
    live = channel < channels
    sources = maps_ptr + (image * channels + channel).to(tl.int64) * h * w
    lo = tl.full((MAPS,), float("inf"), tl.float32)
    hi = tl.full((MAPS,), float("-inf"), tl.float32)
    for start in range(0, n, BLOCK):
        value, valid, _ = _upsampled_maps(sources, live, start, n, w, big_w, plan, BLOCK)  # fmt: skip
        lo = tl.minimum(lo, tl.min(tl.where(valid, value, float("inf")), axis=1))
        hi = tl.maximum(hi, tl.max(tl.where(valid, value, float("-inf")), axis=1))
    span = hi - lo
    safe_span = tl.where(span > 0, span, 1.0)
    scale = tl.where(span > 0, tl.math.div_rn(tl.full((MAPS,), BINS, tl.float32), safe_span), 0.0)
    overflow = scale == float("inf")  # spans of (near-)subnormal values: divide instead
    levels = tl.arange(0, BINS)
    joint = tl.zeros((MAPS * BINS, BINS), dtype=tl.int32)
    top = tl.zeros((MAPS,), dtype=tl.int32)
    for start in range(0, n, BLOCK):
        value, valid, pixel = _upsampled_maps(sources, live, start, n, w, big_w, plan,
                                              BLOCK)  # fmt: skip
        offsets = value - lo[:, None]
        divided = tl.math.div_rn(offsets, tl.zeros_like(offsets) + safe_span[:, None]) * BINS
        scaled = tl.where(overflow[:, None], divided, offsets * scale[:, None])
        code = tl.minimum(tl.maximum(tl.floor(scaled), 0.0), BINS - 1.0).to(tl.int32)
        gray = tl.load(gray_codes_ptr + image.to(tl.int64) * n + pixel, mask=pixel < n, other=BINS)  # BINS: no bin
        gray_hot = (gray[:, None] == levels[None, :]).to(tl.int8)
        map_hot = (code[:, None, :] == levels[None, :, None]).to(tl.int8)
        joint = tl.dot(tl.reshape(map_hot, (MAPS * BINS, BLOCK)), gray_hot, joint, out_dtype=tl.int32)
        top = tl.maximum(top, tl.max(tl.where(valid, code, 0), axis=1))
    counts = tl.reshape(joint.to(tl.float64), (MAPS, BINS, BINS))
    s_ab = tl.sum(tl.sum(tl.where(counts > 0, counts * tl.log(tl.where(counts > 0, counts, 1.0)), 0.0), axis=2), axis=1)
    marginal = tl.sum(counts, axis=2)
    s_a = tl.sum(tl.where(marginal > 0, marginal * tl.log(tl.where(marginal > 0, marginal, 1.0)), 0.0), axis=1)
    m = image * channels + channel
    tl.store(s_a_ptr + m, s_a, mask=live)
    tl.store(s_ab_ptr + m, s_ab, mask=live)
    tl.store(constant_ptr + m, (top == 0).to(tl.int8), mask=live)


@triton.jit
def _upsampled_maps(
    sources,
    live,
    start,
    n,
    w,
    big_w,
    plan,
    BLOCK: tl.constexpr,
):
    """(MAPS, BLOCK) upsampled values of output pixels start .. start + BLOCK of the maps at ``sources``,
    which of them exist, and the pixel indices (BLOCK,)."""
    row0_ptr, row1_ptr, row_w0_ptr, row_w1_ptr, col0_ptr, col1_ptr, col_w0_ptr, col_w1_ptr = plan
    pixel = start + tl.arange(0, BLOCK)
    inside = pixel < n
    y = pixel // big_w
    x = pixel % big_w
    r0 = tl.load(row0_ptr + y, mask=inside, other=0)
    r1 = tl.load(row1_ptr + y, mask=inside, other=0)
    rw0 = tl.load(row_w0_ptr + y, mask=inside, other=0.0)[None, :]
    rw1 = tl.load(row_w1_ptr + y, mask=inside, other=0.0)[None, :]
    c0 = tl.load(col0_ptr + x, mask=inside, other=0)
    c1 = tl.load(col1_ptr + x, mask=inside, other=0)
    cw0 = tl.load(col_w0_ptr + x, mask=inside, other=0.0)[None, :]
    cw1 = tl.load(col_w1_ptr + x, mask=inside, other=0.0)[None, :]
    valid = live[:, None] & inside[None, :]
    base = sources[:, None]
    v00 = tl.load(base + (r0 * w + c0)[None, :], mask=valid, other=0.0)
    v01 = tl.load(base + (r0 * w + c1)[None, :], mask=valid, other=0.0)
    v10 = tl.load(base + (r1 * w + c0)[None, :], mask=valid, other=0.0)
    v11 = tl.load(base + (r1 * w + c1)[None, :], mask=valid, other=0.0)
    top = tl.fma(cw0, v00, cw1 * v01)
    bottom = tl.fma(cw0, v10, cw1 * v11)
    return tl.fma(rw0, top, rw1 * bottom), valid, pixel


@triton.jit
def _upsampled_map(
    source,
    alive,
    start,
    n,
    w,
    big_w,
    plan,
    BLOCK: tl.constexpr,
):
    """``_upsampled_maps`` of one map (``source`` and ``alive`` of shape (1,)): (BLOCK,) values and which exist."""
    value, valid, _ = _upsampled_maps(source, alive, start, n, w, big_w, plan, BLOCK)  # fmt: skip
    return tl.reshape(value, (BLOCK,)), tl.reshape(valid, (BLOCK,))
