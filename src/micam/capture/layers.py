"""Finding the layer to explain: by module, by dotted name, or the default last conv block."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch
from torch import Tensor, nn

LayerSpec = nn.Module | str

# Modules that keep the shape of a conv output and belong to its "block" (norm, activation).
_ELEMENTWISE = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.InstanceNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.Identity,
)


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
        convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
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
    """All dotted submodule names (or only those of ``Conv2d`` modules)."""
    return [name for name, module in model.named_modules() if name and (not conv_only or isinstance(module, nn.Conv2d))]


def default_target_layer(model: nn.Module, example_input: Tensor) -> tuple[str, nn.Module]:
    """The block that produces the output of the model's last executed ``Conv2d`` (with h*w > 1).

    One traced forward pass on ``example_input`` finds the last conv to run; the result extends it
    over the norm/activation modules that follow it with the same output shape, and prefers the
    innermost container returning that same tensor (MobileNetV2 -> ``features.18``, ResNet-50 ->
    ``layer4.2``, VGG-16 -> ``features.29``, the ReLU after the last conv).
    """
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise ValueError(
            "model has no nn.Conv2d layer, so there is no default target layer; pass target_layers=[...] "
            "(and a reshape_transform for token-shaped activations such as a ViT's)"
        )
    events: list[tuple[str, nn.Module, Tensor]] = []
    names = {module: name for name, module in model.named_modules()}

    def record(module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, Tensor):
            events.append((names[module], module, output))

    handles = [m.register_forward_hook(record) for m in model.modules()]
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for handle in handles:
            handle.remove()
    # A 1x1-output conv (a classifier head applied after global pooling) is not a feature map.
    last_conv = max(
        (i for i, (_, m, out) in enumerate(events) if isinstance(m, nn.Conv2d) and out.shape[-2:].numel() > 1),
        default=None,
    )
    if last_conv is None:
        raise ValueError(
            "no nn.Conv2d with a spatial output ran during the forward pass; pass target_layers=[...] explicitly"
        )
    conv_name, conv_module, conv_out = events[last_conv]
    chain = [(conv_name, conv_module, conv_out)]
    for name, module, out in events[last_conv + 1 :]:
        contains_conv = any(sub is conv_module for sub in module.modules())
        if out.shape != conv_out.shape or not (isinstance(module, _ELEMENTWISE) or contains_conv):
            break
        chain.append((name, module, out))
    final = chain[-1][2]
    for name, module, out in chain:
        if out is final and any(True for _ in module.children()):
            return name, module
    return chain[-1][0], chain[-1][1]
