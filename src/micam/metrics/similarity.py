"""Similarity of two maps or two weight vectors: Spearman rank correlation, SSIM, HOG correlation.

These are the measures of the cascading-randomization sanity check (Adebayo et al., 2018) and of the
counterfactual weight comparison.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from micam.estimators import dense_ranks
from micam.estimators.fused import fused_available


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Rank correlation of each row pair of (..., N) tensors (ties share their average rank)."""
    return pearson(_average_ranks(a), _average_ranks(b))


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation along the last dimension (0 when either side is constant)."""
    a = a.double() - a.double().mean(dim=-1, keepdim=True)
    b = b.double() - b.double().mean(dim=-1, keepdim=True)
    denominator = (a.pow(2).sum(-1) * b.pow(2).sum(-1)).sqrt()
    return torch.where(denominator > 0, (a * b).sum(-1) / denominator.clamp(min=1e-300), 0.0)


def _average_ranks(x: Tensor) -> Tensor:
    """Ranks 1..N along the last dimension, ties replaced by their mean rank."""
    rows = x.reshape(-1, x.shape[-1])
    codes = dense_ranks(rows)
    counts = torch.zeros(rows.shape, dtype=torch.float64, device=x.device)
    counts.scatter_add_(1, codes, torch.ones_like(counts))
    smaller = counts.cumsum(dim=1) - counts  # how many values lie below each distinct value
    return (smaller + (counts + 1) / 2).gather(1, codes).reshape(x.shape)


def ssim(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> Tensor:
    """Mean structural similarity of (B, H, W) maps (Gaussian window, Wang et al. 2004 constants).
    Maps smaller than the window use the largest odd window that fits (a 7 x 7 map: 7), the rule
    scikit-image asks its users to follow, so small feature-resolution maps can be compared too.

    The five local moments of the mean-centred maps are blurred in one float32 pass of two 1-D
    convolutions (the Gaussian window is separable): faster than the 2-D float64 window it replaced
    (``benchmarks/similarity.py``), equal to it within about 2e-9 on maps in [0, 1]
    (``tests/test_counterfactual_sanity.py`` checks 1e-6 against ``_ssim_window_2d``)."""
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"ssim needs two (B, H, W) maps of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    fits = min(window, a.shape[-2], a.shape[-1])
    window = fits if fits % 2 else fits - 1
    if window < 1:
        raise ValueError(f"ssim needs maps of at least 1 x 1 pixels, got {tuple(a.shape[-2:])}")
    offsets = torch.arange(window, dtype=torch.float64, device=a.device) - window // 2
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).float()
    # Each map minus its mean (variances and covariance do not change; the means are added back):
    # float32 then loses nothing on flat or offset maps (a constant map has exactly zero variance).
    mean_x, mean_y = a.double().mean(dim=(1, 2), keepdim=True), b.double().mean(dim=(1, 2), keepdim=True)
    x, y = (a.double() - mean_x).float(), (b.double() - mean_y).float()
    moments = torch.stack([x, y, x * x, y * y, x * y], dim=1)  # (B, 5, H, W)
    channels = moments.shape[1]
    down = kernel.view(1, 1, window, 1).expand(channels, 1, window, 1)
    across = kernel.view(1, 1, 1, window).expand(channels, 1, 1, window)
    blurred = F.conv2d(F.conv2d(moments, down, groups=channels), across, groups=channels)
    centred_x, centred_y, xx, yy, xy = blurred.unbind(1)
    var_x, var_y, cov = xx - centred_x**2, yy - centred_y**2, xy - centred_x * centred_y
    mu_x, mu_y = centred_x + mean_x.float(), centred_y + mean_y.float()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return index.double().mean(dim=(1, 2))


def _ssim_window_2d(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> Tensor:
    """``ssim`` as micam computed it before the separable pass (a 2-D float64 window, maps of at least
    ``window`` pixels): the reference that the tests and ``benchmarks/similarity.py`` compare against."""
    offsets = torch.arange(window, dtype=torch.float64, device=a.device) - window // 2
    g = torch.exp(-(offsets**2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :])[None, None]
    x, y = a.double()[:, None], b.double()[:, None]
    mu_x, mu_y = F.conv2d(x, kernel), F.conv2d(y, kernel)
    var_x, var_y = F.conv2d(x * x, kernel) - mu_x**2, F.conv2d(y * y, kernel) - mu_y**2
    cov = F.conv2d(x * y, kernel) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return index.mean(dim=(1, 2, 3))


def hog(maps: Tensor, cell: int = 8, orientations: int = 9) -> Tensor:
    """Histogram-of-oriented-gradients descriptor of (B, H, W) maps: unsigned orientations, one
    histogram per ``cell`` x ``cell`` block, weighted by gradient magnitude; (B, cells * orientations).

    On the CPU the maps go through one numba pass (``_hog_kernel``: differences in float64, no
    arctangent, maps in parallel on torch's thread count; the same descriptor as the tensor code,
    compared in ``tests/test_counterfactual_sanity.py``); other devices, no numba, or fewer than
    3 orientations use the tensor code."""
    if maps.dim() != 3:
        raise ValueError(f"hog needs (B, H, W) maps, got {tuple(maps.shape)}")
    if cell < 1 or orientations < 1:
        raise ValueError(f"hog needs cell >= 1 and orientations >= 1, got cell={cell}, orientations={orientations}")
    kernel = _hog_kernel() if maps.device.type == "cpu" and orientations >= 3 else None
    if kernel is None:
        return _hog_tensor(maps, cell, orientations)
    values = maps.detach()
    values = values if values.dtype in (torch.float32, torch.float64) else values.double()
    x = values.contiguous().numpy()
    out = np.zeros((maps.shape[0], (maps.shape[1] // cell) * (maps.shape[2] // cell) * orientations))
    kernel.run_hog(x, cell, orientations, out, torch.get_num_threads())
    return torch.from_numpy(out)


def _hog_kernel() -> Any:
    """The numba HOG kernel, or None when numba is missing or fused kernels are switched off."""
    if not fused_available():
        return None
    try:
        from micam.metrics import _hog_kernel
    except Exception:  # numba absent or incompatible: the tensor code gives the same descriptor
        return None
    return _hog_kernel


def _hog_tensor(maps: Tensor, cell: int, orientations: int) -> Tensor:
    """``hog`` in tensor operations on the maps' device (the angle from atan2)."""
    x = maps.double()[:, None]
    gx = F.pad(x[..., :, 2:] - x[..., :, :-2], (1, 1, 0, 0))
    gy = F.pad(x[..., 2:, :] - x[..., :-2, :], (0, 0, 1, 1))
    magnitude = (gx**2 + gy**2).sqrt()[:, 0]
    angle = torch.atan2(gy, gx)[:, 0].remainder(math.pi)
    bins = (angle / math.pi * orientations).long().clamp(max=orientations - 1)
    b, h, w = magnitude.shape
    hc, wc = h // cell, w // cell
    magnitude = magnitude[:, : hc * cell, : wc * cell]
    bins = bins[:, : hc * cell, : wc * cell]
    cell_index = (torch.arange(hc * cell, device=maps.device)[:, None] // cell) * wc + (
        torch.arange(wc * cell, device=maps.device)[None, :] // cell
    )
    flat_index = (cell_index[None] * orientations + bins).flatten(1)
    histogram = torch.zeros(b, hc * wc * orientations, dtype=torch.float64, device=maps.device)
    return histogram.scatter_add_(1, flat_index, magnitude.flatten(1))


def hog_similarity(a: Tensor, b: Tensor, cell: int = 8) -> Tensor:
    """Pearson correlation of the HOG descriptors of (B, H, W) maps."""
    return pearson(hog(a, cell), hog(b, cell))
