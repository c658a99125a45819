"""scripts/gpu_run.sh without a GPU: a stand-in Python records what the script would run, so the
seeding of each run folder from the committed one and the evaluate arguments of each protocol are
checked here (the evaluation itself is the evaluator's, tested elsewhere)."""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_run.sh"


def _run(tmp_path: Path, protocol: str | None, model: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    calls = tmp_path / "calls.txt"
    python = tmp_path / "python"
    python.write_text(f'#!/usr/bin/env bash\n[ "$1" = "-m" ] && printf "%s\\n" "$@" > "{calls}"\nexit 0\n')
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if k != "PROTOCOL"} | {"PYTHON": str(python)}
    if protocol is not None:
        env["PROTOCOL"] = protocol
    out = tmp_path / "out"
    done = subprocess.run(
        ["bash", str(SCRIPT), "annotations.json", str(out), "100", model],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done, calls.read_text().split("\n")[:-1] if calls.exists() else []


@pytest.mark.parametrize(
    ("protocol", "folder", "results", "expected"),
    [
        (None, "eval-mobilenet_v1", "results", {"--counterfactual-images": "50", "--sanity-images": "4"}),
        (
            "authors",
            "eval-authors-mobilenet_v1",
            "results/authors",
            {"--protocol": "authors", "--counterfactual-images": "0", "--sanity-images": "0"},
        ),
    ],
)
def test_each_protocol_resumes_its_committed_run(tmp_path, protocol, folder, results, expected):
    done, arguments = _run(tmp_path, protocol, "mobilenet_v1")
    assert done.returncode == 0, done.stdout + done.stderr
    seed, run = ROOT / "docs" / results / "mobilenet_v1", tmp_path / "out" / folder
    assert (run / "per_image.csv").read_bytes() == (seed / "per_image.csv").read_bytes()
    assert (run / "settings.json").read_bytes() == (seed / "settings.json").read_bytes()
    with gzip.open(seed / "curves.csv.gz", "rb") as curves:
        assert (run / "curves.csv").read_bytes() == curves.read()
    assert arguments[:4] == ["-m", "micam.cli.main", "evaluate", "--data"]
    assert arguments[arguments.index("--out") + 1] == str(run) and "--resume" in arguments
    assert {flag: arguments[arguments.index(flag) + 1] for flag in expected} == expected
    assert ("--protocol" in arguments) == (protocol == "authors")
    settings = json.loads((seed / "settings.json").read_text())  # what the committed run was made with
    assert settings["counterfactual_images"] == int(expected["--counterfactual-images"])
    assert settings["sanity_images"] == int(expected["--sanity-images"])


def test_an_unknown_protocol_is_a_usage_error(tmp_path):
    done, arguments = _run(tmp_path, "paper", "mobilenet_v1")
    assert done.returncode == 2 and "PROTOCOL must be stated or authors" in done.stdout
    assert arguments == [] and not (tmp_path / "out").exists()


def test_usage_names_the_protocol_switch():
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "Usage: scripts/gpu_run.sh" in done.stdout and "PROTOCOL=authors" in done.stdout


def test_a_committed_run_without_curves_is_not_seeded(tmp_path):
    # The script reads its seeds beside itself (../docs/results/<model>): a copy with a damaged seed.
    (tmp_path / "scripts").mkdir()
    copy = tmp_path / "scripts" / "gpu_run.sh"
    copy.write_text(SCRIPT.read_text())
    seed = tmp_path / "docs" / "results" / "some_model"
    seed.mkdir(parents=True)
    (seed / "per_image.csv").write_text("image,method\n")
    done = subprocess.run(
        ["bash", str(copy), "annotations.json", str(tmp_path / "out"), "100", "some_model"],
        env=os.environ | {"PYTHON": "false"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3 and "has no curves.csv.gz" in done.stdout
    assert not (tmp_path / "out" / "eval-some_model").exists()
