"""Grad-CAM++ (Chattopadhay et al., WACV 2018), closed form for an exponential score (their Eq. 19).

a_k(x,y) = g^2 / (2 g^2 + sum_ab A_k(a,b) g^3) with g = d y^c / d A_k(x,y) (0 where g = 0);
alpha_k = sum_xy a_k(x,y) ReLU(g);  map = Up(ReLU(sum_k alpha_k A_k)).
"""

from __future__ import annotations

import torch
from torch import Tensor

from micam.methods.base import BaseCAM, LayerContext


class GradCAMPlusPlus(BaseCAM):
    """Channel weight = positive gradients, each scaled by its pixel-wise Grad-CAM++ coefficient."""

    uses_gradients = True

    def __init__(self, *args, eps: float = 1e-6, **kwargs) -> None:  # type: ignore[no-untyped-def]
        """``eps`` stabilizes the coefficient's denominator (1e-6, as pytorch-grad-cam)."""
        super().__init__(*args, **kwargs)
        self.eps = eps

    def channel_weights(self, context: LayerContext) -> Tensor:
        grads, activations = context.gradients, context.activations
        grads_2 = grads.pow(2)  # type: ignore[union-attr]
        grads_3 = grads_2 * grads
        totals = activations.sum(dim=(2, 3), keepdim=True)
        coefficient = grads_2 / (2 * grads_2 + totals * grads_3 + self.eps)
        coefficient = torch.where(grads != 0, coefficient, torch.zeros_like(coefficient))
        return (coefficient * grads.clamp(min=0)).sum(dim=(2, 3))  # type: ignore[union-attr]
