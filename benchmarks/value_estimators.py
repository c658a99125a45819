"""The value-based estimators ("ksg", "hsic", "hsic-normalized") against another checkout, in one run:
``python benchmarks/value_estimators.py --baseline-src OTHER/src [--maps 64] [--rounds 3] [--out value.json]``.

Each estimator weighs ``--maps`` real activation maps: MobileNetV2's ``features.18`` (ImageNet weights)
on the bundled ``examples/chelsea.png``, upsampled bilinearly to 224 x 224, against the photo's gray image,
through ``micam.mutual_information`` (2,048 seeded pixels, the defaults). Each round runs this checkout and
the baseline in fresh processes, one after the other, so the machine's load hits both; the table gives the
median of the rounds in ms per map, and the largest relative difference between the two checkouts'
values (KSG's neighbour counts do not depend on the blocks: 0; HSIC sums in another order). For HSIC it
also gives each checkout's largest relative error on the first ``--reference-maps`` maps against the
textbook value: whole Gram matrices, each centred before their product (no cancellation of large sums),
with the same bandwidths and pixels.
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


def inputs(maps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(maps, 224 * 224) upsampled activation maps and the (224 * 224,) gray image they are weighed against."""
    from micam.capture.recorder import record_activations
    from micam.examples import photo
    from micam.imaging import grayscale, upsample
    from micam.models import load

    loaded = load("mobilenet_v2")
    x = loaded.preprocess(photo("chelsea.png"))[None]
    with torch.no_grad():
        recorded = record_activations(loaded.model, [loaded.target_layer], x, track_gradients=False, stop_early=True)
    return upsample(recorded.activations[0][:, :maps], (224, 224), "bilinear").flatten(2)[0], grayscale(x).flatten()


def textbook_hsic(up: torch.Tensor, gray: torch.Tensor, normalized: bool) -> torch.Tensor:
    """The textbook HSIC (``micam.estimators.hsic.textbook_hsic``) of each row of ``up`` with ``gray``, on
    the pixels the estimator looks at."""
    from micam.estimators.hsic import textbook_hsic as one_pair
    from micam.estimators.subsample import subsample_indices

    pixels = subsample_indices(gray.numel())
    return torch.stack([one_pair(row[pixels], gray[pixels], normalized) for row in up])


def measure(out: Path, maps: int) -> None:
    """Time each estimator on ``maps`` maps in this process (one thread) and save seconds and values."""
    import micam
    from micam.runtime import tune_allocator

    tune_allocator()
    torch.set_num_threads(1)
    up, gray = inputs(maps)
    result: dict[str, object] = {}
    for name in ESTIMATORS:
        start = time.perf_counter()
        values = micam.mutual_information(up, gray, estimator=name)
        result[name] = {"seconds": time.perf_counter() - start, "values": values.tolist()}
    out.write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", type=Path, help="another checkout's src/ to compare")
    parser.add_argument("--maps", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reference-maps", type=int, default=8, help="maps checked against the textbook HSIC")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)  # a child's own run
    args = parser.parse_args()
    if args.measure is not None:
        measure(args.measure, args.maps)
        return
    if args.baseline_src is None:
        parser.error("--baseline-src is required: the checkout to compare with")
    checkouts = {"this checkout": ROOT / "src", "baseline": args.baseline_src}
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
    report: dict[str, object] = {
        "maps": args.maps,
        "rounds": args.rounds,
        "checkouts": {k: str(v) for k, v in checkouts.items()},
    }
    torch.set_num_threads(1)  # the children's maps: the forward pass rounds otherwise on two threads
    up, gray = inputs(args.maps)
    up = up[: args.reference_maps]
    textbook = {name: textbook_hsic(up, gray, name == "hsic-normalized") for name in ("hsic", "hsic-normalized")}
    heads = " | ".join(f"{name} (ms per map)" for name in checkouts)
    errors = " | ".join(f"{name}: error vs textbook" for name in checkouts)
    table = [f"| estimator | {heads} | speed-up | largest relative difference | {errors} |"]
    table.append("|---|" + "---|" * (2 * len(checkouts) + 2))
    for estimator in ESTIMATORS:
        per_map = {
            name: statistics.median(float(run[estimator]["seconds"]) for run in runs[name]) * 1000 / args.maps
            for name in checkouts
        }
        values = {name: torch.tensor(runs[name][0][estimator]["values"], dtype=torch.float64) for name in checkouts}
        difference = _largest_relative_error(values["this checkout"], values["baseline"])
        speed_up = per_map["baseline"] / per_map["this checkout"]
        error = {
            name: _largest_relative_error(values[name][: args.reference_maps], textbook[estimator])
            for name in checkouts
            if estimator in textbook
        }
        report[estimator] = {
            "ms_per_map": per_map,
            "speed_up": speed_up,
            "largest_relative_difference": difference,
            "largest_relative_error_vs_textbook": error or None,
        }
        cells = " | ".join(f"{per_map[name]:.1f}" for name in checkouts)
        error_cells = " | ".join(f"{error[name]:.1e}" if error else "-" for name in checkouts)
        table.append(f"| {estimator} | {cells} | {speed_up:.2f}x | {difference:.1e} | {error_cells} |")
    print("\n".join(table))
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


def _largest_relative_error(values: torch.Tensor, truth: torch.Tensor) -> float:
    return float(((values - truth).abs() / truth.abs().clamp(min=1e-300)).max())


if __name__ == "__main__":
    main()
