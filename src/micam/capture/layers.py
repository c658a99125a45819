"""Finding the layer to explain: by module, by dotted name, or a default found by tracing the model.

The default (``default_explanation_layer``) is, for the transformers micam recognises (torchvision
and timm ViT/DeiT and Swin), the first norm of the last block with the reshape transform its token
layout needs; for every other model it is the block of the last convolution (1-D, 2-D or 3-D) with a
spatial output, found by one traced forward pass, with dense-prediction heads skipped.
"""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeGuard, cast

import torch
from torch import Tensor, nn

from micam.capture.tokens import TOKEN_HELP, recognised_token_layer

LayerSpec = nn.Module | str
ReshapeTransform = Callable[[Tensor], Tensor]

# Modules that keep the shape of their input and belong to a conv's "block" (norm, activation, dropout).
_ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.modules.dropout._DropoutNd,
    nn.ReLU,
    nn.Hardtanh,  # ReLU6 too
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.LogSigmoid,
    nn.Tanh,
    nn.Tanhshrink,
    nn.Softplus,
    nn.Softsign,
    nn.Softshrink,
    nn.Hardshrink,
    nn.Threshold,
    nn.Identity,
)
# Elementwise modules of other libraries, by class name (torchvision.ops.FrozenBatchNorm2d).
_ELEMENTWISE_NAMES = frozenset({"FrozenBatchNorm2d"})


def is_conv(module: nn.Module) -> TypeGuard[nn.modules.conv._ConvNd]:
    """A convolution of any dimension (``Conv1d``/``Conv2d``/``Conv3d`` and subclasses), transposed or not."""
    return isinstance(module, nn.modules.conv._ConvNd)


def resolve_layer(model: nn.Module, layer: LayerSpec) -> tuple[str, nn.Module]:
    """Return ``(dotted_name, module)`` for a module of ``model`` given as a module or a name.

    A name that does not exist raises a ``ValueError`` listing the closest valid names.
    """
    names = {module: name for name, module in model.named_modules()}
    if isinstance(layer, nn.Module):
        if layer not in names:
            raise ValueError(
                f"target layer {type(layer).__name__} is not a submodule of the model; "
                "pass a module taken from this model (e.g. model.features[-1]) or its dotted name"
            )
        return names[layer], layer
    if not isinstance(layer, str):
        raise TypeError(f"a target layer is an nn.Module or a dotted name, got {type(layer).__name__}")
    modules = dict(model.named_modules())
    if layer in modules and layer != "":
        return layer, modules[layer]
    candidates = [name for name in modules if name]
    close = difflib.get_close_matches(layer, candidates, n=8, cutoff=0.5)
    if not close:
        convs = [name for name, m in model.named_modules() if name and is_conv(m)]
        close = convs[-8:] or candidates[-8:]
    raise ValueError(
        f"model has no layer named {layer!r}; nearest valid names: {', '.join(close)} "
        f"(list them all with micam.capture.layer_names(model))"
    )


def resolve_layers(model: nn.Module, layers: Sequence[LayerSpec] | LayerSpec) -> list[tuple[str, nn.Module]]:
    """Resolve one or several layer specs; an empty list is an error."""
    if isinstance(layers, (nn.Module, str)):
        layers = [layers]
    resolved = [resolve_layer(model, layer) for layer in layers]
    if not resolved:
        raise ValueError("target_layers is empty; pass at least one layer or None for the default")
    return resolved


def layer_names(model: nn.Module, conv_only: bool = False) -> list[str]:
    """All dotted submodule names (or only those of convolutions, of any dimension)."""
    return [name for name, module in model.named_modules() if name and (not conv_only or is_conv(module))]


def default_target_layer(model: nn.Module, example_input: Tensor) -> tuple[str, nn.Module]:
    """``(name, module)`` of ``default_explanation_layer`` (for callers that need no reshape transform)."""
    name, module, _ = default_explanation_layer(model, example_input)
    return name, module


def default_explanation_layer(
    model: nn.Module, example_input: Tensor
) -> tuple[str, nn.Module, ReshapeTransform | None]:
    """``(name, module, reshape_transform)`` of the layer to explain when none is given.

    Recognised transformers (torchvision ``VisionTransformer``/``SwinTransformer``, timm ViT, DeiT
    (distilled too) and Swin, also as a submodule): the first norm of the last block, with
    ``VitTokens`` (prefix tokens dropped, the model's patch grid) or ``ChannelsLast``.

    Every other model: one traced forward pass on ``example_input`` finds the last convolution
    (1-D, 2-D or 3-D, not transposed, run once) with a spatial output > 1, skipping dense heads
    (a conv with as many channels as the output has classes, whose map is resized or pooled into
    the output, and the outermost container holding it apart from the stem). Its block extends over
    the elementwise modules (norm, activation, dropout) that consume it and over the containers that
    enclose it and return a map of the same spatial size; of the containers returning the final map
    (directly, or in a dict/tuple like a segmentation backbone's), the outermost is taken as the
    trunk and its child returning the same map is chosen (MobileNetV2 -> ``features.18``,
    ResNet-50 -> ``layer4.2``, ConvNeXt -> ``features.7``, FCN-ResNet50 -> ``backbone.layer4``); with
    no container, the last module of the block (VGG-16 -> ``features.29``, the ReLU after the conv).

    A ``UserWarning`` names a default that is a patch embedding or a classifier head. Token-shaped
    models micam does not recognise raise a ``ValueError`` saying which arguments to pass.
    """
    recognised = recognised_token_layer(model, example_input)
    if recognised is not None:
        return recognised
    return _conv_block_layer(model, example_input)


