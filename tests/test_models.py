"""Offline models: weights, preprocessing, target layers, categories, and helpful failures."""

from __future__ import annotations

import pytest
import torch
import torchvision
from PIL import Image

from conftest import EXAMPLES, SHARED_DATA, needs_mobilenet_weights, needs_shared_data
from micam import models

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_every_model_builds_with_random_weights(name):
    loaded = models.load(name, weights="random")
    assert not loaded.model.training
    assert len(loaded.categories) == 1000 and loaded.categories[285] == "Egyptian cat"
    x = loaded.preprocess(Image.open(EXAMPLES / "coffee.png"))
    assert x.shape == (3, 224, 224)
    activations = {}
    loaded.target_layer.register_forward_hook(lambda m, i, o: activations.setdefault("a", o))
    with torch.no_grad():
        assert loaded.model(x[None]).shape == (1, 1000)
    assert activations["a"].dim() == 4 and activations["a"].shape[-1] == (14 if name == "vgg16" else 7)


def top_class(loaded: models.LoadedModel, path) -> int:
    with torch.no_grad():
        return int(loaded.model(loaded.preprocess(Image.open(path))[None]).argmax())


@needs_mobilenet_weights
def test_mobilenet_v2_imagenet_weights_work_offline_also_through_torchvision():
    loaded = models.load("mobilenet_v2")
    assert top_class(loaded, EXAMPLES / "chelsea.png") in CAT_CLASSES
    assert top_class(loaded, EXAMPLES / "coffee.png") == 967  # espresso
    direct = torchvision.models.mobilenet_v2(weights="IMAGENET1K_V1").eval()
    torch.testing.assert_close(direct.state_dict()["classifier.1.weight"], loaded.model.classifier[1].weight)


def test_efficientnet_lite0_imagenet_weights_and_head_activation():
    loaded = models.load("efficientnet_lite0")
    assert top_class(loaded, EXAMPLES / "chelsea.png") in CAT_CLASSES
    assert loaded.mean == loaded.std == (0.5, 0.5, 0.5)
    out = {}
    loaded.target_layer.register_forward_hook(lambda m, i, o: out.setdefault("a", o))
    with torch.no_grad():
        loaded.model(torch.randn(1, 3, 224, 224))
    assert out["a"].shape == (1, 1280, 7, 7) and float(out["a"].min()) >= 0 and float(out["a"].max()) <= 6


@needs_shared_data
def test_mobilenet_v1_from_a_weights_file():
    path = SHARED_DATA / "weights" / "mobilenet_v1_1.0_224_dequant_from_coral_tflite.pth"
    loaded = models.load("mobilenet_v1", weights=str(path))
    assert top_class(loaded, EXAMPLES / "coffee.png") == 967
    assert top_class(loaded, EXAMPLES / "chelsea.png") in CAT_CLASSES


def test_missing_weights_say_how_to_provide_them(monkeypatch, tmp_path):
    monkeypatch.delenv("MICAM_MOBILENET_V1_WEIGHTS", raising=False)
    with pytest.raises(RuntimeError, match="weights=PATH"):
        models.load("mobilenet_v1")

    def unreachable(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", unreachable)
    with pytest.raises(RuntimeError, match=r"Offline, put the file vgg16-397923af\.pth .* at .*checkpoints"):
        models.load("vgg16")
    with pytest.raises(ValueError, match="unknown model"):
        models.load("alexnet")
    with pytest.raises(ValueError, match="checkpoint file"):
        models.load("resnet50", weights=str(tmp_path / "missing.pth"))


@needs_mobilenet_weights
def test_mobilenet_v2_checkpoint_is_placed_in_an_empty_hub_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    models.load("mobilenet_v2")
    assert (tmp_path / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth").is_file()


@needs_mobilenet_weights
def test_mobilenet_v2_replaces_a_dangling_link_in_the_hub_cache(monkeypatch, tmp_path):
    # A link into a since-deleted environment's site-packages (a removed venv or clone) used to be
    # followed by the copy fallback and fail with "No such file or directory".
    cached = tmp_path / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth"
    cached.parent.mkdir(parents=True)
    cached.symlink_to(tmp_path / "deleted-venv" / "mobilenet_v2-b0353104.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    loaded = models.load("mobilenet_v2")
    assert cached.is_file()
    expected = torch.load(cached, map_location="cpu", weights_only=True)["features.0.0.weight"]
    assert torch.equal(loaded.model.state_dict()["features.0.0.weight"], expected)


def test_mobilenet_v1_same_padding_matches_explicit_tensorflow_padding():
    from torch.nn import functional as F

    from micam.models.mobilenet_v1 import SamePaddingConv2d

    torch.manual_seed(7)
    for stride, size, pads in ((1, 9, (1, 1, 1, 1)), (2, 8, (0, 1, 0, 1)), (2, 9, (1, 1, 1, 1))):
        conv = SamePaddingConv2d(3, 4, 3, stride=stride)
        x = torch.randn(2, 3, size, size)
        expected = F.conv2d(F.pad(x, pads), conv.weight, conv.bias, stride)  # TF "SAME": extra row/col at the end
        with torch.no_grad():
            torch.testing.assert_close(conv(x), expected)
