"""MI between every upsampled activation map and the gray input, without materializing the upsampled layer.

``upsampled_mutual_information(activations, gray, mode, estimator, bins)`` returns the same numbers as
``mutual_information(upsample(activations, gray.shape[1:], mode).flatten(2), gray.flatten(1)[:, None])``
(to float64 rounding of the final sums) by one of three routes:

* fused (CPU, float32, numba installed): one kernel per map upsamples, codes and histograms in
  thread-local buffers, pixel by pixel only in the 16 x 16 tiles whose values straddle a bin edge (a
  tile inside one bin adds its gray counts at once). Bilinear pixels are computed with ATen's own
  arithmetic (verified bit for bit against ``F.interpolate`` once per shape; on a mismatch the chunked
  route is used). With nearest
  upsampling and the distinct-value estimator each map is constant on the block of pixels copied from
  one cell, so the contingency table is assembled from per-cell gray counts (computed once per image)
  instead of per-pixel codes: the per-map work is O(cells), plus the cells that share a value.
* chunked (any device, any dtype, any number of spatial dimensions, or without numba): upsample a
  bounded chunk of maps with ``F.interpolate`` and call ``mutual_information`` on it. The fused
  kernels are written for images, so 1-D (B, K, l) and 3-D (B, K, d, h, w) layers always take it.

* gpu (CUDA, float32 images, the binned estimators at 2-64 bins, Triton installed): a Triton kernel
  upsamples, bins and counts each map on chip (``micam.estimators._triton``); nothing the size of an
  upsampled layer is written. Its bilinear values use the fused multiply-adds of ATen's CPU kernel and
  its ``bins / span`` is correctly rounded, so they, and the weights, are meant to be those of the CPU
  routes rather than of CUDA's ``F.interpolate`` (which the chunked route uses on a GPU; the two round
  differently near bin edges). On an H100 it made MI-CAM about 10x faster than the chunked route, but
  that run found its weights off by up to 8.8e-4 (an approximate division, fixed since, not yet rerun on
  a GPU; docs/benchmark.md), so it is opt-in: ``route="gpu"``, or ``MICAM_GPU_KERNEL=1`` for "auto" (and
  so for MI-CAM) on CUDA. ``python benchmarks/gpu_kernel.py`` checks it against the CPU path and times
  it; ``micam benchmark --device cuda`` times MI-CAM with it (``mi_cam_gpu``).

No route holds more than about ``_VALUES_PER_CHUNK`` upsampled values at once, whatever the batch
size. ``MICAM_FUSED=0`` in the environment forces the chunked route. Which estimators have a fused
kernel, and for which upsampling, each estimator says itself (``Estimator.fused_blocker`` and
``Estimator.fused``, ``micam.estimators.builtin``); this module holds the kernels' drivers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from micam.estimators.plugin import _finish_binned, _xlogx, dense_ranks, equal_width_bin_codes, mutual_information
from micam.estimators.registry import DEFAULT_BINS, Estimator, get_estimator
from micam.imaging import UPSAMPLE_MODES, check_upsample_mode, upsample
from micam.runtime import env_switch

__all__ = ["UPSAMPLE_MODES", "fused_available", "upsampled_mutual_information"]

# Chunked route: upsampled values per chunk (4 MiB of float32 values; the estimator's own temporaries
# add a few times that).
_VALUES_PER_CHUNK = 1 << 22


ROUTES = ("auto", "fused", "gpu", "chunked")
GPU_BINS = (2, 4, 8, 16, 32, 64)  # the joint histogram of a map lives in registers: bins**2 a power of two
_GPU_BLOCK = 1024  # output pixels per step of a GPU program
_GPU_WARPS = 4  # warps per GPU program (Triton's default)
# "histogram": tl.histogram, one map a program (timed on an H100); "dot": counts on the tensor cores, several
# maps a program, 16-64 bins (tested in Triton's interpreter, compiled for sm_90, not yet timed on a GPU).
_GPU_KERNEL = "histogram"
_GPU_DOT_MAPS = 4  # maps per program of the "dot" kernel
_GPU_DOT_BLOCK = 64  # output pixels per step of the "dot" kernel


def _load_triton() -> Any:
    """The Triton kernel module, or None where Triton is missing or broken."""
    try:
        from micam.estimators import _triton
    except Exception:  # no Triton (CPU-only installs): the chunked route serves CUDA tensors too
        return None
    return _triton


def _load_kernels() -> Any:
    """The numba kernels, or None when numba is missing, broken, or switched off."""
    if not env_switch("MICAM_FUSED", True):
        return None
    try:
        from micam.estimators import _kernels
    except Exception:  # numba absent or incompatible with this numpy: the chunked route is exact too
        return None
    return _kernels


def fused_available() -> bool:
    """Whether the fused CPU kernels can be used in this process (numba importable and not disabled)."""
    return _load_kernels() is not None


def upsampled_mutual_information(
    activations: Tensor,
    gray: Tensor,
    mode: str = "bilinear",
    estimator: str = "binned",
    bins: int = DEFAULT_BINS,
    route: str = "auto",
) -> Tensor:
    """(B, K) float64 MI between each map of ``activations`` (B, K, h, w), upsampled to gray's (H, W)
    with ``mode``, and the gray image ``gray`` (B, H, W) of the same sample; likewise (B, K, *spatial)
    and (B, *SPATIAL) for 1-D signals and 3-D volumes ("bilinear" is then linear or trilinear).

    ``route``: "auto" (fused where exact and available; on CUDA the GPU kernel where
    ``MICAM_GPU_KERNEL=1``), "fused" or "gpu" (raise if it cannot be used) or "chunked" (the
    straightforward computation, a bounded chunk of maps at a time).
    """
    if not 3 <= activations.dim() <= 5 or gray.dim() != activations.dim() - 1 or activations.shape[0] != gray.shape[0]:
        raise ValueError(
            "expected activations (B, K, h, w) and gray (B, H, W) (or (B, K, *spatial) and (B, *SPATIAL) with "
            f"1 or 3 spatial dimensions); got {tuple(activations.shape)}, {tuple(gray.shape)}"
        )
    check_upsample_mode(mode)
    method = get_estimator(estimator, bins)
    if route not in ROUTES:
        raise ValueError(f"route must be one of {', '.join(map(repr, ROUTES))}, got {route!r}")
    batch, channels = activations.shape[:2]
    size = tuple(int(s) for s in gray.shape[1:])
    if batch * channels == 0:
        return torch.zeros(batch, channels, dtype=torch.float64, device=activations.device)
    if activations.device != gray.device:
        raise ValueError(f"activations are on {activations.device} and gray on {gray.device}; move both to one device")
    if route == "gpu" or (route == "auto" and activations.is_cuda and env_switch("MICAM_GPU_KERNEL", False)):
        reason = _gpu_blocker(activations, gray, mode, method, bins)
        if reason is None:
            _check_finite(activations, gray)
            return method.gpu_fused(activations, gray, cast(tuple[int, int], size), mode, bins)
        if route == "gpu":
            raise RuntimeError(f"the GPU route cannot be used here: {reason}")
    reason = None if route == "chunked" else _fused_blocker(activations, gray, mode, method, size)
    if route == "fused" and reason is not None:
        raise RuntimeError(f"the fused route cannot be used here: {reason}")
    if route == "chunked" or reason is not None:
        return _chunked(activations, gray, size, mode, estimator, bins)
    _check_finite(activations, gray)
    return method.fused(activations, gray, cast(tuple[int, int], size), mode, bins)  # fused: 2-D maps only


def _check_finite(activations: Tensor, gray: Tensor) -> None:
    for name, t in (("activations", activations), ("gray", gray)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} contains NaN or Inf; mutual information needs finite values")


def _gpu_blocker(activations: Tensor, gray: Tensor, mode: str, estimator: Estimator, bins: int) -> str | None:
    """Why the GPU route cannot be used here, or None when it can."""
    if activations.dim() != 4:
        return "the GPU kernel takes images; 1-D and 3-D layers use the chunked route"
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"  # Triton's CPU interpreter (tests)
    if not (activations.is_cuda and gray.is_cuda) and not interpreted:
        return "the GPU kernel runs on CUDA tensors"
    if activations.dtype != torch.float32 or gray.dtype != torch.float32:
        return "the GPU kernel takes float32 activations and gray images"
    if _load_triton() is None:
        return "Triton is not installed"
    return estimator.gpu_blocker(mode, bins)


def _fused_blocker(
    activations: Tensor, gray: Tensor, mode: str, estimator: Estimator, size: tuple[int, ...]
) -> str | None:
    """Why the fused route cannot give the exact result here, or None when it can."""
    if activations.dim() != 4:
        return "the fused kernels take images; 1-D and 3-D layers use the chunked route"
    if activations.device.type != "cpu" or gray.device.type != "cpu":
        return "the fused kernels run on CPU; other devices use the chunked route"
    if activations.dtype != torch.float32 or gray.dtype != torch.float32:
        return "the fused kernels take float32 activations and gray images"
    if _load_kernels() is None:
        return "numba is not installed (or MICAM_FUSED=0)"
    blocker = estimator.fused_blocker(mode)
    if blocker is not None:
        return blocker
    h, w = activations.shape[-2:]
    if mode == "bilinear" and not _bilinear_matches_aten(int(h), int(w), *size):
        return "this build's bilinear kernel rounds differently from the fused one"
    return None


# ----------------------------------------------------------------------------- chunked (straightforward)
def _chunked(activations: Tensor, gray: Tensor, size: tuple[int, ...], mode: str, estimator: str, bins: int) -> Tensor:
    """Upsample a bounded chunk of maps at a time and estimate MI on it."""
    batch, channels = activations.shape[:2]
    n = math.prod(size)
    gray_rows = gray.reshape(batch, 1, n)
    # Whole images per chunk when they fit, else a few channels of one image at a time.
    per_image = max(1, _VALUES_PER_CHUNK // (channels * n))
    step = max(1, _VALUES_PER_CHUNK // n)
    out = torch.empty(batch, channels, dtype=torch.float64, device=activations.device)
    for i in range(0, batch, per_image):
        images = slice(i, i + per_image)
        width = channels if per_image > 1 else step
        for k in range(0, channels, width):
            maps = upsample(activations[images, k : k + width], size, mode).flatten(2)
            out[images, k : k + width] = mutual_information(maps, gray_rows[images], estimator, bins)
    return out


# ----------------------------------------------------------------------------- fused
@lru_cache(maxsize=64)
def _plan(h: int, w: int, big_h: int, big_w: int, mode: str) -> tuple[Any, ...]:
    """Source indices and weights of each output row and column (numpy arrays for the kernels)."""
    if mode == "nearest":
        rows = _nearest_sources(h, big_h)
        cols = _nearest_sources(w, big_w)
        zero_h = torch.zeros(big_h, dtype=torch.float32)
        zero_w = torch.zeros(big_w, dtype=torch.float32)
        parts = (rows, rows, zero_h, zero_h, cols, cols, zero_w, zero_w)
    else:
        parts = (*_linear_sources(h, big_h), *_linear_sources(w, big_w))
    return tuple(p.contiguous().numpy() for p in parts)


def _nearest_sources(size_in: int, size_out: int) -> Tensor:
    """Source index of each output position, read off ``F.interpolate`` itself (so it cannot disagree)."""
    positions = torch.arange(size_in, dtype=torch.float32).view(1, 1, size_in, 1)
    return F.interpolate(positions, size=(size_out, 1), mode="nearest").view(-1).round().to(torch.int64)


def _linear_sources(size_in: int, size_out: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """ATen's half-pixel linear sampling: first and second source index and their float32 weights."""
    scale = torch.tensor(size_in / size_out, dtype=torch.float32)
    source = (scale * (torch.arange(size_out, dtype=torch.float32) + 0.5) - 0.5).clamp(min=0)
    first = source.to(torch.int64)  # truncation of a non-negative value
    second = first + (first < size_in - 1).to(torch.int64)
    weight_second = source - first.to(torch.float32)
    return first, second, 1 - weight_second, weight_second


