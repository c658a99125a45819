"""The stateful metrics (``micam.metrics.tracking`` has their protocol): each wraps one functional
metric of this package and declares the specs of the columns it computes (``micam.metrics.specs``:
title, direction, decimals, table). Every tracker takes the same ``MetricBatch``; ``TRACKERS`` lists
them in table order, and a new metric is one more class here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from torch import Tensor

from micam.metrics.area_matched import AREA_PERCENTAGES, area_matched_drop_increase
from micam.metrics.confidence import IncreaseBaseline, classic_drop_increase, paper_drop_increase
from micam.metrics.deletion_insertion import AucX, Baseline, PixelIndexing, deletion_insertion
from micam.metrics.localization import energy_pointing_game, pointing_game
from micam.metrics.road import ROAD_PERCENTAGES, road
from micam.metrics.scores import ScoreKind
from micam.metrics.similarity import pearson
from micam.metrics.specs import SECONDS, MetricSpec
from micam.metrics.tracking import MetricBatch, MetricOptions, Tracker, model_of, summarize
from micam.outputs import OutputSelector

__all__ = [
    "METRIC_SPECS",
    "ROAD",
    "TRACKERS",
    "AreaMatchedDropIncrease",
    "ChannelSumCorrelation",
    "ClassicDropIncrease",
    "DeletionInsertion",
    "DropIncrease",
    "Localization",
    "MetricBatch",
    "MetricOptions",
    "Tracker",
    "summarize",
]


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
        increase_baseline: IncreaseBaseline = "empty",
    ) -> None:
        super().__init__()
        self.threshold, self.baseline, self.score, self.batch_size = threshold, baseline, score, batch_size
        self.output_selector, self.increase_baseline = output_selector, increase_baseline

    @classmethod
    def from_options(cls, options: MetricOptions) -> DropIncrease:
        o = options
        return cls(o.threshold, o.pixel_baseline, o.score, o.batch_size, o.output_selector, o.increase_baseline)

    def update(self, batch: MetricBatch) -> dict[str, Tensor]:
        result = paper_drop_increase(
            model_of(batch),
            batch.images,
            batch.maps,
            batch.classes,
            self.threshold,
            self.baseline,
            self.score,
            self.batch_size,
            self.output_selector,
            self.increase_baseline,
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
            model_of(batch), batch.images, batch.maps, batch.classes, self.score, self.batch_size, self.output_selector
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
        auc_x: AucX = "changed",
        indexing: PixelIndexing = "pixels",
    ) -> None:
        super().__init__()
        self.steps, self.baseline, self.insertion_order = steps, baseline, insertion_order
        self.score, self.batch_size, self.output_selector = score, batch_size, output_selector
        self.auc_x, self.indexing = auc_x, indexing
        self.curves: dict[str, list[Tensor]] = {"deletion": [], "insertion": []}

    def reset(self) -> None:
        super().reset()
        self.curves = {"deletion": [], "insertion": []}

    @classmethod
    def from_options(cls, options: MetricOptions) -> DeletionInsertion:
        o = options
        return cls(
            o.steps, o.baseline, o.insertion_order, o.score, o.batch_size, o.output_selector, o.auc_x, o.pixel_indexing
        )

    def update(self, batch: MetricBatch) -> dict[str, Tensor]:
        result = deletion_insertion(
            model_of(batch),
            batch.images,
            batch.maps,
            batch.classes,
            self.steps,
            self.baseline,
            self.insertion_order,
            self.score,
            self.batch_size,
            self.output_selector,
            self.auc_x,
            self.indexing,
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


class AreaMatchedDropIncrease(Tracker):
    """AD / AI (percent) with every method keeping the same top p % of pixels, p in
    ``AREA_PERCENTAGES``: one column per p (the AD-vs-p curve) and their means, the headline."""

    percentages: ClassVar[tuple[int, ...]] = AREA_PERCENTAGES
    specs = (
        MetricSpec("area_matched_drop", "AD, mean over p ↓", False, 2, "area", short="area-matched AD", paired=True),
        MetricSpec("area_matched_increase", "AI, mean over p ↑", True, 2, "area", short="area-matched AI", paired=True),
        *(MetricSpec(f"area_matched_drop_p{p}", f"AD, top {p} % ↓", False, 2, "area_curve") for p in percentages),
        *(MetricSpec(f"area_matched_increase_p{p}", f"AI, top {p} % ↑", True, 2, "area_curve") for p in percentages),
    )
    group = "area-matched"

    def __init__(
        self,
        baseline: float | Tensor = 0.0,
        score: ScoreKind = "probability",
        batch_size: int = 64,
        output_selector: OutputSelector = None,
    ) -> None:
        super().__init__()
        self.baseline, self.score, self.batch_size, self.output_selector = baseline, score, batch_size, output_selector

    @classmethod
    def from_options(cls, options: MetricOptions) -> AreaMatchedDropIncrease:
        return cls(options.pixel_baseline, options.score, options.batch_size, options.output_selector)

    def update(self, batch: MetricBatch) -> dict[str, Tensor]:
        result = area_matched_drop_increase(
            model_of(batch),
            batch.images,
            batch.maps,
            batch.classes,
            self.percentages,
            self.baseline,
            self.score,
            self.batch_size,
            self.output_selector,
        )
        values = {"area_matched_drop": result["average_drop"], "area_matched_increase": result["average_increase"]}
        for i, p in enumerate(self.percentages):
            values[f"area_matched_drop_p{p}"] = result["drop_curve"][:, i]
            values[f"area_matched_increase_p{p}"] = result["increase_curve"][:, i]
        return self._record(values)


class ROAD(Tracker):
    """ROAD's mean class score over ``ROAD_PERCENTAGES`` removed by noisy linear imputation, most
    relevant first (lower is better) and least relevant first (higher is better); curves are kept too."""

    specs = (
        MetricSpec("road_morf", "MoRF ↓", False, 3, "road", short="ROAD MoRF", paired=True),
        MetricSpec("road_lerf", "LeRF ↑", True, 3, "road", short="ROAD LeRF", paired=True),
        MetricSpec("road_combined", "(LeRF − MoRF) / 2 ↑", True, 3, "road"),
    )
    group = "road"

    def __init__(
        self,
        percentages: Sequence[float] = ROAD_PERCENTAGES,
        noise: float = 0.01,
        seed: int = 0,
        score: ScoreKind = "probability",
        batch_size: int = 64,
        output_selector: OutputSelector = None,
    ) -> None:
        super().__init__()
        self.percentages, self.noise, self.seed = tuple(percentages), noise, seed
        self.score, self.batch_size, self.output_selector = score, batch_size, output_selector
        self.curves: dict[str, list[Tensor]] = {"morf": [], "lerf": []}

    def reset(self) -> None:
        super().reset()
        self.curves = {"morf": [], "lerf": []}

    @classmethod
    def from_options(cls, options: MetricOptions) -> ROAD:
        return cls(score=options.score, batch_size=options.batch_size, output_selector=options.output_selector)

    def update(self, batch: MetricBatch) -> dict[str, Tensor]:
        result = road(
            model_of(batch),
            batch.images,
            batch.maps,
            batch.classes,
            self.percentages,
            self.noise,
            self.seed,
            self.score,
            self.batch_size,
            self.output_selector,
        )
        self.curves["morf"].append(result["morf_curve"].cpu())
        self.curves["lerf"].append(result["lerf_curve"].cpu())
        return self._record(
            {"road_morf": result["morf"], "road_lerf": result["lerf"], "road_combined": result["combined"]}
        )

    def mean_curves(self) -> dict[str, Tensor]:
        """Average MoRF and LeRF curves over every image seen (for plots)."""
        return {kind: torch.cat(parts).mean(dim=0) for kind, parts in self.curves.items() if parts}


class ChannelSumCorrelation(Tracker):
    """Pearson r of each map with the unweighted channel sum of the same image (``micam.ChannelSum``):
    near 1, a method's map is the channel sum whatever its weights say. NaN without that map."""

    specs = (MetricSpec("channel_sum_correlation", "r with channel sum", True, 3, "correlation", ranked=False),)
    group = "channel-sum-correlation"

    @classmethod
    def from_options(cls, options: MetricOptions) -> ChannelSumCorrelation:
        return cls()

    def update(self, batch: MetricBatch) -> dict[str, Tensor]:
        if batch.channel_sum is None:
            values = torch.full((batch.maps.shape[0],), float("nan"), dtype=torch.float64)
        else:
            values = pearson(batch.maps.flatten(1), batch.channel_sum.to(batch.maps).flatten(1))
        return self._record({"channel_sum_correlation": values})


TRACKERS: tuple[type[Tracker], ...] = (
    DropIncrease,
    ClassicDropIncrease,
    DeletionInsertion,
    Localization,
    AreaMatchedDropIncrease,
    ROAD,
    ChannelSumCorrelation,
)
# Every column an evaluation can report, in table order (the trackers' and the time per image).
METRIC_SPECS: dict[str, MetricSpec] = {spec.column: spec for t in TRACKERS for spec in t.specs} | {
    SECONDS.column: SECONDS
}
