"""What ``micam.models.load`` returns, and the preprocessing every model shares."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch import Tensor, nn
from torchvision import transforms

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
    weights_report: str = ""  # what a checkpoint file gave, e.g. "loaded 62 tensors from ckpt.pt (key 'state_dict')"
    reshape_transform: Callable[[Tensor], Tensor] | None = None  # token layouts (ViT, Swin) -> (B, K, h, w)

    def to(self, device: str | torch.device) -> LoadedModel:
        self.model.to(device)
        return self


def make_preprocess(
    resize: int,
    crop: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: transforms.InterpolationMode = transforms.InterpolationMode.BILINEAR,
) -> Callable[[Image.Image], Tensor]:
    """Shorter side to ``resize``, centre crop ``crop``, scale to [0, 1], normalize."""
    preprocess: Callable[[Image.Image], Tensor] = transforms.Compose(
        [
            transforms.Lambda(_to_rgb),
            transforms.Resize(resize, interpolation=interpolation),
            transforms.CenterCrop(crop),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    return preprocess


def _to_rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")
