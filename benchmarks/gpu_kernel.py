"""MI-CAM's Triton kernel on a GPU, in one run: ``python benchmarks/gpu_kernel.py [--out gpu_kernel.json]``.

Two parts, both on CUDA (``--device``):

* equality: the kernel's MI weights (``route="gpu"``) against the CPU path's (``route="auto"`` on the
  CPU: the fused numba kernels where numba is installed) on seeded random and adversarial maps (integer
  values, a constant map, all-negative values, 1e30), both upsamplings, the binned and normalized
  estimators at 8, 32 and 64 bins, shapes from 4 x 6 -> 64 x 96 to 7 x 7 -> 224 x 224, both kernels
  (the "dot" kernel serves 16-64 bins; at 8 bins both settings run the histogram kernel);
  printed: the largest difference and how many weights differ by more than 1e-12 (float64 sums in
  another order differ by ~1e-14; one pixel in another bin moves a weight by more than 1e-8).
* the MI step alone at the four models' batch-32 shapes of their target layers (VGG-16 512 x 14 x 14,
  MobileNetV2 and EfficientNet-Lite0 1280 x 7 x 7, ResNet-50 2048 x 7 x 7) upsampled to 224 x 224:
  the chunked torch route against each setting of the GPU route in ``KERNELS`` (``--kernels``): the
  ``tl.histogram`` kernel and the tensor-core ("dot") kernel at several maps per program, pixel blocks
  and warps (median of ``--repeats`` after a warm-up, the device synchronized around each call), and
  the largest difference of each setting's weights from the default setting's.

The whole-method ratios (MI-CAM / Grad-CAM) come from ``micam benchmark --device cuda --methods
forward,grad_cam,mi_cam,mi_cam_gpu``; this script says where the MI step's time goes and whether the
kernel computes the CPU path's weights.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from micam.estimators import fused
from micam.estimators.fused import upsampled_mutual_information
from micam.runtime import device_name

SHAPES = {  # model -> (channels, h, w) of the default target layer
    "vgg16": (512, 14, 14),
    "mobilenet_v2": (1280, 7, 7),
    "resnet50": (2048, 7, 7),
    "efficientnet_lite0": (1280, 7, 7),
}

CASES = [((7, 7), (224, 224)), ((14, 14), (224, 224)), ((4, 6), (64, 96)), ((13, 17), (224, 224))]


def _maps(kind: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Seeded float32 maps of one adversarial kind."""
    base = torch.randn(shape, generator=generator)
    if kind == "random":
        return base
    if kind == "relu":
        return base.clamp(min=0)
    if kind == "integer":
        return torch.randint(0, 4, shape, generator=generator).float()
    if kind == "negative":
        return -base.abs() - 1
    if kind == "huge":
        return base * 1e30
    if kind == "constant":
        return torch.full(shape, 7.0)
    raise ValueError(kind)


