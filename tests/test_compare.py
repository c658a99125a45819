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
    # deletion: mean -0.1, sample std 0.1 -> half-width t(0.975, 2) * 0.1 / sqrt(3), t(0.975, 2) = 4.3027
    t2, t1 = 4.302652729911275, 12.706204736174707  # Student's t tables
    assert found["deletion_auc"]["n"] == 3
    assert found["deletion_auc"]["mean"] == pytest.approx(-0.1)
    assert found["deletion_auc"]["half_width"] == pytest.approx(t2 * 0.1 / math.sqrt(3))
    assert verdict(found["deletion_auc"], higher_is_better=False) == "no significant difference"  # 0.1 < 0.248
    assert found["insertion_auc"]["mean"] == pytest.approx(0.1)
    assert found["insertion_auc"]["half_width"] == pytest.approx(0.0, abs=1e-12)
    assert verdict(found["insertion_auc"], higher_is_better=True) == "better"
    # ebpg: image c has no value for either method -> differences +10 and -20 over 2 images
    assert found["ebpg"]["n"] == 2 and found["ebpg"]["mean"] == pytest.approx(-5.0)
    assert found["ebpg"]["half_width"] == pytest.approx(t1 * math.sqrt(450) / math.sqrt(2))


def test_intervals_use_students_t_quantiles():
    from micam.metrics import half_width
    from micam.metrics.specs import t_quantile

    table = {1: 12.706204736174707, 2: 4.302652729911275, 15: 2.131449545559776, 999: 1.9623414611334487}
    for df, value in table.items():
        assert t_quantile(0.975, df) == pytest.approx(value, rel=1e-10)
    assert half_width(2.0, 16) == pytest.approx(2.131449545559776 * 2.0 / 4.0, rel=1e-10)
    assert half_width(2.0, 16) / (1.96 * 2.0 / 4.0) == pytest.approx(1.0875, abs=1e-4)  # 1.96: 8 % too narrow
    assert math.isnan(half_width(1.0, 1))


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
    assert "| grad-cam | -0.100 ± 0.248 ≈ | +0.100 ± 0.000 better |" in text
