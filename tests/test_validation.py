"""Bad input never yields a silent wrong answer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import TokenModel
from micam import MICAM, EigenCAM, GradCAM, ScoreCAM


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.rand(3, 16, 16), r"4-D .*unsqueeze\(0\)"),
        (torch.rand(0, 3, 16, 16), "empty"),
        (torch.rand(2, 1, 16, 16), r"expects 3 input channels, got 1.*expand"),
        (torch.full((1, 3, 16, 16), float("nan")), "NaN or Inf"),
        (torch.full((1, 3, 16, 16), float("inf")), "NaN or Inf"),
        (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), "floating"),
        ([[1.0]], "torch.Tensor"),
    ],
)
@pytest.mark.parametrize("method", [GradCAM, MICAM])
def test_bad_inputs_raise_value_errors_that_say_what_to_do(method, x, message, tiny_cnn):
    with pytest.raises(ValueError, match=message):
        method(tiny_cnn, target_layers=["features.3"])(x)


def test_a_model_without_conv_layers_needs_explicit_layers():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        GradCAM(model)(torch.rand(1, 3, 8, 8))


def tokens_to_maps(tokens: torch.Tensor) -> torch.Tensor:
    b, n, d = tokens.shape
    side = int(n**0.5)
    return tokens.transpose(1, 2).reshape(b, d, side, side)


@pytest.mark.parametrize("method", [GradCAM, MICAM, EigenCAM, ScoreCAM])
def test_token_shaped_layers_need_a_reshape_transform(method):
    model, x = TokenModel(), torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match="reshape_transform"):
        method(model, target_layers=["block"])(x)
    maps = method(model, target_layers=["block"], reshape_transform=tokens_to_maps)(x)
    assert maps.shape == (2, 16, 16) and torch.isfinite(maps).all()


def test_constant_maps_give_zeros_with_a_warning():
    model = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.fill_(1.0)
    with pytest.warns(RuntimeWarning, match="constant"):
        maps = MICAM(model)(torch.rand(2, 3, 8, 8))
    assert torch.equal(maps, torch.zeros(2, 8, 8))


def test_tuple_and_dict_outputs_need_a_selector(tiny_cnn, tiny_batch):
    class Pair(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            logits = self.inner(x)
            return {"aux": logits * 0, "logits": logits}

    model = Pair(tiny_cnn)
    with pytest.raises(ValueError, match="output_selector"):
        GradCAM(model, target_layers=["inner.features.3"])(tiny_batch)
    by_key = GradCAM(model, target_layers=["inner.features.3"], output_selector="logits")(tiny_batch, targets=2)
    by_callable = GradCAM(model, target_layers=["inner.features.3"], output_selector=lambda out: out["logits"])(
        tiny_batch, targets=2
    )
    plain = GradCAM(tiny_cnn, target_layers=["features.3"])(tiny_batch, targets=2)
    torch.testing.assert_close(by_key, plain)
    torch.testing.assert_close(by_callable, plain)


def test_class_agnostic_methods_explain_a_headless_encoder(tiny_cnn, tiny_batch):
    encoder = tiny_cnn.features  # no classifier: the output is a feature map
    for method in (MICAM, EigenCAM):
        with method(encoder) as cam:
            maps = cam(tiny_batch, targets=None)
            assert maps.shape == (3, 16, 16)
            assert cam.last_weights.shape == (3, 6)


def test_targets_are_checked(tiny_cnn, tiny_batch):
    with pytest.raises(ValueError, match="3 samples|batch of 3"):
        GradCAM(tiny_cnn, target_layers=["features.3"])(tiny_batch, targets=[1, 2])
    with pytest.raises(ValueError, match="out of range"):
        GradCAM(tiny_cnn, target_layers=["features.3"])(tiny_batch, targets=99)
    top = tiny_cnn(tiny_batch).argmax(1).tolist()
    by_default = GradCAM(tiny_cnn, target_layers=["features.3"])(tiny_batch)
    torch.testing.assert_close(by_default, GradCAM(tiny_cnn, target_layers=["features.3"])(tiny_batch, targets=top))


def test_constructor_arguments_are_validated(tiny_cnn):
    with pytest.raises(TypeError, match="nn.Module"):
        GradCAM("model")
    with pytest.raises(ValueError, match="empty"):
        GradCAM(tiny_cnn, target_layers=[])
    with pytest.raises(ValueError, match="preset"):
        MICAM(tiny_cnn, preset="fast")
    with pytest.raises(ValueError, match="upsample_mode"):
        MICAM(tiny_cnn, upsample_mode="bicubic")
    with pytest.raises(ValueError, match="pixel_mean"):
        MICAM(tiny_cnn, pixel_mean=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="batch_size"):
        ScoreCAM(tiny_cnn, batch_size=0)


@pytest.mark.parametrize("method", [GradCAM, MICAM])
def test_a_layer_with_one_position_gives_zeros_and_a_warning_not_stretched_rounding_noise(method):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 4, 1), nn.Flatten()
    ).eval()
    with pytest.warns(RuntimeWarning, match="single spatial position"), method(model, target_layers=["3"]) as cam:
        maps = cam(torch.randn(2, 3, 16, 16), **({} if method is MICAM else {"targets": [1, 2]}))
    assert maps.shape == (2, 16, 16) and not maps.any()
