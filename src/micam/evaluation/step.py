"""One batch of an evaluation, computed: (model, images, targets, boxes, settings) -> rows.

No files and no globals: ``Step`` holds the explainers and metric trackers a run's settings call for,
and ``Step(batch)`` returns the batch's per-image, counterfactual and curve rows (``BatchRows``) for the
run store to keep. The sanity check's rows come from ``Step.sanity_rows``. A distributed engine runs
the same step on its workers.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor

from micam import models
from micam.evaluation.datasets import Box, Sample, black_pixel
from micam.evaluation.files import CHANGE_METRICS, SIMILARITIES
from micam.evaluation.references import REFERENCES
from micam.evaluation.settings import EvaluationSettings
from micam.evaluation.store import BatchRows
from micam.inference import inference_runner
from micam.methods import METHODS, BaseCAM
from micam.methods.base import Explainer
from micam.methods.factory import make_method
from micam.metrics import (
    TRACKERS,
    ChannelSumCorrelation,
    DeletionInsertion,
    MetricBatch,
    MetricOptions,
    Tracker,
    box_mask,
    cascading_randomization,
    randomization_stages,
    weight_change,
)
from micam.metrics.confidence import IncreaseBaseline
from micam.metrics.deletion_insertion import AucX, Baseline, PixelIndexing
from micam.outputs import per_class, select_output

INTERVENTIONS = ("object", "background")


@dataclass
class Batch:
    """Decoded model inputs of the readable images of one batch, with their samples and boxes."""

    samples: list[Sample]
    images: Tensor  # (B, 3, S, S) on the run's device
    boxes: list[list[Box]]

    @property
    def keys(self) -> list[str]:
        return [sample.key for sample in self.samples]


class Step:
    """Everything one batch needs, built once per run from its settings."""

    def __init__(
        self, settings: EvaluationSettings, loaded: models.LoadedModel, device: torch.device, has_boxes: bool
    ) -> None:
        self.settings, self.loaded, self.device = settings, loaded, device
        baseline: Tensor | Baseline = (
            black_pixel(loaded).to(device) if settings.baseline == "black" else settings.baseline
        )
        if settings.baseline == "zero":
            baseline = torch.zeros(1, 3, 1, 1, device=device)
        self.baseline = baseline
        self.explainers: dict[str, Explainer] = {}
        for name in settings.methods:
            if name in REFERENCES:
                self.explainers[name] = REFERENCES[name](seed=settings.seed) if name == "random" else REFERENCES[name]()
            else:
                self.explainers[name] = self.method(name, loaded.model)
        self.trackers = {name: self._trackers(has_boxes) for name in settings.methods}
        # The unweighted channel sum every map is correlated with (MI-CAM's control, same preset).
        wanted = any(isinstance(t, ChannelSumCorrelation) for t in next(iter(self.trackers.values()), []))
        own = self.explainers.get("channel-sum")
        self.channel_sum = (own if own is not None else self.method("channel-sum", loaded.model)) if wanted else None
        # Seconds spent per stage ("predict", "explain <method>", "<metric group> <method>", "counterfactual
        # <method>") since the caller last cleared it (``run_shard``: per shard; the driver sums the shards).
        self.stage_seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Adds the seconds of the block to ``stage_seconds[name]`` (after the device's queued work)."""
        synchronize(self.device)
        tick = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.stage_seconds[name] += time.perf_counter() - tick

    @property
    def metric_names(self) -> list[str]:
        """The per-image metric columns, in table order."""
        return [name for tracker in next(iter(self.trackers.values())) for name in tracker.names]

    def groups_of(self, columns: Sequence[str]) -> list[str]:
        """The metric groups that write any of ``columns`` (what a resumed run computes for gained columns)."""
        wanted = set(columns)
        return [t.group for t in next(iter(self.trackers.values()), []) if wanted & set(t.names)]

    def method(self, name: str, model: torch.nn.Module) -> BaseCAM:
        s, loaded = self.settings, self.loaded
        return make_method(
            name,
            model,
            loaded.target_layer_name,
            pixel_mean=loaded.mean,
            pixel_std=loaded.std,
            score_cam_batch_size=s.score_cam_batch_size or 32,
            mi_preset=s.mi_preset,
            mi_column_max=s.mi_column_max,
            output_selector=s.output_selector,
            reshape_transform=loaded.reshape_transform,
        )

    def _trackers(self, has_boxes: bool) -> list[Tracker]:
        """The trackers of the metric groups asked for (localization only where the data has boxes)."""
        s = self.settings
        options = MetricOptions(
            threshold=s.threshold,
            pixel_baseline=self.baseline if isinstance(self.baseline, Tensor) else 0.0,
            baseline=self.baseline,
            steps=s.steps,
            insertion_order=s.insertion_order,
            score=s.score,
            batch_size=s.forward_batch_size or 64,
            output_selector=s.output_selector,
            tolerance=s.tolerance,
            auc_x=cast(AucX, s.auc_x),
            pixel_indexing=cast(PixelIndexing, s.pixel_indexing),
            increase_baseline=cast(IncreaseBaseline, s.increase_baseline),
        )
        wanted = [t for t in TRACKERS if t.group in s.metrics and (has_boxes or not t.needs_boxes)]
        return [tracker.from_options(options) for tracker in wanted]

    # ------------------------------------------------------------------------- one batch
    def predicted(self, images: Tensor) -> list[int]:
        """Each image's top class (the class axis is dim 1; a dense output's scores averaged over positions)."""
        with torch.no_grad():
            scores = select_output(self.loaded.model(images), self.settings.output_selector)
        if scores.dim() < 2:
            raise ValueError(f"cannot pick a class from a model output of shape {tuple(scores.shape)}")
        return per_class(scores).argmax(dim=1).tolist()

    def targets(self, samples: list[Sample], predicted: list[int]) -> list[int]:
        # --target label: the runner checked that every sample has a label.
        return [int(s.label) for s in samples] if self.settings.target == "label" else predicted  # type: ignore[arg-type]

    def __call__(
        self,
        batch: Batch,
        counterfactual_keys: set[str],
        methods: Sequence[str] | None = None,
        groups: Sequence[str] | None = None,
    ) -> BatchRows:
        """The rows of one batch: one per (image, method), the counterfactual analysis of the images
        in ``counterfactual_keys`` that have boxes, and every deletion / insertion curve; ``methods``:
        only these (a resumed run that gained methods), default all. ``groups``: only these metric
        groups, as ``BatchRows.gained`` rows (a resumed run that gained metrics), default every one."""
        images, keys = batch.images, batch.keys
        scorer = inference_runner(self.loaded.model)  # one checked copy per batch for every metric's passes
        with self.stage("predict"):
            predicted = self.predicted(images)
        targets = self.targets(batch.samples, predicted)
        cf_index = [i for i, b in enumerate(batch.boxes) if b and keys[i] in counterfactual_keys]
        if groups is not None and "counterfactual" not in groups:
            cf_index = []
        running = [name for name in self.explainers if methods is None or name in methods]
        explained: dict[str, tuple[Tensor, float]] = {}  # maps made before their turn (with their time)
        channel_sum = None
        if self.channel_sum is not None and (groups is None or ChannelSumCorrelation.group in groups):
            explained["channel-sum"] = self._explain("channel-sum", self.channel_sum, images, targets, keys)
            channel_sum = explained["channel-sum"][0]
        shared = [
            {
                "image": sample.key,
                "label": "" if sample.label is None else sample.label,
                "predicted": predicted[i],
                "target": targets[i],
                "correct": "" if sample.label is None else int(predicted[i] == sample.label),
            }
            for i, sample in enumerate(batch.samples)
        ]
        rows = BatchRows()
        for name in running:
            explainer = self.explainers[name]
            maps, seconds = explained.get(name) or self._explain(name, explainer, images, targets, keys)
            values: dict[str, list[float]] = {}
            metric_batch = MetricBatch(images, maps, targets, scorer, batch.boxes, channel_sum)
            for tracker in [t for t in self.trackers[name] if groups is None or t.group in groups]:
                tracker.reset()  # the store keeps the values; a tracker only computes them
                with self.stage(f"{tracker.group} {name}"):
                    found = tracker.update(metric_batch)
                values.update({metric: [float(v) for v in found[metric]] for metric in tracker.names})
                if isinstance(tracker, DeletionInsertion):
                    for kind in ("deletion", "insertion"):
                        rows.curves.extend(
                            {"image": key, "method": name, "kind": kind, "values": " ".join(f"{v:.5g}" for v in curve)}
                            for key, curve in zip(keys, tracker.curves[kind][-1].double().tolist(), strict=True)
                        )
            for i, row in enumerate(shared):
                cells = {key: value[i] for key, value in values.items()}
                if groups is None:
                    rows.per_image.append(row | {"method": name, "seconds": seconds} | cells)
                else:
                    rows.gained.append({"image": row["image"], "method": name} | cells)
            if cf_index and name in METHODS and isinstance(explainer, BaseCAM):
                actual = explainer.last_weights[cf_index]  # type: ignore[index]  # this batch's weights: not recomputed
                with self.stage(f"counterfactual {name}"):
                    rows.counterfactual.extend(self._counterfactual(explainer, name, batch, targets, cf_index, actual))
        return rows

    def _explain(
        self, name: str, explainer: Explainer, images: Tensor, targets: list[int], keys: list[str]
    ) -> tuple[Tensor, float]:
        """An explainer's maps of the batch and its seconds per image (a CAM reads the targets, a
        reference map the keys)."""
        before = self.stage_seconds[f"explain {name}"]
        with self.stage(f"explain {name}"):
            maps = explainer(images, targets=targets, keys=keys)
        return maps, (self.stage_seconds[f"explain {name}"] - before) / len(keys)

    def warm_up(self, images: Tensor) -> None:
        """One untimed call of every method on one image, so that the first batch's times do not include
        one-off costs (CUDA kernels and cuDNN autotuning, JIT compilation, thread pools)."""
        image = images[:1]
        target = self.predicted(image)
        for explainer in self.explainers.values():
            explainer(image, targets=target, keys=["warm-up"])
        synchronize(self.device)

    def _counterfactual(
        self, cam: BaseCAM, name: str, batch: Batch, targets: list[int], index: list[int], actual: Tensor
    ) -> list[dict[str, Any]]:
        """do(object pixels := black) and do(background pixels := black) on the boxed images; how the
        method's channel weights (``actual``: those of the unchanged images) move; a weight that reads
        the object should move more for the first."""
        images = batch.images
        chosen = images[index]
        chosen_targets = [targets[i] for i in index]
        black = black_pixel(self.loaded).to(self.device)
        size = tuple(images.shape[-2:])
        inside = torch.stack([box_mask(batch.boxes[i], size, self.device) for i in index])[:, None]
        rows = []
        for intervention in INTERVENTIONS:
            region = inside if intervention == "object" else ~inside
            cam(torch.where(region, black, chosen), targets=chosen_targets)
            change = weight_change(actual, cam.last_weights)  # type: ignore[arg-type]  # set by the call above
            for j, i in enumerate(index):
                rows.append(
                    {"image": batch.keys[i], "method": name, "intervention": intervention}
                    | {metric: float(change[metric][j]) for metric in CHANGE_METRICS}
                )
        return rows

    # ------------------------------------------------------------------------- the sanity check
    def sanity_rows(
        self, batch: Batch, progress: Callable[[str], None], methods: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Cascading randomization of the model from its output, for every CAM method (or ``methods``),
        on ``batch``: one row per (method, stage) with the mean similarity to the original map."""
        targets = self.targets(batch.samples, self.predicted(batch.images))
        stages = randomization_stages(self.loaded.model)
        rows = []
        chosen = self.settings.methods if methods is None else methods
        for name in [n for n in chosen if n in METHODS]:  # not the controls: MI-CAM's own
            stage_rows = cascading_randomization(
                self.loaded.model,
                # mypy cannot infer a lambda with a default argument.
                lambda model, name=name: self.method(name, model),  # type: ignore[misc]
                batch.images,
                targets,
                layers=stages,
                seed=self.settings.seed,
            )
            for index, row in enumerate(stage_rows):
                rows.append(
                    {"method": name, "stage": index, "layer": row["layer"]}
                    | {key: float(row[key].mean()) for key in SIMILARITIES}
                )
            progress(name)
        return rows


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
