"""Early, explicit checks of what users pass in; each error says what is wrong and how to fix it."""

from __future__ import annotations

from torch import Tensor, nn


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    """The first ``Conv2d`` in module order (the input stem for ordinary CNNs)."""
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


def check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def check_input(x: object, model: nn.Module) -> Tensor:
    """A non-empty, finite, floating (B, C, H, W) batch whose channel count the model accepts."""
    if not isinstance(x, Tensor):
        raise ValueError(
            f"input must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}; "
            "convert images with the model's preprocessing (e.g. micam.models.load(...).preprocess)"
        )
    if x.dim() != 4:
        hint = " (a single image: add the batch dimension with x.unsqueeze(0))" if x.dim() == 3 else ""
        raise ValueError(f"input must be 4-D (B, C, H, W), got shape {tuple(x.shape)}{hint}")
    if x.shape[0] == 0:
        raise ValueError("input batch is empty (B = 0); pass at least one image")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"input has an empty spatial size {tuple(x.shape[2:])}; pass real images")
    if not x.is_floating_point():
        raise ValueError(f"input must be a floating tensor, got {x.dtype}; convert with x.float() after scaling")
    if not x.isfinite().all():
        raise ValueError(
            "input contains NaN or Inf values; check the image decoding and normalization "
            "(e.g. a division by a zero std) before explaining it"
        )
    stem = first_conv(model)
    if stem is not None and stem.in_channels != x.shape[1]:
        hint = " (grayscale images: x.expand(-1, 3, -1, -1))" if x.shape[1] == 1 and stem.in_channels == 3 else ""
        raise ValueError(f"the model's first conv expects {stem.in_channels} input channels, got {x.shape[1]}{hint}")
    return x


def check_activation(activation: Tensor, layer_name: str) -> Tensor:
    """Activations must be (B, K, h, w); token-shaped outputs need a reshape_transform."""
    if activation.dim() != 4:
        raise ValueError(
            f"layer {layer_name!r} produced activations of shape {tuple(activation.shape)}, not (B, K, h, w); "
            "for token-shaped activations (ViT, Swin) pass reshape_transform=fn mapping them to (B, K, h, w), "
            "or choose a convolutional layer"
        )
    if not activation.isfinite().all():
        raise ValueError(f"layer {layer_name!r} produced NaN or Inf activations; the model itself is unstable here")
    return activation
