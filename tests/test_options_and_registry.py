"""Methods declare their options (dataclasses, one check, ``cam.settings``), ``make_method`` builds every
method as its constructor does, every explainer takes one call, and estimators are objects in one registry."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score

from micam import MICAM, EigenCAM, GradCAM, GradCAMPlusPlus, ScoreCAM, XGradCAM, mutual_information
from micam.estimators import (
    ESTIMATORS,
    Estimator,
    fused_available,
    get_estimator,
    register_estimator,
    upsampled_mutual_information,
)
from micam.estimators import fused as fused_module
from micam.evaluation.references import REFERENCES
from micam.imaging import grayscale, upsample
from micam.methods import (
    METHODS,
    GradCAMPlusPlusOptions,
    MethodOptions,
    MICAMOptions,
    ScoreCAMOptions,
    SharedSettings,
)
from micam.methods import base as base_module
from micam.methods.factory import make_method
from micam.methods.mi_cam import PRESETS

LAYER = "features.3"  # TinyCNN: (B, 6, 4, 4) for 16x16 inputs
MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.3, 0.25)


# ---------------------------------------------------------------- options and settings
def test_every_method_records_its_options_as_settings(tiny_cnn):
    assert GradCAM(tiny_cnn, [LAYER]).settings == {}
    assert XGradCAM(tiny_cnn, [LAYER]).settings == {}
    assert EigenCAM(tiny_cnn, [LAYER]).settings == {}
    assert GradCAMPlusPlus(tiny_cnn, [LAYER]).settings == {"eps": 1e-6}
    assert GradCAMPlusPlus(tiny_cnn, [LAYER], eps=0).settings == {"eps": 0}
    assert ScoreCAM(tiny_cnn, [LAYER], batch_size=64, score="logit").settings == {
        "batch_size": 64,
        "score": "logit",
        "subtract_baseline": False,
    }
    default = MICAM(tiny_cnn, [LAYER], pixel_mean=MEAN, pixel_std=STD)
    expected = {
        "preset": "default",
        "upsample_mode": "bilinear",
        "estimator": "binned",
        "bins": 32,
        "luma": [0.299, 0.587, 0.114],
        "gray_of": "restored pixels",
        "pixel_mean": list(MEAN),
        "pixel_std": list(STD),
        "normalize_maps": False,
        "blur": None,
        "gray_uint8": False,
        "column_max": False,
        "target_layers": [LAYER],
    }
    assert default.settings == expected and list(default.settings) == list(expected)  # the recorded order too
    authors = MICAM(tiny_cnn, [LAYER], preset="authors")
    assert authors.settings == expected | {
        "preset": "authors",
        "upsample_mode": "nearest",
        "estimator": "reference",
        "bins": None,  # the distinct-value estimator takes no bins
        "luma": [0.2989, 0.5870, 0.1140],
        "gray_of": "input tensor",
        "pixel_mean": None,
        "pixel_std": None,
        "blur": [11, 7.0],
        "gray_uint8": True,
    }
    for cam in (default, authors, ScoreCAM(tiny_cnn, [LAYER]), GradCAMPlusPlus(tiny_cnn, [LAYER])):
        json.dumps(cam.settings)


def test_options_are_checked_in_their_dataclass():
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        ScoreCAMOptions(batch_size=0)
    with pytest.raises(ValueError, match="score must be"):
        ScoreCAMOptions(score="rank")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps must be a non-negative number"):
        GradCAMPlusPlusOptions(eps=-1.0)
    with pytest.raises(ValueError, match="unknown preset 'fast'"):
        MICAMOptions(preset="fast")
    with pytest.raises(ValueError, match="upsample_mode must be one of"):
        MICAMOptions(upsample_mode="bicubic")
    with pytest.raises(ValueError, match="pixel_mean and pixel_std"):
        MICAMOptions(pixel_mean=MEAN)
    assert MICAMOptions() == MICAMOptions.from_preset("default")
    authors = MICAMOptions.from_preset("authors")
    assert {key: getattr(authors, key) for key in PRESETS["authors"]} == PRESETS["authors"]
    assert MICAMOptions.from_preset("authors", blur=False).blur is None
    assert MICAMOptions.from_preset("authors", bins=None, luma=[0.2, 0.3, 0.5]).luma == (0.2, 0.3, 0.5)


def test_option_attributes_read_and_replace_the_checked_options(tiny_cnn):
    cam = ScoreCAM(tiny_cnn, [LAYER])
    cam.batch_size = 8  # as pytorch-grad-cam users do
    assert cam.options == ScoreCAMOptions(batch_size=8) and cam.settings["batch_size"] == 8
    with pytest.raises(ValueError, match="batch_size"):
        cam.batch_size = 0
    assert cam.batch_size == 8
    mi = MICAM(tiny_cnn, [LAYER], preset="authors")
    assert (mi.upsample_mode, mi.estimator, mi.luma, mi.blur) == (
        "nearest",
        "reference",
        (0.2989, 0.5870, 0.1140),
        (11, 7.0),
    )
    mi.estimator = "binned"
    assert mi.settings["bins"] == 32
    with pytest.raises(ValueError, match="bins must be"):
        mi.bins = 1
    assert GradCAMPlusPlus(tiny_cnn, [LAYER], eps=0.5).eps == 0.5


def test_constructors_check_their_options_after_the_model(tiny_cnn):
    with pytest.raises(TypeError, match="nn.Module"):
        ScoreCAM("model", batch_size=0)
    with pytest.raises(ValueError, match="eps"):
        GradCAMPlusPlus(tiny_cnn, [LAYER], eps=-1e-6)
    with pytest.raises(ValueError, match="bins must be"):  # checked on construction, not on the first call
        MICAM(tiny_cnn, [LAYER], bins=1)


# ---------------------------------------------------------------- make_method and from_settings
def _direct(name: str, model: torch.nn.Module, preset: str) -> Any:
    """The constructor calls make_method stands for."""
    if name == "mi-cam":
        if preset == "authors":
            return MICAM(model, [LAYER], preset="authors")
        return MICAM(model, [LAYER], preset=preset, pixel_mean=MEAN, pixel_std=STD)
    if name == "score-cam":
        return ScoreCAM(model, [LAYER], batch_size=5)
    return METHODS[name](model, [LAYER])


@pytest.mark.parametrize("preset", ["default", "authors"])
@pytest.mark.parametrize("name", list(METHODS))
def test_make_method_builds_what_the_constructor_builds(name, preset, tiny_cnn, tiny_batch):
    made = make_method(name, tiny_cnn, LAYER, pixel_mean=MEAN, pixel_std=STD, score_cam_batch_size=5, mi_preset=preset)
    direct = _direct(name, tiny_cnn, preset)
    assert type(made) is type(direct) and made.options == direct.options and made.settings == direct.settings
    targets = [0, 1, 2]
    assert torch.equal(made(tiny_batch, targets=targets), direct(tiny_batch, targets=targets))
    assert torch.equal(made.last_weights, direct.last_weights)


def test_make_method_passes_the_output_selector_and_reshape_transform(tiny_cnn):
    def identity(t: torch.Tensor) -> torch.Tensor:
        return t

    for name in METHODS:
        cam = make_method(name, tiny_cnn, LAYER, output_selector=0, reshape_transform=identity)
        assert (cam.output_selector, cam.reshape_transform, cam.target_layer_names) == (0, identity, [LAYER])
    with pytest.raises(ValueError, match="unknown method 'cam'"):
        make_method("cam", tiny_cnn, LAYER)


@dataclass(frozen=True)
class _ScaleOptions(MethodOptions):
    factor: float = 1.0

    def check(self) -> None:
        if self.factor <= 0:
            raise ValueError("factor must be positive")


class _ScaledGradCAM(GradCAM):
    """A new method with an option: a class and a METHODS line, nothing in the factory."""

    def __init__(self, *args, factor: float = 1.0, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.options = _ScaleOptions(factor)

    @classmethod
    def options_from_settings(cls, settings: SharedSettings) -> dict[str, Any]:
        return {"factor": float(settings.score_cam_batch_size)}

    def channel_weights(self, context):  # type: ignore[no-untyped-def]
        return super().channel_weights(context) * self.options.factor  # type: ignore[attr-defined]


def test_a_new_method_needs_no_factory_branch(tiny_cnn, tiny_batch, monkeypatch):
    monkeypatch.setitem(METHODS, "scaled-grad-cam", _ScaledGradCAM)
    cam = make_method("scaled-grad-cam", tiny_cnn, LAYER, score_cam_batch_size=4)
    assert isinstance(cam, _ScaledGradCAM) and cam.settings == {"factor": 4.0}
    cam(tiny_batch, targets=[0, 1, 2])
    plain = GradCAM(tiny_cnn, [LAYER])
    plain(tiny_batch, targets=[0, 1, 2])
    torch.testing.assert_close(cam.last_weights, plain.last_weights * 4.0, rtol=0, atol=0)
    assert GradCAM.from_settings(tiny_cnn, LAYER).target_layer_names == [LAYER]  # default SharedSettings


# ---------------------------------------------------------------- one call for every explainer
@pytest.mark.parametrize("name", [*METHODS, *REFERENCES])
def test_every_explainer_takes_images_targets_and_keys(name, tiny_cnn, tiny_batch):
    explainer = REFERENCES[name]() if name in REFERENCES else make_method(name, tiny_cnn, LAYER)
    keys, targets = ["a", "b", "c"], [0, 1, 2]
    shared = explainer(tiny_batch, targets=targets, keys=keys)
    # What the evaluator called before: CAMs with targets, references with keys.
    alone = explainer(tiny_batch, keys=keys) if name in REFERENCES else explainer(tiny_batch, targets=targets)
    assert shared.shape == (3, 16, 16) and torch.equal(shared, alone)


# ---------------------------------------------------------------- estimators in a registry
class _MedianSplit(Estimator):
    """A new estimator: each vector cut at its (lower) median; MI of the 2x2 table. Has no fused kernel."""

    name = "median-split"
    uses_bins = False

    def codes(self, x: torch.Tensor, bins: int) -> torch.Tensor:
        return (x > x.median(dim=-1, keepdim=True).values).long()

    def from_codes(self, codes_a, codes_b, statistics_b, bins):  # type: ignore[no-untyped-def]
        joint = (codes_a * 2 + codes_b).double()
        cells = torch.stack([(joint == c).double().mean(dim=-1) for c in range(4)], dim=-1).view(-1, 2, 2)

        def entropy(p: torch.Tensor) -> torch.Tensor:
            return -torch.special.xlogy(p, p).flatten(1).sum(dim=1)

        return entropy(cells.sum(dim=2)) + entropy(cells.sum(dim=1)) - entropy(cells)


@pytest.fixture
def median_split():
    estimator = register_estimator(_MedianSplit())
    yield estimator
    ESTIMATORS.pop(estimator.name)


def test_a_registered_estimator_is_usable_by_name_everywhere(median_split, tiny_cnn, tiny_batch):
    generator = torch.Generator().manual_seed(5)
    a, b = torch.rand(3, 101, generator=generator), torch.rand(101, generator=generator)
    values = mutual_information(a, b, "median-split")
    codes_b = (b > b.median()).numpy()
    expected = [mutual_info_score((row > row.median()).numpy(), codes_b) for row in a]
    np.testing.assert_allclose(values.numpy(), expected, rtol=0, atol=1e-12)

    with MICAM(tiny_cnn, [LAYER], estimator="median-split") as cam:
        cam(tiny_batch)
        weights = cam.last_weights
        assert cam.settings["estimator"] == "median-split" and cam.settings["bins"] is None
    activations = tiny_cnn.features(tiny_batch)
    up = upsample(activations, (16, 16), "bilinear").flatten(2)
    straightforward = mutual_information(up, grayscale(tiny_batch).flatten(1)[:, None], "median-split")
    torch.testing.assert_close(weights, straightforward, rtol=0, atol=0)

    gray = grayscale(tiny_batch)
    with pytest.raises(RuntimeError, match="fused route cannot be used"):
        upsampled_mutual_information(activations, gray, "bilinear", "median-split", route="fused")
    if fused_available():
        assert "no fused kernel" in fused_module._fused_blocker(activations, gray, "bilinear", median_split, (16, 16))


def test_registering_checks_the_estimator():
    with pytest.raises(ValueError, match="already registered"):
        register_estimator(ESTIMATORS["binned"])
    with pytest.raises(TypeError, match="Estimator instance"):
        register_estimator("binned")  # type: ignore[arg-type]
    assert list(ESTIMATORS) == ["binned", "normalized", "reference", "ksg", "hsic", "hsic-normalized"]
    assert register_estimator(ESTIMATORS["binned"], replace=True) is ESTIMATORS["binned"]


def _errors(calls: list[Any]) -> list[str]:
    messages = []
    for call in calls:
        with pytest.raises(ValueError) as info:
            call()
        messages.append(str(info.value))
    return messages


@pytest.mark.parametrize("bins", [1, 1025, 2.0, True, "32"])
def test_bad_bins_give_one_message_from_one_place(bins, tiny_cnn):
    activations, gray = torch.rand(1, 2, 4, 4), torch.rand(1, 16, 16)
    messages = _errors(
        [
            lambda: get_estimator("binned", bins),
            lambda: mutual_information(torch.rand(5), torch.rand(5), "normalized", bins),
            lambda: upsampled_mutual_information(activations, gray, "bilinear", "binned", bins),
            lambda: upsampled_mutual_information(activations[:, :0], gray, "bilinear", "binned", bins),  # no maps
            lambda: MICAM(tiny_cnn, [LAYER], bins=bins),
        ]
    )
    assert messages == [f"bins must be an integer from 2 to 1024, got {bins!r}"] * 5
    # The distinct-value estimator takes no bins, so none are checked.
    assert get_estimator("reference", bins) is ESTIMATORS["reference"]
    assert MICAM(tiny_cnn, [LAYER], estimator="reference", bins=bins).settings["bins"] is None


def test_unknown_estimators_and_modes_give_one_message(tiny_cnn):
    activations, gray = torch.rand(1, 2, 4, 4), torch.rand(1, 16, 16)
    messages = _errors(
        [
            lambda: get_estimator("kde"),
            lambda: mutual_information(torch.rand(5), torch.rand(5), "kde"),
            lambda: upsampled_mutual_information(activations, gray, "bilinear", "kde"),
            lambda: MICAM(tiny_cnn, [LAYER], estimator="kde"),
        ]
    )
    assert (
        messages
        == ["unknown estimator 'kde'; choose one of binned, normalized, reference, ksg, hsic, hsic-normalized"] * 4
    )
    modes = _errors(
        [
            lambda: upsampled_mutual_information(activations, gray, "bicubic"),
            lambda: MICAM(tiny_cnn, [LAYER], upsample_mode="bicubic"),
        ]
    )
    assert modes == ["upsample_mode must be one of ('bilinear', 'nearest'), got 'bicubic'"] * 2


def test_one_upsample_helper_serves_methods_and_estimators():
    assert base_module.upsample is upsample and fused_module.upsample is upsample
    assert not hasattr(fused_module, "_upsample")
    maps = torch.rand(2, 3, 4, 5)
    assert upsample(maps, (4, 5), "nearest") is maps  # already at size: returned as is
    torch.testing.assert_close(
        upsample(maps, (8, 10), "bilinear"),
        torch.nn.functional.interpolate(maps, size=(8, 10), mode="bilinear", align_corners=False),
        rtol=0,
        atol=0,
    )
