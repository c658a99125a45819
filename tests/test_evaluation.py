"""Metric trackers, dataset readers, reference maps and `micam evaluate` end to end."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode

from conftest import SHARED_DATA, TinyCNN, needs_mobilenet_weights, needs_shared_data
from micam import models
from micam.cli.main import main
from micam.evaluation import CentreGaussian, RandomMap, read_dataset, store
from micam.evaluation.datasets import Sample, black_pixel, prepare
from micam.images import read_rgb
from micam.methods.factory import make_method
from micam.metrics import (
    DeletionInsertion,
    DropIncrease,
    Localization,
    MetricBatch,
    box_mask,
    counterfactual_weights,
    summarize,
)
from micam.models import LoadedModel
from test_metrics import LEFT, ONES, LeftHalfMean


def test_summarize_mean_sample_std_and_nan():
    assert summarize([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "n": 3}
    assert summarize([4.0, math.nan]) == {"mean": 4.0, "std": 0.0, "n": 1, "n_undefined": 1}
    empty = summarize([])
    assert empty["n"] == 0 and math.isnan(empty["mean"])


def test_drop_increase_tracker_updates_summarizes_resets_and_extends():
    tracker = DropIncrease(score="logit")
    quadrant = torch.zeros(1, 4, 4)
    quadrant[0, :2, :2] = 1.0
    first = tracker.update(MetricBatch(ONES, quadrant, [0], LeftHalfMean()))  # Y = 1, O = 0.5: AD 50, AI 100
    assert first["average_drop"].tolist() == pytest.approx([50.0])
    tracker.update(MetricBatch(ONES, LEFT, [0], LeftHalfMean()))  # keeps the whole left half: AD 0, AI 100
    summary = tracker.summary()
    assert summary["average_drop"]["mean"] == pytest.approx(25.0)
    assert summary["average_drop"]["std"] == pytest.approx(math.sqrt(2 * 25.0**2))  # sample std of (50, 0)
    assert summary["average_increase"] == {"mean": pytest.approx(100.0), "std": pytest.approx(0.0), "n": 2}
    tracker.reset()
    assert tracker.summary()["average_drop"]["n"] == 0
    tracker.extend({"average_drop": [10.0, 30.0], "average_increase": [1.0, 1.0]})
    assert tracker.summary()["average_drop"]["mean"] == 20.0


def test_drop_increase_with_a_per_channel_baseline_tensor():
    # The baseline black pixel of a model normalized with mean 0.5 / std 0.5 is -1 in every channel.
    baseline = torch.full((1, 1, 1, 1), -1.0)
    tracker = DropIncrease(score="logit", baseline=baseline)
    result = tracker.update(MetricBatch(ONES, _top_left(), [0], LeftHalfMean()))
    # Kept: top-left quadrant (value 1); the rest of the left half becomes -1: O = (4 - 4) / 8 = 0.
    assert result["average_drop"].tolist() == pytest.approx([100.0])


def _top_left() -> torch.Tensor:
    cam = torch.zeros(1, 4, 4)
    cam[0, :2, :2] = 1.0
    return cam


def test_deletion_insertion_tracker_keeps_curves():
    tracker = DeletionInsertion(steps=4, score="logit")
    tracker.update(MetricBatch(ONES, LEFT, [0], LeftHalfMean()))
    # Left half first, 4 pixels per step: deletion 1, .5, 0, 0, 0; insertion 0, .5, 1, 1, 1.
    curves = tracker.mean_curves()
    assert curves["deletion"].tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0, 0.0])
    assert tracker.summary()["deletion_auc"]["mean"] == pytest.approx((0.5 + 0.5 * 1.0) / 4)
    assert tracker.summary()["insertion_auc"]["mean"] == pytest.approx((0.5 + 1 + 1 + 0.5) / 4)


def test_localization_tracker_strict_and_tolerant_pointing_and_ebpg_percent():
    maps = torch.zeros(1, 40, 40)
    maps[0, 0, 0] = 1.0  # peak at the corner, 10 px left of the box
    maps[0, 20, 20] = 0.5
    tracker = Localization(tolerance=15)
    values = tracker.update(
        MetricBatch(torch.zeros(2, 3, 40, 40), torch.cat([maps, maps]), [0, 0], boxes=[[(10, 0, 30, 30)], []])
    )
    assert values["pointing_game"][0].item() == 1.0 and values["pointing_game_strict"][0].item() == 0.0
    assert values["ebpg"][0].item() == pytest.approx(100 * 0.5 / 1.5)
    assert all(math.isnan(values[name][1].item()) for name in tracker.names)  # no boxes: undefined, not a miss
    assert tracker.summary()["pointing_game"] == {"mean": 1.0, "std": 0.0, "n": 1, "n_undefined": 1}


def test_reference_maps():
    images = torch.zeros(2, 3, 9, 7)
    centre = CentreGaussian()(images)
    assert centre.shape == (2, 9, 7) and centre.max() == 1.0 and centre.min() == 0.0
    assert centre[0].argmax().item() == 4 * 7 + 3  # the centre pixel
    random = RandomMap(seed=3)
    a = random(images, keys=["x", "y"])
    assert torch.equal(a[0], random(images[:1], keys=["x"])[0])  # the same key, the same map
    assert not torch.equal(a[0], a[1])


def _fake_loaded(size: int = 224) -> LoadedModel:
    model = TinyCNN().eval()
    return LoadedModel(
        name="tiny",
        model=model,
        preprocess=lambda image: torch.zeros(3, size, size),
        target_layer=model.features,
        target_layer_name="features",
        categories=[str(i) for i in range(5)],
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        input_size=size,
        weights="random",
        resize_size=256,
        interpolation=InterpolationMode.BILINEAR,
    )


def test_prepare_maps_boxes_through_stretch_and_centre_crop():
    loaded = _fake_loaded()
    image = Image.new("RGB", (300, 200), (255, 0, 0))
    sample = Sample("a", None, 1, ((100.0, 50.0, 199.0, 149.0),))  # type: ignore[arg-type]
    # Crop: shorter side 200 -> 256 (x1.28): 384 x 256, centre crop 224 at left 80, top 16.
    tensor, boxes = prepare(image, sample, loaded, "crop")
    assert tensor.shape == (3, 224, 224)
    assert boxes == [pytest.approx((48.0, 48.0, 175.0, 175.0))]
    assert tensor[0, 0, 0].item() == pytest.approx(1.0) and tensor[1, 0, 0].item() == pytest.approx(-1.0)
    # Stretch with boxes given for a 100 x 100 version of the image: x224/100.
    framed = Sample("b", None, 1, ((0.0, 0.0, 49.0, 99.0),), box_frame=(100, 100))  # type: ignore[arg-type]
    _, boxes = prepare(image, framed, loaded, "stretch")
    assert boxes == [pytest.approx((0.0, 0.0, 111.0, 223.0))]
    assert black_pixel(loaded).flatten().tolist() == [-1.0, -1.0, -1.0]


def test_read_dataset_json_csv_and_folder(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    entries = [{"image": "a.png", "label": 3, "boxes_227_xyxy": [[1, 2, 3, 4]]}, {"image": "b.png", "label": 0}]
    (tmp_path / "ann.json").write_text(json.dumps(entries))
    data = read_dataset(tmp_path / "ann.json")
    assert data.kind == "annotations" and data.geometry == "stretch" and data.has_boxes
    assert data.samples[0].boxes == ((1.0, 2.0, 3.0, 4.0),) and data.samples[0].box_frame == (227, 227)
    assert data.samples[1].boxes == () and data.samples[1].label == 0
    (tmp_path / "list.csv").write_text("file,label,boxes\na.png,7,1 2 3 4; 5 6 7 8\nb.png,2,\n")
    data = read_dataset(tmp_path / "list.csv")
    assert data.kind == "csv" and data.samples[0].boxes == ((1, 2, 3, 4), (5, 6, 7, 8)) and data.samples[1].label == 2
    for name in ("n02", "n01"):
        (tmp_path / "tree" / name).mkdir(parents=True)
        (tmp_path / "tree" / name / "x.jpg").write_bytes(b"")
    data = read_dataset(tmp_path / "tree")
    assert [(s.key, s.label) for s in data.samples] == [("n01/x.jpg", 0), ("n02/x.jpg", 1)]
    with pytest.raises(ValueError, match="does not exist"):
        read_dataset(tmp_path / "nope.json")
    (tmp_path / "dup.json").write_text(json.dumps([entries[0], entries[0]]))
    with pytest.raises(ValueError, match="listed twice"):
        read_dataset(tmp_path / "dup.json")


def _rows(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _check_counterfactual_rows_against_the_metric(annotations, out):
    """The runner's MI-CAM counterfactual rows (actual weights taken from the batch's own call) equal
    counterfactual_weights computed from scratch on the first image with the same intervention."""
    sample = read_dataset(annotations).samples[0]
    loaded = models.load("mobilenet_v2")
    image, boxes = prepare(read_rgb(sample.path), sample, loaded, "stretch")
    cam = make_method("mi-cam", loaded.model, loaded.target_layer_name, pixel_mean=loaded.mean, pixel_std=loaded.std)
    inside = box_mask(boxes, tuple(image.shape[-2:]))[None, None]
    found = counterfactual_weights(cam, image[None], lambda x: torch.where(inside, black_pixel(loaded), x))
    row = next(
        r
        for r in _rows(out / "counterfactual.csv")
        if r["image"] == sample.key and r["method"] == "mi-cam" and r["intervention"] == "object"
    )
    assert float(row["relative_change"]) == pytest.approx(float(found["relative_change"][0]), rel=1e-4)
    assert float(row["rank_correlation"]) == pytest.approx(float(found["rank_correlation"][0]), abs=1e-4)


@needs_shared_data
@needs_mobilenet_weights
def test_evaluate_end_to_end_resumes_and_skips_bad_images(tmp_path, capsys, monkeypatch):
    annotations = SHARED_DATA / "ilsvrc2012-val" / "annotations.json"
    out = tmp_path / "run"
    common = ["evaluate", "--data", str(annotations), "--out", str(out), "--steps", "10", "--batch-size", "2"]
    common += ["--methods", "grad-cam,mi-cam,centre-gaussian,random", "--counterfactual-images", "2"]
    common += ["--sanity-images", "1"]
    assert main([*common, "--limit", "2"]) == 0
    assert len(_rows(out / "per_image.csv")) == 2 * 4
    assert main([*common, "--limit", "3"]) == 2  # refuses to overwrite finished work
    assert "--resume" in capsys.readouterr().err
    with (out / "per_image.csv").open("a") as handle:
        handle.write("images/half-written-row,1,2")  # what a killed run can leave behind
    assert main([*common, "--limit", "3", "--resume"]) == 0
    rows = _rows(out / "per_image.csv")
    assert len(rows) == 3 * 4 and len({(r["image"], r["method"]) for r in rows}) == 12
    results = json.loads((out / "results.json").read_text())
    assert results["n_images"] == 3 and results["skipped"]["count"] == 0
    assert set(results["methods"]) == {"grad-cam", "mi-cam", "centre-gaussian", "random"}
    for method in results["methods"].values():
        assert method["deletion_auc"]["n"] == 3 and 0 <= method["deletion_auc"]["mean"] <= 1
        assert method["pointing_game"]["n"] == 3
    assert results["mean_curves"]["mi-cam"]["n"] == 3 and len(results["mean_curves"]["mi-cam"]["deletion"]) == 11
    assert len(_rows(out / "curves.csv")) == 3 * 4 * 2
    assert results["settings"]["geometry_used"] == "stretch" and results["settings"]["mi_cam"]["estimator"] == "binned"
    assert results["counterfactual"]["mi-cam"]["object"]["relative_change"]["n"] == 2
    # Grad-CAM's weights on MobileNetV2 are the class's head weights / 49 (GAP -> linear): no change.
    assert results["counterfactual"]["grad-cam"]["object"]["relative_change"]["mean"] == pytest.approx(0.0)
    _check_counterfactual_rows_against_the_metric(annotations, out)
    stages = results["sanity"]["grad-cam"]
    assert stages[0]["layer"] == "original" and stages[0]["ssim"] == pytest.approx(1.0)
    assert stages[-1]["spearman"] < 0.9
    report = (out / "results.md").read_text()
    assert "Table 1" in report and "Table 2" in report and "Table 3" in report and "| mi-cam |" in report
    # The resumed session's profile (its third image is not one of the counterfactual ones): its
    # seconds per stage, most costly first, within its own time.
    profile = results["runs"][-1]["stage_seconds"]
    assert {"predict", "explain grad-cam", "explain mi-cam", "deletion-insertion mi-cam"} <= set(profile)
    assert not any(name.startswith("counterfactual") for name in profile)
    assert list(profile.values()) == sorted(profile.values(), reverse=True)
    assert 0 < sum(profile.values()) <= results["runs"][-1]["seconds"]
    assert main([*common, "--limit", "3", "--resume", "--steps", "5"]) == 2  # other settings: no resume
    assert "settings differ" in capsys.readouterr().err
    # A run cut in the middle of a batch: that batch is neither in the CSV nor in the summaries.
    cut = tmp_path / "cut"
    calls = {"n": 0}
    original = store.append_csv

    def interrupt_second_commit(path, columns, rows):
        if path.name == "per_image.csv":
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
        original(path, columns, rows)

    monkeypatch.setattr(store, "append_csv", interrupt_second_commit)
    cut_args = ["evaluate", "--data", str(annotations), "--out", str(cut), "--steps", "4", "--batch-size", "1"]
    cut_args += ["--methods", "grad-cam,random", "--metrics", "drop-increase", "--limit", "3"]
    assert main(cut_args) == 130
    results = json.loads((cut / "results.json").read_text())
    assert len(_rows(cut / "per_image.csv")) == 2 and results["n_images"] == 1 and results["n_requested"] == 3
    assert "on 1 of 3 images (unfinished" in (cut / "results.md").read_text().splitlines()[0]
    assert {m["average_drop"]["n"] for m in results["methods"].values()} == {1}
    monkeypatch.setattr(store, "append_csv", original)
    assert main([*cut_args, "--resume"]) == 0
    assert json.loads((cut / "results.json").read_text())["methods"]["grad-cam"]["average_drop"]["n"] == 3
    assert (cut / "results.md").read_text().splitlines()[0].endswith("on 3 images")
    # A CSV with an unreadable file: skipped, counted, exit status 1, the other image still done.
    listing = tmp_path / "list.csv"
    (tmp_path / "broken.jpg").write_text("not a picture")
    first = SHARED_DATA / "ilsvrc2012-val" / json.loads(annotations.read_text())[0]["image"]
    listing.write_text(f"file,label\n{first},472\nbroken.jpg,1\n")
    out2 = tmp_path / "csv-run"
    status = main(
        [
            *("evaluate", "--data", str(listing), "--out", str(out2), "--methods", "eigen-cam,random"),
            *("--steps", "4", "--metrics", "drop-increase,deletion-insertion,localization"),
        ]
    )
    assert status == 1
    results = json.loads((out2 / "results.json").read_text())
    assert (
        results["n_images"] == 1 and results["skipped"]["count"] == 1 and "broken.jpg" in results["skipped"]["images"]
    )
    assert "pointing_game" not in results["methods"]["eigen-cam"]  # no boxes in this CSV


def test_progress_line_reports_share_rate_and_eta():
    import io

    from micam.runtime import Progress, format_seconds

    stream = io.StringIO()
    progress = Progress(4, "job", stream=stream, every=0.0)
    progress.advance(2, "note")
    line = stream.getvalue().strip()
    assert line.startswith("[job] 2/4 (50.0%)") and "ETA" in line and line.endswith("note")
    assert format_seconds(3725) == "1:02:05" and format_seconds(65) == "1:05"


def test_target_label_without_labels_fails_before_any_work(tmp_path, monkeypatch, capsys):
    from conftest import tiny_loaded_model
    from micam import models

    monkeypatch.setattr(models, "load", lambda name, weights="imagenet", device="cpu": tiny_loaded_model())
    Image.new("RGB", (40, 40), (10, 200, 30)).save(tmp_path / "a.png")
    (tmp_path / "list.csv").write_text("file\na.png\n")
    argv = ["evaluate", "--data", str(tmp_path / "list.csv"), "--out", str(tmp_path / "o"), "--target", "label"]
    assert main(argv) == 2
    assert "needs a label for every image" in capsys.readouterr().err
    assert not (tmp_path / "o" / "per_image.csv").exists()
    # The same data explains the predicted class without complaint.
    assert main([*argv[:-2], "--methods", "grad-cam,random", "--steps", "2"]) == 0


def test_resume_keeps_the_device_dependent_defaults_of_the_run_it_continues(tmp_path, monkeypatch, capsys):
    """A run started with 3 counterfactual images (as a GPU run records 50) resumes on this CPU, whose
    own default would be 10, without naming the setting again; naming another value still refuses."""
    from conftest import tiny_loaded_model
    from micam import models

    monkeypatch.setattr(models, "load", lambda name, weights="imagenet", device="cpu": tiny_loaded_model())
    for i, colour in enumerate([(200, 10, 10), (10, 200, 30), (30, 30, 220)]):
        Image.new("RGB", (40, 40), colour).save(tmp_path / f"{i}.png")
    (tmp_path / "list.csv").write_text("file,label,boxes\n0.png,1,5 5 20 20\n1.png,2,0 0 30 30\n2.png,3,2 2 9 9\n")
    out = tmp_path / "run"
    base = ["evaluate", "--data", str(tmp_path / "list.csv"), "--out", str(out), "--methods", "grad-cam,random"]
    base += ["--steps", "2", "--metrics", "drop-increase,counterfactual"]
    assert main([*base, "--limit", "2", "--counterfactual-images", "3"]) == 0
    assert main([*base, "--resume"]) == 0
    assert json.loads((out / "settings.json").read_text())["counterfactual_images"] == 3
    assert len(_rows(out / "per_image.csv")) == 3 * 2
    assert len(_rows(out / "counterfactual.csv")) == 3 * 2  # one row per image and intervention
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["images"] for r in runs] == [2, 1] and runs[0]["device_name"].startswith("CPU")
    assert [r["cudnn_tf32"] for r in runs] == [None, None]  # a CPU session has no cuDNN arithmetic to record
    from micam.evaluation.tables import _sessions

    assert _sessions(runs) == ""  # one device: nothing to say
    runs[0] |= {"device_name": "NVIDIA H100 80GB HBM3", "torch": "2.11.0"}
    assert _sessions(runs).startswith(" Sessions: 2 images in ") and "on NVIDIA H100 80GB HBM3 (torch 2.11.0)" in (
        _sessions(runs)
    )
    assert main([*base, "--resume", "--counterfactual-images", "4"]) == 2
    assert "counterfactual_images" in capsys.readouterr().err
