"""Transformers' token layouts: which layer of a ViT, DeiT or Swin (torchvision's and timm's) to
explain by default (the last block's first norm, as the peers recommend) and the reshape that lays its
tokens out as (B, D, h, w) maps (``VitTokens``, ``ChannelsLast``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import Tensor, nn

from micam.capture.reshape import ChannelsLast, VitTokens

ReshapeTransform = Callable[[Tensor], Tensor]
TOKEN_HELP = (
    "pass target_layers=[...] (e.g. the first norm of the last block) and reshape_transform=<a callable "
    "mapping that layer's output to (B, K, h, w)>, e.g. micam.capture.VitTokens(prefix_tokens=1, grid=(h, w)) "
    "for (B, prefix + h*w, D) tokens or micam.capture.ChannelsLast() for (B, H, W, C) maps"
)


def recognised_token_layer(model: nn.Module, example_input: Tensor) -> tuple[str, nn.Module, ReshapeTransform] | None:
    """The layer and reshape of the outermost submodule with a known token layout, else None."""
    for prefix, module in model.named_modules():
        found = _token_layout(module)
        if found is None:
            continue
        layer, reshape, patch = found
        local = {m: n for n, m in module.named_modules()}[layer]
        name = f"{prefix}.{local}" if prefix else local
        output = _output_of(model, layer, example_input)
        if isinstance(reshape, VitTokens) and isinstance(output, Tensor) and output.dim() == 3:
            reshape = _fit_vit_grid(reshape, output.shape[1], example_input, patch)
        try:
            if not isinstance(output, Tensor):
                raise ValueError(f"it returned {type(output).__name__}, not a tensor")
            reshape(output)
        except ValueError as error:
            raise ValueError(
                f"the default layer {name!r} of {type(module).__name__} cannot be reshaped with {reshape!r} "
                f"({error}); {TOKEN_HELP}"
            ) from error
        return name, layer, reshape
    return None


def _token_layout(module: nn.Module) -> tuple[nn.Module, ReshapeTransform, tuple[int, int] | None] | None:
    """``(layer, reshape, patch_size)`` for a module whose token layout micam knows, else None."""
    TorchvisionViT, TorchvisionSwin = _torchvision_transformers()
    if isinstance(module, TorchvisionViT):
        vit: Any = module  # torchvision is untyped: image_size and patch_size are ints
        side = vit.image_size // vit.patch_size
        patch = (vit.patch_size, vit.patch_size)
        return vit.encoder.layers[-1].ln_1, VitTokens(prefix_tokens=1, grid=(side, side)), patch
    if isinstance(module, TorchvisionSwin):
        swin: Any = module
        return _swin_layer(swin.features[-1][-1]), ChannelsLast(), None
    layers = getattr(module, "layers", None)
    if type(module).__name__.startswith("Swin") and isinstance(layers, (nn.Sequential, nn.ModuleList)) and layers:
        blocks = getattr(layers[-1], "blocks", None)
        if isinstance(blocks, (nn.Sequential, nn.ModuleList)) and blocks and hasattr(blocks[-1], "norm1"):
            return _swin_layer(blocks[-1]), ChannelsLast(), None
    blocks = getattr(module, "blocks", None)
    prefix_tokens = getattr(module, "num_prefix_tokens", None)
    patch_embed = getattr(module, "patch_embed", None)
    if (
        isinstance(prefix_tokens, int)
        and isinstance(patch_embed, nn.Module)
        and isinstance(blocks, (nn.Sequential, nn.ModuleList))
        and blocks
        and isinstance(getattr(blocks[-1], "norm1", None), nn.Module)
    ):
        grid = _pair(getattr(patch_embed, "grid_size", None))
        norm1 = cast(nn.Module, blocks[-1].norm1)  # checked to be a module above
        return norm1, VitTokens(prefix_tokens=prefix_tokens, grid=grid), _pair(patch_embed.patch_size)
    return None


@functools.cache
def _torchvision_transformers() -> tuple[type | tuple[()], type | tuple[()]]:
    """torchvision's ``VisionTransformer`` and ``SwinTransformer`` classes (empty tuples without it)."""
    try:
        from torchvision.models import SwinTransformer, VisionTransformer
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return (), ()
    return VisionTransformer, SwinTransformer


def _swin_layer(block: nn.Module) -> nn.Module:
    """A pre-norm Swin block's first norm; a post-norm (V2) block's norm1 follows attention, so the block."""
    norm = getattr(block, "norm1", None)
    if isinstance(norm, nn.Module) and "V2" not in type(block).__name__:
        return norm
    return block


def _pair(value: object) -> tuple[int, int] | None:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    return None


def _fit_vit_grid(reshape: VitTokens, tokens: int, example_input: Tensor, patch: tuple[int, int] | None) -> VitTokens:
    """The model's patch grid when it fits the token count, else the input's, else None (square)."""
    patches = tokens - reshape.prefix_tokens
    options = [reshape.grid]
    if patch is not None and example_input.dim() >= 4:
        options.append((example_input.shape[-2] // patch[0], example_input.shape[-1] // patch[1]))
    grid = next((g for g in options if g is not None and g[0] * g[1] == patches), None)
    return VitTokens(prefix_tokens=reshape.prefix_tokens, grid=grid)


def _output_of(model: nn.Module, layer: nn.Module, example_input: Tensor) -> object:
    """``layer``'s output in one forward pass of ``model`` (its last call)."""
    seen: list[object] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        handle.remove()
    if not seen:
        raise ValueError(f"the default layer {type(layer).__name__} did not run; {TOKEN_HELP}")
    return seen[-1]
