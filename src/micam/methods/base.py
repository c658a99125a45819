"""The shared engine of every CAM method: capture, weights, weighted sum, upsampling, scaling.

A method only says how its channel weights are computed (``channel_weights``) and, where its
paper says so, how the weighted maps become one map (``layer_map``). A method with options declares
them as a ``MethodOptions`` dataclass (checked in its ``check``, recorded by ``cam.settings``) and says
in ``options_from_settings`` which of the CLI's and the evaluator's ``SharedSettings`` it takes.
Everything else (layer resolution, hooks, model state, targets, validation, normalization) lives here.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self, cast

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map_only

from micam.capture import default_explanation_layer, model_state_preserved, record_activations, resolve_layers
from micam.capture.layers import LayerSpec
from micam.imaging import upsample
from micam.outputs import OutputSelector, select_output
from micam.targets import Target, TargetsSpec, all_callables, normalize_targets, target_scores
from micam.validation import as_model_input, check_activation, check_input, check_model

__all__ = [
    "BaseCAM",
    "Explainer",
    "LayerContext",
    "MethodOptions",
    "ReshapeTransform",
    "SharedSettings",
    "min_max_per_map",
    "option_attribute",
    "scale_to_unit",
    "spatial_axes",
    "upsample",
    "weighted_sum",
]

ReshapeTransform = Callable[[Tensor], Tensor]


class Explainer(Protocol):
    """The call the evaluator makes of every explainer, CAM methods and reference maps alike: CAM
    methods ignore ``keys`` (image names), reference maps ignore ``targets``. ``images`` is passed by
    position (each explainer names it as it likes)."""

    def __call__(self, images: Tensor, /, targets: Any = None, keys: Sequence[str] | None = None) -> Tensor: ...


@dataclass(frozen=True)
class MethodOptions:
    """Base of a method's options: a frozen dataclass whose fields are the method's choices, checked
    in ``check`` (run on construction and on ``dataclasses.replace``) and recorded by ``settings``."""

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise a ValueError for a value the method cannot use."""

    def settings(self) -> dict[str, Any]:
        """The options as JSON-ready values (tuples become lists), for recording next to results."""
        values = dataclasses.asdict(self)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}


def option_attribute(name: str) -> Any:
    """A method attribute that reads ``self.options.<name>``; setting it replaces the options with
    that one value changed (and checked again), as ``cam.batch_size = 64`` on a ``ScoreCAM``."""

    def get(self: BaseCAM) -> Any:
        return getattr(self.options, name)

    def set_(self: BaseCAM, value: Any) -> None:
        options = cast(MethodOptions, self.options)  # option attributes belong to methods with options
        self.options = dataclasses.replace(options, **{name: value})

    return property(get, set_, doc=f"``options.{name}``")


@dataclass(frozen=True)
class SharedSettings:
    """The settings the CLI and the evaluator give every method they build; each method takes the ones
    it uses (``BaseCAM.options_from_settings``)."""

    pixel_mean: Sequence[float] | None = None  # the input's normalization (MI-CAM grays the restored photo)
    pixel_std: Sequence[float] | None = None
    score_cam_batch_size: int = 32
    mi_preset: str = "default"
    mi_column_max: bool = False  # MI-CAM: the authors' np.max(cam, 0) in place of the ReLU
    output_selector: OutputSelector = None
    reshape_transform: ReshapeTransform | None = None


@dataclass
class LayerContext:
    """Everything a method may use to weight one layer's channels for one batch."""

    inputs: Tensor  # (B, C, *spatial): (B, C, L), (B, C, H, W) or (B, C, D, H, W), on the model's device
    activations: Tensor  # (B, K, *layer spatial), detached
    gradients: Tensor | None  # like activations: d(target score)/d(activations), gradient methods only
    targets: list[Target] | None  # one per sample; None for class-agnostic methods
    layer_name: str


