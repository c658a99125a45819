"""What the evaluation knows about each metric, said once: its CSV column, its table and column title,
whether higher is better, its decimals, and whether methods are compared on it image by image.

Each tracker (``trackers.py``) declares the specs of the columns it computes; the runner's columns, the
Markdown tables, the paired verdicts and the results page all read them from there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The tables an evaluation's report shows, in order (a spec names its table by key).
TABLE_TITLES = {
    "confidence": "Table 1 — Average Drop / Average Increase (%)",
    "curves": "Table 2 — Deletion / insertion AUC",
    "localization": "Table 3 — Localization",
    "time": "Time",
}
CONFIDENCE = 1.96  # the normal 95 % quantile: intervals are mean ± CONFIDENCE * std / sqrt(n)


@dataclass(frozen=True)
class MetricSpec:
    column: str  # per_image.csv column and results.json key
    title: str  # column title in the report's tables, arrow included
    higher_is_better: bool
    decimals: int  # places shown in every table
    table: str  # key of TABLE_TITLES
    scale: float = 1.0  # shown as value * scale (seconds as milliseconds, shares as percent)
    short: str = ""  # its name in sentences of the results page
    paired: bool = False  # methods are compared on it image by image (results.json "paired")


# Not computed by a tracker: the time each method took per image, which every run records.
SECONDS = MetricSpec("seconds_per_image", "milliseconds per image ↓", False, 1, "time", 1000.0)


def half_width(std: float, n: int) -> float:
    """Half-width of the 95 % normal confidence interval of a mean of ``n`` values (NaN for n < 2)."""
    return CONFIDENCE * std / math.sqrt(n) if n > 1 else math.nan
