"""Deletion and insertion curves and their areas (Petsiuk et al., RISE; the MI-CAM paper's Table 2).

Pixels are ranked by the map, most important first (ties keep raster order). Deletion starts from
the image and replaces ``step`` pixels per step by the baseline; insertion starts from the baseline
and restores them, ``ceil(pixels / steps)`` pixels per step; the curve has steps + 1 points and its
area is the trapezoid rule over the fraction of pixels actually changed at each point (0 ... 1). With
224 x 224 pixels and 100 steps a step moves 502 pixels (1.0005 %) and the last one 478; on a 15 x 15
image (3 pixels per step) everything is changed after 75 steps, and the last 25 points sit at x = 1,
adding no area (an evenly spaced x axis would stretch the curve to 0.75 -> 1). ``insertion_order="paper"``
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
# The x axis of the AUC: the fraction of pixels changed at each point, or k / steps ("even", micam's
# rule before 2026-11-27 and the committed runs': at 224 x 224 the two differ by at most ~5e-4).
AucX = Literal["changed", "even"]
AUC_X: tuple[str, ...] = get_args(AucX)
# Which values a step changes: whole pixels (every channel), or the authors' published indexing, which
# uses the ranks of the H x W map as indices into the flattened H x W x C image (so only the first
# H x W of its H x W x C values, the top 1/C of the rows, one channel at a time, are ever changed).
PixelIndexing = Literal["pixels", "authors"]
PIXEL_INDEXING: tuple[str, ...] = get_args(PixelIndexing)
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


def auc(curves: Tensor, fractions: Tensor | None = None) -> Tensor:
    """Trapezoid area under (..., steps + 1) curves sampled at ``fractions`` (steps + 1 increasing
    x positions from 0 to 1, e.g. ``changed_fractions``), or evenly on [0, 1] when None."""
    if fractions is None:
        steps = curves.shape[-1] - 1
        return (curves.sum(dim=-1) - 0.5 * (curves[..., 0] + curves[..., -1])) / steps
    widths = (fractions[1:] - fractions[:-1]).to(curves)
    return ((curves[..., 1:] + curves[..., :-1]) * widths).sum(dim=-1) / 2


def changed_counts(pixels: int, steps: int) -> Tensor:
    """How many pixels are changed after each of the steps + 1 points: ceil(pixels / steps) per step."""
    per_step = math.ceil(pixels / steps)
    return (torch.arange(steps + 1) * per_step).clamp(max=pixels)


def changed_fractions(pixels: int, steps: int) -> Tensor:
    """The x positions of a deletion / insertion curve: the fraction of pixels changed at each point."""
    return changed_counts(pixels, steps).double() / pixels


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
    auc_x: AucX = "changed",
    indexing: PixelIndexing = "pixels",
) -> dict[str, Tensor]:
    """Per-image deletion and insertion curves (B, steps + 1), their AUCs (B,) over the fraction of
    pixels changed at each point (``auc_x="even"``: over k / steps, the older rule), and those
    x positions (steps + 1,).

    ``baseline`` is what removed pixels become in the model's (normalized) input: "zero" (the default:
    the dataset's mean colour for normalized inputs, not black), "mean" (each image's channel means),
    "blur", a number, or a tensor broadcastable to the images. ``micam evaluate`` removes pixels to
    black: pass ``micam.evaluation.datasets.black_pixel(loaded)`` (= -mean / std per channel) for the
    same. ``output_selector`` as in the methods. ``indexing="authors"`` emulates the authors'
    ``Deletion Curve.py`` (``PIXEL_INDEXING``): ``int(s / steps * H * W)`` values changed at step s, the
    map's ranks (their ``argsort(...)[::-1]``: ties in reverse raster order) used as indices into the
    flattened H x W x C image; pair it with ``auc_x="even"`` (their ``np.trapz`` over ``linspace``)."""
    check_maps(images, maps)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    h, w = images.shape[-2:]
    classes = torch.as_tensor(classes, device=images.device).long().reshape(-1)
    base = make_baseline(images, baseline)
    if auc_x not in AUC_X:
        raise ValueError(f"auc_x must be one of {AUC_X}, got {auc_x!r}")
    if indexing not in PIXEL_INDEXING:
        raise ValueError(f"indexing must be one of {PIXEL_INDEXING}, got {indexing!r}")
    if insertion_order not in ("standard", "paper"):
        raise ValueError(f"insertion_order must be 'standard' or 'paper', got {insertion_order!r}")
    pixels = h * w
    if indexing == "authors":
        counts = torch.tensor([int(s / steps * pixels) for s in range(steps + 1)], device=images.device)
        channels = images.shape[1]
        descending = _authors_value_ranks(_reversed_ranks(maps), channels)
        ascending = descending if insertion_order == "standard" else _authors_value_ranks(_ranks(maps, False), channels)
    else:
        counts = changed_counts(pixels, steps).to(images.device)
        descending = _ranks(maps, descending=True)
        ascending = descending if insertion_order == "standard" else _ranks(maps, descending=False)
    # The x positions: the share of values each point has changed (``changed_fractions`` for pixels).
    fractions = counts.cpu().double() / pixels if auc_x == "changed" else torch.linspace(0, 1, steps + 1).double()
    x_axis = fractions if auc_x == "changed" else None  # "even": the older formula, bit for bit
    runner = inference_runner(model)  # one checked copy for every chunk's class_scores
    scorer = partial(class_scores, runner, score=score, batch_size=batch_size, output_selector=output_selector)
    deletion = _curve(scorer, images, base, descending, counts, classes, batch_size)
    insertion = _curve(scorer, base, images, ascending, counts, classes, batch_size)
    return {
        "deletion_curve": deletion,
        "insertion_curve": insertion,
        "deletion_auc": auc(deletion, x_axis),
        "insertion_auc": auc(insertion, x_axis),
        "fractions": fractions.to(images.device),
    }


def _ranks(maps: Tensor, descending: bool) -> Tensor:
    """(B, H, W) position of each pixel in the importance order (0 = first to change)."""
    return _positions(maps.flatten(1).argsort(dim=1, descending=descending, stable=True), maps)


def _positions(order: Tensor, maps: Tensor) -> Tensor:
    """(B, H, W) position of each pixel in ``order`` (B, H * W), an ordering of the flattened maps."""
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=maps.device).expand_as(order))
    return ranks.view_as(maps)


def _reversed_ranks(maps: Tensor) -> Tensor:
    """(B, H, W) positions in ``numpy.argsort(map.flatten())[::-1]`` (stable ascending order reversed:
    equal values go last pixel first)."""
    return _positions(maps.flatten(1).argsort(dim=1, stable=True).flip(1), maps)


def _authors_value_ranks(pixel_ranks: Tensor, channels: int) -> Tensor:
    """(B, C, H, W) step at which each input value changes under the authors' indexing: value e of the
    flattened H x W x C image (e = (y * W + x) * C + c) changes with the map's pixel e, when e < H * W,
    and never otherwise."""
    b, h, w = pixel_ranks.shape
    pixels = h * w
    flat = torch.full((b, pixels * channels), pixels, dtype=pixel_ranks.dtype, device=pixel_ranks.device)
    flat[:, :pixels] = pixel_ranks.flatten(1)  # value e takes the rank of map pixel e; the rest: never
    return flat.view(b, h, w, channels).permute(0, 3, 1, 2)


def _curve(
    scorer: Callable[[Tensor, Tensor], Tensor],
    start: Tensor,
    end: Tensor,
    ranks: Tensor,
    counts: Tensor,
    classes: Tensor,
    batch_size: int,
) -> Tensor:
    """Scores of start images whose first counts[s] ranked pixels come from end, for every s; ``ranks``
    is (B, H, W) for whole pixels or (B, C, H, W) for single values."""
    b = start.shape[0]
    n_steps = counts.shape[0]
    pairs = torch.cartesian_prod(torch.arange(b, device=start.device), torch.arange(n_steps, device=start.device))
    results = []
    for chunk in pairs.split(batch_size):
        image_index, step_index = chunk[:, 0], chunk[:, 1]
        chosen = ranks[image_index]
        changed = chosen < counts[step_index].view(-1, *(1,) * (chosen.dim() - 1))
        changed = changed if changed.dim() == start.dim() else changed[:, None]
        batch = torch.where(changed, end[image_index], start[image_index])
        results.append(scorer(batch, classes[image_index]))
    return torch.cat(results).view(b, n_steps)
