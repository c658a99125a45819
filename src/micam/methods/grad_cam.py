"""Grad-CAM (Selvaraju et al., ICCV 2017).

alpha_k = mean over positions of d y^c / d A_k;  map = Up(ReLU(sum_k alpha_k A_k)).
"""

from __future__ import annotations

from torch import Tensor

from micam.methods.base import BaseCAM, LayerContext


class GradCAM(BaseCAM):
    """Channel weight = global-average-pooled gradient of the target score."""

    uses_gradients = True

    def channel_weights(self, context: LayerContext) -> Tensor:
        return context.gradients.mean(dim=(2, 3))  # type: ignore[union-attr]
