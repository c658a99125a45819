"""The Hilbert-Schmidt independence criterion ("hsic", "hsic-normalized"): a kernel dependence measure.

HSIC (Gretton, Bousquet, Smola & Schoelkopf, ALT 2005) is the squared Hilbert-Schmidt norm of the
cross-covariance operator between two reproducing-kernel feature maps; for characteristic kernels
(the Gaussian) it is 0 exactly when the variables are independent. The biased empirical value on n
paired samples, with Gram matrices K_ij = k(x_i, x_j), L_ij = l(y_i, y_j) and the centring matrix
H = I - 11^T / n, is

    HSIC = tr(K H L H) / (n - 1)^2 ,

computed without forming H as (sum_ij K_ij L_ij - 2/n sum_i K_i. L_i. + K.. L.. / n^2) / (n - 1)^2, a
block of Gram rows at a time, over the upper block triangle only (both Gram matrices are symmetric).
Kernels are Gaussian, k(x, x') = exp(-(x - x')^2 / (2 sigma^2)), with the median heuristic: sigma = the
median of the nonzero distances |x_i - x_j| among the first 512 subsampled points (the row's range where
those are all equal); the median scales with the data, so HSIC is invariant to an affine rescaling of
either variable. It runs on the seeded pixel subsample of ``micam.estimators.subsample`` (2,048
positions by default); no jitter is needed (kernels do not care about ties).

HSIC is not mutual information and not in nats: it is a dependence measure >= 0 (at most 1 with
these kernels, and in practice far below), used by MI-CAM as a channel weight, the successor the
MI-CAM paper suggests. ``"hsic-normalized"`` divides by sqrt(HSIC(x, x) HSIC(y, y)) (the same sums,
nearly free), a value in [0, 1] that is 1 for a one-to-one map, comparable across images. A constant row
gives exactly 0 for both.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from micam.estimators.plugin import value_rows_mi
from micam.estimators.registry import Estimator
from micam.estimators.subsample import (
    DEFAULT_SAMPLES,
    DEFAULT_SEED,
    check_samples,
    entries_per_block,
    subsample_indices,
)

__all__ = ["BANDWIDTH_SAMPLES", "HSICEstimator", "NormalizedHSICEstimator", "hsic_dependence", "textbook_hsic"]

BANDWIDTH_SAMPLES = 512  # the median heuristic looks at the pairwise distances of this many points


class HSICEstimator(Estimator):
    """Biased HSIC with median-heuristic Gaussian kernels on a seeded pixel subsample (module docstring)."""

    name = "hsic"
    uses_bins = False
    value_based: ClassVar[bool] = True
    normalized: ClassVar[bool] = False

    def __init__(self, samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED) -> None:
        self.samples, self.seed = check_samples(samples), int(seed)

    def from_values(self, a_rows: Tensor, b_rows: Tensor) -> Tensor:
        return _hsic_rows(a_rows, b_rows, self.samples, self.seed, self.normalized)

    def fused_blocker(self, mode: str) -> str | None:
        return f"the {self.name!r} estimator works on the values of a pixel subsample; it has no fused kernel"

    def __repr__(self) -> str:
        return f"<estimator {self.name!r} samples={self.samples} seed={self.seed}>"


class NormalizedHSICEstimator(HSICEstimator):
    """HSIC(x, y) / sqrt(HSIC(x, x) HSIC(y, y)), in [0, 1]."""

    name = "hsic-normalized"
    normalized = True


def hsic_dependence(
    a: Tensor, b: Tensor, samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED, normalized: bool = False
) -> Tensor:
    """Biased HSIC (``normalized``: divided by sqrt(HSIC(a, a) HSIC(b, b))) between ``a`` (..., N) and
    ``b`` (N,) or (..., N), row by row, on ``samples`` seeded positions; float64 of shape (...), >= 0.
    ``mutual_information(a, b, "hsic")`` (or ``"hsic-normalized"``) with the defaults."""
    method = NormalizedHSICEstimator(samples, seed) if normalized else HSICEstimator(samples, seed)
    return value_rows_mi(method, a, b)


def textbook_hsic(x: Tensor, y: Tensor, normalized: bool = False) -> Tensor:
    """HSIC of one pair of (n,) rows from their whole Gram matrices, each centred before the product (no
    cancellation of large sums), with the estimator's bandwidths and no subsample: the value the banded
    computation must give, for tests and benchmarks (O(n^2) memory). ``normalized``: divided by
    sqrt(HSIC(x, x) HSIC(y, y))."""

    def centred_gram(v: Tensor) -> Tensor:
        v = v.double()
        gram = torch.exp(-(((v[:, None] - v[None, :]) / _median_bandwidth(v[None])[0]) ** 2) / 2)
        return gram - gram.mean(0, keepdim=True) - gram.mean(1, keepdim=True) + gram.mean()

    k, l_ = centred_gram(x), centred_gram(y)
    if normalized:  # the (n - 1)^2 of the three HSIC values cancels
        return (k * l_).sum() / ((k * k).sum() * (l_ * l_).sum()).sqrt()
    return (k * l_).sum() / (x.numel() - 1) ** 2


def _hsic_rows(x: Tensor, y: Tensor, samples: int, seed: int, normalized: bool) -> Tensor:
    """(R,) float64 HSIC of each pair of (R, N) rows, on the seeded subsample, on their device.

    Rows of ``y`` are usually one gray image repeated for every channel: each distinct one has its Gram
    blocks computed once and shared by all the rows of ``x`` it is paired with. The Gram matrices are
    symmetric, so only their upper block triangle is formed: a band of ``queries`` rows against the
    points from the band's first one on, the pairs right of the band's diagonal square weighted twice
    (they stand for their mirror images too) and their column sums added to the later rows' sums."""
    indices = subsample_indices(x.shape[-1], samples, seed, x.device)
    n = indices.numel()
    x, y = x[:, indices].double(), y[:, indices].double()
    out = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    if n < 2:
        return out
    distinct_y, pairing = torch.unique(y, dim=0, return_inverse=True)
    sigma_y, constant_y = _median_bandwidth(distinct_y)
    entries = entries_per_block(x.device)
    queries = max(1, min(n, entries // n))
    for u in range(distinct_y.shape[0]):
        rows = (pairing == u).nonzero().squeeze(1)
        yu = distinct_y[u : u + 1]
        xs = x[rows]
        sigma_x, constant_x = _median_bandwidth(xs)
        row_k, row_l = torch.zeros_like(xs), torch.zeros_like(yu)
        sums = torch.zeros(2, rows.numel(), dtype=torch.float64, device=x.device)  # sum K*L, K*K
        sum_ll = torch.zeros(1, dtype=torch.float64, device=x.device)
        for q in range(0, n, queries):
            band = min(queries, n - q)
            l_ = _gaussian_gram(yu[:, q : q + band], yu[:, q:], sigma_y[u : u + 1])[0]  # (band, n - q)
            _add_row_sums(row_l, l_[None], q, band)
            pair_weight = torch.ones_like(l_)
            pair_weight[:, band:] = 2.0
            weighted_l = (l_ * pair_weight).flatten()
            if normalized:
                sum_ll += l_.flatten() @ weighted_l
            step = max(1, entries // (band * (n - q)))
            for i in range(0, rows.numel(), step):
                k = _gaussian_gram(xs[i : i + step, q : q + band], xs[i : i + step, q:], sigma_x[i : i + step])
                _add_row_sums(row_k[i : i + step], k, q, band)
                flat = k.flatten(1)
                sums[0, i : i + step] += flat @ weighted_l
                if normalized:
                    sums[1, i : i + step] += flat.square() @ pair_weight.flatten()
        kl = _centred_trace(sums[0], row_k, row_l, n)
        if normalized:
            scale = (_centred_trace(sums[1], row_k, row_k, n) * _centred_trace(sum_ll, row_l, row_l, n)).sqrt_()
            kl = torch.where(scale > 0, kl / scale.clamp(min=1e-300), 0.0).clamp_(max=1.0)
        out[rows] = kl.masked_fill_(constant_x | constant_y[u], 0.0)
    return out


def _add_row_sums(row_sums: Tensor, gram: Tensor, q: int, band: int) -> None:
    """Add a (r, band, n - q) upper-triangle Gram block to the (r, n) row sums: its rows to rows q:q+band,
    and, by symmetry, its columns right of the diagonal square to the rows after the band."""
    row_sums[:, q : q + band] += gram.sum(dim=-1)
    row_sums[:, q + band :] += gram[:, :, band:].sum(dim=1)


def _centred_trace(total: Tensor, row_k: Tensor, row_l: Tensor, n: int) -> Tensor:
    """tr(K H L H) / (n - 1)^2 from sum_ij K_ij L_ij and the row sums of K and L (clamped at 0)."""
    trace = total - (row_k * row_l).sum(dim=-1) * (2.0 / n) + row_k.sum(dim=-1) * row_l.sum(dim=-1) / (n * n)
    return (trace / (n - 1) ** 2).clamp_(min=0.0)


def _gaussian_gram(queries: Tensor, points: Tensor, sigma: Tensor) -> Tensor:
    """(r, q, n) Gaussian kernel exp(-(x_i - x_j)^2 / (2 sigma^2)) between query and all points of each row."""
    gram = queries[:, :, None] - points[:, None, :]
    return gram.div_(sigma[:, None, None]).square_().mul_(-0.5).exp_()


def _median_bandwidth(x: Tensor) -> tuple[Tensor, Tensor]:
    """(r,) median nonzero pairwise distance among each row's first ``BANDWIDTH_SAMPLES`` points (the row's
    range where those are all equal; 1 for a constant row), and (r,) which rows are constant."""
    head = x[:, :BANDWIDTH_SAMPLES]
    distances = (head[:, :, None] - head[:, None, :]).abs_().flatten(1)  # each pair twice: same median
    median = distances.masked_fill_(distances == 0, float("nan")).nanmedian(dim=-1).values
    span = x.amax(dim=-1) - x.amin(dim=-1)
    sigma = torch.where(torch.isnan(median), span, median)
    constant = span == 0
    return sigma.masked_fill_(constant, 1.0), constant
