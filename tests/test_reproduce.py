"""`micam reproduce` end to end on a tiny model and tiny generated data: every step, every figure, the report."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from conftest import tiny_loaded_model
from micam import models
from micam.cli.main import main


def _shared_data(root):
    rng = np.random.default_rng(0)
    entries = []
    (root / "ilsvrc2012-val" / "images").mkdir(parents=True)
    for i in range(3):
        name = f"images/val_{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / "ilsvrc2012-val" / name)
        entries.append({"image": name, "label": i, "boxes_40_xyxy": [[5, 5, 30, 25]]})
    (root / "ilsvrc2012-val" / "annotations.json").write_text(json.dumps(entries))
    (root / "photos" / "darknet").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (50, 60, 3), dtype=np.uint8)).save(root / "photos" / "darknet" / "dog.jpg")
    return root


def test_reproduce_runs_every_step_and_binds_the_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(models, "load", lambda name, weights="imagenet", device="cpu": tiny_loaded_model())
    shared = _shared_data(tmp_path / "shared")
    out = tmp_path / "out"
    argv = ["reproduce", "--out", str(out), "--limit", "2", "--shared", str(shared), "--benchmark-budget", "15"]
    assert main(argv) == 0
    assert "estimated total" in capsys.readouterr().err
    figures = {p.name for p in (out / "figures").glob("*.png")}
    for expected in (
        "fig1_4_method_comparison.png",
        "fig5_multiple_objects.png",
        "fig6_localization_1_mi-cam.png",
        "fig7_counterfactual_mi-cam.png",
        "fig8_sanity_mi-cam.png",
        "fig9_channel_weights.png",
        "fig10_counterfactual_score-cam.png",
    ):
        assert expected in figures
    results = json.loads((out / "eval-mobilenet_v2" / "results.json").read_text())
    assert results["n_images"] == 2 and results["methods"]["mi-cam"]["deletion_auc"]["n"] == 2
    assert (out / "benchmark" / "benchmark.md").exists()
    assert not (out / "table5-mobilenet_v1").exists()  # no MobileNetV1 weights in this shared folder
    page = (out / "report.html").read_text()
    assert "Table 1" in page and "fig7 counterfactual mi cam" in page and "benchmark" in page.lower()
    assert json.loads((out / "reproduce.json").read_text())["limit"] == 2
