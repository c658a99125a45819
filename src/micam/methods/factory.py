"""Build a method by its command-line name with the settings the CLI and the evaluator share."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from micam.capture.layers import LayerSpec
from micam.methods import CONTROLS, METHODS, BaseCAM
from micam.methods.base import ReshapeTransform, SharedSettings
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
    mi_column_max: bool = False,
    output_selector: OutputSelector = None,
    reshape_transform: ReshapeTransform | None = None,
) -> BaseCAM:
    """``name`` from ``METHODS`` or ``CONTROLS`` on ``target_layer``; each method takes the settings it uses
    (``BaseCAM.options_from_settings``: MI-CAM grays the restored photo when the input's normalization
    is given, except with the authors' preset, which grays the tensor as is; Score-CAM takes the batch size)."""
    known = METHODS | CONTROLS
    if name not in known:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(known)}")
    settings = SharedSettings(
        pixel_mean=pixel_mean,
        pixel_std=pixel_std,
        score_cam_batch_size=score_cam_batch_size,
        mi_preset=mi_preset,
        mi_column_max=mi_column_max,
        output_selector=output_selector,
        reshape_transform=reshape_transform,
    )
    return known[name].from_settings(model, target_layer, settings)
