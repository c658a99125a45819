"""The shared engine of every CAM method: capture, weights, weighted sum, upsampling, scaling.

A method only says how its channel weights are computed (``channel_weights``) and, where its
paper says so, how the weighted maps become one map (``layer_map``). Everything else (layer
resolution, hooks, model state, targets, validation, normalization) lives here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from micam.capture import default_target_layer, model_state_preserved, record_activations, resolve_layers
from micam.capture.layers import LayerSpec
from micam.targets import Target, TargetsSpec, normalize_targets, target_scores
from micam.validation import check_activation, check_input, check_model

OutputSelector = None | int | str | Callable[[Any], Tensor]
ReshapeTransform = Callable[[Tensor], Tensor]


@dataclass
class LayerContext:
    """Everything a method may use to weight one layer's channels for one batch."""

    inputs: Tensor  # (B, C, H, W) on the model's device
    activations: Tensor  # (B, K, h, w), detached
    gradients: Tensor | None  # (B, K, h, w) d(target score)/d(activations), gradient methods only
    targets: list[Target] | None  # one per sample; None for class-agnostic methods
    layer_name: str


class BaseCAM:
    """Base class; subclasses set the class flags and implement ``channel_weights``."""

    uses_gradients: ClassVar[bool] = False
    class_agnostic: ClassVar[bool] = False  # ignores targets, needs no classifier head

    def __init__(
        self,
        model: nn.Module,
        target_layers: Sequence[LayerSpec] | LayerSpec | None = None,
        reshape_transform: ReshapeTransform | None = None,
        output_selector: OutputSelector = None,
        eval_mode: bool = True,
    ) -> None:
        """
        Args:
            model: any ``nn.Module`` taking (B, C, H, W) images.
            target_layers: modules or dotted names (``"features.18"``); None picks the block of the
                last ``Conv2d`` (found by tracing the first call's input).
            reshape_transform: maps a layer's raw output to (B, K, h, w) (e.g. ViT tokens).
            output_selector: picks the class scores from a model output that is not a tensor: an
                index (tuple/list outputs), a key (dict outputs) or a callable.
            eval_mode: run the model in eval mode during a call (its modes are restored after).
        """
        self.model = check_model(model)
        self._layers = None if target_layers is None else resolve_layers(model, target_layers)
        self.reshape_transform = reshape_transform
        self.output_selector = output_selector
        self.eval_mode = eval_mode
        self.last_layer_weights: dict[str, Tensor] = {}
        self.last_output: Tensor | None = None

    # ----------------------------------------------------------------- what a method defines
    def channel_weights(self, context: LayerContext) -> Tensor:
        """(B, K) weight of each channel of ``context.activations``."""
        raise NotImplementedError

    def layer_map(self, context: LayerContext, weights: Tensor, size: tuple[int, int]) -> Tensor:
        """(B, H, W) unnormalized map of one layer at input size: ReLU at feature resolution, then
        bilinear upsampling, as Grad-CAM and its successors define it."""
        cam = torch.einsum("bk,bkhw->bhw", weights.to(context.activations.dtype), context.activations)
        return upsample(cam.clamp(min=0)[:, None], size, "bilinear")[:, 0]

    # ----------------------------------------------------------------- the engine
    @property
    def last_weights(self) -> Tensor | None:
        """(B, K) channel weights of the last call (first target layer)."""
        return next(iter(self.last_layer_weights.values()), None)

    @property
    def target_layer_names(self) -> list[str]:
        return [] if self._layers is None else [name for name, _ in self._layers]

    def __enter__(self) -> BaseCAM:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        """Drop references to the last call's tensors (no hooks outlive a call)."""
        self.last_layer_weights = {}
        self.last_output = None

    def __call__(self, input_tensor: Tensor, targets: TargetsSpec = None) -> Tensor:
        """Explain a batch: (B, H, W) float32 maps in [0, 1] on the input's device."""
        check_input(input_tensor, self.model)
        device = _model_device(self.model, input_tensor.device)
        inputs = input_tensor.to(device)
        if self.uses_gradients and torch.is_inference_mode_enabled():
            raise RuntimeError(
                f"{type(self).__name__} needs gradients and cannot run inside torch.inference_mode(); "
                "call it outside (torch.no_grad() is fine)"
            )
        with model_state_preserved(self.model, self.eval_mode):
            if self._layers is None:
                self._layers = [default_target_layer(self.model, inputs[:1])]
            layers = self._layers
            recording = record_activations(
                self.model,
                [module for _, module in layers],
                inputs,
                track_gradients=self.uses_gradients,
                stop_early=self.class_agnostic,
            )
            output = self._select_output(recording.output) if recording.finished else None
            self.last_output = None if output is None else output.detach()
            target_list = None
            gradients: Sequence[Tensor | None] = [None] * len(layers)
            if not self.class_agnostic:
                target_list = normalize_targets(targets, self.last_output, inputs.shape[0])
            if self.uses_gradients:
                with torch.enable_grad():  # also inside a caller's torch.no_grad()
                    scores = target_scores(target_list, output)  # type: ignore[arg-type]
                    gradients = torch.autograd.grad(scores.sum(), recording.activations)
            maps, self.last_layer_weights = [], {}
            for (name, _), activation, gradient in zip(layers, recording.activations, gradients, strict=True):
                context = LayerContext(
                    inputs=inputs,
                    activations=self._to_maps(activation.detach(), name),
                    gradients=None if gradient is None else self._to_maps(gradient, name),
                    targets=target_list,
                    layer_name=name,
                )
                with torch.no_grad():
                    weights = self.channel_weights(context)
                    maps.append(self.layer_map(context, weights, tuple(inputs.shape[-2:])))
                self.last_layer_weights[name] = weights.detach()
            del recording
        with torch.no_grad():
            cam = (
                scale_to_unit(torch.stack([scale_to_unit(m) for m in maps]).mean(0))
                if len(maps) > 1
                else scale_to_unit(maps[0])
            )
        return cam.float().to(input_tensor.device)

    def _to_maps(self, tensor: Tensor, name: str) -> Tensor:
        if self.reshape_transform is not None:
            tensor = self.reshape_transform(tensor)
        return check_activation(tensor, name)

    def _select_output(self, output: object) -> Tensor:
        selector = self.output_selector
        if selector is None:
            selected = output
        elif callable(selector):
            selected = selector(output)
        else:
            selected = output[selector]  # type: ignore[index]
        if not isinstance(selected, Tensor):
            raise ValueError(
                f"the model returned {type(output).__name__}, not a tensor of class scores; pass "
                "output_selector=<index> for tuples, <key> for dicts, or a callable returning the scores"
            )
        return selected


