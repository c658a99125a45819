"""Plug-in mutual information between paired samples, batched over leading dimensions, in nats.

Three code-based estimators (objects in ``micam.estimators.registry``, defined in
``micam.estimators.builtin``), all computed with torch on the inputs' device:

* ``"binned"`` (default): each vector is cut into ``bins`` equal-width bins spanning its own
  [min, max]; MI is the plug-in value of the joint histogram. With the default 32 bins and a
  224x224 input (50,176 samples) the joint table has 1,024 cells, about 49 samples per cell, which
  keeps the plug-in bias ((bins - 1)^2 / 2N ~ 0.01 nats) small next to typical values.
* ``"normalized"``: the binned MI divided by the arithmetic mean of the two binned entropies
  (scikit-learn's default ``average_method="arithmetic"``), a value in [0, 1].
* ``"reference"``: a contingency table over the *distinct values* of each vector, the same numbers
  as ``sklearn.metrics.mutual_info_score(a, b)``. This is what the MI-CAM authors' code computes.

A constant vector carries no information: its MI (and normalized MI) with anything is exactly 0.
This module holds ``mutual_information`` and the counting pieces the estimators are made of. The
value-based estimators ("ksg", "hsic", "hsic-normalized": ``micam.estimators.ksg`` and ``.hsic``) take
no codes: ``mutual_information`` hands them the float rows (``Estimator.from_values``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from micam.estimators.registry import DEFAULT_BINS, ESTIMATORS, Estimator, get_estimator

__all__ = ["DEFAULT_BINS", "ESTIMATORS", "dense_ranks", "equal_width_bin_codes", "mutual_information"]

# Rows per chunk are chosen so that one chunk holds about this many samples (bounds peak memory).
_SAMPLES_PER_CHUNK = 1 << 22


def mutual_information(
    a: Tensor,
    b: Tensor,
    estimator: str = "binned",
    bins: int = DEFAULT_BINS,
) -> Tensor:
    """MI between ``a`` (..., N) and ``b`` (N,) or (..., N), row by row; float64 result of shape (...).

    ``b`` broadcasts against ``a``'s leading dimensions, so one grayscale image can be paired with
    every channel of a layer without copying it. ``estimator``: a name in ``ESTIMATORS``.
    """
    a, b, method = _check_pair(a, b, estimator, bins)
    if method.value_based:
        return _value_rows_mi(method, a, b)
    n = a.shape[-1]
    batch_shape = torch.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    if math.prod(batch_shape) == 0:
        return torch.zeros(batch_shape, dtype=torch.float64, device=a.device)
    # b is shared by many rows of a (one image, many channels): code it once, then broadcast.
    b_flat = b.reshape(-1, n)
    b_codes = method.codes(b_flat, bins)
    b_statistics = method.shared_statistics(b_codes)
    b_codes = b_codes.reshape(*b.shape[:-1], n).expand(*batch_shape, n).reshape(-1, n)
    if b_statistics is not None:
        b_statistics = b_statistics.reshape(b.shape[:-1]).expand(batch_shape).reshape(-1)
    a_rows = a.expand(*batch_shape, n).reshape(-1, n)
    step = max(1, _SAMPLES_PER_CHUNK // n)
    parts = []
    for i in range(0, a_rows.shape[0], step):
        a_codes = method.codes(a_rows[i : i + step], bins)
        b_part = b_codes[i : i + step]
        statistics = None if b_statistics is None else b_statistics[i : i + step]
        parts.append(method.from_codes(a_codes, b_part, statistics, bins))
    return torch.cat(parts).reshape(batch_shape)


def value_rows_mi(method: Estimator, a: Tensor, b: Tensor) -> Tensor:
    """``mutual_information(a, b)`` for an estimator object that computes from the values
    (``method.value_based``): checked, broadcast and chunked the same way; float64 of shape (...)."""
    if not method.value_based:
        raise ValueError(f"{method!r} computes from codes; call mutual_information with its name")
    _check_tensors(a, b)
    return _value_rows_mi(method, a, b)


def _value_rows_mi(method: Estimator, a: Tensor, b: Tensor) -> Tensor:
    """Pair the rows of ``a`` and ``b`` (broadcast, never copied whole) and pass ``method.from_values``
    a bounded chunk of them at a time."""
    n = a.shape[-1]
    batch_shape = torch.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    total = math.prod(batch_shape)
    if total == 0:
        return torch.zeros(batch_shape, dtype=torch.float64, device=a.device)
    a_flat, b_flat = a.reshape(-1, n), b.reshape(-1, n)
    # Row of a_flat (b_flat) paired with each output row.
    a_index = torch.arange(a_flat.shape[0], device=a.device).reshape(a.shape[:-1]).expand(batch_shape).reshape(-1)
    b_index = torch.arange(b_flat.shape[0], device=a.device).reshape(b.shape[:-1]).expand(batch_shape).reshape(-1)
    step = max(1, _SAMPLES_PER_CHUNK // n)
    parts = [
        method.from_values(a_flat[a_index[i : i + step]], b_flat[b_index[i : i + step]]) for i in range(0, total, step)
    ]
    return torch.cat(parts).reshape(batch_shape)


def _check_pair(a: Tensor, b: Tensor, estimator: str, bins: int) -> tuple[Tensor, Tensor, Estimator]:
    _check_types(a, b)
    method = get_estimator(estimator, bins)
    _check_tensors(a, b)
    return a, b, method


def _check_types(a: object, b: object) -> None:
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError("mutual_information expects torch tensors; wrap arrays with torch.as_tensor")


def _check_tensors(a: Tensor, b: Tensor) -> None:
    """Raise unless ``a`` and ``b`` are finite tensors of paired samples on one device."""
    _check_types(a, b)
    if a.dim() == 0 or b.dim() == 0:
        raise ValueError("a and b need a last dimension holding the paired samples")
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"a and b must pair samples one to one: a has {a.shape[-1]}, b has {b.shape[-1]}")
    if a.shape[-1] == 0:
        raise ValueError("mutual information of empty vectors is undefined; pass at least one sample")
    if a.device != b.device:
        raise ValueError(f"a is on {a.device} and b on {b.device}; move both to one device")
    for name, t in (("a", a), ("b", b)):
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ValueError(f"{name} contains NaN or Inf; mutual information needs finite values")


def _reference_mi(codes_a: Tensor, codes_b: Tensor, sum_b: Tensor) -> Tensor:
    """Plug-in MI over distinct values; codes are dense ranks in [0, N)."""
    n = codes_a.shape[-1]
    sum_a = _sum_count_log_count(codes_a)
    sum_ab = _sum_count_log_count(codes_a * n + codes_b)
    mi = _mi_from_sums(sum_a, sum_b, sum_ab, n)
    # One distinct value on either side: exactly zero, as scikit-learn returns.
    constant = (codes_a.amax(dim=-1) == 0) | (codes_b.amax(dim=-1) == 0)
    return mi.masked_fill_(constant, 0.0)


def _binned_mi(codes_a: Tensor, codes_b: Tensor, bins: int, normalized: bool) -> Tensor:
    """Plug-in MI of the joint histogram of two rows of bin indices (optionally normalized)."""
    rows, n = codes_a.shape
    cell = (codes_a * bins).add_(codes_b).long()
    # float32 counts are exact below 2**24 samples per row; entropies are then taken in float64.
    counts_dtype = torch.float32 if n < (1 << 24) else torch.float64
    ones = torch.ones(1, dtype=counts_dtype, device=cell.device).expand(rows, n)
    joint = torch.zeros(rows, bins * bins, dtype=counts_dtype, device=cell.device)
    joint = joint.scatter_add_(1, cell, ones).double().view(rows, bins, bins)
    s_a = _xlogx(joint.sum(dim=2)).sum(dim=1)
    s_b = _xlogx(joint.sum(dim=1)).sum(dim=1)
    constant = (codes_a.amax(dim=-1) == 0) | (codes_b.amax(dim=-1) == 0)
    return _finish_binned(s_a, s_b, _xlogx(joint).sum(dim=(1, 2)), constant, n, normalized)


def _finish_binned(s_a: Tensor, s_b: Tensor, s_ab: Tensor, constant: Tensor, n: int, normalized: bool) -> Tensor:
    """Binned (or normalized) MI from the sums of c*log(c) over marginal and joint bin counts.

    Shared with the fused kernels (``micam.estimators.fused``) so both routes finish identically.
    """
    mi = _mi_from_sums(s_a, s_b, s_ab, n).masked_fill_(constant, 0.0)
    if not normalized:
        return mi
    mean_entropy = math.log(n) - 0.5 * (s_a + s_b) / n
    return torch.where(mean_entropy > 0, mi / mean_entropy.clamp(min=1e-300), 0.0).clamp_(0.0, 1.0)


def equal_width_bin_codes(x: Tensor, bins: int) -> Tensor:
    """Bin index in [0, bins) of each value, with ``bins`` equal-width bins over each row's [min, max].

    The maximum falls in the last bin; a constant row falls entirely in bin 0.
    """
    return _bin_index(x, bins).long()


def _bin_index(x: Tensor, bins: int) -> Tensor:
    """Bin indices as whole floats of x's dtype (cheaper than int64 arithmetic on large chunks)."""
    if not x.is_floating_point():
        x = x.double()
    lo = x.amin(dim=-1, keepdim=True)
    span = x.amax(dim=-1, keepdim=True) - lo
    scale = torch.where(span > 0, bins / torch.where(span > 0, span, 1), torch.zeros_like(span))
    offsets = x - lo
    overflow = torch.isinf(scale)  # bins / span overflows for spans of (near-)subnormal values: divide instead
    # On the CPU, test for it (rare) and skip the division; elsewhere the test would wait for the device.
    if not x.is_cuda and not bool(overflow.any()):
        return offsets.mul_(scale).floor_().clamp_(0, bins - 1)
    return torch.where(overflow, offsets / span * bins, offsets * scale).floor_().clamp_(0, bins - 1)


