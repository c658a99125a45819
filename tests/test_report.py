"""`micam report`: a self-contained page that renders in a real browser without console errors."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from micam import plot
from micam.cli.main import main
from micam.evaluation.tables import markdown_report
from micam.reports.html import build_report, markdown_to_html

DOCS = Path(__file__).resolve().parent.parent / "docs"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")


def _summary(mean: float) -> dict:
    return {"mean": mean, "std": 0.1, "n": 10}


def _results_folder(root):
    settings = {
        "data": "data.json", "dataset_kind": "annotations", "geometry_used": "stretch", "weights": "imagenet",
        "target_layer": "features.18", "device": "cpu", "device_name": "cpu", "torch": "2", "target": "predicted",
        "score": "probability", "threshold": 0.5, "steps": 2, "baseline": "black", "insertion_order": "standard",
        "tolerance": 15.0, "mi_cam": {"estimator": "binned", "bins": 32, "upsample_mode": "bilinear",
                                      "gray_of": "restored pixels"},
    }  # fmt: skip
    methods = {
        name: {"average_drop": _summary(a), "deletion_auc": _summary(d), "pointing_game": _summary(0.9)}
        for name, a, d in (("grad-cam", 40.0, 0.2), ("mi-cam", 35.0, 0.25), ("random", 90.0, 0.1))
    }
    results = {
        "model": "mobilenet_v2", "n_images": 10, "settings": settings, "methods": methods,
        "top1_accuracy": _summary(0.8), "skipped": {"count": 0, "images": {}}, "counterfactual": {},
        "sanity": {"mi-cam": [{"stage": 0, "layer": "original", "ssim": 1.0, "spearman": 1.0, "hog": 1.0},
                              {"stage": 1, "layer": "classifier.1", "ssim": 0.4, "spearman": 0.2, "hog": 0.3}]},
        "mean_curves": {"mi-cam": {"deletion": [1.0, 0.5, 0.1], "insertion": [0.0, 0.6, 0.9], "n": 10}},
        "wall_time_s": 12.0,
    }  # fmt: skip
    evaluation = root / "eval-mobilenet_v2"
    evaluation.mkdir(parents=True)
    (evaluation / "results.json").write_text(json.dumps(results))
    (evaluation / "results.md").write_text(markdown_report(results))
    (root / "benchmark").mkdir()
    (root / "benchmark" / "benchmark.md").write_text("# Table 4\n\n| model | MI-CAM s |\n|---|---|\n| vgg16 | 0.10 |\n")
    rng = np.random.default_rng(0)
    image = rng.random((32, 32, 3))
    plot.comparison_grid([image], {"mi-cam": rng.random((1, 32, 32))}, ["cat"], path=root / "figures" / "grid.png")
    return root


def test_report_holds_tables_figures_and_settings_inline(tmp_path):
    page = build_report(_results_folder(tmp_path))
    assert page.count("<table>") >= 4  # Tables 1-3 and the benchmark
    assert "<td><strong>35.00 ± 0.07</strong></td>" in page  # MI-CAM's AD (t(0.975, 9) 0.1 / sqrt(10)), the best
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 3  # grid, curves, sanity
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "All settings of this run" in page
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="nothing to report"):
        build_report(tmp_path / "empty")


def test_report_over_several_models_has_the_results_pages_overview(tmp_path):
    """Over docs/results (three models), the report shows the cross-model overview of docs/results.md."""
    page = build_report(DOCS / "results")
    committed = (DOCS / "results.md").read_text().splitlines()
    title = next(line for line in committed if line.startswith("## At a glance"))
    assert f"<h2>{html.escape(title[3:])}</h2>" in page
    rows = [line for line in committed if re.match(r"\| \w+ \([\d,]+\) \|", line)]
    assert len(rows) == len(list((DOCS / "results").glob("*/results.json")))
    for row in rows:  # the same cells: MI-CAM's mean, rank and paired verdicts per metric and model
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" in page
    across = next(line for line in committed if line.startswith("Across the "))
    assert html.escape(across, quote=False) in page
    assert "At a glance" not in build_report(_results_folder(tmp_path))  # one model: no overview


def test_markdown_subset():
    text = "# Title\n\nSome **bold** and `code`.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    assert markdown_to_html(text) == (
        "<h2>Title</h2>\n<p>Some <strong>bold</strong> and <code>code</code>.</p>\n"
        "<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td>1</td><td>2</td></tr></tbody></table>"
    )


def _render(page, screenshot):
    completed = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         "--window-size=1200,1600", f"--screenshot={screenshot}", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    console = [line for line in completed.stderr.splitlines() if ":CONSOLE" in line]
    return completed, console


@needs_chromium
def test_report_renders_in_headless_chromium_without_console_errors(tmp_path):
    root = _results_folder(tmp_path / "results")
    assert main(["report", "--results", str(root)]) == 0
    completed, console = _render(root / "report.html", tmp_path / "shot.png")
    assert (tmp_path / "shot.png").exists(), completed.stderr[-2000:]
    assert console == []
    with Image.open(tmp_path / "shot.png") as shot:
        pixels = np.asarray(shot.convert("L"), dtype=np.float64)
    assert shot.size == (1200, 1600)
    assert pixels.std() > 20 and (pixels < 100).mean() > 0.01  # text, tables and figures, not a blank page
    # The console check can fail: a page with a script error is caught.
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body>x<script>notDefined();</script></body></html>")
    _, console = _render(broken, tmp_path / "broken.png")
    assert any("notDefined" in line for line in console)


def test_a_run_with_area_matched_metrics_gets_its_curves_figure(tmp_path):
    from micam.metrics.area_matched import AREA_PERCENTAGES

    root = _results_folder(tmp_path)
    path = root / "eval-mobilenet_v2" / "results.json"
    results = json.loads(path.read_text())
    for name in results["methods"]:
        for kind in ("drop", "increase"):
            results["methods"][name] |= {f"area_matched_{kind}_p{p}": _summary(p / 2) for p in AREA_PERCENTAGES}
    path.write_text(json.dumps(results))
    page = build_report(root)
    assert "Area-matched Average Drop / Increase by the share of pixels kept, 10 images" in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 4  # grid, curves, area-matched, sanity
