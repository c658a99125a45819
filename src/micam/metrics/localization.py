"""Localization: pointing game and energy-based pointing game (EBPG) against ground-truth boxes.

Boxes are (x0, y0, x1, y1) in pixel indices of the map, inclusive, any number per image.
Pointing game: a hit when the map's maximum (the first one in raster order) lies within
``tolerance`` pixels (Euclidean) of a box; 15 px is TorchRay's convention, 0 the paper's.
EBPG: the share of the map's total value that falls inside the union of the boxes (NaN for an
all-zero map, which has no energy to share).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

Boxes = Sequence[Sequence[float]] | Tensor


def _as_boxes(boxes: Boxes, device: torch.device) -> Tensor:
    tensor = torch.as_tensor(boxes, dtype=torch.float32, device=device).reshape(-1, 4)
    if tensor.shape[0] == 0:
        raise ValueError("each image needs at least one box")
    if ((tensor[:, 2] < tensor[:, 0]) | (tensor[:, 3] < tensor[:, 1])).any():
        raise ValueError(f"boxes must be (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1, got {tensor.tolist()}")
    return tensor


def box_mask(boxes: Boxes, size: tuple[int, ...], device: torch.device | str = "cpu") -> Tensor:
    """(H, W) boolean union of the boxes."""
    h, w = size
    tensor = _as_boxes(boxes, torch.device(device))
    rows = torch.arange(h, device=tensor.device)[:, None, None]
    cols = torch.arange(w, device=tensor.device)[None, :, None]
    inside = (cols >= tensor[:, 0]) & (cols <= tensor[:, 2]) & (rows >= tensor[:, 1]) & (rows <= tensor[:, 3])
    return inside.any(dim=2)


def pointing_game(maps: Tensor, boxes: Sequence[Boxes], tolerance: float = 15.0) -> Tensor:
    """(B,) 1.0 for a hit, 0.0 for a miss."""
    if len(boxes) != maps.shape[0]:
        raise ValueError(f"{len(boxes)} box lists for {maps.shape[0]} maps; pass one list per map")
    w = maps.shape[-1]
    peak = maps.flatten(1).argmax(dim=1)
    hits = []
    for i, image_boxes in enumerate(boxes):
        tensor = _as_boxes(image_boxes, maps.device)
        y, x = (peak[i] // w).float(), (peak[i] % w).float()
        dx = torch.clamp(torch.maximum(tensor[:, 0] - x, x - tensor[:, 2]), min=0)
        dy = torch.clamp(torch.maximum(tensor[:, 1] - y, y - tensor[:, 3]), min=0)
        hits.append(bool(((dx**2 + dy**2).sqrt() <= tolerance).any()))
    return torch.tensor(hits, dtype=torch.float32, device=maps.device)


def energy_pointing_game(maps: Tensor, boxes: Sequence[Boxes]) -> Tensor:
    """(B,) share of each map's energy inside its boxes, in [0, 1] (NaN for an all-zero map)."""
    if len(boxes) != maps.shape[0]:
        raise ValueError(f"{len(boxes)} box lists for {maps.shape[0]} maps; pass one list per map")
    if (maps < 0).any():
        raise ValueError("EBPG needs non-negative maps (CAMs scaled to [0, 1])")
    shares = []
    for i, image_boxes in enumerate(boxes):
        inside = box_mask(image_boxes, tuple(maps.shape[-2:]), maps.device)
        total = maps[i].sum()
        shares.append(maps[i][inside].sum() / total if total > 0 else torch.tensor(float("nan"), device=maps.device))
    return torch.stack(shares).float()
