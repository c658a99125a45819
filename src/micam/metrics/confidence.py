"""Average Drop / Average Increase, as the MI-CAM paper defines them (Sec. 4.3) and in the classic form.

Paper (hard threshold t = 0.5 on the [0, 1] map, ``baseline`` = 0 by default):
  Y = score(X);  O = score(X with pixels whose map value is below t set to the baseline);
  B = score(all-baseline image);
  AD = 100 * max(0, Y - O) / Y;   AI = 100 * max(0, O - B) / O      (per image; the tables average them)
Classic (Chattopadhay et al., Grad-CAM++): O' = score(X * map);
  drop = 100 * max(0, Y - O') / Y;  increase = 1 if O' > Y else 0 (the share of images whose score rises).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from micam.inference import InferenceRunner, inference_runner
from micam.metrics.scores import ScoreKind, check_maps, class_scores
from micam.outputs import OutputSelector

IncreaseBaseline = Literal["empty", "authors"]
INCREASE_BASELINES: tuple[str, ...] = get_args(IncreaseBaseline)


def score_ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """100 * max(0, numerator) / denominator where the denominator is a positive score, else NaN: with
    ``score="logit"`` a score can be zero or negative and the ratio means nothing (such images are left
    out of the means and counted as undefined)."""
    ratio = 100 * numerator.clamp(min=0) / denominator
    return torch.where(denominator > 0, ratio, torch.full_like(ratio, float("nan")))


def paper_drop_increase(
    model: nn.Module | InferenceRunner,
    images: Tensor,
    maps: Tensor,
    classes: Sequence[int] | Tensor,
    threshold: float = 0.5,
    baseline: float | Tensor = 0.0,
    score: ScoreKind = "probability",
    batch_size: int = 64,
    output_selector: OutputSelector = None,
    increase_baseline: IncreaseBaseline = "empty",
) -> dict[str, Tensor]:
    """Per-image AD and AI in percent (the paper's hard-threshold form) and the scores behind them.

    ``baseline`` is the value of the removed pixels in the model's (normalized) input: a number or a
    tensor broadcastable to the images. The default 0 is the dataset's mean colour for normalized
    inputs, not black; ``micam evaluate`` removes pixels to black, the authors' raw-pixel convention:
    pass ``micam.evaluation.datasets.black_pixel(loaded)`` (= -mean / std per channel, (1, 3, 1, 1)) for
    the same. AD and AI are ratios of class scores: with ``score="logit"`` an image whose denominator
    (Y for AD, O for AI) is not positive gets NaN, never a negative or infinite percentage.
    ``output_selector`` as in the methods. ``increase_baseline``: the B of AI, the score of the
    baseline image ("empty", the paper's text) or, as the authors' ``Drop_Increase.py`` computes it,
    of the image with every pixel whose normalized map is above 0 removed ("authors").
    """
    check_maps(images, maps)
    model = inference_runner(model)  # one checked copy for the three passes
    keep = (maps >= threshold)[:, None]
    empty_images = torch.as_tensor(baseline, dtype=images.dtype, device=images.device).expand_as(images)
    masked = torch.where(keep, images, empty_images)
    full = class_scores(model, images, classes, score, batch_size, output_selector)
    focused = class_scores(model, masked, classes, score, batch_size, output_selector)
    if increase_baseline not in INCREASE_BASELINES:
        raise ValueError(f"increase_baseline must be one of {INCREASE_BASELINES}, got {increase_baseline!r}")
    if increase_baseline == "authors":
        empty_images = torch.where((maps > 0)[:, None], empty_images, images)
    empty = class_scores(model, empty_images, classes, score, batch_size, output_selector)
    return {
        "average_drop": score_ratio(full - focused, full),
        "average_increase": score_ratio(focused - empty, focused),
        "score_full": full,
        "score_focused": focused,
        "score_baseline": empty,
    }


def classic_drop_increase(
    model: nn.Module | InferenceRunner,
    images: Tensor,
    maps: Tensor,
    classes: Sequence[int] | Tensor,
    score: ScoreKind = "probability",
    batch_size: int = 64,
    output_selector: OutputSelector = None,
) -> dict[str, Tensor]:
    """Per-image Grad-CAM++ drop (percent; NaN where the full score is not positive, as in
    ``paper_drop_increase``) and increase (0/1) with the soft mask X * map (it multiplies the normalized
    input, so it fades pixels towards the mean colour, as Grad-CAM++'s own evaluation does)."""
    check_maps(images, maps)
    model = inference_runner(model)
    full = class_scores(model, images, classes, score, batch_size, output_selector)
    explained = class_scores(model, images * maps[:, None], classes, score, batch_size, output_selector)
    return {
        "average_drop": score_ratio(full - explained, full),
        "increase_in_confidence": (explained > full).to(full.dtype),
        "score_full": full,
        "score_explained": explained,
    }
