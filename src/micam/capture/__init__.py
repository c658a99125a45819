"""Capture engine: resolve target layers and record their activations and gradients with hooks."""

from micam.capture.layers import (
    default_explanation_layer,
    default_target_layer,
    layer_names,
    resolve_layer,
    resolve_layers,
)
from micam.capture.recorder import Recording, model_state_preserved, record_activations
from micam.capture.reshape import ChannelsLast, VitTokens

__all__ = [
    "ChannelsLast",
    "Recording",
    "VitTokens",
    "default_explanation_layer",
    "default_target_layer",
    "layer_names",
    "model_state_preserved",
    "record_activations",
    "resolve_layer",
    "resolve_layers",
]
