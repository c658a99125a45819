"""Grad-CAM (Selvaraju et al., ICCV 2017).

alpha_k = mean over positions of d y^c / d A_k;  map = Up(ReLU(sum_k alpha_k A_k)).
Positions span every spatial dimension: L for 1-D, (h, w) for images, (d, h, w) for 3-D layers.
"""

from __future__ import annotations

from typing import cast

from torch import Tensor

from micam.methods.base import BaseCAM, LayerContext, spatial_axes


class GradCAM(BaseCAM):
    """Channel weight = global-average-pooled gradient of the target score."""

    uses_gradients = True

    def channel_weights(self, context: LayerContext) -> Tensor:
        gradients = cast(Tensor, context.gradients)  # set for gradient methods
        return gradients.mean(dim=spatial_axes(gradients))
