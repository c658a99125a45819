"""``evaluate``: every method x metric of the MI-CAM paper on a labelled image set, resumably.

Work is done in batches of images. After each batch, one row per (image, method) is appended to
``per_image.csv`` (flushed and fsynced: that row is the record that the image is finished), and
``results.json`` / ``results.md`` are refreshed from everything finished so far. ``resume=True``
reads the rows back, skips finished images and continues; a run is never resumed under different
settings. Unreadable images are listed in ``skipped.csv`` and counted, never fatal.
The counterfactual analysis runs on the first ``counterfactual_images`` images that have boxes, within
the main pass; the sanity check on the first ``sanity_images`` readable images, before it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import UnidentifiedImageError
from torch import Tensor

from micam import __version__, models
from micam.capture.inference import inference_runner
from micam.evaluation.compare import COMPARED_METRICS, paired_differences
from micam.evaluation.datasets import Dataset, Sample, black_pixel, prepare, read_dataset, read_rgb
from micam.evaluation.references import REFERENCES
from micam.evaluation.tables import markdown_report
from micam.methods import METHODS, BaseCAM
from micam.methods.factory import make_method
from micam.metrics import (
    ClassicDropIncrease,
    DeletionInsertion,
    DropIncrease,
    Localization,
    Tracker,
    box_mask,
    cascading_randomization,
    randomization_stages,
    summarize,
    weight_change,
)
from micam.outputs import select_output
from micam.reports.machine import device_name
from micam.reports.progress import Progress, format_seconds

METRIC_GROUPS = ("drop-increase", "classic", "deletion-insertion", "localization", "counterfactual", "sanity")
ALL_METHODS = (*METHODS, *REFERENCES)
PAIRED_FOCUS = "mi-cam"  # the method results.json compares image by image with every other one
# Settings that may differ between a run and its resumption (they do not change any number).
_RESUMABLE_KEYS = {"limit", "out", "resume", "device", "batch_size", "forward_batch_size", "score_cam_batch_size"}
# The data is compared by content (data_fingerprint), not by the path it was given under.
_RESUMABLE_KEYS |= {"data"}
_INTERVENTIONS = ("object", "background")


@dataclass
class EvaluationSettings:
    """Every parameter of a run; all of them are written next to the results."""

    data: str
    model: str = "mobilenet_v2"
    weights: str = "imagenet"
    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    metrics: list[str] = field(default_factory=lambda: list(METRIC_GROUPS))
    limit: int | None = None
    out: str = "micam-eval"
    device: str = "auto"
    resume: bool = False
    batch_size: int = 16
    forward_batch_size: int | None = None  # None: 64 on CPU, 1024 on CUDA
    score_cam_batch_size: int | None = None  # None: 32 on CPU, 1024 on CUDA
    target: str = "predicted"  # or "label"
    geometry: str = "auto"  # "stretch", "crop" or the dataset's recommendation
    score: str = "probability"
    threshold: float = 0.5
    steps: int = 100
    baseline: str = "black"  # "black" (pixels set to 0 before normalization), "zero" (tensor 0), "mean", "blur"
    insertion_order: str = "standard"
    tolerance: float = 15.0
    mi_preset: str = "default"
    counterfactual_images: int | None = None  # None: 50 on CUDA, 10 on CPU
    sanity_images: int | None = None  # None: 4 on CUDA, 1 on CPU (Score-CAM x 20 stages is slow on a CPU)
    seed: int = 0
    output_selector: str | int | None = None  # picks the class scores from a tuple/dict model output
    # A bring-your-own model's options (``micam.models.load``'s keywords; None = the model's own).
    num_classes: int | None = None
    labels: str | None = None
    input_size: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    layer: str | None = None
    trust_checkpoint: bool | None = None

    def check(self) -> None:
        unknown = [m for m in self.methods if m not in ALL_METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(ALL_METHODS)} or 'all'")
        unknown = [m for m in self.metrics if m not in METRIC_GROUPS]
        if unknown or not self.metrics:
            raise ValueError(f"unknown metric(s) {unknown}; choose from {', '.join(METRIC_GROUPS)} or 'all'")
        choices = {
            "target": ("predicted", "label"),
            "geometry": ("auto", "stretch", "crop"),
            "score": ("probability", "logit"),
            "baseline": ("black", "zero", "mean", "blur"),
            "insertion_order": ("standard", "paper"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit}")
        if self.batch_size < 1 or self.steps < 1:
            raise ValueError("batch_size and steps must be positive")


@dataclass
class _Run:
    """What the main loop carries around."""

    settings: EvaluationSettings
    loaded: models.LoadedModel
    device: torch.device
    dataset: Dataset
    geometry: str
    baseline: Tensor | str
    explainers: dict[str, Callable[..., Tensor]]
    trackers: dict[str, list[Tracker]]
    seconds: dict[str, list[float]]
    out: Path
    earlier_seconds: float = 0.0  # wall time of the runs this one resumes
    earlier_runs: list[dict[str, Any]] = field(default_factory=list)  # device, torch, images, seconds of each
    earlier_images: int = 0
    curve_sums: dict[str, dict[str, Tensor]] = field(default_factory=dict)  # method -> kind -> sum of curves
    curve_counts: dict[str, int] = field(default_factory=dict)


def evaluate(settings: EvaluationSettings, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) an evaluation; returns the content of ``results.json``."""
    autotune = torch.backends.cudnn.benchmark
    try:
        return _evaluate(settings, log or (lambda text: print(text, file=sys.stderr)))
    finally:
        torch.backends.cudnn.benchmark = autotune  # _start turns cuDNN autotuning on for CUDA runs


