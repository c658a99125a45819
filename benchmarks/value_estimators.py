"""The value-based estimators ("ksg", "hsic", "hsic-normalized") against another checkout, in one run:
``python benchmarks/value_estimators.py --baseline-src OTHER/src [--maps 64] [--rounds 3] [--out value.json]``.

Each estimator weighs ``--maps`` real activation maps: MobileNetV2's ``features.18`` (ImageNet weights)
on the bundled ``examples/chelsea.png``, upsampled bilinearly to 224 x 224, against the photo's gray image,
through ``micam.mutual_information`` (2,048 seeded pixels, the defaults). Each round runs this checkout and
the baseline in fresh processes, one after the other, so the machine's load hits both; the table gives the
median of the rounds in ms per map, and the largest relative difference between the two checkouts'
values (KSG's neighbour counts do not depend on the blocks: 0; HSIC sums in another order).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
ESTIMATORS = ("ksg", "hsic", "hsic-normalized")


def measure(out: Path, maps: int) -> None:
    """Time each estimator on ``maps`` maps in this process (one thread) and save seconds and values."""
    import micam
    from micam.capture.recorder import record_activations
    from micam.examples import photo
    from micam.imaging import grayscale, upsample
    from micam.models import load
    from micam.runtime import tune_allocator

    tune_allocator()
    torch.set_num_threads(1)
    loaded = load("mobilenet_v2")
    x = loaded.preprocess(photo("chelsea.png"))[None]
    with torch.no_grad():
        recorded = record_activations(loaded.model, [loaded.target_layer], x, track_gradients=False, stop_early=True)
    up = upsample(recorded.activations[0][:, :maps], (224, 224), "bilinear").flatten(2)[0]
    gray = grayscale(x).flatten(1)[0]
    result: dict[str, object] = {}
    for name in ESTIMATORS:
        start = time.perf_counter()
        values = micam.mutual_information(up, gray, estimator=name)
        result[name] = {"seconds": time.perf_counter() - start, "values": values.tolist()}
    out.write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", type=Path, required=False, help="another checkout's src/ to compare")
    parser.add_argument("--maps", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)  # a child's own run
    args = parser.parse_args()
    if args.measure is not None:
        measure(args.measure, args.maps)
        return
    checkouts = {"this checkout": ROOT / "src"} | ({"baseline": args.baseline_src} if args.baseline_src else {})
    runs: dict[str, list[dict[str, dict[str, object]]]] = {name: [] for name in checkouts}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for name, src in checkouts.items():
                out = Path(scratch) / f"{round_}-{len(runs[name])}-{name.replace(' ', '_')}.json"
                environment = {**os.environ, "PYTHONPATH": str(src.resolve())}
                command = [sys.executable, __file__, "--measure", str(out), "--maps", str(args.maps)]
                subprocess.run(command, env=environment, check=True)
                runs[name].append(json.loads(out.read_text()))
                print(f"[value-estimators] round {round_ + 1}, {name}: done", file=sys.stderr, flush=True)
    report = {"maps": args.maps, "rounds": args.rounds, "checkouts": {k: str(v) for k, v in checkouts.items()}}
    heads = " | ".join(f"{name} (ms per map)" for name in checkouts)
    table = [f"| estimator | {heads} | speed-up | largest relative difference |"]
    table.append("|---|" + "---|" * (len(checkouts) + 2))
    for estimator in ESTIMATORS:
        per_map = {
            name: statistics.median(float(run[estimator]["seconds"]) for run in runs[name]) * 1000 / args.maps
            for name in checkouts
        }
        ours = torch.tensor(runs["this checkout"][0][estimator]["values"], dtype=torch.float64)
        theirs = torch.tensor(runs.get("baseline", runs["this checkout"])[0][estimator]["values"], dtype=torch.float64)
        difference = float(((ours - theirs).abs() / theirs.abs().clamp(min=1e-300)).max())
        speed_up = per_map.get("baseline", per_map["this checkout"]) / per_map["this checkout"]
        report[estimator] = {"ms_per_map": per_map, "speed_up": speed_up, "largest_relative_difference": difference}
        cells = " | ".join(f"{per_map[name]:.1f}" for name in checkouts)
        table.append(f"| {estimator} | {cells} | {speed_up:.2f}x | {difference:.1e} |")
    print("\n".join(table))
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
