"""Re-evaluate a few images of a committed run on this machine and compare them with its rows.

    python scripts/recheck.py docs/results/efficientnet_lite0 \\
        --data ../shared/data/ilsvrc2012-val/annotations.json --images 129-132 [--device cpu] [--keep DIR]

A run resumed across devices (an H100 here, the CPU there) mixes their arithmetic: cuDNN may run
convolutions in TF32 (PyTorch's default), the CPU in full float32. This runs ``micam evaluate`` with the
run's own settings on the chosen images (1-based positions in the data), writes RUN/recheck.json and
prints, per metric, the largest difference to the committed rows and where it is: how far one image's
numbers depend on the device that made them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from micam.evaluation import EvaluationSettings, evaluate
from micam.evaluation.files import RESULTS, SETTINGS
from micam.evaluation.rows import devices_by_image, read_rows
from micam.evaluation.settings import reproducing
from micam.runtime import device_name

NOT_METRICS = {"image", "label", "predicted", "target", "correct", "method", "seconds"}


def positions(text: str) -> list[int]:
    """'129-132' or '5,9' -> 0-based positions."""
    chosen: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        chosen += range(int(first) - 1, int(last or first))
    if not chosen or min(chosen) < 0:
        raise ValueError(f"--images {text!r}: give 1-based positions such as 129-132 or 5,9")
    return chosen


def subset(annotations: Path, chosen: list[int], folder: Path) -> Path:
    """The chosen entries in a JSON of their own; the image folders are linked so that every image
    keeps its key (its path relative to the JSON), which names its rows and seeds its random map."""
    entries = json.loads(annotations.read_text())
    picked = [entries[i] for i in chosen]
    for top in {Path(e["image"]).parts[0] for e in picked}:
        (folder / top).symlink_to((annotations.parent / top).resolve())
    path = folder / "annotations.json"
    path.write_text(json.dumps(picked))
    return path


def rows_by_key(folder: Path) -> dict[tuple[str, str], dict[str, str]]:
    """A run folder's rows (with any columns a resumed run added) by (image, method)."""
    return {(r["image"], r["method"]): r for r in read_rows(folder)}


def compare(committed: dict, again: dict) -> dict[str, dict[str, Any]]:
    """Per metric: the mean and the largest |again - committed| over the rows of both, and the method and
    image of the largest (none when every row agrees exactly)."""
    differences: dict[str, list[tuple[float, str, str]]] = {}
    for key, row in again.items():
        for metric, value in row.items():
            if metric in NOT_METRICS or value == "" or committed[key].get(metric, "") == "":
                continue
            difference = abs(float(value) - float(committed[key][metric]))
            differences.setdefault(metric, []).append((difference, key[1], key[0]))
    summary: dict[str, dict[str, Any]] = {}
    for metric, found in differences.items():
        largest, method, image = max(found)
        summary[metric] = {"mean_abs_difference": sum(d for d, _, _ in found) / len(found)}
        summary[metric] |= {"max_abs_difference": largest}
        if largest > 0:
            summary[metric] |= {"method": method, "image": image}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a committed run folder, e.g. docs/results/efficientnet_lite0")
    parser.add_argument("--data", type=Path, required=True, help="the run's annotations JSON")
    parser.add_argument("--images", default="1-4", help="1-based positions in the data (default: 1-4)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="also keep the recomputed run folder here (to compare two versions of micam row for row)",
    )
    args = parser.parse_args()
    saved = json.loads((args.run / SETTINGS).read_text())
    results = json.loads((args.run / RESULTS).read_text())
    chosen = positions(args.images)
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        values = reproducing(saved)
        values |= {
            "data": str(subset(args.data, chosen, folder)),
            "out": str(folder / "out"),
            "device": args.device,
            "resume": False,
            "limit": None,
            "batch_size": len(chosen),
            "metrics": [m for m in saved["metrics"] if m not in ("counterfactual", "sanity")],
        }
        evaluate(EvaluationSettings(**values))
        again = rows_by_key(folder / "out")
        if args.keep is not None:
            shutil.copytree(folder / "out", args.keep, dirs_exist_ok=True)
    committed = rows_by_key(args.run)
    missing = sorted({image for image, _ in again} - {image for image, _ in committed})
    if missing:
        raise SystemExit(f"{args.run} has no rows for {missing}")
    # An extension of the first images only (``--limit``) has no rows of its gained methods elsewhere.
    again = {key: row for key, row in again.items() if key in committed}
    made_on = devices_by_image([{"image": image} for image, _ in committed], results)
    images = sorted({image for image, _ in again})
    report = {
        "images": images,
        "committed_on": {image: made_on.get(image, "unknown") for image in images},
        "recomputed_on": device_name(args.device),
        "same_predictions": all(again[k]["predicted"] == committed[k]["predicted"] for k in again),
        "metrics": compare(committed, again),
        "command": f"python scripts/recheck.py {args.run} --data {args.data} --images {args.images}"
        f" --device {args.device}",
    }
    (args.run / "recheck.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
