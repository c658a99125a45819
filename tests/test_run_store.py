"""The evaluation's run store (the only copy of the results) and its loop over a DataLoader."""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict

import pytest
from PIL import Image

from micam.cli.main import main
from micam.evaluation import EvaluationSettings
from micam.evaluation.files import PER_IMAGE, RESULTS, SKIPPED
from micam.evaluation.store import BatchRows, RunStore, Session
from micam.metrics import summarize

SESSION = Session("CPU test", "2.x", None)
# What results.md reads of a run's resolved settings.
SETTINGS = asdict(EvaluationSettings(data="data.json")) | {
    "dataset_kind": "annotations",
    "geometry_used": "stretch",
    "target_layer": "features",
    "torch": "2.x",
}


def _row(image: str, method: str, drop: float, seconds: float = 0.5) -> dict:
    return {"image": image, "label": 1, "predicted": 1, "target": 1, "correct": 1, "method": method} | {
        "seconds": seconds,
        "average_drop": drop,
    }


def _results(store: RunStore, methods=("grad-cam", "mi-cam")) -> dict:
    return store.results(
        model="tiny", methods=list(methods), n_requested=3, settings=SETTINGS, skipped={}, seconds=1.0, session=SESSION
    )


def test_results_are_rebuilt_from_the_rows_on_disk(tmp_path):
    store = RunStore(tmp_path, ["average_drop"])
    assert store.open({"model": "tiny"}, resume=False, methods=["grad-cam", "mi-cam"]) == (set(), {})
    curves = [
        {"image": "a", "method": "grad-cam", "kind": "deletion", "values": "1 0.5 0"},
        {"image": "a", "method": "grad-cam", "kind": "insertion", "values": "0 0.5 1"},
        {"image": "b", "method": "grad-cam", "kind": "deletion", "values": "1 0.25 0"},
        {"image": "b", "method": "grad-cam", "kind": "insertion", "values": "0 0.25 1"},
    ]
    rows = [_row("a", "grad-cam", 10.0), _row("a", "mi-cam", 30.0), _row("b", "grad-cam", 20.0)]
    rows.append(_row("b", "mi-cam", 50.0))
    store.append(BatchRows(per_image=rows, curves=curves))
    results = _results(store)
    assert results["n_images"] == 2 and results["top1_accuracy"]["mean"] == 1.0
    assert results["methods"]["grad-cam"]["average_drop"] == summarize([10.0, 20.0])
    assert results["methods"]["mi-cam"]["average_drop"]["mean"] == 40.0
    assert results["methods"]["mi-cam"]["seconds_per_image"] == {"mean": 0.5, "std": 0.0, "n": 2}
    assert results["mean_curves"]["grad-cam"] == {"deletion": [1.0, 0.375, 0.0], "insertion": [0.0, 0.375, 1.0], "n": 2}
    assert results["paired"]["differences"]["grad-cam"]["average_drop"]["mean"] == 25.0  # MI-CAM minus it
    assert results["runs"] == [
        {"device_name": "CPU test", "torch": "2.x", "images": 2, "seconds": 1.0, "cudnn_tf32": None}
    ]
    assert json.loads((tmp_path / RESULTS).read_text()) == json.loads(json.dumps(results))
    assert (tmp_path / "results.md").read_text().startswith("# micam evaluate: tiny on 2 of 3 images")


def test_resume_keeps_only_images_every_method_finished_and_counts_the_earlier_session(tmp_path):
    store = RunStore(tmp_path, ["average_drop"])
    store.open({"model": "tiny"}, resume=False, methods=["grad-cam", "mi-cam"])
    rows = [_row("a", "grad-cam", 1.0), _row("a", "mi-cam", 2.0), _row("b", "grad-cam", 3.0)]  # b half done
    store.append(BatchRows(per_image=rows))
    store.append_skipped({"c": "OSError: unreadable"})
    _results(store)
    store.close()
    with (tmp_path / PER_IMAGE).open("a") as handle:
        handle.write("d,1,1,1,1,grad-cam,0.5,9")  # a torn last line (no newline, a cut number)
    again = RunStore(tmp_path, ["average_drop"])
    with pytest.raises(ValueError, match="--resume"):
        again.open({"model": "tiny"}, resume=False, methods=["grad-cam", "mi-cam"])
    with pytest.raises(ValueError, match=r"settings differ .*\['model'\]"):
        again.open({"model": "other"}, resume=True, methods=["grad-cam", "mi-cam"])
    done, skipped = again.open({"model": "tiny"}, resume=True, methods=["grad-cam", "mi-cam"])
    assert done == {"a"} and skipped == {"c": "OSError: unreadable"}
    with (tmp_path / PER_IMAGE).open() as handle:
        assert [r["image"] for r in csv.DictReader(handle)] == ["a", "a"]
    again.append(BatchRows(per_image=[_row("b", "grad-cam", 3.0), _row("b", "mi-cam", 4.0)]))
    results = _results(again)
    assert results["n_images"] == 2 and [r["images"] for r in results["runs"]] == [1, 1]
    assert results["methods"]["grad-cam"]["average_drop"]["n"] == 2


def test_missing_localization_values_are_counted_apart(tmp_path):
    store = RunStore(tmp_path, ["pointing_game"])
    store.open({}, resume=False, methods=["grad-cam"])
    rows = [_row("a", "grad-cam", 0) | {"pointing_game": 1.0}, _row("b", "grad-cam", 0) | {"pointing_game": math.nan}]
    store.append(BatchRows(per_image=rows))
    summary = _results(store, ["grad-cam"])["methods"]["grad-cam"]["pointing_game"]
    assert summary == {"mean": 1.0, "std": 0.0, "n": 1, "n_undefined": 1}


