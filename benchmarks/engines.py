"""``--engine ray`` against the local engine on one machine, as wall-time ratios within one run:
``python benchmarks/engines.py [--images 8] [--workers 2] [--device cpu] [--out engines.json]``.

A Score-CAM-heavy evaluation (Grad-CAM, Score-CAM and MI-CAM with AD/AI and deletion/insertion) of
MobileNetV2 on the first ``--images`` shared validation images, once per engine and repeat, the engines
alternating; the Ray time includes starting a local Ray runtime and its actors (each loads the model),
which is what a user waits for. Also checks that both engines wrote the same rows.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":
    try:
        import micam  # noqa: F401
    except ImportError:  # a checkout without an install
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch

from micam.evaluation import EvaluationSettings, evaluate
from micam.evaluation.rows import read_rows
from micam.runtime import device_name

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ilsvrc2012-val" / "annotations.json"


def largest_difference(a: Path, b: Path) -> float:
    """The largest |difference| of any metric value between two run folders' rows."""
    rows_b = {(r["image"], r["method"]): r for r in read_rows(b)}
    largest = 0.0
    for row in read_rows(a):
        other = rows_b[(row["image"], row["method"])]
        for column, value in row.items():
            if column in ("image", "method", "seconds", "label", "correct"):
                continue
            x, y = float(value), float(other[column])
            if not (math.isnan(x) and math.isnan(y)):
                largest = max(largest, abs(x - y))
    return largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2, help="images per shard")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"local": [], "ray": []}
    with tempfile.TemporaryDirectory() as temporary:
        for repeat in range(args.repeats):
            for engine in ("local", "ray"):
                out = Path(temporary) / f"{engine}-{repeat}"
                settings = EvaluationSettings(
                    data=str(args.data),
                    model=args.model,
                    methods=["grad-cam", "score-cam", "mi-cam"],
                    metrics=["drop-increase", "deletion-insertion"],
                    limit=args.images,
                    batch_size=args.batch_size,
                    device=args.device,
                    engine=engine,
                    workers=args.workers if engine == "ray" else None,
                    out=str(out),
                )
                tick = time.perf_counter()
                evaluate(settings, log=lambda line: None)
                times[engine].append(time.perf_counter() - tick)
        difference = largest_difference(Path(temporary) / "local-0", Path(temporary) / "ray-0")
    local, distributed = statistics.median(times["local"]), statistics.median(times["ray"])
    report = {
        "device": device_name(args.device),
        "torch_threads_local": torch.get_num_threads(),
        "model": args.model,
        "images": args.images,
        "workers": args.workers,
        "seconds": times,
        "speed_up": local / distributed,
        "largest_row_difference": difference,
    }
    print(
        f"{args.model}, {args.images} images, {report['device']}: local {local:.1f} s, ray ({args.workers} workers,"
        f" runtime start included) {distributed:.1f} s: speed-up {local / distributed:.2f}x; largest difference"
        f" between the engines' rows {difference:.2g}"
    )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
