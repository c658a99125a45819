"""``evaluate``: every method x metric of the MI-CAM paper on a labelled image set, resumably.

A thin loop: images are decoded in ``DataLoader`` worker processes, each batch goes through the
per-batch ``Step`` (``step.py``: no files), and its rows go to the ``RunStore`` (``store.py``: the run
folder, the only copy of the results), which rebuilds ``results.json`` / ``results.md`` from the rows
after every batch. ``resume=True`` skips the finished images; a run is never resumed under different
settings. Unreadable images are listed in ``skipped.csv`` and counted, never fatal. The sanity check
runs first on the first ``sanity_images`` readable images; the counterfactual analysis on the first
``counterfactual_images`` images with boxes, within the main pass.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from micam import __version__, models
from micam.evaluation.datasets import Box, Dataset, Geometry, Sample, prepare, read_dataset
from micam.evaluation.settings import ALL_METHODS, METRIC_GROUPS, EvaluationSettings
from micam.evaluation.step import Batch, Step
from micam.evaluation.store import RunStore, Session, ToDo, saved_settings
from micam.images import read_rgb
from micam.methods import METHODS
from micam.runtime import DiskFull, Progress, device_name, format_seconds, is_disk_full, output_folder

__all__ = ["ALL_METHODS", "METRIC_GROUPS", "EvaluationSettings", "evaluate"]

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


def _as_list(items: list[Decoded]) -> list[Decoded]:
    return items  # a batch stays a list: unreadable images and varying box counts are not stackable


@dataclass(frozen=True)
class _Context:
    """What a run's results.json describes besides its rows."""

    loaded: models.LoadedModel
    dataset: Dataset
    geometry: Geometry
    step: Step
    device: torch.device


def evaluate(settings: EvaluationSettings, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) an evaluation; returns the content of ``results.json``."""
    autotune = torch.backends.cudnn.benchmark
    try:
        return _evaluate(settings, log or (lambda text: print(text, file=sys.stderr)))
    finally:
        torch.backends.cudnn.benchmark = autotune  # CUDA runs turn cuDNN autotuning on


def _evaluate(settings: EvaluationSettings, log: Callable[[str], None]) -> dict[str, Any]:
    settings.check()
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if settings.device == "auto" else settings.device
    )
    _device_defaults(settings, device, saved_settings(settings.out, settings.resume))
    dataset = read_dataset(settings.data)
    output_folder(settings.out)  # before the model loads: a wrong --out is said at once
    samples = dataset.samples[: settings.limit] if settings.limit else dataset.samples
    if settings.target == "label" and any(sample.label is None for sample in samples):
        raise ValueError("--target label needs a label for every image; use --target predicted")
    loaded = models.load(settings.model, weights=settings.weights, device=device, **_load_options(settings))
    geometry = dataset.geometry if settings.geometry == "auto" else settings.geometry
    step = Step(settings, loaded, device, dataset.has_boxes)
    store = RunStore(settings.out, step.metric_names)
    try:
        return _run(store, step, settings, dataset, samples, loaded, geometry, device, log)
    except OSError as error:
        if is_disk_full(error):  # every finished batch is on disk; a torn last row is dropped on resume
            saved = store.saved_images(settings.methods)
            raise DiskFull(f"disk full: {saved} images saved in {settings.out}, rerun with --resume") from error
        raise
    finally:
        store.close()


def _run(
    store: RunStore,
    step: Step,
    settings: EvaluationSettings,
    dataset: Dataset,
    samples: list[Sample],
    loaded: models.LoadedModel,
    geometry: Geometry,
    device: torch.device,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The main pass over the images left to do (the store is open and locked)."""
    done, skipped = store.open(
        asdict(settings) | {"data_fingerprint": _fingerprint(dataset)}, settings.resume, settings.methods
    )
    todo = [s for s in samples if s.key not in done and s.key not in skipped]
    log(
        f"evaluating {settings.model} on {len(samples)} images from {dataset.source} ({dataset.kind}); "
        f"{len(done)} already done, {len(skipped)} skipped before, {len(todo)} to go; device {device}; "
        f"methods {', '.join(settings.methods)}"
    )
    context = _Context(loaded, dataset, geometry, step, device)
    started = time.perf_counter()

    def write_results() -> dict[str, Any]:
        return _results(store, settings, context, samples, skipped, time.perf_counter() - started)

    wanted = [n for n in settings.methods if n in METHODS and n not in store.sanity_methods()]
    if "sanity" in settings.metrics and settings.sanity_images and wanted:
        # small: first, so a cut run has it; a run that gained methods adds theirs
        _sanity(store, step, Images(samples, loaded, geometry, settings), skipped, log, wanted)
    counterfactual_keys = (
        {s.key for s in [s for s in samples if s.boxes][: settings.counterfactual_images]}
        if "counterfactual" in settings.metrics and dataset.has_boxes
        else set()
    )
    progress = Progress(len(todo), f"evaluate {settings.model}")
    warm = False
    try:
        for decoded in _loader(Images(todo, loaded, geometry, settings), settings, device):
            batch = _readable(decoded, device, skipped, store)
            if batch is not None:
                if not warm:
                    step.warm_up(batch.images)
                    warm = True
                gained_groups = step.groups_of(store.added)
                for work, part in _by_work_to_do(batch, store.missing, settings.methods):
                    if work.methods:
                        store.append(step(part, counterfactual_keys, work.methods))
                    if work.gained:
                        store.append(step(part, counterfactual_keys, work.gained, gained_groups))
            write_results()
            progress.advance(len(decoded))
    except KeyboardInterrupt:
        progress.close()
        results = write_results()  # from the rows on disk: the cut batch is not in them
        log(f"interrupted after {results['n_images']} images; run again with --resume to continue")
        raise
    progress.close()
    results = write_results()
    elapsed = format_seconds(time.perf_counter() - started)
    log(f"finished {results['n_images']} images ({len(skipped)} skipped) in {elapsed}")
    return results