class BaseCAM:
    """Base class; subclasses set the class flags and implement ``channel_weights``."""

    uses_gradients: ClassVar[bool] = False
    class_agnostic: ClassVar[bool] = False  # ignores targets, needs no classifier head
    options: MethodOptions | None = None  # a method with options sets them in its constructor

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
            model: any ``nn.Module`` taking (B, C, H, W) images, or (B, C, L) signals / (B, C, D, H, W)
                volumes for Conv1d / Conv3d models.
            target_layers: modules or dotted names (``"features.18"``); None picks
                ``micam.capture.default_explanation_layer`` on the first call's input: the block of the last
                convolution, a ConvNeXt's last stage, a segmentation backbone's last stage, and for ViT/DeiT/Swin
                the last block's first norm with its token reshape.
            reshape_transform: maps a layer's raw output to (B, K, *spatial) (e.g. ViT tokens to (B, K, h, w)).
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
        self.last_output: Any = None  # the selected model output of the last call (a tensor for classifiers)

    @classmethod
    def from_settings(cls, model: nn.Module, layer: LayerSpec, settings: SharedSettings | None = None) -> Self:
        """This method on ``layer`` with the shared CLI/evaluator settings (``micam.methods.factory``)."""
        settings = SharedSettings() if settings is None else settings
        return cls(
            model,
            [layer],
            output_selector=settings.output_selector,
            reshape_transform=settings.reshape_transform,
            **cls.options_from_settings(settings),
        )

    @classmethod
    def options_from_settings(cls, settings: SharedSettings) -> dict[str, Any]:
        """The constructor's option keywords taken from the shared settings: none unless overridden."""
        return {}

    @property
    def settings(self) -> dict[str, Any]:
        """Every option that determines the map, for recording next to results ({} without options)."""
        return {} if self.options is None else self.options.settings()

    # ----------------------------------------------------------------- what a method defines
    def channel_weights(self, context: LayerContext) -> Tensor:
        """(B, K) weight of each channel of ``context.activations``."""
        raise NotImplementedError

    def layer_map(self, context: LayerContext, weights: Tensor, size: tuple[int, ...]) -> Tensor:
        """(B, *size) unnormalized map of one layer at input size: ReLU at feature resolution, then
        (bi/tri)linear upsampling, as Grad-CAM and its successors define it."""
        cam = weighted_sum(weights, context.activations)
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

    def __call__(self, input_tensor: Tensor, targets: TargetsSpec = None, keys: Sequence[str] | None = None) -> Tensor:
        """Explain a batch: float32 maps in [0, 1] at the input's size, (B, H, W) for images ((B, L) and
        (B, D, H, W) for 1-D and 3-D inputs), on the input's device. ``keys`` (image names, which the
        reference maps use) is accepted and ignored, so every ``Explainer`` takes the same call."""
        check_input(input_tensor, self.model)
        inputs = as_model_input(input_tensor, self.model)
        if self.uses_gradients and torch.is_inference_mode_enabled():
            raise RuntimeError(
                f"{type(self).__name__} needs gradients and cannot run inside torch.inference_mode(); "
                "call it outside (torch.no_grad() is fine)"
            )
        with model_state_preserved(self.model, self.eval_mode):
            if self._layers is None:
                name, module, reshape = default_explanation_layer(self.model, inputs[:1])
                self._layers = [(name, module)]
                if self.reshape_transform is None:
                    self.reshape_transform = reshape
            layers = self._layers
            recording = record_activations(
                self.model,
                [module for _, module in layers],
                inputs,
                track_gradients=self.uses_gradients,
                stop_early=self.class_agnostic,
            )
            output = self._select_output(recording.output, targets) if recording.finished else None
            self.last_output = None if output is None else tree_map_only(Tensor, Tensor.detach, output)
            target_list = None
            gradients: Sequence[Tensor | None] = [None] * len(layers)
            if not self.class_agnostic:
                target_list = normalize_targets(targets, self.last_output, inputs.shape[0])
            if self.uses_gradients:
                with torch.enable_grad():  # also inside a caller's torch.no_grad()
                    # Gradient methods are never class-agnostic: their targets are set.
                    scores = target_scores(cast(list[Target], target_list), output)
                    gradients = torch.autograd.grad(scores.sum(), recording.activations)
            maps, self.last_layer_weights = [], {}
            for (name, _), activation, gradient in zip(layers, recording.activations, gradients, strict=True):
                context = LayerContext(
                    inputs=inputs,
                    activations=self._to_maps(activation.detach(), name, inputs.dim() - 2),
                    gradients=None if gradient is None else self._to_maps(gradient, name, inputs.dim() - 2),
                    targets=target_list,
                    layer_name=name,
                )
                with torch.no_grad():
                    weights = self.channel_weights(context)
                    if context.activations.shape[2:].numel() > 1:
                        maps.append(self.layer_map(context, weights, tuple(inputs.shape[2:])))
                    else:  # one position: any "map" would be float rounding stretched to [0, 1]
                        warnings.warn(
                            f"layer {name!r} has a single spatial position, so its map cannot show where the model "
                            "looks; it is left out (all zeros when it is the only layer; choose an earlier layer "
                            "with a spatial output)",
                            RuntimeWarning,
                            stacklevel=2,
                        )
                self.last_layer_weights[name] = weights.detach()
            del recording
        with torch.no_grad():
            if not maps:
                return inputs.new_zeros((inputs.shape[0], *inputs.shape[2:]), dtype=torch.float32).to(
                    input_tensor.device
                )
            cam = (
                scale_to_unit(torch.stack([scale_to_unit(m) for m in maps]).mean(0))
                if len(maps) > 1
                else scale_to_unit(maps[0])
            )
        return cam.float().to(input_tensor.device)

    def _to_maps(self, tensor: Tensor, name: str, spatial_dims: int) -> Tensor:
        if self.reshape_transform is not None:
            tensor = self.reshape_transform(tensor)
        return check_activation(tensor, name, spatial_dims)

    def _select_output(self, output: object, targets: TargetsSpec = None) -> Any:
        """The scores to explain; any output (a detector's list of dicts) when only callables read it."""
        if self.output_selector is None and not isinstance(output, Tensor) and all_callables(targets):
            return output
        return select_output(output, self.output_selector)


