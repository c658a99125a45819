"""MI-CAM's controls (issue 15, part 2): the unweighted channel sum and MI-CAM with a shuffled gray
image, checked by hand on tiny models and as reference rows of an evaluation."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from conftest import RGB, mi_model
from micam import MICAM, ChannelSum, ShuffledMICAM
from micam.cli.main import main
from micam.methods import CONTROLS, METHODS


def test_channel_sum_is_mi_cam_with_every_weight_one():
    model = mi_model()  # channels: copies of R (left half) and G (top row)
    cam = ChannelSum(model, ["conv"])
    maps = cam(RGB)
    expected = RGB[0, 0] + RGB[0, 1]  # R + G, already at input size: upsampling is the identity
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    torch.testing.assert_close(maps[0], expected)
    assert cam.last_weights.tolist() == [[1.0, 1.0]]
    # the same map as MI-CAM whose weights are forced to one, for the authors' preset too
    for preset in ("default", "authors"):
        forced = MICAM(model, ["conv"], preset=preset)
        forced.channel_weights = lambda context: torch.ones(context.activations.shape[:2])  # type: ignore[method-assign]
        x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(ChannelSum(model, ["conv"], preset=preset)(x), forced(x))


def test_shuffled_mi_cam_keeps_map_statistics_and_loses_the_image():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    model = mi_model()
    real = MICAM(model, ["conv"], bins=8)
    shuffled = ShuffledMICAM(model, ["conv"], bins=8)
    real(x), shuffled(x)
    # channel 0 copies R, which drives the gray image: its MI with the gray image is large ...
    assert real.last_weights[0, 0] > 0.1  # 8 bins, 4,096 pixels: about 0.17 nats
    # ... and nearly nothing once the gray image's pixels are shuffled
    assert shuffled.last_weights[0, 0] < 0.1 * real.last_weights[0, 0]
    # the shuffle is one fixed permutation: the same weights on every call
    first = shuffled.last_weights.clone()
    shuffled(x)
    assert torch.equal(first, shuffled.last_weights)


def test_controls_are_named_apart_from_the_papers_methods():
    assert set(CONTROLS) == {"channel-sum", "mi-cam-shuffled"} and not set(CONTROLS) & set(METHODS)


def test_evaluate_has_the_controls_as_unranked_rows_and_a_resume_keeps_the_runs_methods(tmp_path, tiny_zoo):
    for i in range(3):
        Image.new("RGB", (40, 40), (60 * i, 200 - 50 * i, 30 + 40 * i)).save(tmp_path / f"{i}.png")
    listing = tmp_path / "list.csv"
    listing.write_text("file,label\n" + "".join(f"{i}.png,{i}\n" for i in range(3)))
    out = tmp_path / "run"
    argv = ["evaluate", "--data", str(listing), "--out", str(out), "--device", "cpu", "--loader-workers", "0"]
    metrics = "drop-increase,channel-sum-correlation"
    assert main([*argv, "--metrics", metrics, "--limit", "2", "--sanity-images", "0"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {"channel-sum", "mi-cam-shuffled", "centre-gaussian", "random"} <= set(results["methods"])
    assert {"channel-sum", "mi-cam-shuffled"} <= set(results["paired"]["differences"])  # MI-CAM minus each
    report = (out / "results.md").read_text()
    assert "| channel-sum |" in report and "| **" not in report.split("| channel-sum |")[1].split("\n")[0]
    # every map's Pearson r with the channel sum of its image: 1 for the channel sum itself, never bolded
    assert results["methods"]["channel-sum"]["channel_sum_correlation"]["mean"] == pytest.approx(1.0)
    assert -1 <= results["methods"]["grad-cam"]["channel_sum_correlation"]["mean"] <= 1
    correlation_table = report.split("## How much each map is the unweighted channel sum")[1].split("##")[0]
    assert "**" not in correlation_table
    # --resume without --methods/--metrics continues the run as it was started
    assert main([*argv, "--resume"]) == 0
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["n_images"] == 3 and set(resumed["methods"]) == set(results["methods"])
    assert json.loads((out / "settings.json").read_text())["metrics"] == metrics.split(",")
    assert not math.isnan(resumed["methods"]["channel-sum"]["average_drop"]["mean"])


@pytest.mark.parametrize("name", sorted(CONTROLS))
def test_controls_are_explained_from_the_command_line(name, tmp_path, tiny_zoo):
    Image.new("RGB", (40, 40), (200, 30, 30)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    assert main(["explain", str(tmp_path / "a.png"), "--method", name, "--out", str(out), "--device", "cpu"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert name in summary["images"]["a"]["methods"]


def test_the_channel_sum_is_computed_once_per_batch_for_its_row_and_the_correlations(tmp_path, tiny_zoo, monkeypatch):
    calls = []
    weights = ChannelSum.channel_weights
    monkeypatch.setattr(ChannelSum, "channel_weights", lambda self, context: calls.append(1) or weights(self, context))
    for i in range(2):
        Image.new("RGB", (40, 40), (60 * i, 200, 30)).save(tmp_path / f"{i}.png")
    listing = tmp_path / "list.csv"
    listing.write_text("file,label\n0.png,0\n1.png,1\n")
    argv = ["evaluate", "--data", str(listing), "--out", str(tmp_path / "run"), "--device", "cpu"]
    argv += ["--methods", "grad-cam,channel-sum", "--metrics", "channel-sum-correlation", "--batch-size", "2"]
    assert main([*argv, "--loader-workers", "0"]) == 0
    assert len(calls) == 2  # the warm-up and the one batch: its row and every map's correlation share it
