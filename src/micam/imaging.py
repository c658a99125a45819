"""Small image operations shared by methods and reports: grayscale, Gaussian blur."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# ITU-R BT.601 luma, the usual RGB -> gray weights (the MI-CAM authors use 0.2989/0.5870/0.1140).
BT601_LUMA = (0.299, 0.587, 0.114)


def grayscale(
    images: Tensor,
    luma: Sequence[float] = BT601_LUMA,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Tensor:
    """(B, C, H, W) -> (B, H, W) gray image.

    With ``mean`` and ``std`` (the normalization the tensor went through) the pixels are first
    restored (x * std + mean), so the gray image is that of the photo rather than of the tensor.
    One channel is returned as is; three use ``luma``; any other count is averaged.
    """
    if mean is not None or std is not None:
        if mean is None or std is None:
            raise ValueError("pass both mean and std to restore the pixels, or neither")
        shape = (1, -1, 1, 1)
        images = images * torch.as_tensor(std, dtype=images.dtype, device=images.device).view(shape) + torch.as_tensor(
            mean, dtype=images.dtype, device=images.device
        ).view(shape)
    channels = images.shape[1]
    if channels == 1:
        return images[:, 0]
    if channels == 3:
        weights = torch.as_tensor(luma, dtype=images.dtype, device=images.device)
        return torch.einsum("c,bchw->bhw", weights, images)
    return images.mean(dim=1)


def gaussian_blur(maps: Tensor, kernel_size: int, sigma: float) -> Tensor:
    """Blur (B, H, W) maps with a separable Gaussian, mirroring borders like OpenCV's default."""
    if kernel_size % 2 != 1 or kernel_size < 1:
        raise ValueError(f"blur kernel size must be a positive odd integer, got {kernel_size}")
    if sigma <= 0:
        raise ValueError(f"blur sigma must be positive, got {sigma}")
    radius = kernel_size // 2
    offsets = torch.arange(kernel_size, dtype=maps.dtype, device=maps.device) - radius
    kernel = torch.exp(-(offsets**2) / (2 * sigma * sigma))
    kernel = kernel / kernel.sum()
    x = maps[:, None]
    pad_mode = "reflect" if min(maps.shape[-2:]) > radius else "replicate"
    x = F.pad(x, (radius, radius, 0, 0), mode=pad_mode)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, radius, radius), mode=pad_mode)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    return x[:, 0]
