"""What any engine does with a shard of images: decode them, run the per-batch ``Step`` on the readable
ones, and hand back their rows and the unreadable ones' reasons. The local engine and the Ray workers
call the same functions, so a shard's rows do not depend on where it ran.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset as TorchDataset

from micam import models
from micam.evaluation.datasets import Box, Geometry, Sample, prepare
from micam.evaluation.settings import EvaluationSettings
from micam.evaluation.step import Batch, Step
from micam.evaluation.store import BatchRows, ToDo
from micam.images import read_rgb

Decoded = tuple[Sample, torch.Tensor | None, list[Box], str]  # sample, input (None if unreadable), boxes, reason


class Images(TorchDataset[Decoded]):
    """The samples of a run decoded to model inputs; an unreadable image yields its reason, not an error."""

    def __init__(
        self, samples: Sequence[Sample], loaded: models.LoadedModel, geometry: Geometry, settings: EvaluationSettings
    ) -> None:
        self.samples, self.loaded, self.geometry = list(samples), loaded, geometry
        self.max_pixels, self.background = settings.max_pixels or None, settings.background

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Decoded:
        sample = self.samples[index]
        try:
            image = read_rgb(sample.path, self.max_pixels, self.background)
            tensor, boxes = prepare(image, sample, self.loaded, self.geometry)
        except (OSError, ValueError) as error:
            return sample, None, [], f"{type(error).__name__}: {error}"
        return sample, tensor, boxes, ""


def load_options(settings: EvaluationSettings) -> models.LoadOptions:
    """``models.load``'s options; ``input_scale="raw"`` feeds the model 0-255 pixels (mean 0, std 1/255),
    as the authors' scripts do."""
    options = models.load_options(settings)
    if settings.input_scale == "raw":
        if settings.mean is not None or settings.std is not None:
            raise ValueError("input_scale 'raw' feeds 0-255 pixels: it cannot be combined with --mean / --std")
        options["mean"], options["std"] = [0.0, 0.0, 0.0], [1 / 255] * 3
    return options


def load_model(settings: EvaluationSettings, device: torch.device) -> models.LoadedModel:
    return models.load(settings.model, weights=settings.weights, device=device, **load_options(settings))


@dataclass(frozen=True)
class Job:
    """Everything a worker needs besides its shards: the run's settings, how images are resized, which
    images get the counterfactual analysis, what a resumed run still computes for its finished images
    (``RunStore.missing``)."""

    settings: EvaluationSettings
    geometry: Geometry
    has_boxes: bool
    counterfactual_keys: frozenset[str]
    missing: dict[str, ToDo]


@dataclass
class ShardResult:
    """One shard's rows, its unreadable images (key -> reason), how many images it held, and where and
    how long it ran."""

    rows: BatchRows
    failures: dict[str, str]
    images: int
    worker: str = "local"
    device_name: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage of the step (``Step.stage``)


def readable(decoded: Sequence[Decoded], device: torch.device) -> tuple[Batch | None, dict[str, str]]:
    """The readable images of a decoded shard as a batch on ``device``, and the others' reasons."""
    failures = {sample.key: reason for sample, tensor, _, reason in decoded if tensor is None}
    kept = [(sample, tensor, boxes) for sample, tensor, boxes, _ in decoded if tensor is not None]
    if not kept:
        return None, failures
    batch = Batch(
        samples=[sample for sample, _, _ in kept],
        images=torch.stack([tensor for _, tensor, _ in kept]).to(device),
        boxes=[boxes for _, _, boxes in kept],
    )
    return batch, failures


def by_work_to_do(batch: Batch, missing: dict[str, ToDo], methods: Sequence[str]) -> list[tuple[ToDo, Batch]]:
    """The batch split by what its images still need: every method, or for an image a resumed run had
    finished, the methods it gained and the gained metric columns (``RunStore.missing``); in the
    batch's order."""
    groups: dict[ToDo, list[int]] = {}
    everything = ToDo(tuple(methods), ())
    for index, sample in enumerate(batch.samples):
        groups.setdefault(missing.get(sample.key, everything), []).append(index)
    if len(groups) == 1:
        return [(next(iter(groups)), batch)]
    return [
        (todo, Batch([batch.samples[i] for i in index], batch.images[index], [batch.boxes[i] for i in index]))
        for todo, index in groups.items()
    ]


def compute(step: Step, batch: Batch, job: Job) -> BatchRows:
    """Every row a batch adds to the run: all methods for new images, the gained ones for finished images."""
    rows = BatchRows()
    keys = set(job.counterfactual_keys)
    for work, part in by_work_to_do(batch, job.missing, job.settings.methods):
        found = []
        if work.methods:
            found.append(step(part, keys, work.methods))
        if work.gained:
            found.append(step(part, keys, work.gained, step.groups_of(work.columns)))
        for more in found:
            rows.per_image += more.per_image
            rows.gained += more.gained
            rows.counterfactual += more.counterfactual
            rows.curves += more.curves
    return rows


def run_shard(step: Step, decoded: Sequence[Decoded], job: Job, warm: bool) -> ShardResult:
    """A decoded shard through the step (after an untimed warm-up call unless ``warm``)."""
    tick = time.perf_counter()
    batch, failures = readable(decoded, step.device)
    rows = BatchRows()
    step.stage_seconds.clear()  # this shard's profile only
    if batch is not None:
        if not warm:
            step.warm_up(batch.images)
        rows = compute(step, batch, job)
    stages = dict(step.stage_seconds)
    return ShardResult(rows, failures, len(decoded), seconds=time.perf_counter() - tick, stages=stages)