@lru_cache(maxsize=64)
def _bilinear_matches_aten(h: int, w: int, big_h: int, big_w: int) -> bool:
    """Whether the fused kernel's bilinear values equal ``F.interpolate``'s bit for bit for this shape."""
    kernels = _load_kernels()
    generator = torch.Generator().manual_seed(h * 1_000_003 + w)
    probe = torch.randn(3, 2, h, w, generator=generator)
    probe[0] = probe[0].relu() * 40.0
    probe[1] = probe[1] * 1e-3 + 7.0
    expected = upsample(probe, (big_h, big_w), "bilinear").reshape(6, -1)
    ours = kernels.upsample_maps(probe.reshape(6, h, w).numpy(), *_plan(h, w, big_h, big_w, "bilinear"), False)
    return bool(torch.equal(torch.from_numpy(ours), expected))


def _map_inputs(activations: Tensor) -> tuple[Any, Any]:
    """(B*K, h, w) float32 maps as a numpy view and the image index of each map."""
    batch, channels, h, w = activations.shape
    maps = activations.detach().reshape(batch * channels, h, w).contiguous().numpy()
    image_of_map = torch.arange(batch, dtype=torch.int64).repeat_interleave(channels).numpy()
    return maps, image_of_map


def fused_binned(
    activations: Tensor, gray: Tensor, size: tuple[int, int], mode: str, bins: int, normalized: bool
) -> Tensor:
    """(B, K) binned (or normalized) MI of each upsampled map with its gray image, by the fused kernel."""
    kernels = _load_kernels()
    batch, channels, h, w = activations.shape
    n = size[0] * size[1]
    gray_codes, s_b, gray_constant = _gray_terms(gray, bins)
    maps, image_of_map = _map_inputs(activations)
    s_a, s_ab = torch.zeros(batch, channels, dtype=torch.float64), torch.zeros(batch, channels, dtype=torch.float64)
    constant = torch.zeros(batch, channels, dtype=torch.bool)
    plan = _plan(h, w, *size, mode)
    tile_rows, tile_cols = _tiles(torch.from_numpy(plan[0])), _tiles(torch.from_numpy(plan[4]))
    # Each image's gray counts per tile: (B, tiles, bins).
    tile_of_pixel = _tile_index(tile_rows, size[0])[:, None] * len(tile_cols) + _tile_index(tile_cols, size[1])
    keys = tile_of_pixel.reshape(1, n) * bins + gray_codes
    tile_gray = torch.zeros(batch, len(tile_rows) * len(tile_cols) * bins, dtype=torch.int32)
    tile_gray.scatter_add_(1, keys, torch.ones(1, dtype=torch.int32).expand(keys.shape))
    arguments = (maps, image_of_map, gray_codes.to(torch.int32).contiguous().numpy(), *plan, mode == "nearest", bins)
    table = _xlogx(torch.arange(n + 1, dtype=torch.float64)).numpy()
    tiles = (tile_rows.numpy(), tile_cols.numpy(), tile_gray.view(batch, -1, bins).numpy())
    outputs = (s_a.view(-1).numpy(), s_ab.view(-1).numpy(), constant.view(-1).numpy())
    _in_threads(kernels.binned_tile_sums, (*arguments, table, *tiles), outputs, batch * channels)
    constant |= gray_constant[:, None]
    return _finish_binned(s_a, s_b[:, None].expand(batch, channels), s_ab, constant, n, normalized)


