"""Area-matched Average Drop / Average Increase: the paper's AD / AI (``confidence.py``) with every
method keeping the same share of pixels, so that a map covering more area is not rewarded for it.

For each p in ``percentages``, the top k_p = round(p % of H x W) pixels by the map are kept (ties broken
in raster order, as in deletion / insertion) and the others set to ``baseline``; with O_p that image's
score, Y the full image's and B the all-baseline image's,
  AD_p = 100 * max(0, Y - O_p) / Y;   AI_p = 100 * max(0, O_p - B) / O_p
(the definitions of ``paper_drop_increase``, with "map >= threshold" replaced by "top p %"). The per-p
values give one AD-vs-p curve per method; their mean over p is the summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor, nn

from micam.inference import InferenceRunner, inference_runner
from micam.metrics.confidence import score_ratio
from micam.metrics.deletion_insertion import _curve, _ranks, make_baseline
from micam.metrics.road import removal_counts
from micam.metrics.scores import ScoreKind, check_maps, class_scores
from micam.outputs import OutputSelector

AREA_PERCENTAGES = (5, 10, 20, 30, 40, 50)  # kept pixels, percent


def area_matched_drop_increase(
    model: nn.Module | InferenceRunner,
    images: Tensor,
    maps: Tensor,
    classes: Sequence[int] | Tensor,
    percentages: Sequence[float] = AREA_PERCENTAGES,
    baseline: float | Tensor = 0.0,
    score: ScoreKind = "probability",
    batch_size: int = 64,
    output_selector: OutputSelector = None,
) -> dict[str, Tensor]:
    """Per-image AD and AI in percent when the top ``percentages`` % pixels are kept: ``drop_curve``
    and ``increase_curve`` (B, P), their means over P ``average_drop`` / ``average_increase`` (B,), and
    the scores behind them. ``baseline`` as in ``paper_drop_increase``."""
    check_maps(images, maps)
    pixels = images.shape[-2] * images.shape[-1]
    kept = removal_counts(percentages, pixels, allow_all=True)
    counts = torch.tensor([0, *kept, pixels], device=images.device)  # all baseline, each p, the full image
    classes = torch.as_tensor(classes, device=images.device).long().reshape(-1)
    base = make_baseline(images, baseline)
    scorer = partial(
        class_scores, inference_runner(model), score=score, batch_size=batch_size, output_selector=output_selector
    )
    scores = _curve(scorer, base, images, _ranks(maps, descending=True), counts, classes, batch_size)
    empty, focused, full = scores[:, :1], scores[:, 1:-1], scores[:, -1:]
    drop = score_ratio(full - focused, full)  # the same ratios as paper_drop_increase, NaN included
    increase = score_ratio(focused - empty, focused)
    return {
        "drop_curve": drop,
        "increase_curve": increase,
        "average_drop": drop.mean(dim=1),
        "average_increase": increase.mean(dim=1),
        "score_full": full[:, 0],
        "score_kept": focused,
        "score_baseline": empty[:, 0],
    }
