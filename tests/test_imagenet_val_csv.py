"""scripts/imagenet_val_csv.py: the 50,000 validation images' labels and official boxes as a CSV that
``micam evaluate --data`` reads."""

from __future__ import annotations

import csv

import pytest

from conftest import load_script
from micam.evaluation import read_dataset


def test_every_validation_image_gets_its_label_and_all_its_boxes(tmp_path):
    script = load_script("imagenet_val_csv")
    if not (script.BOXES / "localization.txt").exists():
        pytest.skip("needs ../shared/data")
    table = script.rows(script.BOXES, tmp_path)
    assert len(table) == 50_000
    # val/ILSVRC2012_val_00000001.JPEG,65 with one box; ..._00000002 (class 970) with two
    first = {"file": str(tmp_path / "ILSVRC2012_val_00000001.JPEG"), "label": "65", "boxes": "111 108 441 193"}
    assert table[0] == first
    assert table[1]["label"] == "970" and table[1]["boxes"] == "45 49 499 162; 2 69 437 207"
    listing = tmp_path / "val.csv"
    with listing.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "label", "boxes"])
        writer.writeheader()
        writer.writerows(table[:3])
    dataset = read_dataset(listing)
    assert [s.label for s in dataset.samples] == [65, 970, 230]
    assert dataset.samples[1].boxes == ((45.0, 49.0, 499.0, 162.0), (2.0, 69.0, 437.0, 207.0))
