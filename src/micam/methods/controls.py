"""Controls for MI-CAM: what its map is without the MI weights, and with weights that cannot see the image.

* ``ChannelSum`` is MI-CAM with every weight 1: the unweighted sum of the activation maps, upsampled,
  blurred and rectified exactly as MI-CAM's map (same preset, same options). If MI-CAM does not beat
  it, the MI weights add nothing to the map.
* ``ShuffledMICAM`` is MI-CAM with the gray image's pixels shuffled (one fixed permutation, the same
  for every image, so runs are reproducible) before the MI is taken: the weights then keep each
  map's own statistics (its entropy, its share of the layer) but lose any relation to the image. An
  estimator whose weights survive the shuffle measures the maps, not the image.

Both take every MI-CAM option, so ``ChannelSum(model, layers, preset="authors")`` is the control of
the authors' preset.
"""

from __future__ import annotations

import torch
from torch import Tensor

from micam.methods.base import LayerContext
from micam.methods.mi_cam import MICAM

__all__ = ["ChannelSum", "ShuffledMICAM"]


class ChannelSum(MICAM):
    """ReLU(sum_k Up(A_k)): MI-CAM with uniform weights (the control the MI weights must beat)."""

    def channel_weights(self, context: LayerContext) -> Tensor:
        activations = context.activations
        return torch.ones(activations.shape[:2], dtype=activations.dtype, device=activations.device)


class ShuffledMICAM(MICAM):
    """MI-CAM whose gray image has its pixels shuffled by a fixed permutation (``seed``)."""

    seed: int = 0

    def gray_image(self, inputs: Tensor) -> Tensor:
        gray = super().gray_image(inputs)
        flat = gray.flatten(1)
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(flat.shape[1], generator=generator).to(flat.device)
        return flat[:, order].view_as(gray)
