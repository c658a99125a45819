"""Deletion and insertion curves and their areas (Petsiuk et al., RISE; the MI-CAM paper's Table 2).

Pixels are ranked by the map, most important first (ties keep raster order). Deletion starts from
the image and replaces ``step`` pixels per step by the baseline; insertion starts from the baseline
and restores them. With ``steps`` = 100 each step moves 1 % of the pixels; the curve has steps + 1
points (0 % ... 100 %) and its area is the trapezoid rule on [0, 1]. ``insertion_order="paper"``
inserts the least important pixels first, as the MI-CAM paper's text describes.
All (image, step) variants are scored in large batches, never one forward pass per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from micam.imaging import gaussian_blur
from micam.inference import InferenceRunner, inference_runner
from micam.metrics.scores import ScoreKind, check_maps, class_scores
from micam.outputs import OutputSelector

Baseline = Literal["zero", "mean", "blur"]
# What removed pixels become in an evaluation: "black" (the value a black pixel has after the model's
# normalization, a per-channel tensor the evaluation passes) or one of the baselines computed here.
REMOVED_PIXELS: tuple[str, ...] = ("black", *get_args(Baseline))


def make_baseline(images: Tensor, kind: Baseline | float | Tensor = "zero") -> Tensor:
    """The image that deleted pixels take: zeros, a constant, a tensor broadcastable to the images
    (e.g. a black pixel's normalized value per channel), the per-image channel mean, or a blur."""
    if isinstance(kind, Tensor):
        return kind.to(images.device, images.dtype).expand_as(images).clone()
    if isinstance(kind, (int, float)):
        return torch.full_like(images, float(kind))
    if kind == "zero":
        return torch.zeros_like(images)
    if kind == "mean":
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images).clone()
    if kind == "blur":
        b, c, h, w = images.shape
        return gaussian_blur(images.reshape(b * c, h, w), 11, 5.0).reshape(b, c, h, w)
    raise ValueError(f"baseline must be 'zero', 'mean', 'blur' or a number, got {kind!r}")


def auc(curves: Tensor) -> Tensor:
    """Trapezoid area under (..., steps + 1) curves sampled evenly on [0, 1]."""
    steps = curves.shape[-1] - 1
    return (curves.sum(dim=-1) - 0.5 * (curves[..., 0] + curves[..., -1])) / steps


def deletion_insertion(
    model: nn.Module | InferenceRunner,
    images: Tensor,
    maps: Tensor,
    classes: Sequence[int] | Tensor,
    steps: int = 100,
    baseline: Baseline | float | Tensor = "zero",
    insertion_order: Literal["standard", "paper"] = "standard",
    score: ScoreKind = "probability",
    batch_size: int = 128,
    output_selector: OutputSelector = None,
) -> dict[str, Tensor]:
    """Per-image deletion and insertion curves (B, steps + 1) and their AUCs (B,).
    ``output_selector`` as in the methods."""
    check_maps(images, maps)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    h, w = images.shape[-2:]
    classes = torch.as_tensor(classes, device=images.device).long().reshape(-1)
    base = make_baseline(images, baseline)
    pixels = h * w
    per_step = math.ceil(pixels / steps)
    counts = (torch.arange(steps + 1, device=images.device) * per_step).clamp(max=pixels)
    if insertion_order not in ("standard", "paper"):
        raise ValueError(f"insertion_order must be 'standard' or 'paper', got {insertion_order!r}")
    runner = inference_runner(model)  # one checked copy for every chunk's class_scores
    descending = _ranks(maps, descending=True)
    ascending = descending if insertion_order == "standard" else _ranks(maps, descending=False)
    scorer = partial(class_scores, runner, score=score, batch_size=batch_size, output_selector=output_selector)
    deletion = _curve(scorer, images, base, descending, counts, classes, batch_size)
    insertion = _curve(scorer, base, images, ascending, counts, classes, batch_size)
    return {
        "deletion_curve": deletion,
        "insertion_curve": insertion,
        "deletion_auc": auc(deletion),
        "insertion_auc": auc(insertion),
    }


def _ranks(maps: Tensor, descending: bool) -> Tensor:
    """(B, H, W) position of each pixel in the importance order (0 = first to change)."""
    flat = maps.flatten(1)
    order = flat.argsort(dim=1, descending=descending, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=maps.device).expand_as(order))
    return ranks.view_as(maps)


def _curve(
    scorer: Callable[[Tensor, Tensor], Tensor],
    start: Tensor,
    end: Tensor,
    ranks: Tensor,
    counts: Tensor,
    classes: Tensor,
    batch_size: int,
) -> Tensor:
    """Scores of start images whose first counts[s] ranked pixels come from end, for every s."""
    b = start.shape[0]
    n_steps = counts.shape[0]
    pairs = torch.cartesian_prod(torch.arange(b, device=start.device), torch.arange(n_steps, device=start.device))
    results = []
    for chunk in pairs.split(batch_size):
        image_index, step_index = chunk[:, 0], chunk[:, 1]
        changed = (ranks[image_index] < counts[step_index][:, None, None])[:, None]
        batch = torch.where(changed, end[image_index], start[image_index])
        results.append(scorer(batch, classes[image_index]))
    return torch.cat(results).view(b, n_steps)
