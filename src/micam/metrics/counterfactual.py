"""Counterfactual analysis (MI-CAM paper, Sec. 4.5, Fig. 7/10): how channel weights answer a do-intervention.

An intervention sets pixels of the input (do(X_region = value)), blurs a region, or applies any
function; the method explains the actual and the counterfactual image for the same class, and the
change of its channel weights is summarized per image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from micam.imaging import gaussian_blur
from micam.methods.base import BaseCAM
from micam.metrics.localization import box_mask
from micam.metrics.similarity import spearman

Intervention = Callable[[Tensor], Tensor]


def set_box(box: Sequence[float], value: float = 0.0) -> Intervention:
    """do(X[box] = value): every channel of the pixels in the (x0, y0, x1, y1) box, inclusive."""

    def intervene(images: Tensor) -> Tensor:
        inside = box_mask([box], tuple(images.shape[-2:]), images.device)
        return images.masked_fill(inside, value)

    return intervene


def set_region(mask: Tensor, value: float = 0.0) -> Intervention:
    """do(X[mask] = value) for a boolean (H, W) mask."""

    def intervene(images: Tensor) -> Tensor:
        return images.masked_fill(mask.to(images.device, torch.bool), value)

    return intervene


def blur_box(box: Sequence[float], kernel_size: int = 21, sigma: float = 7.0) -> Intervention:
    """Replace the box by a Gaussian-blurred copy of the image (removes detail, keeps colour)."""

    def intervene(images: Tensor) -> Tensor:
        b, c, h, w = images.shape
        blurred = gaussian_blur(images.reshape(b * c, h, w), kernel_size, sigma).reshape(b, c, h, w)
        inside = box_mask([box], (h, w), images.device)
        return torch.where(inside, blurred, images)

    return intervene


def weight_change(actual: Tensor, counterfactual: Tensor) -> dict[str, Tensor]:
    """Per-row summaries of how (B, K) weights moved: mean absolute change, that change relative to
    the mean absolute actual weight, and the Spearman rank correlation of the two weight vectors."""
    actual, counterfactual = actual.double(), counterfactual.double()
    change = (counterfactual - actual).abs().mean(dim=1)
    return {
        "mean_abs_change": change,
        "relative_change": change / actual.abs().mean(dim=1).clamp(min=1e-300),
        "rank_correlation": spearman(actual, counterfactual),
    }


def counterfactual_weights(
    cam: BaseCAM, images: Tensor, intervention: Intervention, targets: Sequence[int] | None = None
) -> dict[str, Tensor]:
    """Channel weights on the actual and the counterfactual images, and per-image summaries:
    mean absolute change, the change relative to the mean absolute actual weight, and the Spearman
    rank correlation between the two weight vectors (1 = same ordering of channels)."""
    actual_maps = cam(images, targets=targets)
    actual = cam.last_weights.double()  # type: ignore[union-attr]  # set by the call above
    if targets is None and cam.last_output is not None:
        targets = cam.last_output.argmax(dim=1).tolist()  # explain the same class after the intervention
    counterfactual_images = intervention(images)
    counterfactual_maps = cam(counterfactual_images, targets=targets)
    counterfactual = cam.last_weights.double()  # type: ignore[union-attr]  # set by the call above
    return {
        "actual_weights": actual,
        "counterfactual_weights": counterfactual,
        **weight_change(actual, counterfactual),
        "actual_maps": actual_maps,
        "counterfactual_maps": counterfactual_maps,
        "counterfactual_images": counterfactual_images,
    }
