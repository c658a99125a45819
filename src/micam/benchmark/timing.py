"""The run: every (model, method, batch size) cell timed, the median of repeated runs after a warm-up.

Per model and batch size: the forward pass, Grad-CAM, Score-CAM (ours and pytorch-grad-cam's), MI-CAM
(binned/bilinear and the authors' preset), and the authors' algorithm (``authors.py``), on the bundled
cat photo. Cells whose estimated time exceeds ``cell_budget`` (or the rest of ``time_budget``) are
reported as skipped with their estimate. Progress goes to stderr.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.transforms import functional as TF

from micam import MICAM, GradCAM, ScoreCAM
from micam import models as zoo
from micam.benchmark.authors import authors_check, authors_map
from micam.benchmark.result import METHODS, BenchmarkResult, ratios
from micam.capture import record_activations
from micam.estimators import fused_available, upsampled_mutual_information
from micam.examples import photo
from micam.imaging import grayscale
from micam.methods.mi_cam import PRESETS
from micam.runtime import device_name

MODELS = ("vgg16", "mobilenet_v2", "resnet50", "efficientnet_lite0")
# Weights that load offline: real ImageNet weights where bundled, random ones otherwise (timing only).
WEIGHTS = {"vgg16": "random", "resnet50": "random", "mobilenet_v2": "imagenet", "efficientnet_lite0": "imagenet"}
SLOW = ("score_cam", "score_cam_pgc", "authors")


def run_benchmark(
    models: Sequence[str] = MODELS,
    methods: Sequence[str] = METHODS,
    device: str = "cpu",
    repeats: int = 5,
    batch_sizes: Sequence[int] = (1, 32),
    size: int = 224,
    cell_budget: float = 90.0,
    time_budget: float | None = None,
    score_cam_batch: int = 32,
    command: str = "",
) -> BenchmarkResult:
    """Time every (model, method, batch size) cell.

    ``models``: names or specs (torchvision:NAME, timm:NAME, file.py:FACTORY; random weights where no
    ImageNet weights load). ``methods``: from ``METHODS``. ``cell_budget``: seconds above which a cell is
    skipped with its estimate; ``time_budget``: seconds for the whole run. ``command``: recorded as is.
    """
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        raise ValueError(f"unknown methods {unknown or list(methods)}; choose from {', '.join(METHODS)}")
    if not models:
        raise ValueError("no model to time; name at least one with --models")
    for name in models:  # a misspelt spec is refused before any timing starts
        if name not in zoo.MODEL_NAMES:
            zoo.custom.parse(name, zoo.MODEL_NAMES)
    if any(batch < 1 for batch in batch_sizes) or repeats < 1 or size < 1 or score_cam_batch < 1:
        raise ValueError("batch sizes, --repeats, --size and --score-cam-batch must be positive")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA device")
    batch_sizes = list(batch_sizes) or [1, 32]
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
    blocker = _gpu_blocker_for(device) if "mi_cam_gpu" in methods else None
    if blocker is not None:
        notes.append(f"MI-CAM's GPU kernel is left out: {blocker}")
        methods = [m for m in methods if m != "mi_cam_gpu"]
    results: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    gpu_checks: list[dict[str, Any]] = []
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
                        checks.append(authors_check(name, model, layer, raw, result[2]))
                if method == "mi_cam_gpu":
                    gpu_checks.append({"model": name, "batch": batch, **gpu_kernel_check(model, layer, x)})
                results.append(row)
                _log(f"[benchmark] {name} b={batch} {method}: {median * 1000:.1f} ms (median of {len(times)})")
    if not results:
        raise ValueError(f"no model could be loaded, nothing was timed: {'; '.join(notes)}")
    return BenchmarkResult(
        command=command,
        device=device_name(device),
        torch=torch.__version__,
        python=platform.python_version(),
        cpu_threads=torch.get_num_threads(),
        fused_kernels=fused_available() and device == "cpu",
        size=size,
        repeats=repeats,
        wall_s=time.perf_counter() - began,
        notes=notes,
        results=results,
        authors_weight_checks=checks,
        gpu_kernel_checks=gpu_checks,
        ratios=ratios(results),
    )


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _images(batch: int, size: int, device: str) -> Tensor:
    """(B, 3, size, size) raw RGB in [0, 255]: the bundled cat photo, centre-cropped."""
    image = TF.center_crop(TF.resize(photo("chelsea.png"), size), size)
    x: Tensor = TF.pil_to_tensor(image).float()
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


def _cells(
    model: nn.Module, layer: nn.Module, x: Tensor, raw: Tensor, score_cam_batch: int, peer_classes: Any
) -> dict[str, Callable[[], Any]]:
    """One callable per method, each explaining the batch ``x`` (``raw``: the same images in 0-255)."""
    targets = [0] * x.shape[0]
    with torch.no_grad():
        recorded = record_activations(model, [layer], raw, track_gradients=False, stop_early=True)
    activations = recorded.activations[0].detach()
    gray = grayscale(raw, PRESETS["authors"]["luma"])

    def forward() -> Tensor:
        with torch.no_grad():
            logits: Tensor = model(x)
            return logits

    def trunk() -> Any:
        with torch.no_grad():
            return record_activations(model, [layer], x, track_gradients=False, stop_early=True)

    cells: dict[str, Callable[[], Any]] = {
        "forward": forward,
        "trunk": trunk,
        "grad_cam": lambda: GradCAM(model, [layer])(x, targets=targets),
        "score_cam": lambda: ScoreCAM(model, [layer], batch_size=score_cam_batch)(x, targets=targets),
        "mi_cam": lambda: MICAM(model, [layer])(x),
        "mi_cam_gpu": lambda: _with_gpu_kernel(lambda: MICAM(model, [layer])(x)),
        "mi_cam_authors": lambda: MICAM(model, [layer], preset="authors")(raw),
        "mi_weights_authors": lambda: upsampled_mutual_information(activations, gray, "nearest", "reference"),
        "authors": lambda: authors_map(model, layer, raw),
    }
    if peer_classes is not None:
        peer_cam, peer_target = peer_classes

        def peer() -> Any:
            with peer_cam(model=model, target_layers=[layer]) as cam:
                cam.batch_size = score_cam_batch
                return cam(input_tensor=x, targets=[peer_target(t) for t in targets])

        cells["score_cam_pgc"] = peer
    return cells


def _with_gpu_kernel(call: Callable[[], Any]) -> Any:
    """``call()`` with MI-CAM's "auto" route taking the GPU kernel (MICAM_GPU_KERNEL=1)."""
    before = os.environ.get("MICAM_GPU_KERNEL")
    os.environ["MICAM_GPU_KERNEL"] = "1"
    try:
        return call()
    finally:
        if before is None:
            del os.environ["MICAM_GPU_KERNEL"]
        else:
            os.environ["MICAM_GPU_KERNEL"] = before


