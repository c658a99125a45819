"""Stateful metrics: ``update(batch)`` on batch after batch, ``summary`` for the running means, ``reset``.

Each tracker wraps one of the functional metrics of this package, declares the specs of the columns it
computes (``micam.metrics.specs``: title, direction, decimals, table), keeps its per-image values (so a
caller can write them out and a resumed run can ``extend`` a tracker with values read back), and
summarizes every quantity as {"mean", "std", "n"}. NaN values (an EBPG of an all-zero map, an image
without boxes) are left out of the mean and counted in "n_undefined". Every tracker takes the same
``MetricBatch``; ``TRACKERS`` lists them in table order, and a new metric is one more class here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from micam.inference import InferenceRunner
from micam.metrics.confidence import classic_drop_increase, paper_drop_increase
from micam.metrics.deletion_insertion import Baseline, deletion_insertion
from micam.metrics.localization import Boxes, energy_pointing_game, pointing_game
from micam.metrics.scores import ScoreKind
from micam.metrics.specs import SECONDS, MetricSpec
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


class DropIncrease(Tracker):
    """The paper's Average Drop / Average Increase (percent; lower AD and higher AI are better)."""

    specs = (
        MetricSpec("average_drop", "AD ↓", False, 2, "confidence", short="AD", paired=True),
        MetricSpec("average_increase", "AI ↑", True, 2, "confidence", short="AI", paired=True),
    )
    group = "drop-increase"

    def __init__(
        self,
        threshold: float = 0.5,
        baseline: float | Tensor = 0.0,
        score: ScoreKind = "probability",
        batch_size: int = 64,
        output_selector: OutputSelector = None,
    ) -> None:
        super().__init__()
        self.threshold, self.baseline, self.score, self.batch_size = threshold, baseline, score, batch_size
        self.output_selector = output_selector

    @classmethod
    def from_options(cls, options: MetricOptions) -> DropIncrease:
        o = options
        return cls(o.threshold, o.pixel_baseline, o.score, o.batch_size, o.output_selector)

    def update(self, batch: MetricBatch) -> dict[str, Tensor]:
        result = paper_drop_increase(
            _model(batch),
            batch.images,
            batch.maps,
            batch.classes,
            self.threshold,
            self.baseline,
            self.score,
            self.batch_size,
            self.output_selector,
        )
        return self._record(result)


class ClassicDropIncrease(Tracker):
    """Grad-CAM++'s drop (input x map, percent) and increase in confidence (share of images, 0/1)."""

    specs = (
        MetricSpec("classic_average_drop", "drop, X·map ↓", False, 2, "confidence"),
        MetricSpec("increase_in_confidence", "increase in confidence ↑", True, 2, "confidence", scale=100.0),
    )
    group = "classic"

    def __init__(
        self, score: ScoreKind = "probability", batch_size: int = 64, output_selector: OutputSelector = None
    ) -> None:
        super().__init__()
        self.score, self.batch_size, self.output_selector = score, batch_size, output_selector

    @classmethod
    def from_options(cls, options: MetricOptions) -> ClassicDropIncrease:
        return cls(options.score, options.batch_size, options.output_selector)

    def update(self, batch: MetricBatch) -> dict[str, Tensor]:
        result = classic_drop_increase(
            _model(batch), batch.images, batch.maps, batch.classes, self.score, self.batch_size, self.output_selector
        )
        return self._record(
            {"classic_average_drop": result["average_drop"], "increase_in_confidence": result["increase_in_confidence"]}
        )


