"""Bring your own model: model specs, weights files, class counts and labels, from Python and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from micam import GradCAM, models
from micam.cli.main import main

FACTORY = """
from torch import nn


def make(num_classes=1000):
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes),
    )


def fixed():
    return make(4)
"""
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "tiny.png"
    pixels = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def factory(tmp_path):
    path = tmp_path / "my_models.py"
    path.write_text(FACTORY)
    return f"{path}:make"


def explain(*args: str) -> int:
    return main(["explain", *map(str, args), "--method", "grad-cam"])


def error_line(capsys) -> str:  # type: ignore[no-untyped-def]
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("micam explain: error:")]
    assert len(lines) == 1
    return lines[0]


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


# ----------------------------------------------------------------------------- torchvision / timm
def test_torchvision_model_with_random_weights_explained_end_to_end(tmp_path, image, capsys):
    out = tmp_path / "out"
    torch.manual_seed(0)
    assert explain(image, "--model", "torchvision:resnet18", "--weights", "random", "--size", "64", "--out", out) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    torch.manual_seed(0)  # the same random weights, built directly
    loaded = models.load("torchvision:resnet18", weights="random", input_size=64)
    assert (loaded.target_layer_name, loaded.input_size, loaded.resize_size) == ("layer4.1", 64, 73)
    x = loaded.preprocess(Image.open(image))[None]
    expected = torch.softmax(forward(loaded.model, x), dim=1)[0].topk(5).indices.tolist()
    top = summary["images"]["tiny"]["top"]
    assert [item["class"] for item in top] == expected
    assert top[0]["name"] == loaded.categories[expected[0]] and f"1. {top[0]['name']} (class {expected[0]})" in printed
    assert summary["model"] == "torchvision:resnet18" and summary["classes"] == 1000
    assert summary["target_layer"] == "layer4.1" and summary["weights_report"] == ""
    assert summary["preprocessing"]["crop"] == 64 and summary["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    assert summary["images"]["tiny"]["explained_class"] == expected[0]
    assert np.load(out / "tiny" / "grad-cam.npy").shape == (64, 64)

    # --class 3: that class's map, the one GradCAM makes for target 3
    torch.manual_seed(0)
    assert (
        explain(
            image,
            "--model",
            "torchvision:resnet18",
            "--weights",
            "random",
            "--size",
            "64",
            "--class",
            "3",
            "--out",
            out,
        )
        == 0
    )
    assert "explaining tiger shark (class 3)" in capsys.readouterr().out
    with GradCAM(loaded.model, [loaded.target_layer]) as cam:
        wanted = cam(x, targets=3)[0].numpy()
    np.testing.assert_allclose(np.load(out / "tiny" / "grad-cam.npy"), wanted, atol=1e-5)
    assert json.loads((out / "summary.json").read_text())["images"]["tiny"]["explained_class"] == 3


def test_class_out_of_range_is_a_usage_error(tmp_path, image, factory, capsys):
    status = explain(
        image,
        "--model",
        factory,
        "--weights",
        "random",
        "--num-classes",
        "10",
        "--class",
        "10",
        "--out",
        tmp_path / "out",
    )
    assert status == 2
    assert "--class 10 is out of range: the model has 10 classes (0-9)" in error_line(capsys)


def test_timm_model_takes_timm_data_config():
    timm = pytest.importorskip("timm")
    loaded = models.load("timm:resnet18", weights="random")
    config = timm.data.resolve_data_config({}, model=loaded.model)
    assert config["interpolation"] == "bicubic" and config["crop_pct"] == 0.95  # resnet18's own, not the defaults
    assert loaded.input_size == config["input_size"][1] == 224
    assert loaded.resize_size == math.floor(224 / 0.95) == 235
    assert loaded.mean == tuple(config["mean"]) and loaded.std == tuple(config["std"])
    assert loaded.interpolation == torchvision.transforms.InterpolationMode.BICUBIC
    assert loaded.target_layer_name == "layer4.1" and len(loaded.categories) == 1000
    assert loaded.preprocess(Image.new("RGB", (300, 260))).shape == (3, 224, 224)
    # flags override the model's config, one value at a time; a new crop keeps timm's crop ratio
    small = models.load("timm:resnet18", weights="random", input_size=96, mean=(0.5, 0.5, 0.5), num_classes=7)
    assert (small.input_size, small.resize_size, small.mean, small.std) == (96, 101, (0.5,) * 3, tuple(config["std"]))
    assert small.categories == [f"class {i}" for i in range(7)]
    assert forward(small.model, torch.zeros(1, 3, 96, 96)).shape == (1, 7)


# ----------------------------------------------------------------------------- factories and labels
def test_factory_file_with_num_classes_and_labels(tmp_path, image, factory, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(NAMES) + "\n")
    out = tmp_path / "out"
    torch.manual_seed(1)
    status = explain(
        image,
        "--model",
        factory,
        "--weights",
        "random",
        "--num-classes",
        "10",
        "--labels",
        labels,
        "--size",
        "32",
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.25,0.25,0.25",
        "--out",
        out,
    )
    assert status == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    torch.manual_seed(1)
    loaded = models.load(
        factory, weights="random", num_classes=10, labels=str(labels), input_size=32, mean=(0.5,) * 3, std=(0.25,) * 3
    )
    assert loaded.categories == NAMES and loaded.target_layer_name == "3"  # the ReLU after the last conv
    x = loaded.preprocess(Image.open(image))[None]
    assert x.shape == (1, 3, 32, 32)
    probabilities = torch.softmax(forward(loaded.model, x), dim=1)[0]
    best = int(probabilities.argmax())
    assert summary["images"]["tiny"]["top"][0] == {
        "class": best,
        "name": NAMES[best],
        "probability": round(float(probabilities[best]), 6),
    }
    assert f"1. {NAMES[best]} (class {best})" in printed
    assert summary["classes"] == 10 and summary["preprocessing"]["std"] == [0.25] * 3

    # the label count must match, and a JSON list works as well
    labels.write_text(json.dumps(NAMES[:9]))
    assert (
        explain(
            image, "--model", factory, "--weights", "random", "--num-classes", "10", "--labels", labels, "--out", out
        )
        == 2
    )
    assert "9 class names but the model has 10 outputs" in error_line(capsys)
    labels.write_text(json.dumps(NAMES))
    assert models.load(factory, weights="random", num_classes=10, labels=str(labels)).categories == NAMES


def test_factory_forms_and_their_errors(tmp_path, factory, monkeypatch):
    (tmp_path / "byo_zoo.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = models.load("byo_zoo:make", weights="random", num_classes=3)
    assert loaded.categories == ["class 0", "class 1", "class 2"] and loaded.input_size == 224
    assert loaded.mean == models.IMAGENET_MEAN and loaded.weights == "random"
    with pytest.raises(ValueError, match="imagenet|ImageNet weights are not defined.*--weights PATH"):
        models.load(factory, weights="imagenet")
    fixed = f"{tmp_path / 'my_models.py'}:fixed"  # takes no num_classes: its 4 outputs must match
    assert len(models.load(fixed, weights="random", num_classes=4).categories) == 4
    with pytest.raises(ValueError, match=r"has 4 outputs although --num-classes 3 \(num_classes=3\) was asked for"):
        models.load(fixed, weights="random", num_classes=3)
    with pytest.raises(ValueError, match="has no 'missing'"):
        models.load(f"{tmp_path / 'my_models.py'}:missing", weights="random")
    with pytest.raises(ValueError, match=r"unknown model 'resnet18'.*torchvision:NAME.*timm:NAME.*file\.py:FACTORY"):
        models.load("resnet18")
    with pytest.raises(ValueError, match="torchvision has no classification model 'resnet19'.*resnet18"):
        models.load("torchvision:resnet19", weights="random")


# ----------------------------------------------------------------------------- checkpoint files
def test_lightning_checkpoint_with_model_prefix_reproduces_the_logits(tmp_path, image, capsys):
    torch.manual_seed(2)
    source = torchvision.models.resnet18(num_classes=10).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so that buffers must load too
        for module in source.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "epoch=3.ckpt"
    state = {f"model.{key}": value for key, value in source.state_dict().items()}
    torch.save({"epoch": 3, "global_step": 120, "state_dict": state, "hyper_parameters": {"lr": 0.1}}, path)
    loaded = models.load("torchvision:resnet18", weights=str(path), num_classes=10)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(forward(loaded.model, x), forward(source, x), rtol=0, atol=0)
    count = len(source.state_dict())
    assert loaded.weights_report == f"loaded {count} tensors from {path} (key 'state_dict', prefix 'model.' stripped)"

    out = tmp_path / "out"
    assert (
        explain(
            image,
            "--model",
            "torchvision:resnet18",
            "--weights",
            path,
            "--num-classes",
            "10",
            "--size",
            "64",
            "--out",
            out,
        )
        == 0
    )
    assert loaded.weights_report in capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["weights_report"] == loaded.weights_report

    # the 10-class checkpoint into the default 1000-class head: one line that names --num-classes
    assert explain(image, "--model", "torchvision:resnet18", "--weights", path, "--out", out) == 2
    line = error_line(capsys)
    assert "fc.weight: checkpoint [10, 512] vs model [1000, 512]" in line and "pass --num-classes 10" in line


def test_dataparallel_checkpoint_with_module_prefix(tmp_path, factory):
    torch.manual_seed(3)
    source = models.load(factory, weights="random", num_classes=5).model
    path = tmp_path / "dp.pt"
    torch.save(nn.DataParallel(source).state_dict(), path)  # keys "module.0.weight", ...
    loaded = models.load(factory, weights=str(path), num_classes=5)
    x = torch.randn(3, 3, 20, 20)
    torch.testing.assert_close(forward(loaded.model, x), forward(source, x), rtol=0, atol=0)
    assert loaded.weights_report == f"loaded 6 tensors from {path} (prefix 'module.' stripped)"
    with pytest.raises(ValueError) as failure:
        models.load("torchvision:resnet18", weights=str(path))  # another architecture: keys named, no head hint
    message = str(failure.value)
    assert "102 missing keys (conv1.weight, bn1.weight, bn1.bias, ...)" in message
    assert "6 unexpected keys (module.0.weight, module.0.bias, module.2.weight, ...)" in message
    assert "--num-classes" not in message and "\n" not in message


def test_pickled_whole_model_needs_trust_checkpoint(tmp_path, image, capsys):
    torch.manual_seed(4)
    whole = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))
    path = tmp_path / "whole.pt"
    torch.save(whole, path)
    out = tmp_path / "out"
    assert explain(image, "--weights", path, "--size", "32", "--out", out) == 2
    line = error_line(capsys)
    assert "pickled model (torch.nn.modules.container.Sequential" in line and "--trust-checkpoint" in line

    assert explain(image, "--weights", path, "--trust-checkpoint", "--size", "32", "--out", out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == f"Sequential (pickled in {path})" and summary["classes"] == 3
    assert summary["weights_report"] == f"loaded the pickled Sequential from {path} (4 tensors)"
    loaded = models.load(None, weights=str(path), trust_checkpoint=True, input_size=32)
    probabilities = torch.softmax(forward(whole, loaded.preprocess(Image.open(image))[None]), dim=1)[0]
    order = probabilities.argsort(descending=True).tolist()
    assert [t["class"] for t in summary["images"]["tiny"]["top"]] == order
    assert [t["name"] for t in summary["images"]["tiny"]["top"]] == [f"class {c}" for c in order]


def test_text_file_as_weights_is_a_usage_error(tmp_path, image, capsys):
    text = tmp_path / "weights.txt"
    text.write_text("these are not weights\n")
    assert explain(image, "--model", "torchvision:resnet18", "--weights", text, "--out", tmp_path / "out") == 2
    assert f"{text} is not a PyTorch checkpoint" in error_line(capsys)
    with pytest.raises(ValueError, match="checkpoint file"):
        models.load("torchvision:resnet18", weights=str(tmp_path / "missing.pt"))


# ----------------------------------------------------------------------------- evaluate
def test_evaluate_passes_the_model_spec_and_options_to_the_runner(tmp_path, factory, capsys):
    data = tmp_path / "data"
    for index, name in enumerate(("n01", "n02")):
        (data / name).mkdir(parents=True)
        Image.fromarray(np.full((24, 24, 3), 60 * index + 40, np.uint8)).save(data / name / f"{name}.png")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(NAMES[:4]))
    out = tmp_path / "eval"
    status = main(
        [
            "evaluate",
            "--data",
            str(data),
            "--model",
            factory,
            "--weights",
            "random",
            "--num-classes",
            "4",
            "--labels",
            str(labels),
            "--size",
            "16",
            "--methods",
            "grad-cam",
            "--metrics",
            "drop-increase",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--sanity-images",
            "0",
            "--counterfactual-images",
            "0",
        ]
    )
    assert status == 0
    settings = json.loads((out / "settings.json").read_text())
    assert (settings["model"], settings["weights"], settings["num_classes"]) == (factory, "random", 4)
    assert (settings["labels"], settings["input_size"], settings["mean"]) == (str(labels), 16, None)
    results = json.loads((out / "results.json").read_text())
    assert results["n_images"] == 2 and results["settings"]["target_layer"] == "3"
    assert results["settings"]["input_size"] == 16


def test_evaluate_runs_a_timm_model(tmp_path):
    pytest.importorskip("timm")
    data = tmp_path / "data"
    (data / "n01").mkdir(parents=True)
    Image.fromarray(np.full((70, 80, 3), 90, np.uint8)).save(data / "n01" / "a.png")
    out = tmp_path / "eval"
    args = ["evaluate", "--data", str(data), "--model", "timm:resnet18", "--weights", "random", "--size", "64"]
    args += ["--methods", "grad-cam", "--metrics", "drop-increase", "--out", str(out), "--device", "cpu"]
    assert main([*args, "--sanity-images", "0", "--counterfactual-images", "0"]) == 0
    assert json.loads((out / "settings.json").read_text())["model"] == "timm:resnet18"
    settings = json.loads((out / "results.json").read_text())["settings"]
    assert (settings["target_layer"], settings["input_size"]) == ("layer4.1", 64)
    assert settings["pixel_mean"] == [0.485, 0.456, 0.406]


def test_imagenet_weights_offline_fail_in_one_line_saying_where_to_put_them(monkeypatch, tmp_path):
    def unreachable(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", unreachable)
    with pytest.raises(RuntimeError) as failure:
        models.load("torchvision:resnet18")  # DEFAULT = IMAGENET1K_V1
    message = str(failure.value)
    assert "Offline, put the file resnet18-f37072fd.pth (from https://" in message
    assert f"at {tmp_path / 'checkpoints' / 'resnet18-f37072fd.pth'}" in message and "\n" not in message
    with pytest.raises(ValueError, match="ImageNet weights of torchvision:resnet18 have 1000 classes"):
        models.load("torchvision:resnet18", num_classes=10)
    timm = pytest.importorskip("timm")
    monkeypatch.setattr(timm, "create_model", unreachable)
    with pytest.raises(RuntimeError, match=r"pretrained weights of timm:resnet18 \(OSError: network is unreachable\)"):
        models.load("timm:resnet18")


DICT_FACTORY = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, as_dict):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Linear(8, 4)
        self.as_dict = as_dict

    def forward(self, x):
        logits = self.head(self.features(x).mean(dim=(2, 3)))
        return {"logits": logits, "aux": logits.detach() * 0} if self.as_dict else logits


def plain():
    return Net(False)


def with_dict():
    return Net(True)
"""


