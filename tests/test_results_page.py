"""docs/results.md is exactly what scripts/results_page.py writes from the committed run folders."""

import json
from pathlib import Path

from conftest import load_script
from micam.reports.findings import verdicts
from micam.reports.protocols import PaperTable, claim_outcomes, paper_claims, protocol_table

ROOT = Path(__file__).resolve().parent.parent


def _script():
    return load_script("results_page")


def test_committed_results_page_is_generated_from_the_committed_runs():
    script = _script()
    text = script.page()
    assert (ROOT / "docs" / "results.md").read_text() == text, "run: python scripts/results_page.py page"
    for folder in sorted(p for p in (ROOT / "docs" / "results").iterdir() if (p / "results.json").is_file()):
        results = json.loads((folder / "results.json").read_text())
        mi = results["methods"]["mi-cam"]
        row = next(line for line in text.splitlines() if line.startswith(f"| {results['model']} ("))
        assert f"{mi['average_drop']['mean']:.2f} (#" in row and f"{mi['deletion_auc']['mean']:.3f} (#" in row
        # every per-image row is there: one per image and method (a method an extension added, per image
        # it covers so far), each once
        rows = (folder / "per_image.csv").read_text().strip().splitlines()[1:]
        base = (results.get("extension") or {}).get("methods") or list(results["methods"])
        gained = [m for m in results["methods"] if m not in base]
        covered = sum(
            int(results["methods"][m]["average_drop"]["n"])
            + int(results["methods"][m]["average_drop"].get("n_undefined", 0))
            for m in gained
        )
        assert len(rows) == results["n_images"] * len(base) + covered
        assert len({tuple(r.split(",")[i] for i in (0, 5)) for r in rows}) == len(rows)


def test_separate_sanity_checks_are_quoted_on_the_page():
    text = _script().page()
    supplements = sorted((ROOT / "docs" / "results").glob("*/sanity/results.json"))
    assert supplements, "the committed runs include at least one separate sanity check"
    for path in supplements:
        results = json.loads(path.read_text())
        n, last = results["settings"]["sanity_images"], results["sanity"]["mi-cam"][-1]
        assert f"On the first {n} images: after randomizing every block" in text
        assert f"mi-cam {last['spearman']:.2f}" in text.split(f"On the first {n} images: ", 1)[1]


def test_device_rechecks_are_quoted_with_their_command():
    text = _script().page()
    for path in sorted((ROOT / "docs" / "results").glob("*/recheck.json")):
        check = json.loads(path.read_text())
        paragraph = next(line for line in text.splitlines() if check["command"] in line)
        assert paragraph.startswith("**Across devices:**")
        assert ("the same" if check["same_predictions"] else "NOT the same") in paragraph


def _run(differences: dict[str, float], means: dict[str, float]) -> dict:
    """A results.json with AD only: ``means`` per method, MI-CAM minus each baseline ± 2 over 10 images."""
    return {
        "model": "tiny",
        "n_images": 10,
        "methods": {m: {"average_drop": {"mean": v, "n": 10}} for m, v in means.items()},
        "paired": {
            "differences": {
                m: {"average_drop": {"mean": d, "half_width": 2.0, "n": 10}} for m, d in differences.items()
            }
        },
    }


def test_a_claim_holds_when_the_paired_verdict_orders_the_pair_as_the_paper_does():
    # the paper: MI-CAM's AD (lower is better) beats grad-cam and score-cam, loses to eigen-cam
    paper = PaperTable(
        "VGG-16", {"average_drop": {"mi-cam": 80.0, "grad-cam": 90.0, "score-cam": 85.0, "eigen-cam": 70.0}}
    )
    claims = paper_claims(paper, "average_drop")
    assert claims == {"grad-cam": "better", "score-cam": "better", "eigen-cam": "worse"}
    # MI-CAM minus baseline: -5 ± 2 (better: holds), +5 ± 2 (worse: reversed), -1 ± 2 (open)
    means = {"grad-cam": 55.0, "score-cam": 45.0, "eigen-cam": 51.0, "mi-cam": 50.0}
    run = _run({"grad-cam": -5.0, "score-cam": 5.0, "eigen-cam": -1.0}, means)
    assert claim_outcomes(claims, verdicts(run, "average_drop")) == {"hold": 1, "reversed": 1, "open": 1}
    table = protocol_table("tiny", {"authors": run}, [paper])
    row = next(line for line in table if line.startswith("| AD"))
    # paper: 80.00, rank 2 of 4 (eigen-cam's 70 is better); the run: MI-CAM 50.00, rank 2 (score-cam's 45)
    assert row == "| AD ↓ | 80.00 (#2, VGG-16) | 50.00 (#2, +−=) | 1 of 3 hold, 1 reversed, 1 open |"
    assert table[0].startswith("| metric | paper: MI-CAM (rank) | authors' protocol (10 images) |")


