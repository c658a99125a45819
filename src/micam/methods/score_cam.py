"""Score-CAM (Wang et al., CVPRW 2020).

Each channel, upsampled to the input size and min-max scaled to [0, 1], masks the input:
alpha_k = softmax(f(X * H_k))_c, the target's probability on the masked image
(optionally minus its probability on the baseline X_b = 0, as in the paper's Eq. 5);
map = Up(ReLU(sum_k alpha_k A_k)). Masked images of all the batch's images go through the model
``batch_size`` at a time through one reused buffer. Constant channels are skipped (weight 0), as in
the authors' code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn

from micam.inference import InferenceRunner, inference_runner, preferred_layout
from micam.methods.base import (
    BaseCAM,
    LayerContext,
    MethodOptions,
    SharedSettings,
    min_max_per_map,
    option_attribute,
    upsample,
)
from micam.outputs import as_scores, check_score_kind
from micam.targets import Target, target_scores

_SHAPE_STEP = 64  # chunk sizes on CUDA are multiples of this, so cuDNN tunes few shapes


@dataclass(frozen=True)
class ScoreCAMOptions(MethodOptions):
    """``batch_size`` masked images per forward pass; ``score`` applies to int targets and to callables
    alike (these receive softmax outputs when score="probability"); ``subtract_baseline``: minus the
    target's score on the all-zero image (the paper's Eq. 5)."""

    batch_size: int = 32
    score: Literal["probability", "logit"] = "probability"
    subtract_baseline: bool = False

    def check(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        check_score_kind(self.score)


class ScoreCAM(BaseCAM):
    """Channel weight = the target score of the input masked by that channel."""

    options: ScoreCAMOptions
    batch_size = option_attribute("batch_size")
    score = option_attribute("score")
    subtract_baseline = option_attribute("subtract_baseline")

    def __init__(
        self,
        *args: Any,
        batch_size: int = 32,
        score: Literal["probability", "logit"] = "probability",
        subtract_baseline: bool = False,
        **kwargs: Any,
    ) -> None:
        """Options as ``ScoreCAMOptions``."""
        super().__init__(*args, **kwargs)
        self.options = ScoreCAMOptions(batch_size, score, subtract_baseline)

    @classmethod
    def options_from_settings(cls, settings: SharedSettings) -> dict[str, Any]:
        return {"batch_size": settings.score_cam_batch_size}

    def channel_weights(self, context: LayerContext) -> Tensor:
        inputs, activations = context.inputs, context.activations
        targets = cast(list[Target], context.targets)  # Score-CAM is not class-agnostic: targets are set
        size = tuple(inputs.shape[2:])  # (L), (H, W) or (D, H, W)
        b, k = activations.shape[:2]
        weights = torch.zeros(b, k, dtype=inputs.dtype, device=inputs.device)
        flat = activations.flatten(2)
        active = flat.amax(dim=2) > flat.amin(dim=2)  # upsampling keeps constant maps constant
        # One stream of (image, channel) pairs for the whole batch, so that chunks stay full across images.
        images, channels = active.nonzero(as_tuple=True)
        total = images.numel()
        if total == 0:
            return weights
        fixed_shapes = self._tuned_shapes(inputs)
        rows = self.batch_size if fixed_shapes else min(self.batch_size, total)
        buffer = torch.zeros((rows, *inputs.shape[1:]), dtype=inputs.dtype, device=inputs.device)
        image_list = images.tolist()
        # The checked inference copy (same function, faster); a train-mode call runs the model as it is.
        scorer = inference_runner(self.model) if self.eval_mode else self.model
        for start in range(0, total, rows):
            index, chunk = images[start : start + rows], channels[start : start + rows]
            n = index.numel()
            masks = min_max_per_map(upsample(activations[index, chunk][None], size, "bilinear")[0], len(size))
            torch.index_select(inputs, 0, index, out=buffer[:n]).mul_(masks[:, None])
            # cuDNN autotunes every new batch shape: round a short last chunk up instead of making a new one.
            used = min(rows, -(-n // _SHAPE_STEP) * _SHAPE_STEP) if fixed_shapes else n
            chunk_targets = [targets[i] for i in image_list[start : start + n]]
            chunk_targets += chunk_targets[-1:] * (used - n)
            weights[index, chunk] = self._scores(scorer, buffer[:used], chunk_targets)[:n]
        if self.subtract_baseline:
            weights[images, channels] -= self._scores(scorer, torch.zeros_like(inputs), targets)[images]
        return weights

    @staticmethod
    def _tuned_shapes(inputs: Tensor) -> bool:
        """True where cuDNN autotunes each new input shape (then chunks are padded to few sizes)."""
        return inputs.is_cuda and torch.backends.cudnn.benchmark

    def _scores(self, scorer: nn.Module | InferenceRunner, batch: Tensor, targets: list[Target]) -> Tensor:
        """The target score of each row of ``batch`` (one target per row); probabilities are taken
        over the class axis (dim 1), also for dense (B, C, H, W) outputs."""
        output = self._select_output(scorer(batch if isinstance(scorer, InferenceRunner) else preferred_layout(batch)))
        if self.score == "probability":
            output = as_scores(output, "probability")
        return target_scores(targets, output)
