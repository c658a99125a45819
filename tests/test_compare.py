"""Paired comparisons: hand-computed means, half-widths and verdicts."""

import math

import pytest

from micam.evaluation.compare import paired_differences, verdict
from micam.evaluation.tables import markdown_report


def _rows():
    # deletion: mi-cam - grad-cam = -0.1, 0.0, -0.2; insertion: +0.1 on every image; ebpg missing on c
    table = {
        "mi-cam": {"a": (0.1, 0.5, "60"), "b": (0.2, 0.6, "70"), "c": (0.3, 0.7, "")},
        "grad-cam": {"a": (0.2, 0.4, "50"), "b": (0.2, 0.5, "90"), "c": (0.5, 0.6, "nan")},
    }
    return [
        {"image": image, "method": method, "deletion_auc": str(d), "insertion_auc": str(i), "ebpg": e}
        for method, images in table.items()
        for image, (d, i, e) in images.items()
    ]


def test_paired_differences_match_hand_computed_values():
    found = paired_differences(_rows(), "mi-cam", ["deletion_auc", "insertion_auc", "ebpg"])["grad-cam"]
    # deletion: mean -0.1, sample std 0.1 -> half-width 1.96 * 0.1 / sqrt(3)
    assert found["deletion_auc"]["n"] == 3
    assert found["deletion_auc"]["mean"] == pytest.approx(-0.1)
    assert found["deletion_auc"]["half_width"] == pytest.approx(1.96 * 0.1 / math.sqrt(3))
    assert verdict(found["deletion_auc"], higher_is_better=False) == "no significant difference"  # 0.1 < 0.113
    assert found["insertion_auc"]["mean"] == pytest.approx(0.1)
    assert found["insertion_auc"]["half_width"] == pytest.approx(0.0, abs=1e-12)
    assert verdict(found["insertion_auc"], higher_is_better=True) == "better"
    # ebpg: image c has no value for either method -> differences +10 and -20 over 2 images
    assert found["ebpg"]["n"] == 2 and found["ebpg"]["mean"] == pytest.approx(-5.0)
    assert found["ebpg"]["half_width"] == pytest.approx(1.96 * math.sqrt(450) / math.sqrt(2))


def test_verdict_names_the_worse_side_and_rejects_unknown_focus():
    assert verdict({"mean": 0.05, "half_width": 0.01, "n": 10}, higher_is_better=False) == "worse"
    assert verdict({"mean": -0.05, "half_width": 0.01, "n": 10}, higher_is_better=True) == "worse"
    assert verdict({"mean": 0.05, "half_width": math.nan, "n": 1}, higher_is_better=True) == "no significant difference"
    with pytest.raises(ValueError, match="methods present"):
        paired_differences(_rows(), "score-cam")


def test_markdown_report_shows_the_paired_table():
    differences = paired_differences(_rows(), "mi-cam", ["deletion_auc", "insertion_auc"])
    paired = {"focus": "mi-cam", "differences": differences}
    settings = {
        k: "x"
        for k in ("data", "dataset_kind", "geometry_used", "weights", "target_layer", "device", "torch", "target")
    } | {"score": "probability", "threshold": 0.5, "steps": 100, "baseline": "zero", "insertion_order": "standard"}
    results = {
        "model": "m", "n_images": 3, "n_requested": 3, "settings": settings | {"tolerance": 15, "mi_cam": None},
        "methods": {}, "wall_time_s": 1.0, "skipped": {"count": 0}, "paired": paired,
    }  # fmt: skip
    text = markdown_report(results)
    assert "## mi-cam minus each method, image by image" in text
    assert "| grad-cam | -0.100 ± 0.113 ≈ | +0.100 ± 0.000 better |" in text
