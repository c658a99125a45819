"""Where an evaluated image's time goes: ``micam evaluate``'s per-stage profile, for this checkout and
optionally another one, in one run:
``python benchmarks/evaluate_stages.py [--images 8] [--baseline-src OTHER/src] [--out stages.json]``.

Each checkout evaluates the first ``--images`` shared validation images (MobileNetV2, every method and
the default metrics, ``--protocol``), one after the other in fresh processes; the table lists the
seconds per image of each stage that ``results.json`` ``runs[-1].stage_seconds`` records (an explainer's
maps, each metric group summed over the methods, the predictions), and the wall time per image.
A baseline without stage timings (older code) shows its wall time only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ilsvrc2012-val" / "annotations.json"


def profile(src: Path, args: argparse.Namespace, out: Path) -> dict[str, float]:
    """Seconds per image per stage (and "wall") of one evaluation with the package under ``src``."""
    command = [sys.executable, "-m", "micam.cli.main", "evaluate", "--data", str(args.data), "--model", args.model]
    command += ["--protocol", args.protocol, "--limit", str(args.images), "--out", str(out)]
    command += ["--counterfactual-images", "0", "--sanity-images", "0", "--loader-workers", "0"]
    tick = time.perf_counter()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run(command, check=True, env=os.environ | {"PYTHONPATH": str(src)}, **quiet)
    wall = time.perf_counter() - tick
    run = json.loads((out / "results.json").read_text())["runs"][-1]
    stages: dict[str, float] = defaultdict(float)
    for name, seconds in run.get("stage_seconds", {}).items():
        kind = name.partition(" ")[0]
        stages[name if kind == "explain" else kind] += seconds / args.images
    stages["evaluation (run's own clock)"] = run["seconds"] / args.images
    stages["wall (process, model load included)"] = wall / args.images
    return dict(stages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--protocol", default="stated", choices=["stated", "authors"])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--baseline-src", type=Path, default=None, help="another checkout's src/ to compare")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    checkouts = {"this checkout": ROOT / "src"} | ({"baseline": args.baseline_src} if args.baseline_src else {})
    found = {}
    with tempfile.TemporaryDirectory() as scratch:
        for label, src in checkouts.items():
            found[label] = profile(src, args, Path(scratch) / label.replace(" ", "-"))
    names = sorted({n for stages in found.values() for n in stages}, key=lambda n: -found["this checkout"].get(n, 0))
    print(f"| stage (s per image, {args.model}, {args.protocol}, {args.images} images) | " + " | ".join(found) + " |")
    print("|---|" + "---|" * len(found))
    for name in names:
        cells = [f"{stages[name]:.3f}" if name in stages else "-" for stages in found.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.out:
        args.out.write_text(json.dumps({"settings": vars(args), "stages": found}, indent=2, default=str))


if __name__ == "__main__":
    main()