def _gray_terms(gray: Tensor, bins: int) -> tuple[Tensor, Tensor, Tensor]:
    """Each image's gray bin codes (B, N), sum of c log c over its gray bin counts (B,), and whether all
    its pixels share one bin (B,)."""
    codes = equal_width_bin_codes(gray.reshape(gray.shape[0], -1), bins)
    counts = torch.zeros(gray.shape[0], bins, dtype=torch.float64, device=gray.device)
    s_b = _xlogx(counts.scatter_add_(1, codes, _ones(codes))).sum(1)
    return codes, s_b, codes.amax(dim=1) == 0


def gpu_binned(
    activations: Tensor, gray: Tensor, size: tuple[int, int], mode: str, bins: int, normalized: bool
) -> Tensor:
    """(B, K) binned (or normalized) MI of each upsampled map with its gray image, by the Triton kernel."""
    kernels = _load_triton()
    batch, channels, h, w = activations.shape
    n, device = size[0] * size[1], activations.device
    gray_codes, s_b, gray_constant = _gray_terms(gray, bins)
    plan = [torch.from_numpy(part).to(device) for part in _plan(h, w, *size, mode)]
    if mode == "nearest":  # the kernel always interpolates: weight 1 on the source pixel, 0 on the other
        plan[2], plan[6] = torch.ones_like(plan[2]), torch.ones_like(plan[6])
    s_a = torch.empty(batch * channels, dtype=torch.float64, device=device)
    s_ab = torch.empty_like(s_a)
    constant = torch.empty(batch * channels, dtype=torch.int8, device=device)
    maps = activations.detach().contiguous()
    arguments = (
        maps,
        gray_codes.to(torch.int32).contiguous(),
        tuple(plan),
        s_a,
        s_ab,
        constant,
        channels,
        h,
        w,
        size[1],
        n,
    )
    if _GPU_KERNEL == "dot" and bins >= 16:
        groups = batch * -(-channels // _GPU_DOT_MAPS)
        kernels.binned_map_sums_dot[(groups,)](
            *arguments, BINS=bins, MAPS=_GPU_DOT_MAPS, BLOCK=_GPU_DOT_BLOCK, num_warps=_GPU_WARPS
        )
    else:
        kernels.binned_map_sums[(batch * channels,)](*arguments, BINS=bins, BLOCK=_GPU_BLOCK, num_warps=_GPU_WARPS)
    flags = constant.view(batch, channels).bool() | gray_constant[:, None]
    shape = (batch, channels)
    return _finish_binned(s_a.view(shape), s_b[:, None].expand(shape), s_ab.view(shape), flags, n, normalized)


_TILE = 16  # output pixels per tile side: small enough that most tiles fall in one bin, large enough to pay


def _tiles(source: Tensor) -> Tensor:
    """(T, 2) [first, stop) output positions of each tile along one axis: runs of positions that read the
    same first source index (``source``, non-decreasing), cut into pieces of at most ``_TILE``."""
    starts = torch.cat([torch.zeros(1, dtype=torch.int64), (source[1:] != source[:-1]).nonzero()[:, 0] + 1])
    stops = torch.cat([starts[1:], torch.tensor([source.numel()])])
    pieces = [(a, min(a + _TILE, stop)) for begin, stop in zip(starts.tolist(), stops.tolist(), strict=True)
              for a in range(begin, stop, _TILE)]  # fmt: skip
    return torch.tensor(pieces, dtype=torch.int64)


def _tile_index(tiles: Tensor, length: int) -> Tensor:
    """The tile of each position 0:length along one axis."""
    return torch.repeat_interleave(torch.arange(len(tiles)), tiles[:, 1] - tiles[:, 0], output_size=length)


def _in_threads(
    kernel: Callable[..., object], arguments: tuple[Any, ...], outputs: tuple[Any, ...], count: int
) -> None:
    """Run ``kernel`` over maps 0:count split into contiguous slices, one per torch CPU thread.

    The kernels release the GIL, so plain Python threads run them in parallel; no second OpenMP
    runtime is started (one that spins next to torch's would slow every later torch op).
    """
    threads = max(1, min(torch.get_num_threads(), count))
    bounds = [count * t // threads for t in range(threads + 1)]
    if threads == 1:
        kernel(*arguments, 0, count, *outputs)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        jobs = [pool.submit(kernel, *arguments, bounds[t], bounds[t + 1], *outputs) for t in range(threads)]
        for job in jobs:
            job.result()


def _ones(codes: Tensor) -> Tensor:
    return torch.ones(1, dtype=torch.float64, device=codes.device).expand(codes.shape)


def fused_reference(activations: Tensor, gray: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, K) distinct-value MI of each nearest-upsampled map with its gray image, by the fused kernel."""
    kernels = _load_kernels()
    batch, channels, h, w = activations.shape
    n = size[0] * size[1]
    cells = h * w
    rows, _, _, _, cols, _, _, _ = (torch.from_numpy(p) for p in _plan(h, w, *size, "nearest"))
    cell_of_pixel = (rows[:, None] * w + cols[None, :]).reshape(-1)
    block_size = torch.bincount(cell_of_pixel, minlength=cells)
    gray_ranks = dense_ranks(gray.reshape(batch, n))
    n_gray = gray_ranks.amax(dim=1) + 1
    # Per image: distinct (cell, gray value) pairs and their pixel counts, grouped by cell.
    keys = (cell_of_pixel[None, :] * n + gray_ranks).sort(dim=1).values
    pointers = torch.empty(batch, cells + 1, dtype=torch.int64)
    cell_xlogx = torch.zeros(batch, cells, dtype=torch.float64)
    gray_parts, count_parts, s_b = [], [], torch.empty(batch, dtype=torch.float64)
    gray_total = torch.zeros(batch, int(n_gray.max()), dtype=torch.int64)
    offset = 0
    for i in range(batch):
        unique, counts = torch.unique_consecutive(keys[i], return_counts=True)
        cell_xlogx[i].index_add_(0, unique // n, _xlogx(counts.double()))
        counts_of_gray = torch.bincount(gray_ranks[i])
        gray_total[i, : counts_of_gray.numel()] = counts_of_gray
        s_b[i] = _xlogx(counts_of_gray.double()).sum()
        # A gray value seen once in the image adds f(1) = 0 to any joint count it joins: leave it out.
        repeated = counts_of_gray[unique % n] > 1
        unique, counts = unique[repeated], counts[repeated]
        gray_parts.append(unique % n)
        count_parts.append(counts)
        pointers[i, 0] = offset
        pointers[i, 1:] = offset + torch.bincount(unique // n, minlength=cells).cumsum(0)
        offset += unique.numel()
    maps, image_of_map = _map_inputs(activations)
    s_a, s_ab = torch.zeros(batch, channels, dtype=torch.float64), torch.zeros(batch, channels, dtype=torch.float64)
    distinct = torch.zeros(batch, channels, dtype=torch.int64)
    arguments = (
        maps,
        image_of_map,
        block_size.numpy(),
        cell_xlogx.numpy(),
        pointers.numpy(),
        torch.cat(gray_parts).numpy(),
        torch.cat(count_parts).numpy(),
        int(n_gray.max()),
        gray_total.numpy(),
        s_b.numpy(),
        _xlogx(torch.arange(n + 1, dtype=torch.float64)).numpy(),
    )
    outputs = (s_a.view(-1).numpy(), s_ab.view(-1).numpy(), distinct.view(-1).numpy())
    _in_threads(kernels.reference_block_sums, arguments, outputs, batch * channels)
    mi = (math.log(n) + (s_ab - s_a - s_b[:, None]) / n).clamp_(min=0.0)
    constant = (distinct <= 1) | (n_gray <= 1)[:, None]
    return mi.masked_fill_(constant, 0.0)
