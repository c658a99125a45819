"""docs/results.md is exactly what scripts/results_page.py writes from the committed run folders."""

import json
from pathlib import Path

from conftest import load_script

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
        # every per-image row is there: one per image and method
        rows = (folder / "per_image.csv").read_text().strip().splitlines()[1:]
        assert len(rows) == results["n_images"] * len(results["methods"])


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