def _images(folder, count):
    for i in range(count):
        Image.new("RGB", (40, 40), (40 * i, 200 - 30 * i, 30)).save(folder / f"{i}.png")


def test_worker_processes_decode_the_same_batches_and_a_bad_first_image_is_skipped_once(tmp_path, monkeypatch):
    from conftest import tiny_loaded_model
    from micam import models

    monkeypatch.setattr(models, "load", lambda name, weights="imagenet", device="cpu": tiny_loaded_model())
    _images(tmp_path, 5)
    (tmp_path / "broken.png").write_text("not a picture")
    listing = tmp_path / "list.csv"
    listing.write_text("file,label\nbroken.png,1\n" + "".join(f"{i}.png,{i % 5}\n" for i in range(5)))
    found = {}
    for workers in ("0", "2"):
        out = tmp_path / f"run-{workers}"
        argv = ["evaluate", "--data", str(listing), "--out", str(out), "--methods", "grad-cam,mi-cam,random"]
        argv += ["--steps", "2", "--metrics", "drop-increase,deletion-insertion", "--batch-size", "2"]
        assert main([*argv, "--loader-workers", workers, "--device", "cpu"]) == 1  # one image skipped
        with (out / PER_IMAGE).open() as handle:
            found[workers] = [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(handle)]
        with (out / SKIPPED).open() as handle:
            assert [r["image"] for r in csv.DictReader(handle)] == ["broken.png"]  # listed once
        assert json.loads((out / RESULTS).read_text())["n_images"] == 5
    assert found["0"] == found["2"] and len(found["0"]) == 5 * 3


def test_a_torn_last_row_is_dropped_even_when_its_cut_leaves_every_column(tmp_path):
    store = RunStore(tmp_path, ["ebpg"])
    store.open({}, resume=False, methods=["grad-cam"])
    store.append(BatchRows(per_image=[_row("a", "grad-cam", 0) | {"ebpg": 91.5}]))
    with (tmp_path / PER_IMAGE).open("a") as handle:
        handle.write("b,1,1,1,1,grad-cam,0.5,9")  # "97.3" cut after its first digit, no newline
    store.close()
    done, _ = RunStore(tmp_path, ["ebpg"]).open({}, resume=True, methods=["grad-cam"])
    assert done == {"a"}
    text = (tmp_path / PER_IMAGE).read_text()
    assert text.endswith("\n") and "b," not in text


def test_one_process_at_a_time_writes_a_run_folder(tmp_path):
    first = RunStore(tmp_path, ["average_drop"])
    first.open({}, resume=False, methods=["grad-cam"])
    second = RunStore(tmp_path, ["average_drop"])
    with pytest.raises(ValueError, match=rf"in use by process {os.getpid()}"):
        second.open({}, resume=True, methods=["grad-cam"])
    first.close()
    second.open({}, resume=True, methods=["grad-cam"])  # free again once the first is done
    second.close()


def test_a_damaged_results_json_is_rebuilt_and_a_damaged_settings_json_is_named(tmp_path):
    store = RunStore(tmp_path, ["average_drop"])
    store.open({"model": "tiny"}, resume=False, methods=["grad-cam", "mi-cam"])
    store.append(BatchRows(per_image=[_row("a", "grad-cam", 1.0), _row("a", "mi-cam", 2.0)]))
    _results(store)
    store.close()
    text = (tmp_path / RESULTS).read_text()
    (tmp_path / RESULTS).write_text(text[:100])  # cut by a full disk
    again = RunStore(tmp_path, ["average_drop"])
    assert again.open({"model": "tiny"}, resume=True, methods=["grad-cam", "mi-cam"])[0] == {"a"}
    results = _results(again)
    assert results["n_images"] == 1 and results["runs"][0]["device_name"].startswith("unknown")
    again.close()
    (tmp_path / "settings.json").write_text('{"model": "ti')
    with pytest.raises(ValueError, match="settings.json"):
        RunStore(tmp_path, ["average_drop"]).open({"model": "tiny"}, resume=True, methods=["grad-cam"])
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files behind


def test_labels_and_settings_that_cannot_be_right_are_refused(tmp_path):
    from micam.evaluation import read_dataset

    for label in ("472.7", "true", "-3"):
        (tmp_path / "list.csv").write_text(f"file,label\na.png,{label}\n")
        with pytest.raises(ValueError, match="class index"):
            read_dataset(tmp_path / "list.csv")
    (tmp_path / "list.csv").write_text("file,label\na.png,472.0\n")
    assert read_dataset(tmp_path / "list.csv").samples[0].label == 472
    bad = {
        "threshold": math.nan,
        "tolerance": -5.0,
        "sanity_images": -1,
        "counterfactual_images": -2,
        "forward_batch_size": 0,
    }
    for key, value in bad.items():
        with pytest.raises(ValueError, match=key):
            EvaluationSettings(data="x", **{key: value}).check()


def test_only_regular_files_are_read_as_images(tmp_path):
    from micam.images import read_rgb

    fifo = tmp_path / "f.png"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        read_rgb(fifo)  # would block forever in open()


def test_an_excel_csv_with_a_byte_order_mark_reads_and_a_nan_box_is_skipped_not_scored(tmp_path):
    from micam.evaluation import read_dataset

    (tmp_path / "list.csv").write_bytes("\ufefffile,label,boxes\na.png,3,1 2 10 12\nb.png,4,nan 0 5 5\n".encode())
    with pytest.warns(UserWarning, match="not a finite number"):
        samples = read_dataset(tmp_path / "list.csv").samples
    assert [(s.key, s.label, s.boxes) for s in samples] == [("a.png", 3, ((1.0, 2.0, 10.0, 12.0),)), ("b.png", 4, ())]