class DeletionInsertion(Tracker):
    """Deletion AUC (lower is better) and insertion AUC (higher is better); curves are kept too."""

    specs = (
        MetricSpec("deletion_auc", "deletion ↓", False, 3, "curves", short="deletion", paired=True),
        MetricSpec("insertion_auc", "insertion ↑", True, 3, "curves", short="insertion", paired=True),
    )
    group = "deletion-insertion"

    def __init__(
        self,
        steps: int = 100,
        baseline: Baseline | float | Tensor = "zero",
        insertion_order: Literal["standard", "paper"] = "standard",
        score: ScoreKind = "probability",
        batch_size: int = 128,
        output_selector: OutputSelector = None,
    ) -> None:
        super().__init__()
        self.steps, self.baseline, self.insertion_order = steps, baseline, insertion_order
        self.score, self.batch_size, self.output_selector = score, batch_size, output_selector
        self.curves: dict[str, list[Tensor]] = {"deletion": [], "insertion": []}

    def reset(self) -> None:
        super().reset()
        self.curves = {"deletion": [], "insertion": []}

    @classmethod
    def from_options(cls, options: MetricOptions) -> DeletionInsertion:
        o = options
        return cls(o.steps, o.baseline, o.insertion_order, o.score, o.batch_size, o.output_selector)

    def update(self, batch: MetricBatch) -> dict[str, Tensor]:
        result = deletion_insertion(
            _model(batch),
            batch.images,
            batch.maps,
            batch.classes,
            self.steps,
            self.baseline,
            self.insertion_order,
            self.score,
            self.batch_size,
            self.output_selector,
        )
        self.curves["deletion"].append(result["deletion_curve"].cpu())
        self.curves["insertion"].append(result["insertion_curve"].cpu())
        return self._record(result)

    def mean_curves(self) -> dict[str, Tensor]:
        """Average deletion and insertion curves over every image seen (for plots)."""
        return {kind: torch.cat(parts).mean(dim=0) for kind, parts in self.curves.items() if parts}


class Localization(Tracker):
    """Pointing game at ``tolerance`` pixels (and at 0, the paper's strict form) and EBPG in percent."""

    specs = (
        MetricSpec("pointing_game", "pointing game ↑", True, 3, "localization", short="pointing game", paired=True),
        MetricSpec("pointing_game_strict", "pointing game, 0 px ↑", True, 3, "localization"),
        MetricSpec("ebpg", "EBPG % ↑", True, 2, "localization", short="EBPG", paired=True),
    )
    group = "localization"
    needs_boxes = True

    def __init__(self, tolerance: float = 15.0) -> None:
        super().__init__()
        self.tolerance = tolerance

    @classmethod
    def from_options(cls, options: MetricOptions) -> Localization:
        return cls(options.tolerance)

    def update(self, batch: MetricBatch) -> dict[str, Tensor]:
        """Scores of the images with boxes; NaN (undefined, never a miss) for those without."""
        boxes = list(batch.boxes) if batch.boxes is not None else []
        if len(boxes) != batch.maps.shape[0]:
            raise ValueError(f"{len(boxes)} box lists for {batch.maps.shape[0]} maps; pass one list per map")
        index = [i for i, image_boxes in enumerate(boxes) if len(image_boxes)]
        values = {name: torch.full((len(boxes),), math.nan, dtype=torch.float64) for name in self.names}
        if index:
            maps, chosen = batch.maps[index], [boxes[i] for i in index]
            found = {
                "pointing_game": pointing_game(maps, chosen, self.tolerance),
                "pointing_game_strict": pointing_game(maps, chosen, 0.0),
                "ebpg": 100 * energy_pointing_game(maps, chosen),
            }
            for name, column in values.items():
                column[index] = found[name].detach().double().cpu()
        return self._record(values)


def _model(batch: MetricBatch) -> nn.Module | InferenceRunner:
    if batch.model is None:
        raise ValueError("this metric runs the model: pass MetricBatch(model=...)")
    return batch.model


TRACKERS: tuple[type[Tracker], ...] = (DropIncrease, ClassicDropIncrease, DeletionInsertion, Localization)
# Every column an evaluation can report, in table order (the trackers' and the time per image).
METRIC_SPECS: dict[str, MetricSpec] = {spec.column: spec for t in TRACKERS for spec in t.specs} | {
    SECONDS.column: SECONDS
}