def _evaluate(settings: EvaluationSettings, log: Callable[[str], None]) -> dict[str, Any]:
    settings.check()
    run = _start(settings)
    samples = run.dataset.samples[: settings.limit] if settings.limit else run.dataset.samples
    if settings.target == "label" and any(sample.label is None for sample in samples):
        raise ValueError("--target label needs a label for every image; use --target predicted")
    done, skipped = _restore(run)
    todo = [s for s in samples if s.key not in done and s.key not in skipped]
    log(
        f"evaluating {settings.model} on {len(samples)} images from {run.dataset.source} ({run.dataset.kind}); "
        f"{len(done)} already done, {len(skipped)} skipped before, {len(todo)} to go; device {run.device}; "
        f"methods {', '.join(settings.methods)}"
    )
    started = time.perf_counter()
    if "sanity" in settings.metrics and settings.sanity_images:  # small: done first, so a cut run has it
        _sanity(run, samples, skipped, log)
    if todo:
        _warm_up(run, todo)
    progress = Progress(len(todo), f"evaluate {settings.model}")
    wants_counterfactual = "counterfactual" in settings.metrics and run.dataset.has_boxes
    counterfactual_keys = {s.key for s in [s for s in samples if s.boxes][: settings.counterfactual_images]}
    checkpoint = _checkpoint(run)
    try:
        for start in range(0, len(todo), settings.batch_size):
            batch = todo[start : start + settings.batch_size]
            loaded_batch = _load_batch(run, batch, skipped)
            if loaded_batch is not None:
                rows, counterfactual_rows, curve_rows = _evaluate_batch(
                    run, *loaded_batch, counterfactual_keys if wants_counterfactual else set()
                )
                _append_csv(run.out / "counterfactual.csv", _COUNTERFACTUAL_COLUMNS, counterfactual_rows)
                _append_csv(run.out / "curves.csv", _CURVE_COLUMNS, curve_rows)
                _append_csv(run.out / "per_image.csv", _per_image_columns(run), rows)  # the commit point
                done.update(row["image"] for row in rows)
                checkpoint = _checkpoint(run)  # the summaries now hold exactly the committed images
            _write_results(run, len(done), skipped, time.perf_counter() - started)
            progress.advance(len(batch))
    except KeyboardInterrupt:
        _roll_back(run, checkpoint)  # the cut batch was not committed: keep its values out of the summaries
        progress.close()
        _write_results(run, len(done), skipped, time.perf_counter() - started)
        log(f"interrupted after {len(done)} images; run again with --resume to continue")
        raise
    progress.close()
    results = _write_results(run, len(done), skipped, time.perf_counter() - started)
    log(f"finished {len(done)} images ({len(skipped)} skipped) in {format_seconds(time.perf_counter() - started)}")
    return results


