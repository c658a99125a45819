"""The class score a faithfulness metric reads off the model: softmax probability or logit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from micam.capture import model_state_preserved
from micam.capture.inference import inference_copy, preferred_layout

ScoreKind = Literal["probability", "logit"]


def class_scores(
    model: nn.Module,
    images: Tensor,
    classes: Sequence[int] | Tensor,
    score: ScoreKind = "probability",
    batch_size: int = 64,
) -> Tensor:
    """(N,) score of ``classes[i]`` on ``images[i]``, computed ``batch_size`` images at a time, no graph."""
    if score not in ("probability", "logit"):
        raise ValueError(f"score must be 'probability' or 'logit', got {score!r}")
    classes = torch.as_tensor(classes, device=images.device).long().reshape(-1)
    if classes.numel() != images.shape[0]:
        raise ValueError(f"{classes.numel()} classes for {images.shape[0]} images; pass one class per image")
    parts = []
    runner = inference_copy(model)  # batch norm folded into the convolutions: same function, faster
    with model_state_preserved(runner), torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            output = runner(preferred_layout(images[start : start + batch_size]))
            if score == "probability":
                output = torch.softmax(output, dim=1)
            parts.append(output.gather(1, classes[start : start + batch_size, None])[:, 0])
    return torch.cat(parts) if parts else images.new_zeros(0)


def check_maps(images: Tensor, maps: Tensor) -> None:
    """Maps must be finite (B, H, W) at the images' size."""
    if maps.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"maps must be (B, H, W) = {(images.shape[0], *images.shape[2:])}, got {tuple(maps.shape)}")
    if not torch.isfinite(maps).all():
        raise ValueError("maps contain NaN or Inf")
