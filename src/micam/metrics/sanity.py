"""Cascading parameter randomization (Adebayo et al., 2018; MI-CAM paper Sec. 4.6, Fig. 8).

Starting from the output, the parameters of one layer after another are re-drawn at random
(cumulatively, on a copy of the model), the image is explained again, and each randomized map is
compared with the original one by SSIM, Spearman rank correlation and HOG correlation. A method
that depends on what the model learned should lose similarity as more layers are randomized.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from micam.methods.base import BaseCAM
from micam.metrics.similarity import hog_similarity, spearman, ssim

MethodFactory = Callable[[nn.Module], BaseCAM]


def parametrized_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters directly, from the output back to the input."""
    names = [name for name, m in model.named_modules() if name and any(True for _ in m.parameters(recurse=False))]
    return list(reversed(names))


def randomization_stages(model: nn.Module) -> list[str]:
    """Block-level stages from the output back to the input: each top-level child, with sequential
    containers (``features``, ``_blocks``, ``classifier``) opened one level, keeping those that hold
    parameters. Coarser than ``parametrized_layers`` (20 stages for MobileNetV2 instead of 158)."""
    stages = []
    for name, child in model.named_children():
        parts = list(child.named_children()) if isinstance(child, (nn.Sequential, nn.ModuleList)) else []
        for part_name, part in parts or [("", child)]:
            if any(True for _ in part.parameters()):
                stages.append(f"{name}.{part_name}" if part_name else name)
    return list(reversed(stages))


def cascading_randomization(
    model: nn.Module,
    make_method: MethodFactory,
    images: Tensor,
    targets: Sequence[int] | None = None,
    layers: Sequence[str] | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per randomization stage: the layer just randomized, its maps and the three similarities.

    ``layers`` (default: ``randomization_stages``) are randomized in the given order, cumulatively.
    ``make_method(model_copy)`` builds the explainer on the copy (so its target layer is the copy's).
    The first row ("original") holds the unmodified map, with similarities 1.
    """
    working = copy.deepcopy(model)
    stages = list(layers) if layers is not None else randomization_stages(working)
    modules = dict(working.named_modules())
    unknown = [name for name in stages if name not in modules]
    if unknown:
        raise ValueError(f"unknown layers {unknown}; see micam.metrics.sanity.parametrized_layers(model)")
    with make_method(working) as cam:
        original = cam(images, targets=targets)
    if targets is None:
        targets = cam.last_output.argmax(dim=1).tolist() if cam.last_output is not None else None
    rows: list[dict[str, Any]] = [_row("original", original, original)]
    generator = torch.Generator().manual_seed(seed)
    for name in stages:
        _randomize(modules[name], generator)
        with make_method(working) as cam:
            randomized = cam(images, targets=targets)
        rows.append(_row(name, original, randomized))
    return rows


def _row(name: str, original: Tensor, randomized: Tensor) -> dict[str, Any]:
    return {
        "layer": name,
        "map": randomized,
        "ssim": ssim(original, randomized),
        "spearman": spearman(original.flatten(1), randomized.flatten(1)),
        "hog": hog_similarity(original, randomized),
    }


def _randomize(module: nn.Module, generator: torch.Generator) -> None:
    """Re-draw each parameter of the module (and its children) from N(0, s^2), s = its trained std
    (0.1 if constant)."""
    with torch.no_grad():
        for parameter in module.parameters():
            spread = float(parameter.std()) if parameter.numel() > 1 else 0.0
            scale = spread if spread > 0 else 0.1
            noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            parameter.copy_((noise * scale).to(parameter.device))
