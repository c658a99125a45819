"""A ``micam evaluate --data`` CSV (file,label,boxes) for the 50,000 ILSVRC2012 validation images, from
the official labels and boxes in ``../shared/data/ilsvrc2012-val-boxes/`` (wsolevaluation's
``class_labels.txt`` and ``localization.txt``, boxes in original pixels) and a folder holding the
images themselves (``ILSVRC2012_val_00000001.JPEG`` ...; ImageNet's own download, not shipped here).

    python scripts/imagenet_val_csv.py --images /data/imagenet/val --out imagenet-val.csv
    micam evaluate --data imagenet-val.csv --model mobilenet_v2 --engine ray --address auto --out eval-val

Images missing from the folder are skipped by ``micam evaluate`` (listed in skipped.csv), never fatal.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

BOXES = Path(__file__).resolve().parents[2] / "shared" / "data" / "ilsvrc2012-val-boxes"


def rows(boxes: Path, images: Path) -> list[dict[str, str]]:
    """One row per validation image: its path under ``images``, its 0-based class and its boxes."""
    labels: dict[str, str] = {}
    for line in (boxes / "class_labels.txt").read_text().split():
        name, label = line.rsplit(",", 1)
        labels[Path(name).name] = label
    found: dict[str, list[str]] = {name: [] for name in labels}
    for line in (boxes / "localization.txt").read_text().split():
        name, *corners = line.split(",")
        found[Path(name).name].append(" ".join(corners))
    return [
        {"file": str(images / name), "label": label, "boxes": "; ".join(found[name])} for name, label in labels.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, required=True, help="folder of ILSVRC2012_val_*.JPEG")
    parser.add_argument("--boxes", type=Path, default=BOXES, help="wsolevaluation's files (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("imagenet-val.csv"))
    args = parser.parse_args()
    table = rows(args.boxes, args.images.resolve())
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "label", "boxes"])
        writer.writeheader()
        writer.writerows(table)
    print(f"{args.out}: {len(table):,} images")


if __name__ == "__main__":
    main()
