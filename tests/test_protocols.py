"""The two protocols of ``micam evaluate`` (issue 15, part 1): the paper's stated definitions and an
emulation of the authors' published scripts, each switch on its own; and a run made before the switches
existed resumes as it was made."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from torch import nn

from conftest import RGB, mi_model
from micam import MICAM, ChannelSum
from micam.cli.main import main
from micam.evaluation.files import ADDED
from micam.evaluation.rows import read_rows
from micam.evaluation.settings import PROTOCOLS


def _data(folder):
    for i in range(3):
        Image.new("RGB", (40, 40), (60 * i, 200 - 50 * i, 30 + 40 * i)).save(folder / f"{i}.png")
    listing = folder / "list.csv"
    listing.write_text("file,label,boxes\n" + "".join(f"{i}.png,{i},5 5 20 20\n" for i in range(3)))
    return listing


def _evaluate(listing, *more):
    """``micam evaluate`` on the listing, on the CPU, decoding in this process."""
    return ["evaluate", "--data", str(listing), "--device", "cpu", "--loader-workers", "0", *more]


def test_the_authors_protocol_sets_every_switch_and_each_can_be_overridden(tmp_path, tiny_zoo):
    seen = tiny_zoo
    listing = _data(tmp_path)
    out = tmp_path / "authors"
    argv = _evaluate(listing, "--out", str(out))
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
    assert mixed["mi_column_max"] is False  # the protocol leaves it off (see PROTOCOLS)
    column = tmp_path / "column"
    assert main([*argv, "--protocol", "authors", "--steps", "4", "--out", str(column), "--mi-column-max"]) == 0
    assert json.loads((column / "results.json").read_text())["settings"]["mi_cam"]["column_max"] is True
    # resuming without --protocol keeps the run's own
    assert main([*argv, "--out", str(out), "--resume", "--steps", "4"]) == 0


def test_a_run_made_before_the_switches_resumes_as_it_was_made(tmp_path, tiny_zoo):
    listing = _data(tmp_path)
    out = tmp_path / "old"
    argv = _evaluate(listing, "--out", str(out))
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
    argv = _evaluate(listing, "--out", str(out))
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


def test_column_max_is_the_authors_np_max_over_rows_with_no_relu():
    model = mi_model()  # channels: copies of R and G at input size (upsampling is the identity)
    column = ChannelSum(model, ["conv"], column_max=True)(RGB)[0]
    total = RGB[0, 0] + RGB[0, 1]
    expected = total.amax(dim=0, keepdim=True).expand(4, 4)  # np.max(cam, 0), broadcast down the rows
    span = expected.max() - expected.min()
    assert span > 0  # the columns differ, so the scaled map is not flat
    torch.testing.assert_close(column, (expected - expected.min()) / span)
    assert ChannelSum(model, ["conv"]).settings["column_max"] is False  # off unless asked for
    # no ReLU: with weights (-1, 0) every value is negative; the ReLU map is flat zero, the column map is not
    negative = MICAM(model, ["conv"], column_max=True)
    negative.channel_weights = lambda context: torch.tensor([[-1.0, 0.0]])  # type: ignore[method-assign]
    relu = MICAM(model, ["conv"])
    relu.channel_weights = negative.channel_weights  # type: ignore[method-assign]
    assert torch.count_nonzero(relu(RGB)) == 0
    lowest = (-RGB[0, 0]).amax(dim=0, keepdim=True).expand(4, 4)
    torch.testing.assert_close(negative(RGB)[0], (lowest - lowest.min()) / (lowest.max() - lowest.min()))
    with pytest.raises(ValueError, match="column_max needs 2-D maps"):
        MICAM(nn.Sequential(nn.Conv1d(3, 2, 1)), ["0"], column_max=True)(torch.rand(1, 3, 8))


def test_a_resumed_run_gains_metrics_with_its_rows_byte_for_byte_and_the_values_of_a_full_run(tmp_path, tiny_zoo):
    listing = _data(tmp_path)
    out, full = tmp_path / "run", tmp_path / "full"
    argv = _evaluate(listing, "--steps", "4")
    argv += ["--batch-size", "2"]
    gained = "drop-increase,deletion-insertion,area-matched,channel-sum-correlation"
    first = ["--methods", "grad-cam,mi-cam", "--metrics", "drop-increase,deletion-insertion"]
    assert main([*argv, "--out", str(out), *first]) == 0
    before = {name: (out / name).read_bytes() for name in ("per_image.csv", "curves.csv")}
    # gaining a method and two metric groups at once
    more = ["--methods", "grad-cam,mi-cam,channel-sum", "--metrics", gained]
    assert main([*argv, "--out", str(out), "--resume", *more]) == 0
    after = (out / "per_image.csv").read_bytes()
    assert after.startswith(before["per_image.csv"])  # the earlier rows, header included, byte for byte
    assert (out / "curves.csv").read_bytes().startswith(before["curves.csv"])
    header = after.decode().splitlines()[0]
    assert "area_matched_drop" not in header  # per_image.csv keeps its columns ...
    added = (out / ADDED).read_text().splitlines()
    assert added[0].startswith("image,method,area_matched_drop") and len(added) == 1 + 3 * 3  # ... these go here
    # every value is the one a run made with all of it from the start gives
    assert main([*argv, "--out", str(full), *more]) == 0
    rows = {(r["image"], r["method"]): r for r in read_rows(out)}
    reference = {(r["image"], r["method"]): r for r in read_rows(full)}
    assert rows.keys() == reference.keys()
    for key, row in reference.items():
        for column in ("average_drop", "deletion_auc", "area_matched_drop", "channel_sum_correlation"):
            assert rows[key][column] == row[column], (key, column)
    results = json.loads((out / "results.json").read_text())
    assert results["methods"]["grad-cam"]["area_matched_drop"]["n"] == 3
    # a cut added row (a killed run) is computed again for that image and method only, on resume
    lines = (out / ADDED).read_text().splitlines(keepends=True)
    (out / ADDED).write_text("".join(lines[:-1]) + lines[-1][:10])
    assert main([*argv, "--out", str(out), "--resume"]) == 0  # the run's own methods and metrics
    assert (out / "per_image.csv").read_bytes() == after
    assert len((out / ADDED).read_text().splitlines()) == 1 + 3 * 3
    # losing a metric is refused
    assert main([*argv, "--out", str(out), "--resume", "--metrics", "drop-increase"]) == 2


def test_an_extension_may_cover_the_first_images_only_and_every_finished_image_still_counts(tmp_path, tiny_zoo):
    listing = _data(tmp_path)
    out = tmp_path / "run"
    argv = _evaluate(listing, "--steps", "4")
    argv += ["--out", str(out), "--batch-size", "1"]
    assert main([*argv, "--methods", "grad-cam", "--metrics", "drop-increase"]) == 0
    before = (out / "per_image.csv").read_bytes()
    more = ["--methods", "grad-cam,channel-sum", "--metrics", "drop-increase,area-matched"]
    for _ in range(2):  # an extension of the first two images, twice: the third image's rows stay
        assert main([*argv, "--resume", "--limit", "2", *more]) == 0
        results = json.loads((out / "results.json").read_text())
        assert results["n_images"] == 3 and results["extension"] == {
            "methods": ["grad-cam"],
            "metrics": ["drop-increase"],
        }
        grad_cam, channel_sum = results["methods"]["grad-cam"], results["methods"]["channel-sum"]
        assert grad_cam["average_drop"]["n"] == 3 and grad_cam["area_matched_drop"]["n"] == 2
        assert channel_sum["average_drop"]["n"] == 2
        assert (out / "per_image.csv").read_bytes().startswith(before)
        report = (out / "results.md").read_text()
        assert "| channel-sum (first 2 images) |" in report and "| grad-cam |" in report
        # sessions: the first (3 images), the extension of two of them; the repeat had nothing to do
        assert [(r["images"], r.get("extended")) for r in results["runs"]] == [(3, None), (0, 2)]
    assert main([*argv, "--resume"]) == 0  # the run's own (gained) methods and metrics, on every image
    results = json.loads((out / "results.json").read_text())
    assert results["methods"]["grad-cam"]["area_matched_drop"]["n"] == 3
    assert results["methods"]["channel-sum"]["average_drop"]["n"] == 3
    assert (out / "per_image.csv").read_bytes().startswith(before)


def test_a_second_extension_keeps_the_first_ones_values_on_images_it_has_not_reached(tmp_path, tiny_zoo):
    """Extending twice (area-matched on every image, then ROAD on the first image only) keeps the first
    extension's values of the other images on disk and in the results, and the second extension computes
    only what an image lacks (ROAD), so the first extension's values are never recomputed."""
    listing = _data(tmp_path)
    out = tmp_path / "run"
    argv = _evaluate(listing, "--steps", "4", "--out", str(out), "--batch-size", "1", "--methods", "grad-cam")
    assert main([*argv, "--metrics", "drop-increase"]) == 0
    assert main([*argv, "--resume", "--metrics", "drop-increase,area-matched"]) == 0
    first = {(r["image"], r["method"]): r for r in read_rows(out)}
    assert main([*argv, "--resume", "--metrics", "drop-increase,area-matched,road", "--limit", "1"]) == 0
    rows = {(r["image"], r["method"]): r for r in read_rows(out)}
    assert rows.keys() == first.keys() and len(rows) == 3
    reached = [key for key, row in rows.items() if row.get("road_morf")]
    assert len(reached) == 1  # --limit 1: ROAD on the first image only
    for key, row in rows.items():
        assert row["area_matched_drop"] == first[key]["area_matched_drop"] != "", key  # nothing lost
    results = json.loads((out / "results.json").read_text())["methods"]["grad-cam"]
    assert results["area_matched_drop"]["n"] == 3 and results["road_morf"]["n"] == 1
    assert results["average_drop"]["n"] == 3
    # the run's own (gained) metrics on every image: ROAD reaches the other two, nothing else changes
    assert main([*argv, "--resume"]) == 0
    rows = {(r["image"], r["method"]): r for r in read_rows(out)}
    assert all(row["road_morf"] for row in rows.values())
    assert all(row["area_matched_drop"] == first[key]["area_matched_drop"] for key, row in rows.items())
    # a resume merges the rows of each (image, method) into one, then appends the two it computed: ROAD only
    added = (out / ADDED).read_text().splitlines()
    assert len(added) == 1 + 3 + 2
    header = added[0].split(",")
    for line in added[-2:]:
        cells = dict(zip(header, line.split(","), strict=True))
        assert cells["road_morf"] and cells["area_matched_drop"] == "", cells


def test_a_limited_run_records_how_many_images_its_data_has(tmp_path, tiny_zoo):
    """--limit 2 of 3 images: n_requested is 2 (the run is done), n_available 3 (what the results page
    counts its coverage against: "the first 2 of the 3 shared images")."""
    listing = _data(tmp_path)
    out = tmp_path / "run"
    argv = _evaluate(listing, "--steps", "4", "--out", str(out), "--methods", "grad-cam", "--metrics", "drop-increase")
    assert main([*argv, "--limit", "2"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert (results["n_images"], results["n_requested"], results["n_available"]) == (2, 2, 3)
    assert "2 images" in (out / "results.md").read_text()
