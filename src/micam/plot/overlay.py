"""Heatmap overlays: a CAM blended over the image the model saw."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image
from torch import Tensor


def restore_image(tensor: Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalized (3, H, W) tensor -> (H, W, 3) float RGB in [0, 1]."""
    shape = (-1, 1, 1)
    pixels = tensor.detach().cpu() * torch.as_tensor(std).view(shape) + torch.as_tensor(mean).view(shape)
    return pixels.clamp(0, 1).permute(1, 2, 0).numpy()


def overlay_heatmap(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """Blend a [0, 1] (H, W) map, coloured with ``colormap``, over an (H, W, 3) [0, 1] image; uint8 out."""
    if image.shape[:2] != cam.shape:
        raise ValueError(f"image {image.shape[:2]} and map {cam.shape} must have the same size")
    heat: np.ndarray = colormaps[colormap](np.clip(cam, 0, 1))[..., :3]
    return (255 * ((1 - alpha) * image + alpha * heat)).round().astype(np.uint8)


def save_overlay(path: Path, image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> Path:
    Image.fromarray(overlay_heatmap(image, cam, alpha)).save(path)
    return path