# ----------------------------------------------------------------------------- setup and resume
def _start(settings: EvaluationSettings) -> _Run:
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if settings.device == "auto" else settings.device
    )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    settings.forward_batch_size = settings.forward_batch_size or (1024 if device.type == "cuda" else 64)
    settings.score_cam_batch_size = settings.score_cam_batch_size or (1024 if device.type == "cuda" else 32)
    saved = _saved_settings(settings)
    if settings.counterfactual_images is None:
        settings.counterfactual_images = saved.get("counterfactual_images") or (50 if device.type == "cuda" else 10)
    if settings.sanity_images is None:
        settings.sanity_images = saved.get("sanity_images") or (4 if device.type == "cuda" else 1)
    dataset = read_dataset(settings.data)
    loaded = models.load(settings.model, weights=settings.weights, device=device, **models.load_options(settings))
    geometry = dataset.geometry if settings.geometry == "auto" else settings.geometry
    baseline: Tensor | str = black_pixel(loaded).to(device) if settings.baseline == "black" else settings.baseline
    if settings.baseline == "zero":
        baseline = torch.zeros(1, 3, 1, 1, device=device)
    explainers: dict[str, Callable[..., Tensor]] = {}
    for name in settings.methods:
        if name in REFERENCES:
            explainers[name] = REFERENCES[name](seed=settings.seed) if name == "random" else REFERENCES[name]()
        else:
            explainers[name] = _method(name, loaded.model, loaded.target_layer_name, loaded, settings)
    out = Path(settings.out)
    run = _Run(settings, loaded, device, dataset, geometry, baseline, explainers, {}, {}, out)
    run.trackers = {name: _trackers(run) for name in settings.methods}
    run.seconds = {name: [] for name in settings.methods}
    return run


def _saved_settings(settings: EvaluationSettings) -> dict[str, Any]:
    """The settings of the run being resumed (empty when not resuming): its device-dependent
    defaults carry over, so a run started on a GPU can be finished on a CPU and back."""
    path = Path(settings.out) / "settings.json"
    return json.loads(path.read_text()) if settings.resume and path.exists() else {}


def _method(
    name: str, model: torch.nn.Module, layer: str, loaded: models.LoadedModel, s: EvaluationSettings
) -> BaseCAM:
    return make_method(
        name,
        model,
        layer,
        pixel_mean=loaded.mean,
        pixel_std=loaded.std,
        score_cam_batch_size=s.score_cam_batch_size or 32,
        mi_preset=s.mi_preset,
        output_selector=s.output_selector,
        reshape_transform=loaded.reshape_transform,
    )


def _trackers(run: _Run) -> list[Tracker]:
    s = run.settings
    pixel_baseline = run.baseline if isinstance(run.baseline, Tensor) else 0.0
    trackers: list[Tracker] = []
    if "drop-increase" in s.metrics:
        trackers.append(
            DropIncrease(s.threshold, pixel_baseline, s.score, s.forward_batch_size, s.output_selector)  # type: ignore[arg-type]
        )
    if "classic" in s.metrics:
        trackers.append(ClassicDropIncrease(s.score, s.forward_batch_size, s.output_selector))  # type: ignore[arg-type]
    if "deletion-insertion" in s.metrics:
        trackers.append(
            DeletionInsertion(
                s.steps,
                run.baseline,  # type: ignore[arg-type]
                s.insertion_order,  # type: ignore[arg-type]
                s.score,  # type: ignore[arg-type]
                s.forward_batch_size,  # type: ignore[arg-type]
                s.output_selector,
            )
        )
    if "localization" in s.metrics and run.dataset.has_boxes:
        trackers.append(Localization(s.tolerance))
    return trackers


