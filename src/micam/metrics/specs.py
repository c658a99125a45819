"""What the evaluation knows about each metric, said once: its CSV column, its table and column title,
whether higher is better, its decimals, and whether methods are compared on it image by image.

Each tracker (``trackers.py``) declares the specs of the columns it computes; the runner's columns, the
Markdown tables, the paired verdicts and the results page all read them from there.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

# The tables an evaluation's report shows, in order (a spec names its table by key).
TABLE_TITLES = {
    "confidence": "Table 1 — Average Drop / Average Increase (%)",
    "curves": "Table 2 — Deletion / insertion AUC",
    "localization": "Table 3 — Localization",
    "area": "Area-matched Average Drop / Increase (%)",
    "area_curve": "Area-matched Average Drop / Increase by kept area, top p % of pixels (%)",
    "road": "ROAD (noisy linear imputation), mean class score over 10-90 % removed",
    "correlation": "How much each map is the unweighted channel sum (Pearson r, per image)",
    "time": "Time",
}
CONFIDENCE = 0.95  # intervals are mean ± t(0.975, n - 1) * std / sqrt(n)


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
    ranked: bool = True  # the best method is bolded (False: a description, not a score)


# Not computed by a tracker: the time each method took per image, which every run records.
SECONDS = MetricSpec("seconds_per_image", "milliseconds per image ↓", False, 1, "time", 1000.0)


def half_width(std: float, n: int) -> float:
    """Half-width of the 95 % confidence interval of a mean of ``n`` values, Student's t with n - 1
    degrees of freedom (the normal 1.96 is 8 % too narrow at n = 16); NaN for n < 2."""
    if n < 2:
        return math.nan
    return t_quantile(0.5 + CONFIDENCE / 2, n - 1) * std / math.sqrt(n)


@functools.cache
def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (0.5 < p < 1) of Student's t with ``df`` degrees of freedom, by bisection on
    its CDF (exact to ~1e-12; no SciPy needed)."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"need 0.5 < p < 1 and df >= 1, got p={p}, df={df}")
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        middle = (low + high) / 2
        if _t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low <= 1e-13 * high:
            break
    return (low + high) / 2


def _t_cdf(t: float, df: int) -> float:
    """P(T <= t) for t >= 0: 1 - I_x(df/2, 1/2) / 2 with x = df / (df + t^2)."""
    return 1.0 - 0.5 * _regularized_beta(df / (df + t * t), df / 2.0, 0.5)


def _regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), by its continued fraction (modified Lentz), on the side where it converges fast."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _regularized_beta(1.0 - x, b, a)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * fraction