# ----------------------------------------------------------------------------- convolutional models
@dataclass
class _Event:
    """One module call of the traced forward pass (hooks fire when a call returns)."""

    index: int
    name: str
    module: nn.Module
    input: object
    output: object


def _trace(model: nn.Module, example_input: Tensor) -> tuple[list[_Event], dict[nn.Module, int], object]:
    """Every submodule call (in return order), the number of calls per module, and the model output."""
    names = {module: name for name, module in model.named_modules()}
    events: list[_Event] = []
    runs: dict[nn.Module, int] = {}

    def record(module: nn.Module, inputs: tuple[object, ...], output: object) -> None:
        runs[module] = runs.get(module, 0) + 1
        if module is not model:
            first = inputs[0] if inputs else None
            events.append(_Event(len(events), names[module], module, first, output))

    handles = [m.register_forward_hook(record) for m in names]
    try:
        with torch.no_grad():
            output = model(example_input)
    finally:
        for handle in handles:
            handle.remove()
    return events, runs, output


def _first_tensor(value: object) -> Tensor | None:
    """A tensor output itself, or the first tensor of a dict/tuple/list output."""
    if isinstance(value, Tensor):
        return value
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (tuple, list)) else ()
    return next((item for item in items if isinstance(item, Tensor)), None)


def _holds(value: object, tensor: Tensor) -> bool:
    """Whether a dict/tuple/list output holds ``tensor`` itself."""
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (tuple, list)) else ()
    return any(item is tensor for item in items)


def _spatial_conv(event: _Event) -> bool:
    """A non-transposed convolution whose (batched) output has more than one spatial position."""
    module, out = event.module, event.output
    return (
        is_conv(module)
        and not module.transposed
        and isinstance(out, Tensor)
        and out.dim() == len(module.kernel_size) + 2
        and out.shape[2:].numel() > 1
    )


