"""The two protocols of ``micam evaluate`` (issue 15, part 1): the paper's stated definitions and an
emulation of the authors' published scripts, each switch on its own; and a run made before the switches
existed resumes as it was made."""

from __future__ import annotations

import json

from PIL import Image

from micam.cli.main import main
from micam.evaluation.settings import PROTOCOLS


def _data(folder):
    for i in range(3):
        Image.new("RGB", (40, 40), (60 * i, 200 - 50 * i, 30 + 40 * i)).save(folder / f"{i}.png")
    listing = folder / "list.csv"
    listing.write_text("file,label,boxes\n" + "".join(f"{i}.png,{i},5 5 20 20\n" for i in range(3)))
    return listing


def test_the_authors_protocol_sets_every_switch_and_each_can_be_overridden(tmp_path, tiny_zoo):
    seen = tiny_zoo
    listing = _data(tmp_path)
    out = tmp_path / "authors"
    argv = ["evaluate", "--data", str(listing), "--out", str(out), "--device", "cpu", "--loader-workers", "0"]
    argv += ["--methods", "grad-cam,mi-cam", "--metrics", "drop-increase,deletion-insertion,localization"]
    assert main([*argv, "--protocol", "authors", "--steps", "4"]) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert {key: settings[key] for key in PROTOCOLS["authors"]} == PROTOCOLS["authors"]
    assert settings["protocol"] == "authors"
    assert seen["mean"] == [0.0, 0.0, 0.0] and seen["std"] == [1 / 255] * 3  # raw 0-255 input
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["mi_cam"]["gray_uint8"] is True and results["settings"]["mi_cam"]["preset"] == "authors"
    assert "protocol authors (input raw, deletion/insertion indexing authors" in (out / "results.md").read_text()
    # one switch set on its own on top of the protocol
    assert (
        main([*argv, "--protocol", "authors", "--steps", "4", "--out", str(tmp_path / "mixed"), "--tolerance", "15"])
        == 0
    )
    mixed = json.loads((tmp_path / "mixed" / "settings.json").read_text())
    assert mixed["tolerance"] == 15.0 and mixed["pixel_indexing"] == "authors"
    # resuming without --protocol keeps the run's own
    assert main([*argv, "--out", str(out), "--resume", "--steps", "4"]) == 0


def test_a_run_made_before_the_switches_resumes_as_it_was_made(tmp_path, tiny_zoo):
    listing = _data(tmp_path)
    out = tmp_path / "old"
    argv = ["evaluate", "--data", str(listing), "--out", str(out), "--device", "cpu", "--loader-workers", "0"]
    argv += ["--methods", "grad-cam", "--metrics", "deletion-insertion", "--steps", "4"]
    assert main([*argv, "--limit", "2"]) == 0
    settings = json.loads((out / "settings.json").read_text())
    for key in ("auc_x", "protocol", "input_scale", "pixel_indexing", "increase_baseline"):
        del settings[key]  # as written before these settings existed (the committed runs)
    (out / "settings.json").write_text(json.dumps(settings))
    assert main([*argv, "--resume"]) == 0  # no flag needed: the missing AUC rule is the older one
    resumed = json.loads((out / "settings.json").read_text())
    assert resumed["auc_x"] == "even" and resumed["protocol"] == "stated"
    assert json.loads((out / "results.json").read_text())["n_images"] == 3


def test_a_resumed_run_gains_methods_and_keeps_its_rows_byte_for_byte(tmp_path, tiny_zoo):
    listing = _data(tmp_path)
    out = tmp_path / "run"
    argv = ["evaluate", "--data", str(listing), "--out", str(out), "--device", "cpu", "--loader-workers", "0"]
    argv += ["--metrics", "drop-increase,deletion-insertion,sanity", "--steps", "4", "--sanity-images", "1"]
    assert main([*argv, "--methods", "grad-cam,random"]) == 0
    before = {name: (out / name).read_text().splitlines() for name in ("per_image.csv", "curves.csv", "sanity.csv")}
    assert main([*argv, "--methods", "grad-cam,random,mi-cam,channel-sum", "--resume"]) == 0
    after = {name: (out / name).read_text().splitlines() for name in before}
    for name, lines in before.items():
        assert after[name][: len(lines)] == lines, name  # every earlier row as it was, first
    added = [line.split(",")[5] for line in after["per_image.csv"][len(before["per_image.csv"]) :]]
    assert sorted(added) == ["channel-sum"] * 3 + ["mi-cam"] * 3  # only the gained methods were computed
    assert {line.split(",")[0] for line in after["sanity.csv"][len(before["sanity.csv"]) :]} == {"mi-cam"}
    results = json.loads((out / "results.json").read_text())
    assert results["n_images"] == 3 and set(results["methods"]) == {"grad-cam", "random", "mi-cam", "channel-sum"}
    # losing a method is still refused
    assert main([*argv, "--methods", "grad-cam", "--resume"]) == 2
