"""scripts/estimator_study.py's resume: committed rows come back byte for byte, and the committed paired
tables are what their rows give."""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import pytest

from conftest import REPO, load_script
from micam.evaluation.files import read_csv, read_json

STUDIES = REPO / "docs" / "results" / "estimator-study"
CPU_STUDIES = sorted(path.name for path in STUDIES.glob("cpu-*"))


def _maps(folder: Path) -> list[str]:
    """The maps of the first image of a committed study, in row order."""
    rows = read_csv(folder / "per_image.csv")
    return [row["map"] for row in rows if row["image"] == rows[0]["image"]]


def test_every_cpu_study_is_checked():
    assert {"cpu-mobilenet_v2", "cpu-mobilenet_v2-reference", "cpu-mobilenet_v2-bins"} <= set(CPU_STUDIES)


@pytest.mark.parametrize("name", CPU_STUDIES)
def test_resumed_rows_are_written_back_byte_for_byte_with_the_same_table(tmp_path, name):
    study = load_script("estimator_study")
    folder = STUDIES / name
    rows, seconds = study._earlier_rows(folder, _maps(folder))
    assert len(rows) == len((folder / "per_image.csv").read_text().splitlines()) - 1
    assert seconds > 0
    images = len({row["image"] for row in rows})
    model = read_json(folder / "study.json")["model"]
    args = argparse.Namespace(model=model, out=tmp_path, device="cpu")
    study._write(tmp_path, rows, args, images, seconds)
    assert (tmp_path / "per_image.csv").read_bytes() == (folder / "per_image.csv").read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["per_image.csv", "study.json", "study.md"]
    # the same keys: a run without shuffled maps gains no "minus_own_shuffle", one with them keeps it
    assert read_json(tmp_path / "study.json").keys() == read_json(folder / "study.json").keys()

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


def test_the_committed_summary_is_what_the_run_folders_give(monkeypatch):
    monkeypatch.chdir(REPO)
    study = load_script("estimator_study")
    assert study.summary_markdown(STUDIES) == (STUDIES / "summary.md").read_text()


def test_the_summary_tallies_verdicts_by_direction_and_leaves_grad_cam_out(tmp_path):
    """Hand-made runs: AD, area-matched AD and deletion are lower-is-better, the other three higher."""
    study = load_script("estimator_study")

    def cell(mean: float, half_width: float = 1.0) -> dict[str, float]:
        return {"mean": mean, "half_width": half_width, "n": 10}

    def run(name: str, device: str, model: str, rows: dict[str, dict[str, dict[str, float]]], images: int = 10) -> None:
        folder = tmp_path / name
        folder.mkdir()
        means = {
            map_name: {"channel_sum_correlation": {"mean": 0.99}, "shuffled_share": {"mean": 0.1}} for map_name in rows
        }
        summary = {"model": model, "images": images, "device": device, "means": means, "minus_channel_sum": rows}
        (folder / "study.json").write_text(json.dumps(summary))

    # the same +2 ± 1 on every metric reads worse where lower is better and better where higher is
    up = {metric: cell(2.0) for metric in study.METRICS}
    # -2 ± 1 reads the other way round; +0.5 ± 1 is level; a one-image cell (no interval) is not a test
    down = {metric: cell(-2.0) for metric in study.METRICS}
    run(
        "a",
        "cpu",
        "m1",
        {
            "grad-cam": {"average_drop": cell(-5.0)},
            "binned-8": up,
            "binned-32": down | {"deletion": cell(0.5), "insertion": cell(9.0, math.nan)},
        },
    )
    run("b", "cpu", "m2", {"binned-8": {"insertion": cell(2.0)}})
    run("c", "NVIDIA H100", "m1", {"ksg": {"average_drop": cell(3.0)}})
    # binned-8 again on m1, on fewer images: shown, but not counted a second time
    run("d", "cpu", "m1", {"binned-8": down, "grad-cam": down}, images=5)
    text = study.summary_markdown(tmp_path)
    assert (
        "| a | m1 | 10 | binned-8 | worse | better | worse | better | worse | better | 0.990 | 0.10 | CPU + every run |"
        in text
    )
    assert (
        "| a | m1 | 10 | binned-32 | better | worse | better | worse | ≈ |  | 0.990 | 0.10 | CPU + every run |" in text
    )
    assert "| a | m1 | 10 | grad-cam | better |  |  |  |  |  | 0.990 | 0.10 | control |" in text
    assert "| c | m1 | 10 | ksg | worse |  |  |  |  |  | 0.990 | 0.10 | every run |" in text
    assert "| d | m1 | 5 | binned-8 | better | worse | better | worse | better | worse | 0.990 | 0.10 | no |" in text
    assert "| CPU, m1 | 11 | 5 | 5 | 0.55 |" in text  # grad-cam's better AD is not counted
    assert "| CPU, m2 | 1 | 1 | 0 | 0.05 |" in text
    assert "| CPU, every model | 12 | 6 | 5 | 0.60 |" in text
    assert "| every run | 13 | 6 | 6 | 0.65 |" in text
    with pytest.raises(SystemExit, match="no run folders"):
        study.summary_markdown(tmp_path / "a" / "nothing")


