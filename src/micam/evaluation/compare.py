"""Paired comparisons of one method with the others, image by image.

Two methods scored on the same images differ far less than their separate confidence intervals
suggest (an image that is hard for one is hard for both), so "is MI-CAM better than Grad-CAM here?"
is answered by the per-image differences: their mean and the half-width of its 95 % confidence
interval (Student's t: t(0.975, n - 1) std / sqrt(n)). A difference is called significant when that interval
excludes 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from micam.metrics import METRIC_SPECS, half_width, summarize

# metric -> higher is better, for the metrics a paired comparison is made on (their specs say which)
COMPARED_METRICS: dict[str, bool] = {c: spec.higher_is_better for c, spec in METRIC_SPECS.items() if spec.paired}


def paired_differences(
    rows: Iterable[Mapping[str, Any]],
    focus: str,
    metrics: Sequence[str] = tuple(COMPARED_METRICS),
) -> dict[str, dict[str, dict[str, float | int]]]:
    """``{other method: {metric: {"mean", "half_width", "n"}}}`` of focus minus other, over the images
    where both have a finite value. ``rows`` are per-image rows with "image", "method" and the metrics
    (as written to per_image.csv: numbers or their text; empty or NaN values are left out)."""
    values: dict[str, dict[str, dict[str, float]]] = {}  # method -> image -> metric -> value
    for row in rows:
        by_metric = values.setdefault(str(row["method"]), {}).setdefault(str(row["image"]), {})
        for metric in metrics:
            value = _number(row.get(metric))
            if value is not None:
                by_metric[metric] = value
    if focus not in values:
        raise ValueError(f"no rows for {focus!r}; methods present: {sorted(values)}")
    found: dict[str, dict[str, dict[str, float | int]]] = {}
    for other, images in values.items():
        if other == focus:
            continue
        found[other] = {}
        for metric in metrics:
            differences = [
                own[metric] - images[image][metric]
                for image, own in values[focus].items()
                if metric in own and image in images and metric in images[image]
            ]
            found[other][metric] = _mean_and_half_width(differences)
    return found


def verdict(difference: Mapping[str, float | int], higher_is_better: bool) -> str:
    """ "better", "worse" or "no significant difference" for the focus method, from a paired difference."""
    mean, half = float(difference["mean"]), float(difference["half_width"])
    if difference["n"] < 2 or math.isnan(mean) or abs(mean) <= half:
        return "no significant difference"
    return "better" if (mean > 0) == higher_is_better else "worse"


def _mean_and_half_width(differences: Sequence[float]) -> dict[str, float | int]:
    summary = summarize(differences)
    n = int(summary["n"])
    return {"mean": summary["mean"], "half_width": half_width(summary["std"], n), "n": n}


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    number = float(value)
    return None if math.isnan(number) else number
