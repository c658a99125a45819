"""``--engine ray`` (issue 16): the same rows and aggregates as the local engine on real images, a
worker killed mid-shard loses nothing and duplicates nothing, and a cut run resumes. One local Ray
runtime with 2 CPUs serves the module and is shut down after it."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from micam.evaluation import EvaluationSettings, evaluate
from micam.evaluation.rows import read_rows
from micam.evaluation.store import RunStore

ray = pytest.importorskip("ray")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ilsvrc2012-val"
# A small CNN whose forward pass ends the process it runs in once, in a Ray worker, while the file
# kill-once exists (a worker dying mid-shard); the test process writes its own PID to driver.pid.
FACTORY = """
import os, pathlib, torch
HERE = pathlib.Path(__file__).parent

class Net(torch.nn.Module):
    def __init__(self, classes):
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=4, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
        )
        self.head = torch.nn.Linear(8, classes)

    def forward(self, x):
        marker = HERE / "kill-once"
        if marker.exists() and str(os.getpid()) != (HERE / "driver.pid").read_text():
            try:
                marker.unlink()
            except FileNotFoundError:
                pass
            else:
                os._exit(1)
        return self.head(self.features(x).mean(dim=(2, 3)))

def make(num_classes=1000):
    return Net(num_classes)
"""
METRICS = ["drop-increase", "deletion-insertion", "localization", "area-matched", "channel-sum-correlation"]


@pytest.fixture(scope="module")
def runtime():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    if not (SHARED / "annotations.json").exists():
        pytest.skip("needs ../shared/data")
    folder = tmp_path_factory.mktemp("ray")
    entries = json.loads((SHARED / "annotations.json").read_text())[:4]
    for entry in entries:
        entry["image"] = str(SHARED / entry["image"])
    (folder / "annotations.json").write_text(json.dumps(entries))
    (folder / "net.py").write_text(FACTORY)
    (folder / "driver.pid").write_text(str(os.getpid()))
    return folder


@pytest.fixture(scope="module")
def local(data):
    """The local engine's run, to compare with."""
    return evaluate(_settings(data, "local"), log=lambda line: None)


def _settings(folder: Path, out: str, **more) -> EvaluationSettings:
    values = dict(
        data=str(folder / "annotations.json"),
        model=f"{folder / 'net.py'}:make",
        weights="random",
        metrics=METRICS,
        methods=["grad-cam", "score-cam", "mi-cam", "channel-sum", "random"],
        steps=4,
        batch_size=2,
        device="cpu",
        loader_workers=0,
        out=str(folder / out),
    )
    return EvaluationSettings(**(values | more))


def _same_rows(a: Path, b: Path) -> None:
    """Every (image, method) row of a and b agrees: class columns exactly, metrics to float rounding
    (a Ray worker runs torch with one thread, this process with more)."""
    rows_a = {(r["image"], r["method"]): r for r in read_rows(a)}
    rows_b = {(r["image"], r["method"]): r for r in read_rows(b)}
    assert len(rows_a) == len(read_rows(a)) and len(rows_b) == len(read_rows(b))  # no row twice
    assert rows_a.keys() == rows_b.keys()
    for key, row in rows_a.items():
        other = rows_b[key]
        for column, value in row.items():
            if column == "seconds":
                continue
            if column in ("image", "label", "predicted", "target", "correct", "method"):
                assert value == other[column], (key, column)
            else:
                x, y = float(value), float(other[column])
                assert (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-7), (
                    key,
                    column,
                )


def _same_aggregates(a: dict, b: dict) -> None:
    assert a["n_images"] == b["n_images"] and a["methods"].keys() == b["methods"].keys()
    for method, metrics in a["methods"].items():
        for metric, summary in metrics.items():
            if metric == "seconds_per_image":
                continue
            other = b["methods"][method][metric]
            assert summary["n"] == other["n"], (method, metric)
            assert math.isclose(summary["mean"], other["mean"], rel_tol=1e-5, abs_tol=1e-7), (method, metric)


def test_the_ray_engine_writes_the_local_engines_rows_and_records_its_workers(runtime, data, local):
    distributed = evaluate(_settings(data, "ray", engine="ray", workers=2), log=lambda line: None)
    _same_rows(data / "local", data / "ray")
    _same_aggregates(local, distributed)
    session = distributed["runs"][-1]
    assert session["engine"] == "ray" and sum(w["images"] for w in session["workers"]) == 4
    assert all(w["device_name"].startswith("CPU") for w in session["workers"])


def test_a_worker_killed_mid_shard_loses_nothing_and_an_interrupted_run_resumes(runtime, data, local, monkeypatch):
    (data / "kill-once").write_text("")
    said: list[str] = []
    append, calls = RunStore.append, []

    def interrupted(store, rows):  # Ctrl-C on the driver once the first shard is on disk
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        append(store, rows)

    monkeypatch.setattr(RunStore, "append", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate(_settings(data, "cut", engine="ray", workers=2), log=said.append)
    monkeypatch.undo()
    assert not (data / "kill-once").exists() and any("a Ray worker died" in line for line in said)
    assert len({r["image"] for r in read_rows(data / "cut")}) == 2  # one shard of two images was written
    resumed = evaluate(_settings(data, "cut", engine="ray", workers=2, resume=True), log=lambda line: None)
    assert resumed["n_images"] == 4 and [r["images"] for r in resumed["runs"]] == [2, 2]
    _same_rows(data / "local", data / "cut")  # every image once, as the local engine made it
    _same_aggregates(local, resumed)