def spatial_axes(maps: Tensor) -> tuple[int, ...]:
    """The spatial dimensions of (B, K, *spatial) maps: (2, 3) for images, (2,) or (2, 3, 4) for 1-D/3-D."""
    return tuple(range(2, maps.dim()))


def weighted_sum(weights: Tensor, activations: Tensor) -> Tensor:
    """sum_k weights[b, k] * activations[b, k]: (B, K) and (B, K, *spatial) -> (B, *spatial)."""
    weights = weights.to(activations.dtype)
    if activations.dim() == 4:  # images: the einsum the committed 2-D numbers were computed with
        return torch.einsum("bk,bkhw->bhw", weights, activations)
    flat = torch.einsum("bk,bkn->bn", weights, activations.flatten(2))
    return flat.view(activations.shape[0], *activations.shape[2:])


def min_max_per_map(maps: Tensor, spatial_dims: int = 2) -> Tensor:
    """Min-max scale each map over its last ``spatial_dims`` dimensions (2: (h, w) maps) to [0, 1];
    constant maps become zeros.

    Silent (masks and channels may legitimately be constant); ``scale_to_unit`` warns for final CAMs.
    """
    flat = maps.flatten(-spatial_dims)
    keep = (*maps.shape[:-spatial_dims], *(1,) * spatial_dims)  # lo/hi broadcast over each map
    lo = flat.amin(dim=-1).view(keep)
    span = (flat.amax(dim=-1).view(keep) - lo).clamp_min(torch.finfo(maps.dtype).tiny)
    return (maps - lo) / span


def scale_to_unit(maps: Tensor) -> Tensor:
    """Min-max scale each map of a (B, *spatial) batch ((B, H, W) for images) to [0, 1], warning when
    one is constant."""
    flat = maps.flatten(1)
    if bool((flat.amax(dim=1) <= flat.amin(dim=1)).any()):
        warnings.warn(
            "a CAM is constant (all-zero weights or activations, or everything removed by the ReLU); "
            "returning an all-zero map for it",
            RuntimeWarning,
            stacklevel=3,
        )
    return min_max_per_map(maps, maps.dim() - 1)