def test_coverage_says_how_far_the_authors_runs_are_and_where_they_ran():
    from micam.reports.results_page import CPU_MINIMUM_IMAGES, _coverage

    def per_model(counts: dict[str, int], device: str) -> dict:
        return {
            model: ({"authors": {"n_images": n, "n_requested": 1000, "runs": [{"device_name": device}]}}, None)
            for model, n in counts.items()
        }

    cpu = "CPU x86_64, 1 threads"
    enough = " ".join(_coverage(per_model({"a": CPU_MINIMUM_IMAGES, "b": 412}, cpu)))
    assert "so far: a 300, b 412, of 1,000" in enough and "CPU alone" in enough and "gpu_run.sh" in enough
    short = " ".join(_coverage(per_model({"a": 299, "b": 412}, cpu)))
    assert "CPU alone" not in short and f"made on {cpu}" in short
    assert "CPU alone" not in " ".join(_coverage(per_model({"a": 300}, "NVIDIA H100 80GB HBM3")))
    assert _coverage(per_model({"a": 1000, "b": 1000}, cpu)) == []
    # runs made with --limit 300 are done as asked, but cover 300 of the data's 1,000 images
    limited = per_model({"a": 300, "b": 300}, cpu)
    for runs, _ in limited.values():
        runs["authors"] |= {"n_requested": 300, "n_available": 1000}
    assert "so far: a 300, b 300, of 1,000" in " ".join(_coverage(limited))


def test_overview_cells_name_their_image_count_when_a_metric_covers_fewer_images():
    """An extension covers its first N images first: the overview says so in those cells alone."""
    from micam.reports.findings import overview

    means = {"grad-cam": 55.0, "mi-cam": 50.0}
    run = _run({"grad-cam": -5.0}, means)
    for method, value in means.items():
        run["methods"][method]["average_increase"] = {"mean": value, "n": 4}
    run["paired"]["differences"]["grad-cam"]["average_increase"] = {"mean": -5.0, "half_width": 2.0, "n": 4}
    lines = overview([run])
    row = next(line for line in lines if line.startswith("| tiny (10) |"))
    # AD (lower is better): 50 beats 55, rank 1, verdict better; AI (higher): 50 below 55, rank 2, worse
    assert row == "| tiny (10) | 50.00 (#1, +) | 50.00 (#2, −; 4 images) |"
    assert any(line.startswith("A cell that names a number of images") for line in lines)
    run["methods"]["mi-cam"]["average_increase"]["n"] = 10
    assert not any(line.startswith("A cell that names") for line in overview([run]))


def test_collect_keeps_a_gzipped_file_whose_content_is_unchanged(tmp_path):
    """Re-collecting a run whose curves did not change leaves curves.csv.gz's bytes alone (gzip's header
    holds a time stamp), and rewrites it when they did."""
    import gzip
    import os

    from micam.reports.results_page import _gzip_unless_unchanged

    source, target = tmp_path / "curves.csv", tmp_path / "curves.csv.gz"
    source.write_bytes(b"method,x,y\n" + b"grad-cam,0.5,0.25\n" * 200_000)
    _gzip_unless_unchanged(source, target)
    os.utime(target, (0, 0))
    before = target.read_bytes()
    _gzip_unless_unchanged(source, target)
    assert target.read_bytes() == before and target.stat().st_mtime == 0
    for changed in (source.read_bytes() + b"random,1,0\n", source.read_bytes()[:-1], b""):
        source.write_bytes(changed)
        _gzip_unless_unchanged(source, target)
        assert gzip.decompress(target.read_bytes()) == changed
