"""``micam benchmark`` on tiny settings: it runs, skips what would be too slow, and writes JSON and Markdown."""

from __future__ import annotations

import json

from micam.cli.main import main


def test_benchmark_writes_json_and_markdown(tmp_path):
    out = tmp_path / "bench"
    methods = "forward,trunk,grad_cam,mi_cam,mi_cam_authors,authors"
    argv = ["benchmark", "--models", "mobilenet_v2", "--methods", methods, "--batch-sizes", "1,2"]
    argv += ["--repeats", "1", "--size", "64", "--cell-budget", "1e-6", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "benchmark.json").read_text())
    rows = {(r["method"], r["batch"]): r for r in report["results"]}
    for method in methods.split(","):
        assert rows[(method, 1)]["skipped"] is False and rows[(method, 1)]["median_s"] > 0
        # Every batch-2 cell is estimated above the (tiny) budget and skipped with its estimate.
        assert rows[(method, 2)]["skipped"] is True and rows[(method, 2)]["estimate_s"] > 0
    assert rows[("authors", 1)]["mi_loop_s"] > 0
    check = report["authors_weight_checks"][0]
    assert check["model"] == "mobilenet_v2" and check["max_relative_difference"] <= 1e-6
    ratio_names = {line["ratio"] for line in report["ratios"]}
    assert "MI-CAM / Grad-CAM" in ratio_names
    assert "authors' sklearn loop / (MI-CAM authors - trunk)" in ratio_names
    table = (out / "benchmark.md").read_text()
    assert "| mobilenet_v2 | MI-CAM (binned, bilinear) |" in table and "skipped (est." in table
    assert "MI-CAM / Grad-CAM" in table


def test_benchmark_rejects_unknown_methods(tmp_path, capsys):
    assert main(["benchmark", "--models", "mobilenet_v2", "--methods", "magic", "--out", str(tmp_path)]) == 2
    assert "unknown methods" in capsys.readouterr().err


def test_reports_name_the_device_one_way():
    import torch

    from micam.runtime import device_name

    name = device_name("cpu")
    assert name.startswith("CPU ") and name.endswith(f", {torch.get_num_threads()} threads")
    assert device_name(torch.device("cpu")) == name


def test_mi_cam_to_grad_cam_ratio_is_checked_at_every_batch_size():
    from micam.benchmark.result import ratios

    def row(model, batch, method, seconds):
        return {"model": model, "batch": batch, "method": method, "median_s": seconds, "skipped": False}

    results = [row("mobilenet_v2", 1, "grad_cam", 0.010), row("mobilenet_v2", 1, "mi_cam", 0.019)]
    results += [row("mobilenet_v2", 32, "grad_cam", 0.300), row("mobilenet_v2", 32, "mi_cam", 0.660)]
    results += [row("vgg16", 1, "grad_cam", 0.100), row("vgg16", 1, "mi_cam", 0.110)]
    found = {(line["model"], line["ratio"]): (round(line["value"], 6), line["met"]) for line in ratios(results)}
    assert found[("mobilenet_v2", "MI-CAM / Grad-CAM")] == (1.9, True)
    assert found[("mobilenet_v2", "MI-CAM / Grad-CAM, batch 32")] == (2.2, False)
    assert found[("vgg16", "MI-CAM / Grad-CAM")] == (1.1, False)  # VGG-16's bound is 1.0
