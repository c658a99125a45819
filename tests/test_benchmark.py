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

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        name = device_name("cpu")
        assert name.startswith("CPU ") and name.endswith(", 2 threads")
        assert device_name(torch.device("cpu")) == name
        torch.set_num_threads(1)
        assert device_name("cpu").endswith(", 1 thread")
    finally:
        torch.set_num_threads(threads)


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


def test_gpu_kernel_ratio_and_check_are_reported():
    from micam.benchmark.result import BenchmarkResult, markdown, ratios

    def row(batch, method, seconds):
        timing = {"median_s": seconds, "runs": 5, "images_per_s": batch / seconds, "skipped": False}
        return {"model": "resnet50", "batch": batch, "method": method} | timing

    results = [row(32, "grad_cam", 0.100), row(32, "mi_cam_gpu", 0.140), row(1, "grad_cam", 0.010)]
    results += [row(1, "mi_cam_gpu", 0.020)]
    found = {line["ratio"]: (round(line["value"], 6), line["met"]) for line in ratios(results)}
    assert found["MI-CAM (GPU kernel) / Grad-CAM, batch 32"] == (1.4, True)
    assert found["MI-CAM (GPU kernel) / Grad-CAM, batch 1"] == (2.0, None)  # the target is set at batch 32
    check = {"model": "resnet50", "batch": 32, "max_weight_difference": 2e-5, "max_weight_difference_cpu": 0.0}
    settings = {"command": "micam benchmark", "device": "GPU", "torch": "2", "python": "3.12", "cpu_threads": 1}
    settings |= {"fused_kernels": False, "size": 224, "repeats": 5, "wall_s": 1.0, "notes": []}
    checks = [check | {"max_map_difference": 1e-7}]
    result = BenchmarkResult(**settings, results=results, authors_weight_checks=[], gpu_kernel_checks=checks)
    result.ratios = ratios(results)
    table = markdown(result)
    assert "| resnet50 | MI-CAM, the GPU kernel (Triton) | 20.0 (5) | 50.00 | 140.0 (5) | 228.57 |" in table
    assert "MI weights 2.0e-05 nats (against the CPU route: 0.0e+00), maps 1.0e-07" in table
    assert "| resnet50 | MI-CAM (GPU kernel) / Grad-CAM, batch 32 | 1.40 | <= 1.5 (GPU, batch 32) | yes |" in table


def test_the_command_line_tunes_glibc_to_reuse_large_blocks(monkeypatch):
    import platform

    from micam.runtime import tune_allocator

    monkeypatch.setenv("MICAM_TUNE_ALLOCATOR", "0")
    assert tune_allocator() is False  # the opt-out leaves glibc's defaults
    monkeypatch.delenv("MICAM_TUNE_ALLOCATOR")
    expected = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert tune_allocator() is expected  # mallopt accepted both settings where glibc is the C library