def test_evaluate_reads_the_scores_of_a_dict_output_with_output_selector(tmp_path, capsys):
    """A model returning {"logits": ...} scores exactly like the same network returning the tensor."""
    data = tmp_path / "data"
    for index, name in enumerate(("n01", "n02")):
        (data / name).mkdir(parents=True)
        pixels = np.random.default_rng(index).integers(0, 256, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(data / name / f"{name}.png")
    source = tmp_path / "dict_models.py"
    source.write_text(DICT_FACTORY)
    common = ["--data", str(data), "--weights", "random", "--size", "16", "--device", "cpu", "--steps", "4"]
    common += ["--methods", "grad-cam,score-cam,mi-cam", "--metrics", "drop-increase,deletion-insertion"]
    common += ["--sanity-images", "0", "--counterfactual-images", "0"]
    rows = {}
    for factory, extra in (("plain", []), ("with_dict", ["--output-selector", "logits"])):
        out = tmp_path / factory
        assert main(["evaluate", "--model", f"{source}:{factory}", "--out", str(out), *common, *extra]) == 0
        text = (out / "per_image.csv").read_text().splitlines()
        rows[factory] = [",".join(c for i, c in enumerate(line.split(",")) if i != 6) for line in text]  # no seconds
    assert rows["plain"] == rows["with_dict"] and len(rows["plain"]) == 1 + 2 * 3
    out = tmp_path / "refused"
    assert main(["evaluate", "--model", f"{source}:with_dict", "--out", str(out), *common]) == 2
    assert "output_selector" in capsys.readouterr().err


def test_a_timm_vit_is_explained_from_the_command_line_with_its_token_layout(tmp_path, image, capsys):
    pytest.importorskip("timm")
    loaded = models.load("timm:vit_tiny_patch16_224", weights="random")
    assert loaded.target_layer_name == "blocks.11.norm1"
    assert repr(loaded.reshape_transform) == "VitTokens(prefix_tokens=1, grid=(14, 14))"
    out = tmp_path / "out"
    for layer in ([], ["--layer", "blocks.5.norm1"]):  # a layer given by name keeps the token layout
        assert explain(image, "--model", "timm:vit_tiny_patch16_224", "--weights", "random", "--out", out, *layer) == 0
        cam = np.load(out / "tiny" / "grad-cam.npy")
        assert cam.shape == (224, 224) and cam.min() == 0.0 and cam.max() == 1.0
    capsys.readouterr()
    args = ["--model", "timm:vit_tiny_patch16_224", "--weights", "random", "--size", "64", "--out", out]
    assert explain(image, *args) == 2  # timm's ViT checks its input size: a usage error, not a traceback
    assert "--size" in error_line(capsys)


def test_explain_reads_a_dict_output_with_output_selector(tmp_path, image, capsys):
    source = tmp_path / "dict_models.py"
    source.write_text(DICT_FACTORY)
    out = tmp_path / "out"
    common = ["--weights", "random", "--size", "16", "--out", out, "--top", "2"]
    assert explain(image, "--model", f"{source}:plain", *common) == 0
    plain = json.loads((out / "summary.json").read_text())["images"]["tiny"]
    assert explain(image, "--model", f"{source}:with_dict", *common, "--output-selector", "logits") == 0
    selected = json.loads((out / "summary.json").read_text())["images"]["tiny"]
    assert selected["top"] == plain["top"] and len(plain["top"]) == 2
    loaded = models.load(f"{source}:plain", weights="random", input_size=16)
    probabilities = torch.softmax(forward(loaded.model, loaded.preprocess(Image.open(image))[None]), dim=1)[0]
    best = int(probabilities.argmax())
    assert plain["top"][0]["class"] == best
    assert math.isclose(plain["top"][0]["probability"], float(probabilities[best]), abs_tol=1e-6)
    capsys.readouterr()
    assert explain(image, "--model", f"{source}:with_dict", *common) == 2
    assert "--output-selector" in error_line(capsys)
