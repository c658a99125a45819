"""MI-CAM's Triton kernel on a GPU, in one run: ``python benchmarks/gpu_kernel.py [--out gpu_kernel.json]``.

Two parts, both on CUDA (``--device``):

* equality: the kernel's MI weights (``route="gpu"``) against the CPU path's (``route="auto"`` on the
  CPU: the fused numba kernels where numba is installed) on seeded random and adversarial maps (integer
  values, a constant map, all-negative values, 1e30), both upsamplings, the binned and normalized
  estimators at 8, 32 and 64 bins, shapes from 4 x 6 -> 64 x 96 to 7 x 7 -> 224 x 224;
  printed: the largest difference and how many weights differ at all.
* the MI step alone at the four models' batch-32 shapes of their target layers (VGG-16 512 x 14 x 14,
  MobileNetV2 and EfficientNet-Lite0 1280 x 7 x 7, ResNet-50 2048 x 7 x 7) upsampled to 224 x 224:
  the chunked torch route against the kernel at each output-pixel block and warp count of ``--blocks``
  and ``--warps`` (median of ``--repeats`` after a warm-up, the device synchronized around each call).

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
    rows = []
    for (h, w), size in CASES:
        for kind in ("random", "relu", "integer", "negative", "huge", "constant"):
            maps = _maps(kind, (2, 24, h, w), generator)
            gray = torch.rand((2, *size), generator=generator) * 255
            for mode in ("bilinear", "nearest"):
                for estimator in ("binned", "normalized"):
                    for bins in (8, 32, 64):
                        cpu = upsampled_mutual_information(maps, gray, mode, estimator, bins)
                        gpu = upsampled_mutual_information(
                            maps.to(device), gray.to(device), mode, estimator, bins, route="gpu"
                        ).cpu()
                        difference = (gpu - cpu).abs()
                        rows.append(
                            {
                                "source": [h, w], "size": list(size), "kind": kind, "mode": mode,
                                "estimator": estimator, "bins": bins,
                                "max_difference": float(difference.max()),
                                "weights_differing": int((difference > 0).sum()), "weights": difference.numel(),
                            }
                        )  # fmt: skip
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


def mi_step(device: str, batch: int, blocks: list[int], warps: list[int], repeats: int) -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(1)
    rows = []
    for model, (channels, h, w) in SHAPES.items():
        maps = torch.randn(batch, channels, h, w, generator=generator).clamp(min=0).to(device)
        gray = (torch.rand(batch, 224, 224, generator=generator) * 255).to(device)
        row: dict[str, Any] = {"model": model, "batch": batch, "maps": batch * channels}
        row["chunked_s"] = _median_seconds(
            lambda maps=maps, gray=gray: upsampled_mutual_information(maps, gray, route="chunked"), device, repeats
        )
        reference = upsampled_mutual_information(maps, gray, route="gpu")
        for block in blocks:
            for warp in warps:
                fused._GPU_BLOCK, fused._GPU_WARPS = block, warp
                seconds = _median_seconds(
                    lambda maps=maps, gray=gray: upsampled_mutual_information(maps, gray, route="gpu"), device, repeats
                )
                same = bool(torch.equal(upsampled_mutual_information(maps, gray, route="gpu"), reference))
                row[f"kernel_s_block{block}_warps{warp}"] = seconds
                row[f"same_block{block}_warps{warp}"] = same
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--blocks", default="512,1024,2048")
    parser.add_argument("--warps", default="4,8")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    began = time.perf_counter()
    block, warps = fused._GPU_BLOCK, fused._GPU_WARPS
    rows = equality(args.device)
    worst = max(r["max_difference"] for r in rows)
    differing = sum(r["weights_differing"] for r in rows)
    print(f"equality: {len(rows)} cases, {sum(r['weights'] for r in rows)} weights; largest difference {worst:.3g}; "
          f"{differing} weights differ", flush=True)  # fmt: skip
    for r in rows:
        if r["weights_differing"]:
            print("  differs:", json.dumps(r), flush=True)
    timing = mi_step(
        args.device, args.batch, [int(b) for b in args.blocks.split(",")], [int(w) for w in args.warps.split(",")],
        args.repeats,
    )  # fmt: skip
    fused._GPU_BLOCK, fused._GPU_WARPS = block, warps
    result = {
        "device": device_name(args.device), "torch": torch.__version__, "wall_s": time.perf_counter() - began,
        "equality": rows, "mi_step": timing,
    }  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