def _load_options(settings: EvaluationSettings) -> models.LoadOptions:
    """``models.load``'s options; ``input_scale="raw"`` feeds the model 0-255 pixels (mean 0, std 1/255),
    as the authors' scripts do."""
    options = models.load_options(settings)
    if settings.input_scale == "raw":
        if settings.mean is not None or settings.std is not None:
            raise ValueError("input_scale 'raw' feeds 0-255 pixels: it cannot be combined with --mean / --std")
        options["mean"], options["std"] = [0.0, 0.0, 0.0], [1 / 255] * 3
    return options


def _device_defaults(settings: EvaluationSettings, device: torch.device, saved: dict[str, Any]) -> None:
    """Batch sizes and image counts left open get the device's defaults, or those of the run being
    resumed (so a run started on a GPU can be finished on a CPU and back)."""
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    settings.forward_batch_size = settings.forward_batch_size or (1024 if cuda else 64)
    settings.score_cam_batch_size = settings.score_cam_batch_size or (1024 if cuda else 32)
    if settings.counterfactual_images is None:  # a saved 0 is kept (not "unset")
        saved_count = saved.get("counterfactual_images")
        settings.counterfactual_images = saved_count if saved_count is not None else (50 if cuda else 10)
    if settings.sanity_images is None:
        saved_count = saved.get("sanity_images")
        settings.sanity_images = saved_count if saved_count is not None else (4 if cuda else 1)


def _loader(images: Images, settings: EvaluationSettings, device: torch.device) -> DataLoader[Decoded]:
    """Batches of decoded images, decoded ahead in worker processes (none where there is one core)."""
    workers = settings.loader_workers
    if workers is None:
        workers = 0 if (os.cpu_count() or 1) < 2 or len(images) <= settings.batch_size else 2
    return DataLoader(
        images,
        batch_size=settings.batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_as_list,
        pin_memory=device.type == "cuda",
    )


