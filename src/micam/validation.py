"""Early, explicit checks of what users pass in; each error says what is wrong and how to fix it."""

from __future__ import annotations

from itertools import chain
from typing import cast

from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

# Layout of an input with 1, 2 or 3 spatial dimensions (Conv1d, Conv2d, Conv3d models).
LAYOUTS = {1: "(B, C, L)", 2: "(B, C, H, W)", 3: "(B, C, D, H, W)"}


def first_conv(model: nn.Module) -> _ConvNd | None:
    """The first convolution (``Conv1d``/``Conv2d``/``Conv3d``) in module order: the input stem for
    ordinary CNNs, whose kind fixes the input's number of spatial dimensions."""
    return next((m for m in model.modules() if isinstance(m, _ConvNd)), None)


def check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def check_input(x: object, model: nn.Module) -> Tensor:
    """A non-empty, finite, floating batch whose layout and channel count the model accepts:
    (B, C, L), (B, C, H, W) or (B, C, D, H, W) for a model whose first conv is Conv1d, Conv2d or
    Conv3d (any of the three for a model without convolutions)."""
    stem = first_conv(model)
    spatial = None if stem is None else len(stem.kernel_size)
    layout = "(B, C, L), (B, C, H, W) or (B, C, D, H, W)" if spatial is None else LAYOUTS.get(spatial, "(B, C, ...)")
    if not isinstance(x, Tensor):
        raise ValueError(
            f"input must be a torch.Tensor of shape {layout}, got {type(x).__name__}; "
            "convert images with the model's preprocessing (e.g. micam.models.load(...).preprocess)"
        )
    if spatial is None and not 3 <= x.dim() <= 5:
        raise ValueError(f"input must be 3-D, 4-D or 5-D {layout}, got shape {tuple(x.shape)}")
    if spatial is not None and x.dim() != spatial + 2:
        raise ValueError(
            f"input must be {spatial + 2}-D {layout} for this model (its first conv is {type(stem).__name__}), "
            f"got shape {tuple(x.shape)}{_layout_hint(x, cast(_ConvNd, stem))}"  # spatial is set from a stem
        )
    if x.shape[0] == 0:
        raise ValueError("input batch is empty (B = 0); pass at least one image")
    if any(size == 0 for size in x.shape[2:]):
        raise ValueError(f"input has an empty spatial size {tuple(x.shape[2:])}; pass real images")
    if not x.is_floating_point():
        raise ValueError(f"input must be a floating tensor, got {x.dtype}; convert with x.float() after scaling")
    if not x.isfinite().all():
        raise ValueError(
            "input contains NaN or Inf values; check the image decoding and normalization "
            "(e.g. a division by a zero std) before explaining it"
        )
    if stem is not None and stem.in_channels != x.shape[1]:
        hint = ""
        if x.shape[1] == 1 and stem.in_channels == 3:
            hint = f" (grayscale images: x.expand(-1, 3{', -1' * (x.dim() - 2)}))"
        raise ValueError(f"the model's first conv expects {stem.in_channels} input channels, got {x.shape[1]}{hint}")
    return x


def _layout_hint(x: Tensor, stem: _ConvNd) -> str:
    """How to fix a tensor with the wrong number of dimensions for ``stem``'s kind of convolution.

    One dimension short and led by the model's channel count: a single sample, add the batch
    dimension. A layout of another kind of model (a (1, 1, 256) signal batch for a Conv2d model):
    say which kind of model it needs, not to unsqueeze it (that would feed a 1x256 image).
    """
    spatial = len(stem.kernel_size)
    parts = []
    if x.dim() == spatial + 1 and x.shape[0] == stem.in_channels:
        parts.append(f"a single {'image' if spatial == 2 else 'sample'}: add the batch dimension with x.unsqueeze(0)")
    other = x.dim() - 2
    if other in LAYOUTS and other != spatial:
        parts.append(f"a {LAYOUTS[other]} batch of {other}-D inputs needs a model built from Conv{other}d")
    return f" ({'; '.join(parts)})" if parts else ""


def check_activation(activation: Tensor, layer_name: str, spatial_dims: int = 2) -> Tensor:
    """Activations must be (B, K, *spatial) with the input's number of spatial dimensions;
    token-shaped outputs need a reshape_transform."""
    if activation.dim() != spatial_dims + 2:
        layout = {1: "(B, K, l)", 2: "(B, K, h, w)", 3: "(B, K, d, h, w)"}.get(spatial_dims, "(B, K, ...)")
        raise ValueError(
            f"layer {layer_name!r} produced activations of shape {tuple(activation.shape)}, not {layout}; "
            f"for token-shaped activations (ViT, Swin) pass reshape_transform=fn mapping them to {layout}, "
            "or choose a convolutional layer"
        )
    if not activation.isfinite().all():
        raise ValueError(f"layer {layer_name!r} produced NaN or Inf activations; the model itself is unstable here")
    return activation


def as_model_input(inputs: Tensor, model: nn.Module) -> Tensor:
    """``inputs`` on the model's device and in its floating dtype: a float16 or bfloat16 batch for a
    float32 model (or the reverse) would fail inside its first layer."""
    tensors = chain(model.parameters(), model.buffers())
    first = next(tensors, None)
    if first is None:
        return inputs
    floating = first if first.is_floating_point() else next((t for t in tensors if t.is_floating_point()), None)
    return inputs.to(device=first.device, dtype=inputs.dtype if floating is None else floating.dtype)