def _gpu_blocker_for(device: str) -> str | None:
    """Why the GPU kernel cannot run on ``device`` (None: it can); its cells are left out then."""
    probe = torch.zeros(1, 1, 2, 2, device=device)
    try:
        upsampled_mutual_information(probe, torch.zeros(1, 4, 4, device=device), route="gpu")
    except RuntimeError as error:
        return str(error)
    return None


def gpu_kernel_check(model: nn.Module, layer: nn.Module, x: Tensor) -> dict[str, float]:
    """The GPU kernel's MI weights and MI-CAM maps against the default route's, on the same batch."""
    with torch.no_grad():
        activations = record_activations(model, [layer], x, track_gradients=False, stop_early=True).activations[0]
    gray = grayscale(x)  # (B, H, W)
    kernel = upsampled_mutual_information(activations, gray, route="gpu")
    default = upsampled_mutual_information(activations, gray)
    cpu = upsampled_mutual_information(activations.cpu(), gray.cpu())
    maps_kernel = _with_gpu_kernel(lambda: MICAM(model, [layer])(x))
    maps_default = MICAM(model, [layer])(x)
    return {
        "max_weight_difference": float((kernel - default).abs().max()),
        "max_weight_difference_cpu": float((kernel.cpu() - cpu).abs().max()),
        "max_map_difference": float((maps_kernel - maps_default).abs().max()),
    }


def _estimate(method: str, batch: int, per_batch: dict[int, dict[str, float]]) -> float | None:
    """Seconds a cell should take, scaled from the smallest batch already timed (None: no estimate)."""
    timed = [b for b in sorted(per_batch) if b < batch and method in per_batch[b]]
    if not timed:
        return None
    return per_batch[timed[0]][method] * batch / timed[0]
