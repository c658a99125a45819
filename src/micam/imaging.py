"""Small image operations shared by methods, estimators and reports: upsampling, grayscale, Gaussian blur.

Both take any number of spatial dimensions (1-D signals, images, 3-D volumes); images keep the
exact operations the committed results were computed with.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# ITU-R BT.601 luma, the usual RGB -> gray weights (the MI-CAM authors use 0.2989/0.5870/0.1140).
BT601_LUMA = (0.299, 0.587, 0.114)
# The upsampling modes MI-CAM offers (and its fused kernels implement).
UPSAMPLE_MODES = ("bilinear", "nearest")


def upsample(maps: Tensor, size: Sequence[int], mode: str) -> Tensor:
    """Resize (B, K, *spatial) maps to ``size`` (1, 2 or 3 spatial dimensions). "bilinear" means the
    linear interpolation of the maps' dimensionality (linear, bilinear, trilinear) with half-pixel
    centres (align_corners=False); other modes ("nearest") are passed as they are."""
    size = tuple(size)
    if tuple(maps.shape[-len(size) :]) == size:
        return maps
    if mode == "bilinear":
        linear = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
        return F.interpolate(maps, size=size, mode=linear, align_corners=False)
    return F.interpolate(maps, size=size, mode=mode)


def check_upsample_mode(mode: object) -> str:
    """``mode`` if it is one of ``UPSAMPLE_MODES``, else a ValueError naming them."""
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"upsample_mode must be one of {UPSAMPLE_MODES}, got {mode!r}")
    return mode


def grayscale(
    images: Tensor,
    luma: Sequence[float] = BT601_LUMA,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Tensor:
    """(B, C, H, W) -> (B, H, W) gray image; likewise (B, C, *spatial) -> (B, *spatial) for 1-D and 3-D.

    With ``mean`` and ``std`` (the normalization the tensor went through) the pixels are first
    restored (x * std + mean), so the gray image is that of the photo rather than of the tensor.
    One channel is returned as is; three use ``luma``; any other count is averaged.
    """
    if mean is not None or std is not None:
        if mean is None or std is None:
            raise ValueError("pass both mean and std to restore the pixels, or neither")
        shape = (1, -1, *(1,) * (images.dim() - 2))
        images = images * torch.as_tensor(std, dtype=images.dtype, device=images.device).view(shape) + torch.as_tensor(
            mean, dtype=images.dtype, device=images.device
        ).view(shape)
    channels = images.shape[1]
    if channels == 1:
        return images[:, 0]
    if channels == 3:
        weights = torch.as_tensor(luma, dtype=images.dtype, device=images.device)
        if images.dim() == 4:
            return torch.einsum("c,bchw->bhw", weights, images)
        return torch.einsum("c,bcn->bn", weights, images.flatten(2)).view(images.shape[0], *images.shape[2:])
    return images.mean(dim=1)


def gaussian_blur(maps: Tensor, kernel_size: int, sigma: float) -> Tensor:
    """Blur (B, H, W) maps with a separable Gaussian, mirroring borders like OpenCV's default.

    (B, L) and (B, D, H, W) maps get the same 1-D kernel along each axis in turn (a separable Gaussian
    in any dimension), mirrored where every axis is longer than the radius, else edge-replicated.
    """
    if kernel_size % 2 != 1 or kernel_size < 1:
        raise ValueError(f"blur kernel size must be a positive odd integer, got {kernel_size}")
    if sigma <= 0:
        raise ValueError(f"blur sigma must be positive, got {sigma}")
    radius = kernel_size // 2
    offsets = torch.arange(kernel_size, dtype=maps.dtype, device=maps.device) - radius
    kernel = torch.exp(-(offsets**2) / (2 * sigma * sigma))
    kernel = kernel / kernel.sum()
    pad_mode = "reflect" if min(maps.shape[1:]) > radius else "replicate"
    if maps.dim() != 3:
        return _separable_blur(maps, kernel, radius, pad_mode)
    x = maps[:, None]
    x = F.pad(x, (radius, radius, 0, 0), mode=pad_mode)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, radius, radius), mode=pad_mode)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    return x[:, 0]


def _separable_blur(maps: Tensor, kernel: Tensor, radius: int, pad_mode: str) -> Tensor:
    """Convolve (B, *spatial) maps with ``kernel`` along each spatial axis, last axis first."""
    x = maps
    for axis in range(maps.dim() - 1, 0, -1):
        moved = x.movedim(axis, -1)
        rows = moved.reshape(-1, 1, moved.shape[-1])
        rows = F.conv1d(F.pad(rows, (radius, radius), mode=pad_mode), kernel.view(1, 1, -1))
        x = rows.view(moved.shape).movedim(-1, axis)
    return x