def dense_ranks(x: Tensor) -> Tensor:
    """Dense rank of each value within its row of an (R, N) tensor: equal values share a code, from 0."""
    ordered, order = x.sort(dim=-1)
    new_value = torch.ones_like(ordered, dtype=torch.long)
    new_value[:, 1:] = (ordered[:, 1:] != ordered[:, :-1]).long()
    ranks = new_value.cumsum(dim=-1) - 1
    return torch.empty_like(ranks).scatter_(-1, order, ranks)


def _sum_count_log_count(codes: Tensor) -> Tensor:
    """Per row, sum of c*log(c) over the counts c of its distinct integer codes (float64)."""
    rows, n = codes.shape
    ordered = codes.sort(dim=-1).values.flatten()
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    starts[::n] = True  # a run never crosses into the next row
    start_positions = starts.nonzero().squeeze(1)
    ends = torch.cat([start_positions[1:], start_positions.new_tensor([rows * n])])
    counts = (ends - start_positions).double()
    out = torch.zeros(rows, dtype=torch.float64, device=codes.device)
    return out.index_add_(0, start_positions // n, _xlogx(counts))


def _xlogx(c: Tensor) -> Tensor:
    out: Tensor = torch.special.xlogy(c, c)
    return out


def _mi_from_sums(s_a: Tensor, s_b: Tensor, s_ab: Tensor, n: int) -> Tensor:
    """MI = H(a) + H(b) - H(a,b), with H = log n - S/n and S the sum of c*log(c) over counts."""
    return (math.log(n) + (s_ab - s_a - s_b) / n).clamp_(min=0.0)
