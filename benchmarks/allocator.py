"""Batched forward passes with glibc's default allocator and with the settings ``micam`` runs with
(``micam.runtime.tune_allocator``), in one run:
``python benchmarks/allocator.py [--model mobilenet_v2] [--batch-sizes 16,64] [--threads 1,2] [--out a.json]``.

Each (allocator, threads) pair runs in a fresh process (glibc's settings apply to the blocks a process
allocates after them), the pairs alternating, each timing the model's inference copy (what deletion /
insertion, Score-CAM and ROAD run) on random images: one warm-up pass, then the median of 6 passes,
in milliseconds per image. The values the model computes are the same either way; only where its
activations' memory comes from changes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, statistics, sys, time, torch
from micam import models as zoo
from micam.inference import inference_runner
from micam.runtime import tune_allocator
tuned = tune_allocator() if sys.argv[1] == "tuned" else False
runner = inference_runner(zoo.load(sys.argv[2], device="cpu").model)
result = {"tuned": tuned}
for batch in map(int, sys.argv[3].split(",")):
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    runner(x)
    times = []
    for _ in range(6):
        start = time.perf_counter()
        runner(x)
        times.append(time.perf_counter() - start)
    result[batch] = statistics.median(times) / batch * 1000
print(json.dumps(result))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--batch-sizes", default="16,64")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    print(f"{args.model}, inference copy, ms per image (median of 6 passes)")
    print(f"{'threads':>8}{'batch':>7}{'glibc default':>15}{'micam':>8}{'speed-up':>10}")
    for threads in args.threads.split(","):
        found = {}
        for allocator in ("default", "tuned"):
            environment = os.environ | {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
            command = [sys.executable, "-c", CHILD, allocator, args.model, args.batch_sizes]
            done = subprocess.run(command, capture_output=True, text=True, env=environment, check=True)
            found[allocator] = json.loads(done.stdout.strip().splitlines()[-1])
        for batch in args.batch_sizes.split(","):
            before, after = found["default"][batch], found["tuned"][batch]
            rows.append({"threads": int(threads), "batch": int(batch), "default_ms": before, "tuned_ms": after})
            print(f"{threads:>8}{batch:>7}{before:>15.1f}{after:>8.1f}{before / after:>9.2f}x")
        if not found["tuned"]["tuned"]:
            print("(glibc's mallopt is not available here: both columns ran with the default allocator)")
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
