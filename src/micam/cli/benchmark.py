"""Time MI-CAM against its peers and the authors' algorithm (the paper's Table 4, side by side, one run).

Per model and batch size: the forward pass, Grad-CAM, Score-CAM (ours and pytorch-grad-cam's),
MI-CAM (binned/bilinear and the authors' preset), and the authors' algorithm (nearest upsampling,
a Python loop of ``sklearn.metrics.mutual_info_score`` per channel, weighted sum, 11x11 sigma-7 blur,
ReLU), each the median of repeated runs, with the ratios the issue sets targets for. Cells whose
estimated time exceeds ``--cell-budget`` (or the rest of ``--time-budget``) are reported as skipped
with their estimate. Writes ``OUT/benchmark.json`` and ``OUT/benchmark.md``; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from micam.reports.machine import device_name

MODELS = ("vgg16", "mobilenet_v2", "resnet50", "efficientnet_lite0")
METHODS = (
    "forward",
    "trunk",
    "grad_cam",
    "score_cam",
    "score_cam_pgc",
    "mi_cam",
    "mi_cam_authors",
    "mi_weights_authors",
    "authors",
)
LABELS = {
    "forward": "forward pass (full model)",
    "trunk": "forward to the target layer",
    "grad_cam": "Grad-CAM",
    "score_cam": "Score-CAM (micam)",
    "score_cam_pgc": "Score-CAM (pytorch-grad-cam 1.5.7)",
    "mi_cam": "MI-CAM (binned, bilinear)",
    "mi_cam_authors": 'MI-CAM preset="authors" (reference, nearest)',
    "mi_weights_authors": "its MI weights alone (activations recorded beforehand)",
    "authors": "authors' algorithm (sklearn loop, CPU)",
}
# Weights that load offline: real ImageNet weights where bundled, random ones otherwise (timing only).
WEIGHTS = {"vgg16": "random", "resnet50": "random", "mobilenet_v2": "imagenet", "efficientnet_lite0": "imagenet"}
SLOW = ("score_cam", "score_cam_pgc", "authors")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help="comma-separated model names or specs (torchvision:NAME, timm:NAME, file.py:FACTORY; random weights)",
    )
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)}")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell (median); slow cells run fewer")
    parser.add_argument("--batch-sizes", default="1,32", help="comma-separated batch sizes")
    parser.add_argument("--size", type=int, default=224, help="input side in pixels")
    parser.add_argument("--cell-budget", type=float, default=90.0, help="skip a cell estimated to take longer (s)")
    parser.add_argument("--time-budget", type=float, default=None, help="skip cells once the whole run nears this (s)")
    parser.add_argument("--score-cam-batch", type=int, default=32, help="masked images per forward in Score-CAM")
    parser.add_argument("--out", default="benchmark-out", help="folder for benchmark.json and benchmark.md")


def run(args: argparse.Namespace) -> int:
    report = run_benchmark(
        models=_split(args.models),
        methods=_split(args.methods),
        device=args.device,
        repeats=args.repeats,
        batch_sizes=[int(b) for b in _split(args.batch_sizes)],
        size=args.size,
        cell_budget=args.cell_budget,
        time_budget=args.time_budget,
        score_cam_batch=args.score_cam_batch,
        command=" ".join(sys.argv),
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(report, indent=2))
    (out / "benchmark.md").write_text(markdown(report))
    print(f"wrote {out / 'benchmark.json'} and {out / 'benchmark.md'}", file=sys.stderr)
    return 0


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- inputs
def _images(batch: int, size: int, device: str) -> Tensor:
    """(B, 3, size, size) raw RGB in [0, 255]: the bundled cat photo if present, else a fixed pattern."""
    photo = Path(__file__).resolve().parents[3] / "examples" / "chelsea.png"
    if photo.exists():
        from PIL import Image
        from torchvision.transforms import functional as TF

        image = Image.open(photo).convert("RGB")
        image = TF.center_crop(TF.resize(image, size), size)
        x = TF.pil_to_tensor(image).float()
    else:
        generator = torch.Generator().manual_seed(0)
        x = (torch.rand(3, size, size, generator=generator) * 255).round()
    return x[None].repeat(batch, 1, 1, 1).to(device)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time(fn: Callable[[], Any], device: str, repeats: int, budget: float) -> tuple[list[float], Any]:
    """Run ``fn`` once untimed-for-median (warm-up, also timed for the estimate) and then up to
    ``repeats`` timed runs while within ``budget`` seconds; returns the timed runs and the last result."""
    _sync(device)
    start = time.perf_counter()
    result = fn()
    _sync(device)
    first = time.perf_counter() - start
    times: list[float] = []
    if first * (repeats + 1) > budget:  # slow cell: the first run is the measurement
        return [first], result
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        result = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times, result


# ----------------------------------------------------------------------------- the authors' algorithm
def authors_weights(activations: Tensor, raw_images: Tensor) -> tuple[Tensor, float]:
    """The authors' per-channel loop, from the paper's description: nearest (block) upsampling of each
    map to the input size, gray = 0.2989 R + 0.5870 G + 0.1140 B of the 0-255 image, then
    ``mutual_info_score(gray, map)`` per channel in Python. Returns (B, K) weights and the loop's time."""
    import numpy as np
    from sklearn.metrics import mutual_info_score

    warnings.filterwarnings("ignore", message="Clustering metrics expects discrete values")
    acts = activations.detach().float().cpu().numpy()
    raw = raw_images.detach().float().cpu().numpy()
    batch, channels, h, w = acts.shape
    big_h, big_w = raw.shape[-2:]
    weights = np.zeros((batch, channels))
    start = time.perf_counter()
    for i in range(batch):
        gray = (0.2989 * raw[i, 0] + 0.5870 * raw[i, 1] + 0.1140 * raw[i, 2]).astype(np.float32).ravel()
        for k in range(channels):
            block = np.repeat(np.repeat(acts[i, k], big_h // h, axis=0), big_w // w, axis=1)
            weights[i, k] = mutual_info_score(gray, block.ravel())
    return torch.from_numpy(weights), time.perf_counter() - start


def _authors_map(model: nn.Module, layer: nn.Module, raw: Tensor) -> tuple[Tensor, float, Tensor]:
    """The whole authors' algorithm: forward, MI loop, weighted sum, blur, ReLU. Returns map, loop time
    and the weights."""
    from micam.capture import record_activations
    from micam.imaging import gaussian_blur

    with torch.no_grad():
        recording = record_activations(model, [layer], raw, track_gradients=False, stop_early=True)
    activations = recording.activations[0].detach()
    weights, loop_time = authors_weights(activations, raw)
    size = tuple(raw.shape[-2:])
    upsampled = torch.nn.functional.interpolate(activations, size=size, mode="nearest")
    cam = torch.einsum("bk,bkhw->bhw", weights.to(activations), upsampled)
    return gaussian_blur(cam, 11, 7.0).clamp(min=0), loop_time, weights


# ----------------------------------------------------------------------------- the run
def run_benchmark(
    models: list[str],
    methods: list[str],
    device: str = "cpu",
    repeats: int = 5,
    batch_sizes: list[int] | None = None,
    size: int = 224,
    cell_budget: float = 90.0,
    time_budget: float | None = None,
    score_cam_batch: int = 32,
    command: str = "",
) -> dict[str, Any]:
    """Time every (model, method, batch size) cell; returns the report written as JSON."""
    from micam import models as zoo
    from micam.estimators import fused_available

    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA device")
    batch_sizes = batch_sizes or [1, 32]
    os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's progress bars
    began = time.perf_counter()
    notes: list[str] = []
    try:
        from pytorch_grad_cam import ScoreCAM as PeerScoreCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        peer_classes = (PeerScoreCAM, ClassifierOutputTarget)
    except Exception as error:  # optional peer
        peer_classes = None
        notes.append(f"pytorch-grad-cam unavailable ({type(error).__name__}): its Score-CAM column is skipped")
    try:
        import sklearn  # noqa: F401
    except Exception:
        notes.append("scikit-learn unavailable: the authors' algorithm is skipped")
        methods = [m for m in methods if m != "authors"]
    if device.startswith("cuda"):
        notes.append("the authors' MI loop (scikit-learn) runs on the CPU; their forward pass runs on the GPU")
    results: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    for name in models:
        try:
            loaded = zoo.load(name, weights=WEIGHTS.get(name, "random"), device=device)
        except Exception as error:
            try:  # timing does not need trained weights
                loaded = zoo.load(name, weights="random", device=device)
                notes.append(f"{name}: ImageNet weights unavailable ({error}); timed with random weights")
            except Exception as second:
                notes.append(f"{name} skipped: {second}")
                _log(f"[benchmark] {name}: skipped ({second})")
                continue
        model, layer = loaded.model, loaded.target_layer
        mean = torch.tensor(loaded.mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(loaded.std, device=device).view(1, 3, 1, 1)
        per_batch: dict[int, dict[str, float]] = {}
        for batch in batch_sizes:
            raw = _images(batch, size, device)
            x = (raw / 255 - mean) / std
            cells = _cells(model, layer, x, raw, score_cam_batch, peer_classes)
            timings = per_batch.setdefault(batch, {})
            for method in methods:
                if method not in cells:
                    continue
                row = {"model": name, "method": method, "batch": batch, "weights": loaded.weights}
                estimate = _estimate(method, batch, per_batch)
                left = None if time_budget is None else time_budget - (time.perf_counter() - began)
                limit = cell_budget if left is None else min(cell_budget, max(0.0, left))
                if estimate is not None and estimate > limit:
                    row.update(skipped=True, estimate_s=estimate)
                    _log(f"[benchmark] {name} b={batch} {method}: skipped (est. {estimate:.1f} s)")
                    results.append(row)
                    continue
                cell_repeats = 1 if method in SLOW and batch > 1 else repeats
                times, result = _time(cells[method], device, cell_repeats, limit)
                median = statistics.median(times)
                timings[method] = median
                row.update(skipped=False, runs=len(times), median_s=median, images_per_s=batch / median)
                if method == "authors":
                    row["mi_loop_s"] = result[1]
                    if batch == 1 and "mi_cam_authors" in methods:
                        checks.append(_authors_check(name, model, layer, raw, result[2]))
                results.append(row)
                _log(f"[benchmark] {name} b={batch} {method}: {median * 1000:.1f} ms (median of {len(times)})")
    report = {
        "command": command,
        "device": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "fused_kernels": fused_available() and device == "cpu",
        "size": size,
        "repeats": repeats,
        "wall_s": time.perf_counter() - began,
        "notes": notes,
        "results": results,
        "authors_weight_checks": checks,
    }
    report["ratios"] = ratios(report)
    return report


def _cells(
    model: nn.Module, layer: nn.Module, x: Tensor, raw: Tensor, score_cam_batch: int, peer_classes: Any
) -> dict[str, Callable[[], Any]]:
    """One callable per method, each explaining the batch ``x`` (``raw``: the same images in 0-255)."""
    from micam import MICAM, GradCAM, ScoreCAM
    from micam.capture import record_activations
    from micam.estimators import upsampled_mutual_information
    from micam.imaging import grayscale
    from micam.methods.mi_cam import PRESETS

    targets = [0] * x.shape[0]
    with torch.no_grad():
        recorded = record_activations(model, [layer], raw, track_gradients=False, stop_early=True)
    activations = recorded.activations[0].detach()
    gray = grayscale(raw, PRESETS["authors"]["luma"])

    def forward() -> Tensor:
        with torch.no_grad():
            return model(x)

    def trunk() -> Any:
        with torch.no_grad():
            return record_activations(model, [layer], x, track_gradients=False, stop_early=True)

    cells: dict[str, Callable[[], Any]] = {
        "forward": forward,
        "trunk": trunk,
        "grad_cam": lambda: GradCAM(model, [layer])(x, targets=targets),
        "score_cam": lambda: ScoreCAM(model, [layer], batch_size=score_cam_batch)(x, targets=targets),
        "mi_cam": lambda: MICAM(model, [layer])(x),
        "mi_cam_authors": lambda: MICAM(model, [layer], preset="authors")(raw),
        "mi_weights_authors": lambda: upsampled_mutual_information(activations, gray, "nearest", "reference"),
        "authors": lambda: _authors_map(model, layer, raw),
    }
    if peer_classes is not None:
        peer_cam, peer_target = peer_classes

        def peer() -> Any:
            with peer_cam(model=model, target_layers=[layer]) as cam:
                cam.batch_size = score_cam_batch
                return cam(input_tensor=x, targets=[peer_target(t) for t in targets])

        cells["score_cam_pgc"] = peer
    return cells


def _estimate(method: str, batch: int, per_batch: dict[int, dict[str, float]]) -> float | None:
    """Seconds a cell should take, scaled from the smallest batch already timed (None: no estimate)."""
    timed = [b for b in sorted(per_batch) if b < batch and method in per_batch[b]]
    if not timed:
        return None
    return per_batch[timed[0]][method] * batch / timed[0]


def _authors_check(name: str, model: nn.Module, layer: nn.Module, raw: Tensor, theirs: Tensor) -> dict[str, Any]:
    """Same weights? ``MICAM(preset="authors")`` against the sklearn loop's weights on the same input."""
    from micam import MICAM

    cam = MICAM(model, [layer], preset="authors")
    cam(raw)
    ours = cam.last_weights.double().cpu()
    relative = ((ours - theirs).abs() / theirs.abs().clamp(min=1e-12)).max().item()
    return {"model": name, "max_relative_difference": relative}


def ratios(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, one line per model: value, target, met."""
    times: dict[tuple[str, int], dict[str, float]] = {}
    loops: dict[tuple[str, int], float] = {}
    for row in report["results"]:
        if not row.get("skipped"):
            times.setdefault((row["model"], row["batch"]), {})[row["method"]] = row["median_s"]
            if "mi_loop_s" in row:
                loops[(row["model"], row["batch"])] = row["mi_loop_s"]
    lines: list[dict[str, Any]] = []

    def add(model: str, what: str, value: float | None, target: str, met: bool | None) -> None:
        lines.append({"model": model, "ratio": what, "value": value, "target": target, "met": met})

    for model in dict.fromkeys(m for m, _ in times):
        t1 = times.get((model, 1), {})
        mi = t1.get("mi_cam")
        for peer in ("score_cam", "score_cam_pgc"):
            if mi and peer in t1:
                value = t1[peer] / mi
                met = value >= 200 if model == "vgg16" else None
                add(model, f"{LABELS[peer]} / MI-CAM", value, ">= 200 (VGG-16)", met)
        if "mi_cam_authors" in t1 and "trunk" in t1 and (model, 1) in loops:
            # The definition; ill-conditioned where the MI step is smaller than the trunk's jitter.
            mi_time = max(t1["mi_cam_authors"] - t1["trunk"], 1e-9)
            value = loops[(model, 1)] / mi_time
            add(model, "authors' sklearn loop / (MI-CAM authors - trunk)", value, ">= 100", value >= 100)
        if "mi_weights_authors" in t1 and (model, 1) in loops:
            value = loops[(model, 1)] / t1["mi_weights_authors"]
            add(model, "authors' sklearn loop / MI-CAM authors' MI weights alone", value, ">= 100", value >= 100)
        if mi and "grad_cam" in t1:
            value = mi / t1["grad_cam"]
            bound = 1.0 if model == "vgg16" else 2.0
            add(model, "MI-CAM / Grad-CAM", value, f"<= {bound}", value <= bound)
        big = [b for (m, b) in times if m == model and b > 1 and "mi_cam" in times[(m, b)]]
        if mi and big:
            b = max(big)
            value = (b / times[(model, b)]["mi_cam"]) / (1 / mi)
            add(model, f"MI-CAM images/s, batch {b} / batch 1", value, ">= 1", value >= 1)
    return lines


# ----------------------------------------------------------------------------- Markdown
def markdown(report: dict[str, Any]) -> str:
    """The side-by-side table: per model, each method's median time per batch size and images/s."""
    batches = sorted({row["batch"] for row in report["results"]})
    lines = [
        f"Device: {report['device']}; torch {report['torch']}, Python {report['python']}; "
        f"input {report['size']}x{report['size']}; median of up to {report['repeats']} runs after a warm-up "
        f"(cells slower than the budget: a single run); fused CPU kernels: {report['fused_kernels']}; "
        f"whole run {report['wall_s']:.0f} s.",
        "",
    ]
    lines += [f"- {note}" for note in report["notes"]]
    header = "| model | method | " + " | ".join(f"batch {b}: ms (runs) | batch {b}: img/s" for b in batches) + " |"
    lines += ["", header, "|" + "---|" * (2 + 2 * len(batches))]
    cells: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for row in report["results"]:
        cells.setdefault((row["model"], row["method"]), {})[row["batch"]] = row
    for (model, method), by_batch in cells.items():
        parts = []
        for b in batches:
            row = by_batch.get(b)
            if row is None:
                parts += ["-", "-"]
            elif row.get("skipped"):
                parts += [f"skipped (est. {row['estimate_s']:.0f} s)", "-"]
            else:
                extra = f", MI loop {row['mi_loop_s'] * 1000:.0f}" if "mi_loop_s" in row else ""
                parts += [f"{row['median_s'] * 1000:.1f} ({row['runs']}{extra})", f"{row['images_per_s']:.2f}"]
        lines.append(f"| {model} | {LABELS[method]} | " + " | ".join(parts) + " |")
    lines += ["", "| model | ratio | value | target | met |", "|---|---|---|---|---|"]
    for line in report["ratios"]:
        value = "-" if line["value"] is None else f"{line['value']:.2f}"
        met = "-" if line["met"] is None else ("yes" if line["met"] else "**no**")
        lines.append(f"| {line['model']} | {line['ratio']} | {value} | {line['target']} | {met} |")
    if report["authors_weight_checks"]:
        lines += ["", "Same weights as the authors' loop (max relative difference, batch 1):"]
        lines += [f"- {c['model']}: {c['max_relative_difference']:.1e}" for c in report["authors_weight_checks"]]
    return "\n".join(lines) + "\n"


def _main() -> int:
    parser = argparse.ArgumentParser(prog="micam benchmark", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(_main())


__all__ = ["add_arguments", "markdown", "ratios", "run", "run_benchmark"]