def _per_image_columns(run: _Run) -> list[str]:
    names = [name for tracker in next(iter(run.trackers.values())) for name in tracker.names]
    return ["image", "label", "predicted", "target", "correct", "method", "seconds", *names]


_CURVE_COLUMNS = ["image", "method", "kind", "values"]
_COUNTERFACTUAL_COLUMNS = ["image", "method", "intervention", "mean_abs_change", "relative_change", "rank_correlation"]


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that must match on resume; a setting added after a run was started counts as its
    default there (every new setting's default reproduces the earlier behaviour)."""
    defaults = asdict(EvaluationSettings(data=""))
    return {k: v for k, v in (defaults | settings).items() if k not in _RESUMABLE_KEYS}


def _restore(run: _Run) -> tuple[set[str], dict[str, str]]:
    """Finished images and skipped ones from an earlier run in ``out`` (when resuming)."""
    out, settings = run.out, asdict(run.settings) | {"data_fingerprint": _fingerprint(run.dataset)}
    existing = out / "per_image.csv"
    if existing.exists() and not run.settings.resume:
        raise ValueError(f"{out} already holds results; pass --resume to continue that run, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    saved_path = out / "settings.json"
    if run.settings.resume and saved_path.exists():
        saved = json.loads(saved_path.read_text())
        if _comparable(saved) != _comparable(settings):
            changed = sorted(k for k in _comparable(settings) if saved.get(k) != settings.get(k))
            raise ValueError(f"cannot resume {out}: settings differ from the earlier run in {changed}")
    saved_path.write_text(json.dumps(settings, indent=2))
    rows = _read_csv(existing)
    by_image: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_image.setdefault(row["image"], []).append(row)
    done = {
        key for key, image_rows in by_image.items() if {r["method"] for r in image_rows} >= set(run.settings.methods)
    }
    kept = [row for row in rows if row["image"] in done and row["method"] in run.settings.methods]
    _rewrite_csv(existing, _per_image_columns(run), kept)
    counterfactual = [r for r in _read_csv(out / "counterfactual.csv") if r["image"] in done]
    _rewrite_csv(out / "counterfactual.csv", _COUNTERFACTUAL_COLUMNS, counterfactual)
    curves = {(r["image"], r["method"], r["kind"]): r for r in _read_csv(out / "curves.csv") if r["image"] in done}
    _rewrite_csv(out / "curves.csv", _CURVE_COLUMNS, list(curves.values()))
    for image, method, kind in curves:
        values = torch.tensor([float(v) for v in curves[image, method, kind]["values"].split()], dtype=torch.float64)
        _add_curve(run, method, kind, values[None])
    for row in kept:
        method = row["method"]
        run.seconds[method].append(float(row["seconds"]))
        for tracker in run.trackers[method]:
            tracker.extend({name: [float(row[name])] for name in tracker.names})
    skipped = {r["image"]: r["reason"] for r in _read_csv(out / "skipped.csv")}
    previous = out / "results.json"
    if previous.exists() and kept:
        earlier = json.loads(previous.read_text())
        run.earlier_seconds = float(earlier.get("wall_time_s", 0.0))
        run.earlier_images = len(done)
        run.earlier_runs = earlier.get("runs") or [
            {
                "device_name": earlier["settings"].get("device_name"),
                "torch": earlier["settings"].get("torch"),
                "images": len(done),
                "seconds": run.earlier_seconds,
            }
        ]
    return done, skipped


def _add_curve(run: _Run, method: str, kind: str, curves: Tensor) -> None:
    """Running sums of (n, steps + 1) curves per method and kind, for the mean curves in results.json."""
    sums = run.curve_sums.setdefault(method, {})
    sums[kind] = sums[kind] + curves.sum(dim=0) if kind in sums else curves.sum(dim=0)
    if kind == "deletion":
        run.curve_counts[method] = run.curve_counts.get(method, 0) + curves.shape[0]


def _fingerprint(dataset: Dataset) -> str:
    """SHA-256 of the annotation file (JSON / CSV) or of the image list (folder)."""
    digest = hashlib.sha256()
    if dataset.source.is_file():
        digest.update(dataset.source.read_bytes())
    else:
        digest.update("\n".join(f"{s.key}\t{s.label}" for s in dataset.samples).encode())
    return digest.hexdigest()


def _read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV, dropping a last line cut short by a killed run."""
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        return [row for row in reader if None not in row.values() and len(row) == len(columns)]


def _rewrite_csv(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    temporary = path.with_suffix(".tmp")
    with temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)


def _append_csv(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """Append rows in one write (an interrupt cannot leave half a batch), then fsync."""
    if not rows and path.exists():
        return
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(columns), extrasaction="ignore")
    if not path.exists():
        writer.writeheader()
    writer.writerows(rows)
    with path.open("a", newline="") as handle:
        handle.write(text.getvalue())
        handle.flush()
        os.fsync(handle.fileno())


# ----------------------------------------------------------------------------- the main pass
def _load_batch(
    run: _Run, batch: list[Sample], skipped: dict[str, str]
) -> tuple[list[Sample], Tensor, list[list[tuple[float, ...]]]] | None:
    """Model inputs and boxes of the readable images of ``batch``; the others go to skipped.csv."""
    kept, tensors, boxes, failures = [], [], [], []
    for sample in batch:
        try:
            tensor, sample_boxes = prepare(read_rgb(sample.path), sample, run.loaded, run.geometry)  # type: ignore[arg-type]
        except (OSError, UnidentifiedImageError, ValueError) as error:
            reason = f"{type(error).__name__}: {error}"
            skipped[sample.key] = reason
            failures.append({"image": sample.key, "reason": reason})
            print(f"skipped {sample.key}: {reason}", file=sys.stderr)
            continue
        kept.append(sample)
        tensors.append(tensor)
        boxes.append(sample_boxes)
    _append_csv(run.out / "skipped.csv", ["image", "reason"], failures)
    if not kept:
        return None
    return kept, torch.stack(tensors).to(run.device), boxes


def _evaluate_batch(
    run: _Run, samples: list[Sample], images: Tensor, boxes: list[list], counterfactual_keys: set[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-image rows, counterfactual rows and deletion/insertion curve rows of one batch."""
    s, model = run.settings, run.loaded.model
    scorer = inference_runner(model)  # one checked copy per batch for every metric's forward passes
    predicted = _predicted(model, images, s)
    targets = [int(sample.label) for sample in samples] if s.target == "label" else predicted  # type: ignore[arg-type]
    keys = [sample.key for sample in samples]
    with_boxes = [i for i, b in enumerate(boxes) if b]
    counterfactual_rows: list[dict[str, Any]] = []
    curve_rows: list[dict[str, Any]] = []
    cf_index = [i for i in with_boxes if keys[i] in counterfactual_keys]
    rows = [
        {
            "image": sample.key,
            "label": "" if sample.label is None else sample.label,
            "predicted": predicted[i],
            "target": targets[i],
            "correct": "" if sample.label is None else int(predicted[i] == sample.label),
        }
        for i, sample in enumerate(samples)
    ]
    per_method: list[dict[str, Any]] = []
    for name, explainer in run.explainers.items():
        _synchronize(run.device)
        tick = time.perf_counter()
        maps = explainer(images, targets=targets) if isinstance(explainer, BaseCAM) else explainer(images, keys=keys)
        _synchronize(run.device)
        seconds = (time.perf_counter() - tick) / len(samples)
        run.seconds[name].extend([seconds] * len(samples))
        values: dict[str, list[float]] = {}
        for tracker in run.trackers[name]:
            if isinstance(tracker, Localization):
                found = tracker.update(maps[with_boxes], [boxes[i] for i in with_boxes]) if with_boxes else {}
                for metric in tracker.names:
                    column = [math.nan] * len(samples)
                    for j, i in enumerate(with_boxes):
                        column[i] = float(found[metric][j])
                    values[metric] = column
            else:
                found = tracker.update(scorer, images, maps, targets)
                values.update({metric: [float(v) for v in found[metric]] for metric in tracker.names})
            if isinstance(tracker, DeletionInsertion):
                for kind in ("deletion", "insertion"):
                    curves = tracker.curves[kind][-1].double()
                    _add_curve(run, name, kind, curves)
                    curve_rows.extend(
                        {"image": key, "method": name, "kind": kind, "values": " ".join(f"{v:.5g}" for v in curve)}
                        for key, curve in zip(keys, curves.tolist(), strict=True)
                    )
        for i, row in enumerate(rows):
            per_method.append({**row, "method": name, "seconds": seconds, **{k: v[i] for k, v in values.items()}})
        if cf_index and isinstance(explainer, BaseCAM):
            actual = explainer.last_weights[cf_index]  # type: ignore[index]  # this batch's weights: not recomputed
            counterfactual_rows.extend(
                _counterfactual(run, explainer, name, images, targets, boxes, keys, cf_index, actual)
            )
    return per_method, counterfactual_rows, curve_rows


def _predicted(model: torch.nn.Module, images: Tensor, settings: EvaluationSettings) -> list[int]:
    """Each image's top class (the class axis is dim 1; a dense output's scores averaged over positions)."""
    with torch.no_grad():
        scores = select_output(model(images), settings.output_selector)
    if scores.dim() < 2:
        raise ValueError(f"cannot pick a class from a model output of shape {tuple(scores.shape)}")
    return scores.flatten(2).mean(dim=2).argmax(dim=1).tolist() if scores.dim() > 2 else scores.argmax(dim=1).tolist()


def _checkpoint(run: _Run) -> dict[str, Any]:
    """What the in-memory summaries hold before a batch (to drop a batch that is cut short)."""
    return {
        "values": {m: [{k: len(v) for k, v in t.values.items()} for t in ts] for m, ts in run.trackers.items()},
        "seconds": {m: len(v) for m, v in run.seconds.items()},
        "curves": {m: {k: v.clone() for k, v in sums.items()} for m, sums in run.curve_sums.items()},
        "counts": dict(run.curve_counts),
    }


def _roll_back(run: _Run, checkpoint: dict[str, Any]) -> None:
    for method, trackers in run.trackers.items():
        for tracker, lengths in zip(trackers, checkpoint["values"][method], strict=True):
            for name, length in lengths.items():
                del tracker.values[name][length:]
    for method, length in checkpoint["seconds"].items():
        del run.seconds[method][length:]
    run.curve_sums, run.curve_counts = checkpoint["curves"], checkpoint["counts"]


def _warm_up(run: _Run, todo: list[Sample]) -> None:
    """One untimed call of every method on one image, so that the first batch's times do not include
    one-off costs (CUDA kernels and cuDNN autotuning, JIT compilation, thread pools)."""
    for sample in todo[:8]:
        loaded_batch = _load_batch(run, [sample], {})
        if loaded_batch is not None:
            break
    else:
        return
    _, images, _ = loaded_batch
    with torch.no_grad():
        target = _predicted(run.loaded.model, images, run.settings)
    for explainer in run.explainers.values():
        if isinstance(explainer, BaseCAM):
            explainer(images, targets=target)
        else:
            explainer(images, keys=["warm-up"])
    _synchronize(run.device)


def _counterfactual(
    run: _Run,
    cam: BaseCAM,
    name: str,
    images: Tensor,
    targets: list[int],
    boxes: list[list],
    keys: list[str],
    index: list[int],
    actual: Tensor,
) -> list[dict[str, Any]]:
    """do(object pixels := black) and do(background pixels := black) on the boxed images; how the
    method's channel weights (``actual``: those of the unchanged images) move; a weight that reads
    the object should move more for the first."""
    chosen = images[index]
    chosen_targets = [targets[i] for i in index]
    black = black_pixel(run.loaded).to(run.device)
    inside = torch.stack([box_mask(boxes[i], tuple(images.shape[-2:]), run.device) for i in index])[:, None]
    rows = []
    for intervention in _INTERVENTIONS:
        region = inside if intervention == "object" else ~inside
        cam(torch.where(region, black, chosen), targets=chosen_targets)
        change = weight_change(actual, cam.last_weights)  # type: ignore[arg-type]
        for j, i in enumerate(index):
            rows.append(
                {"image": keys[i], "method": name, "intervention": intervention}
                | {
                    metric: float(change[metric][j])
                    for metric in ("mean_abs_change", "relative_change", "rank_correlation")
                }
            )
    return rows


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- sanity check
def _sanity(run: _Run, samples: list[Sample], skipped: dict[str, str], log: Callable[[str], None]) -> None:
    """Cascading randomization on the first readable images; written once to sanity.csv."""
    path = run.out / "sanity.csv"
    methods = [name for name in run.settings.methods if name in METHODS]
    if path.exists() and {r["method"] for r in _read_csv(path)} >= set(methods):
        return
    chosen = [s for s in samples if s.key not in skipped][: run.settings.sanity_images]
    loaded_batch = _load_batch(run, chosen, skipped) if chosen else None
    if loaded_batch is None:
        return
    _, images, _ = loaded_batch
    with torch.no_grad():
        targets = _predicted(run.loaded.model, images, run.settings)
    if run.settings.target == "label":
        targets = [int(s.label) for s in chosen]  # type: ignore[arg-type]
    stages = randomization_stages(run.loaded.model)
    layer = run.loaded.target_layer_name
    rows = []
    progress = Progress(len(methods), "sanity check")
    for name in methods:
        stage_rows = cascading_randomization(
            run.loaded.model,
            lambda model, name=name: _method(name, model, layer, run.loaded, run.settings),
            images,
            targets,
            layers=stages,
            seed=run.settings.seed,
        )
        for index, row in enumerate(stage_rows):
            rows.append(
                {"method": name, "stage": index, "layer": row["layer"]}
                | {key: float(row[key].mean()) for key in ("ssim", "spearman", "hog")}  # type: ignore[union-attr]
            )
        progress.advance(1, name)
    progress.close()
    _rewrite_csv(path, ["method", "stage", "layer", "ssim", "spearman", "hog"], rows)
    log(f"sanity check: {len(stages)} stages x {len(methods)} methods on {images.shape[0]} images")


# ----------------------------------------------------------------------------- results
def _write_results(run: _Run, n_done: int, skipped: dict[str, str], seconds: float) -> dict[str, Any]:
    s = run.settings
    methods: dict[str, dict[str, Any]] = {}
    for name in s.methods:
        summary: dict[str, Any] = {}
        for tracker in run.trackers[name]:
            summary.update(tracker.summary())
        summary["seconds_per_image"] = summarize(run.seconds[name])
        methods[name] = summary
    rows = _read_csv(run.out / "per_image.csv")
    first = {r["image"]: r for r in rows}
    correct = [float(r["correct"]) for r in first.values() if r["correct"] != ""]
    counterfactual: dict[str, dict[str, Any]] = {}
    for row in _read_csv(run.out / "counterfactual.csv"):
        group = counterfactual.setdefault(row["method"], {}).setdefault(row["intervention"], {})
        for metric in ("mean_abs_change", "relative_change", "rank_correlation"):
            group.setdefault(metric, []).append(float(row[metric]))
    counterfactual = {
        m: {i: {k: summarize(v) for k, v in metrics.items()} for i, metrics in groups.items()}
        for m, groups in counterfactual.items()
    }
    sanity: dict[str, list[dict[str, Any]]] = {}
    for row in _read_csv(run.out / "sanity.csv"):
        sanity.setdefault(row["method"], []).append(
            {"stage": int(row["stage"]), "layer": row["layer"]}
            | {k: float(row[k]) for k in ("ssim", "spearman", "hog")}
        )
    results = {
        "model": s.model,
        "n_images": n_done,
        "n_requested": len(run.dataset.samples[: s.limit] if s.limit else run.dataset.samples),
        "settings": _resolved_settings(run),
        "methods": methods,
        "top1_accuracy": summarize(correct) if correct else None,
        "skipped": {"count": len(skipped), "images": skipped},
        "counterfactual": counterfactual,
        "sanity": sanity,
        "paired": _paired(rows, s.methods),
        "mean_curves": {
            method: {kind: (total / run.curve_counts[method]).tolist() for kind, total in sums.items()}
            | {"n": run.curve_counts[method]}
            for method, sums in run.curve_sums.items()
        },
        "wall_time_s": round(run.earlier_seconds + seconds, 2),
        "runs": _runs(run, n_done, seconds),
    }
    (run.out / "results.json").write_text(json.dumps(results, indent=2, allow_nan=True))
    (run.out / "results.md").write_text(markdown_report(results))
    return results


def _paired(rows: list[dict[str, str]], methods: Sequence[str]) -> dict[str, Any]:
    """MI-CAM minus each other method, image by image (empty without MI-CAM or without rows)."""
    metrics = [m for m in COMPARED_METRICS if rows and m in rows[0]]
    if PAIRED_FOCUS not in methods or len(methods) < 2 or not metrics:
        return {}
    return {"focus": PAIRED_FOCUS, "differences": paired_differences(rows, PAIRED_FOCUS, metrics)}


def _runs(run: _Run, n_done: int, seconds: float) -> list[dict[str, Any]]:
    """One entry per session that added images (the first run and each resumption), so that a table
    finished on another device says which device produced which share of it."""
    current = {
        "device_name": device_name(run.device),
        "torch": torch.__version__,
        "images": n_done - run.earlier_images,
        "seconds": round(seconds, 2),
        # cuDNN may run float32 convolutions in TF32 (PyTorch's default): one image's numbers can move slightly
        "cudnn_tf32": bool(torch.backends.cudnn.allow_tf32) if run.device.type == "cuda" else None,
    }
    return run.earlier_runs + ([current] if current["images"] > 0 or not run.earlier_runs else [])


def _resolved_settings(run: _Run) -> dict[str, Any]:
    settings = asdict(run.settings)
    mi = next((e for e in run.explainers.values() if hasattr(e, "settings")), None)
    settings.update(
        {
            "dataset_kind": run.dataset.kind,
            "geometry_used": run.geometry,
            "target_layer": run.loaded.target_layer_name,
            "input_size": run.loaded.input_size,
            "pixel_mean": list(run.loaded.mean),
            "pixel_std": list(run.loaded.std),
            "mi_cam": mi.settings if mi is not None else None,  # type: ignore[union-attr]
            "reference_maps": {"centre-gaussian": "sigma = 0.25 x shorter side", "random": "uniform noise per pixel"},
            "counterfactual_interventions": {
                "object": "pixels inside the boxes set to black",
                "background": "pixels outside the boxes set to black",
            },
            "micam_version": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device_name": device_name(run.device),
        }
    )
    return settings
