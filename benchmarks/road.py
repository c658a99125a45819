"""ROAD's noisy linear imputation, the sparse direct solve against conjugate gradients, in one run:
``python benchmarks/road.py [--size 224] [--out road.json]``.

One image of ``--size`` x ``--size`` x 3 random pixels and one CAM-like map (a random 7 x 7 map upsampled
bilinearly), imputed at the 9 ROAD percentages (10-90 %), most- and least-relevant first: the 18
imputations that ``micam.metrics.road`` makes per image and map. Each solver runs once per order
(conjugate gradients at its default tolerance, 1e-6), with torch's default thread count; printed: the
seconds per image and map and the largest difference between the two solvers' imputed pixels (noise 0).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from micam.metrics.deletion_insertion import _ranks
from micam.metrics.road import ROAD_PERCENTAGES, noisy_linear_imputation, removal_counts
from micam.runtime import device_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, args.size, args.size, generator=generator)
    coarse = torch.rand(1, 1, 7, 7, generator=generator)
    cam = F.interpolate(coarse, size=(args.size, args.size), mode="bilinear", align_corners=False)[:, 0]
    counts = removal_counts(ROAD_PERCENTAGES, args.size * args.size)
    seconds = {"direct": 0.0, "cg": 0.0}
    difference = 0.0
    for descending in (True, False):
        ranks = _ranks(cam, descending=descending)[0]
        removed = torch.stack([ranks < count for count in counts])
        images = image.expand(len(counts), -1, -1, -1)
        imputed = {}
        for solver in seconds:
            tick = time.perf_counter()
            imputed[solver] = noisy_linear_imputation(images, removed, noise=0.0, solver=solver)  # type: ignore[arg-type]
            seconds[solver] += time.perf_counter() - tick
        difference = max(difference, float((imputed["direct"] - imputed["cg"]).abs().max()))
    print(f"ROAD imputations of one {args.size} x {args.size} image and map (18 systems), {device_name('cpu')}")
    for solver, value in seconds.items():
        print(f"{solver:<8}{value:>8.2f} s")
    print(f"speed-up {seconds['cg'] / seconds['direct']:.1f}x, largest difference {difference:.1e}")
    if args.out:
        record = {"size": args.size, "device": device_name("cpu"), "seconds": seconds, "max_abs_difference": difference}
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