def upsample(maps: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """Resize (B, K, h, w) maps to ``size``; bilinear uses half-pixel centres (align_corners=False)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    if mode == "bilinear":
        return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return F.interpolate(maps, size=size, mode=mode)


def min_max_per_map(maps: Tensor) -> Tensor:
    """Min-max scale each (h, w) map over the last two dimensions to [0, 1]; constant maps become zeros.

    Silent (masks and channels may legitimately be constant); ``scale_to_unit`` warns for final CAMs.
    """
    flat = maps.flatten(-2)
    lo = flat.amin(dim=-1)[..., None, None]
    span = (flat.amax(dim=-1)[..., None, None] - lo).clamp_min(torch.finfo(maps.dtype).tiny)
    return (maps - lo) / span


def scale_to_unit(maps: Tensor) -> Tensor:
    """Min-max scale each (H, W) map of a (B, H, W) batch to [0, 1], warning when one is constant."""
    flat = maps.flatten(1)
    if bool((flat.amax(dim=1) <= flat.amin(dim=1)).any()):
        warnings.warn(
            "a CAM is constant (all-zero weights or activations, or everything removed by the ReLU); "
            "returning an all-zero map for it",
            RuntimeWarning,
            stacklevel=3,
        )
    return min_max_per_map(maps)


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    parameter = next(model.parameters(), None)
    if parameter is None:
        parameter = next(model.buffers(), None)
    return fallback if parameter is None else parameter.device
