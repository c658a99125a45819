"""XGrad-CAM (Fu et al., BMVC 2020), the weights that satisfy its sensitivity and conservation axioms.

alpha_k = sum_xy (A_k(x,y) / sum_x'y' A_k(x',y')) * d y^c / d A_k(x,y);  map = Up(ReLU(sum_k alpha_k A_k)).
"""

from __future__ import annotations

from typing import cast

from torch import Tensor

from micam.methods.base import BaseCAM, LayerContext, spatial_axes

# Guards channels whose activations sum to zero (their weight is then 0).
_EPS = 1e-7


class XGradCAM(BaseCAM):
    """Channel weight = activation-weighted sum of the gradient, normalized by the channel's total."""

    uses_gradients = True

    def channel_weights(self, context: LayerContext) -> Tensor:
        activations, gradients = context.activations, cast(Tensor, context.gradients)  # set for gradient methods
        axes = spatial_axes(activations)  # all positions, whatever the dimensionality
        totals = activations.sum(dim=axes, keepdim=True)
        return (gradients * activations / (totals + _EPS)).sum(dim=axes)
