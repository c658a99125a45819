"""The class score a faithfulness metric reads off the model: softmax probability or logit."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from micam.inference import InferenceRunner, inference_runner
from micam.outputs import OutputSelector, ScoreKind, as_scores, check_score_kind, gather_classes, select_output

__all__ = ["ScoreKind", "check_maps", "class_scores"]


def class_scores(
    model: nn.Module | InferenceRunner,
    images: Tensor,
    classes: Sequence[int] | Tensor,
    score: ScoreKind = "probability",
    batch_size: int = 64,
    output_selector: OutputSelector = None,
) -> Tensor:
    """(N,) score of ``classes[i]`` on ``images[i]``, computed ``batch_size`` images at a time, no graph.

    The model runs through its checked inference copy (``micam.inference``; pass a runner to
    share one). Scores are read as ``micam.outputs`` defines them: softmax over dim 1 (sigmoid for a
    single unit) and, for dense (B, C, ...) outputs, the class's mean over the positions.
    """
    check_score_kind(score)
    classes = torch.as_tensor(classes, device=images.device).long().reshape(-1)
    if classes.numel() != images.shape[0]:
        raise ValueError(f"{classes.numel()} classes for {images.shape[0]} images; pass one class per image")
    parts = []
    runner = inference_runner(model)
    for start in range(0, images.shape[0], batch_size):
        output = select_output(runner(images[start : start + batch_size]), output_selector)
        parts.append(gather_classes(as_scores(output, score), classes[start : start + batch_size]))
    return torch.cat(parts) if parts else images.new_zeros(0)


def check_maps(images: Tensor, maps: Tensor) -> None:
    """Maps must be finite (B, H, W) at the images' size."""
    if maps.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"maps must be (B, H, W) = {(images.shape[0], *images.shape[2:])}, got {tuple(maps.shape)}")
    if not torch.isfinite(maps).all():
        raise ValueError("maps contain NaN or Inf")
