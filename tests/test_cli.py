"""`micam explain` as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from conftest import EXAMPLES, needs_mobilenet_weights
from micam.cli.main import main


@needs_mobilenet_weights
def test_explain_writes_overlays_and_maps_and_skips_bad_files(tmp_path, capsys):
    bad = tmp_path / "not-an-image.png"
    bad.write_text("hello")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes((EXAMPLES / "coffee.png").read_bytes()[:4000])
    out = tmp_path / "out"
    status = main(
        [
            "explain",
            str(EXAMPLES / "chelsea.png"),
            str(bad),
            str(truncated),
            str(tmp_path / "missing.jpg"),
            str(EXAMPLES / "coffee.png"),
            "--method",
            "grad-cam,mi-cam,eigen-cam",
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr()
    assert status == 1  # some inputs were skipped
    assert "1. Egyptian cat (class 285)" in printed.out and "1. espresso (class 967)" in printed.out
    for name in ("not-an-image.png", "truncated.png", "missing.jpg"):
        assert f"skipped {tmp_path / name}" in printed.err
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["images"]) == {"chelsea", "coffee"} and len(summary["failures"]) == 3
    assert [p["class"] for p in summary["images"]["chelsea"]["top"]][:1] == [285]
    for stem in ("chelsea", "coffee"):
        for method in ("grad-cam", "mi-cam", "eigen-cam"):
            cam = np.load(out / stem / f"{method}.npy")
            assert cam.shape == (224, 224) and cam.min() == 0 and cam.max() == 1
            overlay = np.asarray(Image.open(out / stem / f"{method}.png"))
            assert overlay.shape == (224, 224, 3) and overlay.std() > 10


@needs_mobilenet_weights
def test_explain_exits_zero_when_everything_worked(tmp_path):
    assert main(["explain", str(EXAMPLES / "coffee.png"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "coffee" / "mi-cam.png").exists()


def test_usage_errors_exit_two(tmp_path, capsys):
    status = main(
        ["explain", str(EXAMPLES / "coffee.png"), "--method", "lime", "--weights", "random", "--out", str(tmp_path)]
    )
    assert status == 2 and "unknown method" in capsys.readouterr().err


def test_console_script_is_installed():
    result = subprocess.run(
        [sys.executable, "-m", "micam.cli.main", "explain", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "--method" in result.stdout


def test_an_unexpected_error_is_one_line_and_exit_status_3(monkeypatch, capsys):
    from micam.cli import explain as explain_command

    def broken(args):  # type: ignore[no-untyped-def]
        raise TypeError("something micam did not foresee")

    monkeypatch.setattr(explain_command, "run", broken)
    monkeypatch.delenv("MICAM_DEBUG", raising=False)
    assert main(["explain", "x.png"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "micam explain: internal error: TypeError: something micam did not foresee "
        "(rerun with --debug for the traceback, and please report it)"
    ]
    for argv, environment in (
        (["--debug", "explain", "x.png"], None),
        (["explain", "x.png", "--debug"], None),
        (["explain", "x.png"], "1"),
    ):
        if environment:
            monkeypatch.setenv("MICAM_DEBUG", environment)
        assert main(argv) == 3  # the same exit status, with the traceback first
        err = capsys.readouterr().err
        assert err.startswith("Traceback (most recent call last):") and "raise TypeError" in err
        assert err.strip().splitlines()[-1].startswith("micam explain: internal error: TypeError")


def test_counts_that_cannot_be_right_are_usage_errors(tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.new("RGB", (20, 20)).save(image)
    for flag in (["--top", "0"], ["--score-cam-batch-size", "-1"]):
        assert main(["explain", str(image), "--weights", "random", "--out", str(tmp_path), *flag]) == 2
        assert "must be at least 1" in capsys.readouterr().err


def test_output_folders_are_sanitized_names_inside_out(tmp_path):
    image = tmp_path / "...png"  # its stem is "..": once, outputs landed next to --out
    Image.new("RGB", (20, 20), (90, 30, 200)).save(image, format="PNG")
    out = tmp_path / "out" / "inner"
    argv = ["explain", str(image), "--weights", "random", "--method", "grad-cam", "--out", str(out), "--top", "1"]
    assert main(argv) == 0
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert written and all(p.resolve().is_relative_to(out.resolve()) for p in written)
    assert (out / "image" / "grad-cam.png").exists()
