"""Score-CAM (Wang et al., CVPRW 2020).

Each channel, upsampled to the input size and min-max scaled to [0, 1], masks the input:
alpha_k = softmax(f(X * H_k))_c, the target's probability on the masked image
(optionally minus its probability on the baseline X_b = 0, as in the paper's Eq. 5);
map = Up(ReLU(sum_k alpha_k A_k)). Masked images go through the model ``batch_size`` at a time
through one reused buffer. Constant channels are skipped (weight 0), as in the authors' code.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from micam.methods.base import BaseCAM, LayerContext, min_max_per_map, upsample
from micam.targets import target_scores


class ScoreCAM(BaseCAM):
    """Channel weight = the target score of the input masked by that channel."""

    def __init__(  # type: ignore[no-untyped-def]
        self,
        *args,
        batch_size: int = 32,
        score: Literal["probability", "logit"] = "probability",
        subtract_baseline: bool = False,
        **kwargs,
    ) -> None:
        """``batch_size`` masked images per forward pass; ``score`` applies to int targets and to
        callables alike (these receive softmax outputs when score="probability")."""
        super().__init__(*args, **kwargs)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if score not in ("probability", "logit"):
            raise ValueError(f"score must be 'probability' or 'logit', got {score!r}")
        self.batch_size, self.score, self.subtract_baseline = batch_size, score, subtract_baseline

    def channel_weights(self, context: LayerContext) -> Tensor:
        inputs, activations = context.inputs, context.activations
        size = tuple(inputs.shape[-2:])
        b, k = activations.shape[:2]
        weights = torch.zeros(b, k, dtype=inputs.dtype, device=inputs.device)
        buffer = torch.empty((min(self.batch_size, k), *inputs.shape[1:]), dtype=inputs.dtype, device=inputs.device)
        flat = activations.flatten(2)
        active = flat.amax(dim=2) > flat.amin(dim=2)  # upsampling keeps constant maps constant
        for i in range(b):
            channels = active[i].nonzero().squeeze(1)
            for start in range(0, channels.numel(), self.batch_size):
                chunk = channels[start : start + self.batch_size]
                masks = min_max_per_map(upsample(activations[i, chunk][None], size, "bilinear")[0])
                batch = buffer[: chunk.numel()]
                torch.mul(inputs[i : i + 1], masks[:, None], out=batch)
                weights[i, chunk] = self._scores(batch, context.targets[i])  # type: ignore[index]
            if self.subtract_baseline:
                weights[i, channels] -= self._scores(torch.zeros_like(inputs[i : i + 1]), context.targets[i])  # type: ignore[index]
        return weights

    def _scores(self, batch: Tensor, target) -> Tensor:  # type: ignore[no-untyped-def]
        output = self._select_output(self.model(batch))
        if self.score == "probability":
            output = torch.softmax(output, dim=-1)
        return target_scores([target] * batch.shape[0], output)
