"""The protocol of stateful metrics: ``update(batch)`` on batch after batch, ``summary`` for the running
means, ``reset``; what a batch holds (``MetricBatch``) and the evaluation settings trackers read
(``MetricOptions``). The trackers themselves are in ``micam.metrics.trackers``.

A tracker keeps its per-image values (so a caller can write them out and a resumed run can ``extend``
a tracker with values read back) and summarizes every quantity as {"mean", "std", "n"}. NaN values (an
EBPG of an all-zero map, an image without boxes) are left out of the mean and counted in "n_undefined".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import Tensor, nn

from micam.inference import InferenceRunner
from micam.metrics.confidence import IncreaseBaseline
from micam.metrics.deletion_insertion import AucX, Baseline, PixelIndexing
from micam.metrics.localization import Boxes
from micam.metrics.scores import ScoreKind
from micam.metrics.specs import MetricSpec
from micam.outputs import OutputSelector


def summarize(values: Sequence[float]) -> dict[str, float | int]:
    """Mean, sample standard deviation and count of the finite values (NaNs counted apart)."""
    finite = [v for v in values if not math.isnan(v)]
    n = len(finite)
    mean = sum(finite) / n if n else float("nan")
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1)) if n > 1 else 0.0 if n == 1 else float("nan")
    summary: dict[str, float | int] = {"mean": mean, "std": std, "n": n}
    if len(values) > n:
        summary["n_undefined"] = len(values) - n
    return summary


@dataclass
class MetricBatch:
    """What a tracker may read of one batch: the images, their maps and explained classes, the model
    (or a runner sharing its checked inference copy) and each image's boxes (empty: none)."""

    images: Tensor
    maps: Tensor
    classes: Sequence[int] | Tensor
    model: nn.Module | InferenceRunner | None = None
    boxes: Sequence[Boxes] | None = None
    channel_sum: Tensor | None = None  # (B, H, W) the unweighted channel-sum maps of the images, if known


@dataclass(frozen=True)
class MetricOptions:
    """The settings of an evaluation that trackers read (each takes what it needs)."""

    threshold: float = 0.5
    pixel_baseline: float | Tensor = 0.0  # AD/AI: the removed pixels' value
    baseline: Baseline | float | Tensor = "zero"  # deletion / insertion
    steps: int = 100
    insertion_order: Literal["standard", "paper"] = "standard"
    score: ScoreKind = "probability"
    batch_size: int = 64
    output_selector: OutputSelector = None
    tolerance: float = 15.0
    auc_x: AucX = "changed"  # deletion / insertion AUC x axis (``deletion_insertion``'s ``auc_x``)
    pixel_indexing: PixelIndexing = "pixels"  # deletion / insertion: whole pixels or the authors' indexing
    increase_baseline: IncreaseBaseline = "empty"  # AI's B: the empty image or the authors' image


class Tracker:
    """Per-image values of some named quantities; subclasses define ``specs`` and ``update``."""

    specs: ClassVar[tuple[MetricSpec, ...]] = ()
    group: ClassVar[str] = ""  # its name in ``micam evaluate --metrics``
    needs_boxes: ClassVar[bool] = False

    @classmethod
    def names_of(cls) -> tuple[str, ...]:
        return tuple(spec.column for spec in cls.specs)

    @property
    def names(self) -> tuple[str, ...]:
        return self.names_of()

    @classmethod
    def from_options(cls, options: MetricOptions) -> Tracker:
        """The tracker an evaluation with ``options`` runs."""
        raise NotImplementedError

    def update(self, batch: MetricBatch) -> dict[str, Tensor]:
        """(B,) values of each of ``names`` for the batch (NaN where undefined), also kept."""
        raise NotImplementedError

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {name: [] for name in self.names}

    def reset(self) -> None:
        """Forget every value seen so far."""
        self.values = {name: [] for name in self.names}

    def extend(self, values: Mapping[str, Iterable[float]]) -> None:
        """Add per-image values computed elsewhere (e.g. read back from a results file)."""
        for name in self.names:
            self.values[name].extend(float(v) for v in values[name])

    def summary(self) -> dict[str, dict[str, float | int]]:
        return {name: summarize(self.values[name]) for name in self.names}

    def _record(self, results: Mapping[str, Tensor]) -> dict[str, Tensor]:
        kept = {name: results[name].detach().double().cpu() for name in self.names}
        self.extend(kept)
        return kept


def model_of(batch: MetricBatch) -> nn.Module | InferenceRunner:
    if batch.model is None:
        raise ValueError("this metric runs the model: pass MetricBatch(model=...)")
    return batch.model
