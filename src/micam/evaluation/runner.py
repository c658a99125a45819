"""``evaluate``: every method x metric of the MI-CAM paper on a labelled image set, resumably.

A thin driver: the images left to do are cut into shards of ``batch_size``, an engine
(``micam.engines``: this process, or Ray actors) runs each through the per-batch ``Step`` (``step.py``:
no files; ``work.py``: decoding and what a shard still needs), and the driver alone hands each finished
shard's rows to the ``RunStore`` (``store.py``: the run folder, the only copy of the results), which
rebuilds ``results.json`` / ``results.md`` from the rows after every shard. ``resume=True`` skips the
finished images; a run is never resumed under different settings. Unreadable images are listed in
``skipped.csv`` and counted, never fatal. The sanity check runs first on the first ``sanity_images``
readable images; the counterfactual analysis on the first ``counterfactual_images`` images with boxes,
within the main pass.
"""

from __future__ import annotations

import hashlib
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from micam import __version__, models
from micam.engines import get_engine
from micam.evaluation.datasets import Dataset, Geometry, Sample, read_dataset
from micam.evaluation.settings import ALL_METHODS, METRIC_GROUPS, EvaluationSettings
from micam.evaluation.step import Step
from micam.evaluation.store import RunStore, Session, saved_settings
from micam.evaluation.work import Decoded, Images, Job, ShardResult, load_model, readable
from micam.methods import METHODS
from micam.runtime import DiskFull, Progress, device_name, format_seconds, is_disk_full, output_folder

__all__ = ["ALL_METHODS", "METRIC_GROUPS", "EvaluationSettings", "evaluate"]


@dataclass(frozen=True)
class _Context:
    """What a run's results.json describes besides its rows."""

    loaded: models.LoadedModel
    dataset: Dataset
    geometry: Geometry
    step: Step
    device: torch.device
    workers: list[dict[str, Any]]  # an engine's per-worker device, images and seconds (none for local)
    # seconds per step stage, over the shards done
    stages: dict[str, float] = field(default_factory=lambda: defaultdict(float))


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
    loaded = load_model(settings, device)
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
    context = _Context(loaded, dataset, geometry, step, device, [])
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
    job = Job(
        settings,
        geometry,
        dataset.has_boxes,
        frozenset(counterfactual_keys),
        store.missing,
    )
    shards = [todo[i : i + settings.batch_size] for i in range(0, len(todo), settings.batch_size)]
    progress = Progress(len(todo), f"evaluate {settings.model}")

    def on_result(result: ShardResult) -> None:
        """A finished shard: its rows and unreadable images go to the run folder, the summaries are rebuilt."""
        _report_skipped(result.failures, skipped, store)
        store.append(result.rows)
        for name, seconds in result.stages.items():
            context.stages[name] += seconds
        write_results()
        progress.advance(result.images)

    engine = (
        get_engine("local", step=step)
        if settings.engine == "local"
        else get_engine(settings.engine, address=settings.address, workers=settings.workers, log=log)
    )
    try:
        context.workers[:] = engine.run(job, shards, on_result)
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


def _report_skipped(failures: dict[str, str], skipped: dict[str, str], store: RunStore) -> None:
    """Unreadable images: said on stderr, counted, and listed in skipped.csv."""
    for key, reason in failures.items():
        print(f"skipped {key}: {reason}", file=sys.stderr)
    skipped.update(failures)
    store.append_skipped(failures)


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
    batch, failures = readable(decoded, step.device)
    _report_skipped(failures, skipped, store)
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
        device_name(device),
        torch.__version__,
        bool(torch.backends.cudnn.allow_tf32) if device.type == "cuda" else None,
        settings.engine,
        list(context.workers),
        dict(context.stages),
    )
    return store.results(
        model=settings.model,
        methods=settings.methods,
        n_requested=len(samples),
        n_available=len(context.dataset.samples),
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