def _readable(decoded: list[Decoded], device: torch.device, skipped: dict[str, str], store: RunStore) -> Batch | None:
    """The readable images of a decoded batch; the others are reported and go to skipped.csv."""
    failures = {sample.key: reason for sample, tensor, _, reason in decoded if tensor is None}
    for key, reason in failures.items():
        print(f"skipped {key}: {reason}", file=sys.stderr)
    skipped.update(failures)
    store.append_skipped(failures)
    kept = [(sample, tensor, boxes) for sample, tensor, boxes, _ in decoded if tensor is not None]
    if not kept:
        return None
    return Batch(
        samples=[sample for sample, _, _ in kept],
        images=torch.stack([tensor for _, tensor, _ in kept]).to(device),
        boxes=[boxes for _, _, boxes in kept],
    )


def _by_work_to_do(batch: Batch, missing: dict[str, ToDo], methods: Sequence[str]) -> list[tuple[ToDo, Batch]]:
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


def _sanity(
    store: RunStore,
    step: Step,
    images: Images,
    skipped: dict[str, str],
    log: Callable[[str], None],
    methods: Sequence[str],
) -> None:
    """Cascading randomization on the first readable images; written once to sanity.csv."""
    wanted = step.settings.sanity_images or 0
    decoded: list[Decoded] = []
    for index in range(len(images)):
        if images.samples[index].key in skipped:
            continue
        decoded.append(images[index])
        if len(decoded) == wanted:
            break
    batch = _readable(decoded, step.device, skipped, store)
    if batch is None:
        return
    progress = Progress(len(methods), "sanity check")
    rows = step.sanity_rows(batch, lambda name: progress.advance(1, name), methods)
    progress.close()
    store.write_sanity(rows)
    stages = len(rows) // max(len(methods), 1)
    log(f"sanity check: {stages} stages x {len(methods)} methods on {batch.images.shape[0]} images")


def _fingerprint(dataset: Dataset) -> str:
    """SHA-256 of the annotation file (JSON / CSV) or of the image list (folder)."""
    digest = hashlib.sha256()
    if dataset.source.is_file():
        digest.update(dataset.source.read_bytes())
    else:
        digest.update("\n".join(f"{s.key}\t{s.label}" for s in dataset.samples).encode())
    return digest.hexdigest()


def _results(
    store: RunStore,
    settings: EvaluationSettings,
    context: _Context,
    samples: list[Sample],
    skipped: dict[str, str],
    seconds: float,
) -> dict[str, Any]:
    device = context.device
    # cuDNN may run float32 convolutions in TF32 (PyTorch's default): one image's numbers can move slightly
    session = Session(
        device_name(device), torch.__version__, bool(torch.backends.cudnn.allow_tf32) if device.type == "cuda" else None
    )
    return store.results(
        model=settings.model,
        methods=settings.methods,
        n_requested=len(samples),
        settings=_resolved_settings(settings, context),
        skipped=skipped,
        seconds=seconds,
        session=session,
        invalid_boxes=sum(sample.invalid_boxes for sample in samples),
    )


def _resolved_settings(settings: EvaluationSettings, context: _Context) -> dict[str, Any]:
    loaded = context.loaded
    mi = context.step.explainers.get("mi-cam")
    return asdict(settings) | {
        "dataset_kind": context.dataset.kind,
        "geometry_used": context.geometry,
        "target_layer": loaded.target_layer_name,
        "input_size": loaded.input_size,
        "pixel_mean": list(loaded.mean),
        "pixel_std": list(loaded.std),
        "mi_cam": getattr(mi, "settings", None),
        "reference_maps": {"centre-gaussian": "sigma = 0.25 x shorter side", "random": "uniform noise per pixel"},
        "counterfactual_interventions": {
            "object": "pixels inside the boxes set to black",
            "background": "pixels outside the boxes set to black",
        },
        "micam_version": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device_name": device_name(context.device),
    }
