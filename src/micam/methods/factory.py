"""Build a method by its command-line name with the settings the CLI and the evaluator share."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from micam.capture.layers import LayerSpec
from micam.methods import METHODS, MICAM, BaseCAM, ScoreCAM
from micam.methods.base import ReshapeTransform
from micam.outputs import OutputSelector


def make_method(
    name: str,
    model: nn.Module,
    target_layer: LayerSpec,
    *,
    pixel_mean: Sequence[float] | None = None,
    pixel_std: Sequence[float] | None = None,
    score_cam_batch_size: int = 32,
    mi_preset: str = "default",
    output_selector: OutputSelector = None,
    reshape_transform: ReshapeTransform | None = None,
) -> BaseCAM:
    """``name`` from ``METHODS`` on ``target_layer``. MI-CAM grays the restored photo when the
    input's normalization is given (except with the authors' preset, which grays the tensor as is)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    cls = METHODS[name]
    common = {"output_selector": output_selector, "reshape_transform": reshape_transform}
    if cls is MICAM:
        if mi_preset == "authors":
            return MICAM(model, [target_layer], preset="authors", **common)
        return MICAM(model, [target_layer], preset=mi_preset, pixel_mean=pixel_mean, pixel_std=pixel_std, **common)
    if cls is ScoreCAM:
        return ScoreCAM(model, [target_layer], batch_size=score_cam_batch_size, **common)
    return cls(model, [target_layer], **common)
