"""scripts/estimator_study.py's resume: committed rows come back byte for byte, and the committed paired
tables are what their rows give."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest

from conftest import REPO, load_script
from micam.evaluation.files import read_csv

STUDIES = REPO / "docs" / "results" / "estimator-study"
CPU_STUDIES = ["cpu-mobilenet_v2", "cpu-mobilenet_v2-reference", "cpu-mobilenet_v2-bins"]


def _maps(folder: Path) -> list[str]:
    """The maps of the first image of a committed study, in row order."""
    rows = read_csv(folder / "per_image.csv")
    return [row["map"] for row in rows if row["image"] == rows[0]["image"]]


@pytest.mark.parametrize("name", CPU_STUDIES)
def test_resumed_rows_are_written_back_byte_for_byte_with_the_same_table(tmp_path, name):
    study = load_script("estimator_study")
    folder = STUDIES / name
    rows, seconds = study._earlier_rows(folder, _maps(folder))
    assert len(rows) == len((folder / "per_image.csv").read_text().splitlines()) - 1
    assert seconds > 0
    images = len({row["image"] for row in rows})
    args = argparse.Namespace(model="mobilenet_v2", out=tmp_path)
    study._write(tmp_path, rows, args, images, seconds)
    assert (tmp_path / "per_image.csv").read_bytes() == (folder / "per_image.csv").read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["per_image.csv", "study.json", "study.md"]

    def table(path: Path) -> list[str]:
        return [line for line in path.read_text().splitlines() if line.startswith("| ")]

    assert table(tmp_path / "study.md") == table(folder / "study.md")


def test_resume_refuses_a_folder_made_with_other_estimators(tmp_path):
    study = load_script("estimator_study")
    shutil.copy(STUDIES / "cpu-mobilenet_v2-bins" / "per_image.csv", tmp_path / "per_image.csv")
    with pytest.raises(SystemExit, match="use the same --estimators"):
        study._earlier_rows(tmp_path, ["channel-sum", "grad-cam", "binned-32"])
    assert study._earlier_rows(tmp_path / "missing", ["channel-sum"]) == ([], 0.0)


def test_the_recorded_command_is_one_a_shell_can_run_again():
    study = load_script("estimator_study")
    args = argparse.Namespace(out=Path("study"), limit=300, seconds=None, resume=True, verbose=False)
    assert study._command(args) == "python scripts/estimator_study.py --out study --limit 300 --resume"