def equality(device: str) -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(0)
    default = fused._GPU_KERNEL
    rows = []
    for (h, w), size in CASES:
        for kind in ("random", "relu", "integer", "negative", "huge", "constant"):
            maps = _maps(kind, (2, 24, h, w), generator)
            gray = torch.rand((2, *size), generator=generator) * 255
            for mode in ("bilinear", "nearest"):
                for estimator in ("binned", "normalized"):
                    for bins in (8, 32, 64):
                        cpu = upsampled_mutual_information(maps, gray, mode, estimator, bins)
                        for kernel in ("histogram", "dot"):
                            fused._GPU_KERNEL = kernel
                            gpu = upsampled_mutual_information(
                                maps.to(device), gray.to(device), mode, estimator, bins, route="gpu"
                            ).cpu()
                            difference = (gpu - cpu).abs()
                            rows.append(
                                {
                                    "source": [h, w], "size": list(size), "kind": kind, "mode": mode,
                                    "estimator": estimator, "bins": bins, "kernel": kernel,
                                    "max_difference": float(difference.max()),
                                    "weights_differing": int((difference > 1e-12).sum()),
                                    "weights": difference.numel(),
                                }
                            )  # fmt: skip
                        fused._GPU_KERNEL = default
    return rows


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _median_seconds(call: Callable[[], Any], device: str, repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        _synchronize(device)
        began = time.perf_counter()
        call()
        _synchronize(device)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


KERNELS = {  # name -> settings of micam.estimators.fused for the GPU route
    "histogram-2048x4": {"_GPU_KERNEL": "histogram", "_GPU_BLOCK": 2048, "_GPU_WARPS": 4},
    "dot-4x64x4": {"_GPU_KERNEL": "dot", "_GPU_DOT_MAPS": 4, "_GPU_DOT_BLOCK": 64, "_GPU_WARPS": 4},
    "dot-8x64x4": {"_GPU_KERNEL": "dot", "_GPU_DOT_MAPS": 8, "_GPU_DOT_BLOCK": 64, "_GPU_WARPS": 4},
    "dot-8x64x8": {"_GPU_KERNEL": "dot", "_GPU_DOT_MAPS": 8, "_GPU_DOT_BLOCK": 64, "_GPU_WARPS": 8},
    "dot-4x128x4": {"_GPU_KERNEL": "dot", "_GPU_DOT_MAPS": 4, "_GPU_DOT_BLOCK": 128, "_GPU_WARPS": 4},
    "dot-8x128x8": {"_GPU_KERNEL": "dot", "_GPU_DOT_MAPS": 8, "_GPU_DOT_BLOCK": 128, "_GPU_WARPS": 8},
    "dot-16x64x8": {"_GPU_KERNEL": "dot", "_GPU_DOT_MAPS": 16, "_GPU_DOT_BLOCK": 64, "_GPU_WARPS": 8},
}


def _use(settings: dict[str, Any]) -> None:
    for name, value in settings.items():
        setattr(fused, name, value)


def mi_step(device: str, batch: int, kernels: list[str], repeats: int) -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(1)
    defaults = {name: getattr(fused, name) for settings in KERNELS.values() for name in settings}
    rows = []
    for model, (channels, h, w) in SHAPES.items():
        maps = torch.randn(batch, channels, h, w, generator=generator).clamp(min=0).to(device)
        gray = (torch.rand(batch, 224, 224, generator=generator) * 255).to(device)
        row: dict[str, Any] = {"model": model, "batch": batch, "maps": batch * channels}
        row["chunked_s"] = _median_seconds(
            lambda maps=maps, gray=gray: upsampled_mutual_information(maps, gray, route="chunked"), device, repeats
        )
        _use(defaults)
        reference = upsampled_mutual_information(maps, gray, route="gpu")
        for kernel in kernels:
            _use(KERNELS[kernel])
            try:
                row[f"{kernel}_s"] = _median_seconds(
                    lambda maps=maps, gray=gray: upsampled_mutual_information(maps, gray, route="gpu"), device, repeats
                )
                again = upsampled_mutual_information(maps, gray, route="gpu")
                row[f"{kernel}_max_difference"] = float((again - reference).abs().max())
            except Exception as error:  # a setting that does not compile here: say so, time the others
                row[f"{kernel}_error"] = f"{type(error).__name__}: {str(error)[:200]}"
        _use(defaults)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--kernels", default=",".join(KERNELS), help="settings of the GPU route to time")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    began = time.perf_counter()
    rows = equality(args.device)
    worst = max(r["max_difference"] for r in rows)
    differing = sum(r["weights_differing"] for r in rows)
    print(f"equality: {len(rows)} cases, {sum(r['weights'] for r in rows)} weights; largest difference {worst:.3g}; "
          f"{differing} weights differ by more than 1e-12", flush=True)  # fmt: skip
    for r in rows:
        if r["weights_differing"]:
            print("  differs:", json.dumps(r), flush=True)
    timing = mi_step(args.device, args.batch, args.kernels.split(","), args.repeats)
    result = {
        "device": device_name(args.device), "torch": torch.__version__, "wall_s": time.perf_counter() - began,
        "equality": rows, "mi_step": timing,
    }  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