def _ancestors(name: str) -> list[str]:
    """Dotted names of the containers holding ``name``, innermost first (the root excluded)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def _inside(name: str, container: str) -> bool:
    return name.startswith(container + ".")


def _head_names(events: list[_Event], output: Tensor | None, stem: str | None) -> list[str]:
    """Names of the dense heads: the trailing convs with as many channels as the output has classes
    whose maps are pooled or resized into the output, each widened to its outermost container that
    does not hold the stem."""
    if output is None or output.dim() < 2:
        return []
    classes = output.shape[1]
    heads: list[str] = []
    for event in reversed(events):
        module = event.module
        if any(True for _ in module.children()) or not any(True for _ in module.parameters(recurse=False)):
            continue  # containers and parameter-free leaves (activations, pooling) do not end the head
        out = event.output
        if not (is_conv(module) and isinstance(out, Tensor) and out.dim() >= 3 and out.shape[1] == classes):
            break
        if out.shape == output.shape:
            break  # the output is this conv's map itself: a feature extractor, not a head
        outer = [a for a in _ancestors(event.name) if stem is None or not _inside(stem, a)]
        heads.append(outer[-1] if outer else event.name)
    return heads


def _in_any(name: str, containers: list[str]) -> bool:
    return any(name == c or _inside(name, c) for c in containers)


def _token_event(events: list[_Event], start: int, excluded: list[str]) -> _Event | None:
    """The first Linear/attention call from ``start`` on that works on several positions (tokens)."""
    for event in events[start:]:
        if isinstance(event.module, (nn.Linear, nn.MultiheadAttention)) and not _in_any(event.name, excluded):
            out = _first_tensor(event.output)
            if out is not None and out.dim() >= 3 and math.prod(out.shape[1:-1]) > 1:
                return event
    return None


def _token_error(model: nn.Module, event: _Event, after: str | None) -> ValueError:
    out = _first_tensor(event.output)
    shape = tuple(out.shape) if out is not None else "?"
    where = f"after its last convolution {after!r}" if after else "and has no convolution"
    return ValueError(
        f"{type(model).__name__} works on tokens ({event.name!r} outputs shape {shape}) {where}, and micam "
        f"does not recognise its token layout (it knows torchvision and timm ViT, DeiT and Swin); {TOKEN_HELP}"
    )


def _is_elementwise(module: nn.Module) -> bool:
    return isinstance(module, _ELEMENTWISE) or type(module).__name__ in _ELEMENTWISE_NAMES


def _is_patch_embedding(name: str, conv: nn.Module, stem: str | None) -> bool:
    """Named like one (``patch_embed``, ``conv_proj``) or the first conv with stride == kernel > 1."""
    if "patch_embed" in name or name.rsplit(".", 1)[-1] == "conv_proj":
        return True
    convnd = cast(nn.modules.conv._ConvNd, conv)  # a candidate of _spatial_conv
    kernel, stride = tuple(convnd.kernel_size), tuple(convnd.stride)
    return name == stem and kernel == stride and max(kernel) > 1


def _conv_block_layer(model: nn.Module, example_input: Tensor) -> tuple[str, nn.Module, None]:
    """The default layer of a convolutional model (see ``default_explanation_layer``)."""
    events, runs, raw_output = _trace(model, example_input)
    output = _first_tensor(raw_output)
    convs = [e for e in events if is_conv(e.module) and not e.module.transposed]
    stem = convs[0].name if convs else None
    heads = _head_names(events, output, stem)
    spatial = [e for e in events if _spatial_conv(e) and runs[e.module] == 1]
    candidates = [e for e in spatial if not _in_any(e.name, heads)]
    if not candidates:
        tokens = _token_event(events, 0, heads)
        if tokens is not None:
            raise _token_error(model, tokens, stem)
        if spatial:
            candidates = spatial  # only head convs: explain the head (warned below)
        elif convs:
            raise ValueError(
                "no convolution with a spatial output ran exactly once during the forward pass; "
                "pass target_layers=[...] explicitly"
            )
        else:
            raise ValueError(
                "model has no nn.Conv2d, nn.Conv1d or nn.Conv3d layer, so there is no default target layer; "
                "pass target_layers=[...] (and a reshape_transform for token-shaped activations such as a ViT's)"
            )
    conv = candidates[-1]
    chain, wrappers = _block_of(conv, events, runs)
    final = chain[-1].output
    containers = [e for e in chain if e.output is final and any(True for _ in e.module.children())] + wrappers
    if len(containers) >= 2:
        chosen = containers[-2]
    elif containers:
        chosen = containers[0]
    else:
        chosen = chain[-1]
    if _is_patch_embedding(conv.name, conv.module, stem) or "patch_embed" in chosen.name:
        tokens = _token_event(events, chosen.index + 1, heads)
        if tokens is not None:
            raise _token_error(model, tokens, conv.name)
        warnings.warn(
            f"the default target layer {chosen.name!r} is a patch embedding (conv {conv.name!r}, stride = kernel); "
            "its map shows little more than the input; pass target_layers=[...] to choose a deeper layer",
            UserWarning,
            stacklevel=3,
        )
    if _in_any(conv.name, heads):
        warnings.warn(
            f"the default target layer {chosen.name!r} is a classifier head (conv {conv.name!r} has one channel per "
            "class); pass target_layers=[...] to explain a feature layer instead",
            UserWarning,
            stacklevel=3,
        )
    return chosen.name, chosen.module, None


def _block_of(conv: _Event, events: list[_Event], runs: dict[nn.Module, int]) -> tuple[list[_Event], list[_Event]]:
    """The conv's block: the calls that carry its map on, and the containers returning it in a dict/tuple."""
    chain = [conv]
    current = cast(Tensor, conv.output)  # a candidate of _spatial_conv: its output is a tensor
    called = {e.name: e.module for e in events}
    by_name = {e.name: e for e in events}
    open_ancestors = [(a, called[a]) for a in _ancestors(conv.name) if a in called]  # innermost first
    wrappers: list[_Event] = []
    for event in events[conv.index + 1 :]:
        out = event.output
        if open_ancestors and event.module is open_ancestors[0][1]:  # a container of the conv returns
            open_ancestors.pop(0)
            if runs[event.module] == 1 and isinstance(out, Tensor) and _same_map(out, current):
                chain.append(event)
                current = out
                continue
            if runs[event.module] == 1 and _holds(out, current):
                wrappers.append(event)
            break
        if runs[event.module] > 1:
            continue  # a module called several times (one shared ReLU) cannot be recorded once
        if _inside_a_consumer(event, current, by_name):
            continue  # the inner calls of a module that reads the map (timm's BatchNormAct2d: its act, drop)
        if isinstance(out, Tensor) and (
            (out is current and any(True for _ in event.module.children()))  # a container passing it on
            or (_is_elementwise(event.module) and event.input is current and out.shape == current.shape)
        ):
            chain.append(event)
            current = out
            continue
        if open_ancestors and _inside(event.name, open_ancestors[-1][0]):
            continue  # inside the conv's own containers (e.g. ConvNeXt's channels-last MLP): go on to their end
        break
    return chain, wrappers


def _inside_a_consumer(event: _Event, current: Tensor, by_name: dict[str, _Event]) -> bool:
    """Whether ``event`` runs inside an elementwise module that returns later and reads ``current``."""
    for ancestor in _ancestors(event.name):
        outer = by_name.get(ancestor)
        if outer is not None and outer.index > event.index and outer.input is current and _is_elementwise(outer.module):
            return True
    return False


def _same_map(out: Tensor, current: Tensor) -> bool:
    """Same batch, rank and spatial size (channels may differ: a dense block's concatenation)."""
    return out.dim() == current.dim() and out.shape[0] == current.shape[0] and out.shape[2:] == current.shape[2:]
