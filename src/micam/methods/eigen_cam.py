"""Eigen-CAM (Muhammad & Yeasin, IJCNN 2020): projection on the first principal component.

Each of the h*w positions (l or d*h*w for 1-D and 3-D layers) is a K-vector of activations; after
centring them per channel, the map is their projection on the first right singular vector v:
map = Up(ReLU(sum_k v_k (A_k - mean A_k))).
Sign rule: an SVD fixes v only up to sign, so v is oriented to give the projection a non-negative
covariance with the channel sum sum_k A_k (the map then highlights where the layer is active).
Class-agnostic: no gradients, no targets, works on a headless encoder.
"""

from __future__ import annotations

import torch
from torch import Tensor

from micam.methods.base import BaseCAM, LayerContext, upsample


class EigenCAM(BaseCAM):
    """Channel weight = the channel's loading on the first principal component."""

    class_agnostic = True

    def channel_weights(self, context: LayerContext) -> Tensor:
        positions = self._centred_positions(context.activations)  # (B, hw, K)
        _, _, vh = torch.linalg.svd(positions.double(), full_matrices=False)
        direction: Tensor = vh[:, 0, :]  # (B, K)
        projection = positions.double() @ direction[:, :, None]  # (B, hw, 1)
        total = positions.double().sum(dim=2, keepdim=True)
        sign = torch.where((projection * total).sum(dim=(1, 2)) < 0, -1.0, 1.0).to(direction)
        return (direction * sign[:, None]).to(context.activations.dtype)

    def layer_map(self, context: LayerContext, weights: Tensor, size: tuple[int, ...]) -> Tensor:
        b, _, *spatial = context.activations.shape
        projection = (self._centred_positions(context.activations) @ weights[:, :, None]).view(b, *spatial)
        return upsample(projection.clamp(min=0)[:, None], size, "bilinear")[:, 0]

    @staticmethod
    def _centred_positions(activations: Tensor) -> Tensor:
        positions = activations.flatten(2).transpose(1, 2)
        return positions - positions.mean(dim=1, keepdim=True)
