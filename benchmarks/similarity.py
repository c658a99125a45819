"""The sanity check's map similarities against the code they replaced, in one run:
``python benchmarks/similarity.py [--maps 4] [--size 224] [--repeats 50] [--out similarity.json]``.

SSIM: the separable float32 pass (``micam.metrics.ssim``) against the 2-D float64 window micam used
before (``_ssim_window_2d``). HOG: the numba pass (``micam.metrics.hog``) against the tensor code
(``_hog_tensor``, what micam computed before and still computes off the CPU or without numba), alone
and inside ``hog_similarity``. The maps are CAM-like (7 x 7 random maps upsampled bilinearly, as the
cascading-randomization check compares them); each timing is the median of ``--repeats`` calls after
one warm-up call, old and new alternating, with torch's default thread count. The "after 20 ms idle" row
sleeps before each call (as a user's loop that waits on I/O or a GPU does): an OpenMP pool that has gone
to sleep must wake. Also printed: the largest difference between old and new values.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from micam.metrics import hog, hog_similarity, pearson, ssim
from micam.metrics.similarity import _hog_tensor, _ssim_window_2d
from micam.runtime import device_name


def cam_like(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    coarse = torch.rand(count, 1, 7, 7, generator=generator)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[:, 0]


def paired_medians(
    old: Callable[[], object], new: Callable[[], object], repeats: int, idle: float = 0.0
) -> tuple[float, float]:
    """Median seconds of ``old`` and ``new``, measured alternately (the machine's load hits both), each
    call after ``idle`` seconds of sleep (not timed)."""
    old(), new()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for kind, call in enumerate((old, new)):
            if idle:
                time.sleep(idle)
            tick = time.perf_counter()
            call()
            times[kind].append(time.perf_counter() - tick)
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--maps", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    a, b = cam_like(args.maps, args.size, generator), cam_like(args.maps, args.size, generator)
    cases = {
        "ssim": (lambda: _ssim_window_2d(a, b), lambda: ssim(a, b), 0.0),
        "hog": (lambda: _hog_tensor(a, 8, 9), lambda: hog(a), 0.0),
        "hog, after 20 ms idle": (lambda: _hog_tensor(a, 8, 9), lambda: hog(a), 0.02),
        "hog_similarity": (
            lambda: pearson(_hog_tensor(a, 8, 9), _hog_tensor(b, 8, 9)),
            lambda: hog_similarity(a, b),
            0.0,
        ),
    }
    rows = []
    print(f"{args.maps} maps of {args.size} x {args.size}, {device_name('cpu')}, median of {args.repeats}")
    print(f"{'measure':<24}{'before ms':>11}{'now ms':>9}{'speed-up':>10}{'max |diff|':>12}")
    for name, (old, new, idle) in cases.items():
        before, now = paired_medians(old, new, args.repeats, idle)
        difference = float((torch.as_tensor(old()) - torch.as_tensor(new())).abs().max())
        rows.append({"measure": name, "before_ms": before * 1e3, "now_ms": now * 1e3, "max_abs_difference": difference})
        print(f"{name:<24}{before * 1e3:>11.3f}{now * 1e3:>9.3f}{before / now:>9.1f}x{difference:>12.1e}")
    if args.out:
        settings = {"maps": args.maps, "size": args.size, "repeats": args.repeats, "device": device_name("cpu")}
        args.out.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
