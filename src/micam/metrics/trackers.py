"""Stateful metrics: ``update`` on batch after batch, ``summary`` for the running means, ``reset``.

Each tracker wraps one of the functional metrics of this package, keeps its per-image values (so a
caller can write them out and a resumed run can ``extend`` a tracker with values read back), and
summarizes every quantity as {"mean", "std", "n"}. NaN values (an EBPG of an all-zero map) are
left out of the mean and counted in "n_undefined".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from micam.metrics.confidence import classic_drop_increase, paper_drop_increase
from micam.metrics.deletion_insertion import Baseline, deletion_insertion
from micam.metrics.localization import Boxes, energy_pointing_game, pointing_game
from micam.metrics.scores import ScoreKind
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


class Tracker:
    """Per-image values of some named quantities; subclasses define ``names`` and ``update``."""

    names: tuple[str, ...] = ()

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

    names = ("average_drop", "average_increase")

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

    def update(self, model: nn.Module, images: Tensor, maps: Tensor, classes: Sequence[int] | Tensor) -> dict:
        result = paper_drop_increase(
            model,
            images,
            maps,
            classes,
            self.threshold,
            self.baseline,
            self.score,
            self.batch_size,
            self.output_selector,
        )
        return self._record(result)


class ClassicDropIncrease(Tracker):
    """Grad-CAM++'s drop (input x map, percent) and increase in confidence (share of images, 0/1)."""

    names = ("classic_average_drop", "increase_in_confidence")

    def __init__(
        self, score: ScoreKind = "probability", batch_size: int = 64, output_selector: OutputSelector = None
    ) -> None:
        super().__init__()
        self.score, self.batch_size, self.output_selector = score, batch_size, output_selector

    def update(self, model: nn.Module, images: Tensor, maps: Tensor, classes: Sequence[int] | Tensor) -> dict:
        result = classic_drop_increase(model, images, maps, classes, self.score, self.batch_size, self.output_selector)
        return self._record(
            {"classic_average_drop": result["average_drop"], "increase_in_confidence": result["increase_in_confidence"]}
        )


class DeletionInsertion(Tracker):
    """Deletion AUC (lower is better) and insertion AUC (higher is better); curves are kept too."""

    names = ("deletion_auc", "insertion_auc")

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

    def update(self, model: nn.Module, images: Tensor, maps: Tensor, classes: Sequence[int] | Tensor) -> dict:
        result = deletion_insertion(
            model,
            images,
            maps,
            classes,
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

    names = ("pointing_game", "pointing_game_strict", "ebpg")

    def __init__(self, tolerance: float = 15.0) -> None:
        super().__init__()
        self.tolerance = tolerance

    def update(self, maps: Tensor, boxes: Sequence[Boxes]) -> dict:
        return self._record(
            {
                "pointing_game": pointing_game(maps, boxes, self.tolerance),
                "pointing_game_strict": pointing_game(maps, boxes, 0.0),
                "ebpg": 100 * energy_pointing_game(maps, boxes),
            }
        )