def test_a_shuffled_twin_is_paired_with_its_estimator_and_kept_out_of_the_tally(tmp_path):
    """Two hand-made images: binned-256 minus binned-256-shuffled is computed from the rows, shown in
    study.md, and the summary tallies binned-256 against the channel sum but not its shuffled control."""
    study = load_script("estimator_study")
    assert study._control("binned-256-shuffled") == "channel-sum"
    assert study._control("reference-shuffled") == "channel-sum-nearest"
    rows = []
    for image, offset in (("a", 0.0), ("b", 2.0)):
        for name, drop in (
            ("channel-sum", 30.0),
            ("grad-cam", 20.0),
            ("binned-256", 25.0),
            ("binned-256-shuffled", 28.0),
        ):
            row = {metric: 0.5 for metric in study.METRICS}
            row |= {"image": image, "map": name, "seconds": 0.1, "average_drop": drop + offset * (name == "binned-256")}
            rows.append(
                row | {"channel_sum_correlation": 0.99, "shuffled_share": 0.7 if name == "binned-256" else math.nan}
            )
    args = argparse.Namespace(model="m", out=tmp_path / "run", device="cpu")
    (tmp_path / "run").mkdir()
    study._write(tmp_path / "run", rows, args, 2, 1.0)
    written = read_json(tmp_path / "run" / "study.json")
    twin = written["minus_own_shuffle"]["binned-256"]["average_drop"]
    # (25 - 28) and (27 - 28): mean -2, sample std sqrt(2), so half width t(0.975, 1) * sqrt(2) / sqrt(2)
    assert twin["n"] == 2 and twin["mean"] == pytest.approx(-2.0)
    assert twin["half_width"] == pytest.approx(12.7062047, rel=1e-6)
    assert list(written["minus_own_shuffle"]) == ["binned-256"]
    assert written["minus_channel_sum"]["binned-256-shuffled"]["average_drop"]["mean"] == pytest.approx(-2.0)
    text = (tmp_path / "run" / "study.md").read_text()
    assert "| binned-256 | -2.000 ± 12.706 ≈ | +0.000 ± 0.000 ≈ |" in text
    summary = study.summary_markdown(tmp_path)
    assert "| run | m | 2 | binned-256 | ≈ | ≈ | ≈ | ≈ | ≈ | ≈ |" in summary  # the twin table
    # binned-256 against the channel sum: 6 level tests (AD -4 ± 12.7, the rest 0 ± 0); the shuffled map
    # (AD -2 ± 0, better) is a control and not counted
    assert "| run | m | 2 | binned-256-shuffled | better | ≈ |" in summary
    assert "| CPU, m | 6 | 0 | 0 | 0.30 |" in summary
    assert f"| {study.SHUFFLED_TALLY} | 6 | 1 | 0 | 0.30 |" in summary  # tallied apart, as a yardstick


def test_an_unknown_estimator_is_a_usage_error_that_lists_the_choices(monkeypatch, capsys):
    study = load_script("estimator_study")
    monkeypatch.setattr("sys.argv", ["estimator_study.py", "--data", "x", "--out", "y", "--estimators", "bined-32"])
    with pytest.raises(SystemExit) as exit_info:
        study.main()
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "unknown estimator bined-32" in error and "binned-32" in error and "NAME-shuffled" in error


def test_a_map_that_several_runs_measured_counts_once_in_each_tally(tmp_path):
    """The run with the most images counts (the first folder on a tie), chosen among the CPU runs for
    the CPU tallies and among every run for the last; a shuffled map too, in its own tally."""
    study = load_script("estimator_study")
    up = {metric: {"mean": 2.0, "half_width": 1.0, "n": 10} for metric in study.METRICS}
    down = {metric: {"mean": -2.0, "half_width": 1.0, "n": 10} for metric in study.METRICS}
    one = {"average_drop": {"mean": 3.0, "half_width": 1.0, "n": 10}}
    for name, device, images, rows in (
        ("a", "cpu", 10, {"binned-8": up}),  # fewer images than b, although first by name
        ("b", "cpu", 20, {"binned-8": down, "binned-8-shuffled": one}),
        ("c", "cpu", 20, {"binned-8": up, "binned-8-shuffled": one}),  # ties with b, after it
        ("d", "NVIDIA H100", 50, {"binned-8": one}),  # the most images, but not a CPU run
    ):
        (tmp_path / name).mkdir()
        means = {key: {"channel_sum_correlation": {"mean": 0.99}, "shuffled_share": {"mean": 0.1}} for key in rows}
        summary = {"model": "m", "images": images, "device": device, "means": means, "minus_channel_sum": rows}
        (tmp_path / name / "study.json").write_text(json.dumps(summary))
    text = study.summary_markdown(tmp_path)
    rows = [line.split(" | ") for line in text.splitlines() if line.count(" | ") == 12]  # the table of runs
    tallied = {(cells[0], cells[3]): cells[-1] for cells in rows}
    assert tallied[("| a", "binned-8")] == "no |"
    assert tallied[("| b", "binned-8")] == "CPU |"
    assert tallied[("| c", "binned-8")] == "no |"
    assert tallied[("| d", "binned-8")] == "every run |"
    assert tallied[("| b", "binned-8-shuffled")] == "shuffled yardstick |"
    assert tallied[("| c", "binned-8-shuffled")] == "no |"
    assert "| CPU, m | 6 | 3 | 3 | 0.30 |" in text  # b's: AD, area-matched AD and deletion better
    assert "| every run | 1 | 0 | 1 | 0.05 |" in text  # d's AD, worse
    assert f"| {study.SHUFFLED_TALLY} | 1 | 0 | 1 | 0.05 |" in text  # b's shuffled map only
