"""The capture engine: layer lookup, hooks always removed, model state and gradients untouched."""

from __future__ import annotations

import gc
import resource

import pytest
import torch
import torchvision
from torch import nn

from conftest import TinyCNN
from micam import METHODS, MICAM, EigenCAM, GradCAM, GradCAMPlusPlus, ScoreCAM, XGradCAM
from micam.capture import default_target_layer, layer_names, resolve_layer

GRADIENT_METHODS = [GradCAM, GradCAMPlusPlus, XGradCAM]
ALL_METHODS = list(METHODS.values())


def no_hooks_left(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules())


def test_layers_by_name_and_module(tiny_cnn):
    assert resolve_layer(tiny_cnn, "features.3") == ("features.3", tiny_cnn.features[3])
    assert resolve_layer(tiny_cnn, tiny_cnn.features[2]) == ("features.2", tiny_cnn.features[2])
    assert "features.2" in layer_names(tiny_cnn, conv_only=True)


def test_wrong_layer_name_lists_the_nearest_names(tiny_cnn):
    with pytest.raises(ValueError, match=r"no layer named 'feature.3'.*features\.3"):
        GradCAM(tiny_cnn, target_layers=["feature.3"])
    with pytest.raises(ValueError, match="not a submodule"):
        GradCAM(tiny_cnn, target_layers=[nn.Conv2d(1, 1, 1)])


@pytest.mark.parametrize(
    ("builder", "expected"),
    [("mobilenet_v2", "features.18"), ("resnet50", "layer4.2"), ("vgg11", "features.19")],
)
def test_default_layer_is_the_last_conv_block(builder, expected):
    model = getattr(torchvision.models, builder)(weights=None).eval()
    name, _ = default_target_layer(model, torch.rand(1, 3, 64, 64))
    assert name == expected


def test_default_layer_skips_a_1x1_conv_classifier_and_is_used_when_none_given(tiny_batch):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Conv2d(4, 2, 1), nn.Flatten())
    assert default_target_layer(model, tiny_batch[:1])[0] == "1"
    with GradCAM(model) as cam:
        cam(tiny_batch)
        assert cam.target_layer_names == ["1"]


class Exploding(nn.Module):
    """Raises after the target layer ran."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.conv(x)
        raise RuntimeError("boom")


@pytest.mark.parametrize("method", [GradCAM, ScoreCAM])
def test_hooks_and_modes_restored_when_the_model_raises(method, tiny_batch):
    model = Exploding().train()
    with pytest.raises(RuntimeError, match="boom"), method(model, target_layers=["conv"]) as cam:
        cam(tiny_batch)
    assert no_hooks_left(model)
    assert model.training and model.conv.training


@pytest.mark.parametrize("method", ALL_METHODS)
def test_model_state_and_gradients_untouched(method, tiny_batch):
    model = TinyCNN().train()
    model.features[0].weight.requires_grad_(False)
    model.head.bias.grad = torch.full_like(model.head.bias, 3.0)
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    with method(model, target_layers=["features.3"]) as cam:
        maps = cam(tiny_batch, targets=1)
    assert maps.shape == (3, 16, 16) and maps.dtype == torch.float32
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1
    assert all(m.training for m in model.modules())
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert torch.equal(model.head.bias.grad, torch.full_like(model.head.bias, 3.0))
    assert all(p.grad is None for name, p in model.named_parameters() if name != "head.bias")
    assert no_hooks_left(model)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_methods_run_inside_no_grad_and_frozen_models(method, tiny_cnn, tiny_batch):
    for p in tiny_cnn.parameters():
        p.requires_grad_(False)
    with torch.no_grad(), method(tiny_cnn, target_layers=["features.3"]) as cam:
        maps = cam(tiny_batch)
    assert maps.shape == (3, 16, 16) and torch.isfinite(maps).all()


def test_gradient_free_methods_run_in_inference_mode_and_gradient_methods_say_why_not(tiny_cnn, tiny_batch):
    with torch.inference_mode():
        for method in (MICAM, EigenCAM):
            assert method(tiny_cnn, target_layers=["features.3"])(tiny_batch).shape == (3, 16, 16)
        with pytest.raises(RuntimeError, match="inference_mode"):
            GradCAM(tiny_cnn, target_layers=["features.3"])(tiny_batch)


def test_inplace_relu_after_the_target_layer_neither_fails_nor_alters_the_record(tiny_batch):
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )
    activations = {}
    for method in (GradCAM, MICAM):
        with method(model, target_layers=["0"]) as cam:
            original = cam.channel_weights

            def spy(context, original=original, method=method):
                activations[method] = context.activations.clone()
                return original(context)

            cam.channel_weights = spy
            cam(tiny_batch)
    expected = model[0](tiny_batch)
    for recorded in activations.values():
        assert (recorded < 0).any()
        torch.testing.assert_close(recorded, expected)


def test_a_layer_that_runs_twice_is_refused(tiny_batch):
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(self.conv(self.conv(x)).mean(dim=(2, 3)))

    model = Twice()
    with pytest.raises(ValueError, match="ran 2 times"):
        GradCAM(model, target_layers=["conv"])(tiny_batch)
    assert no_hooks_left(model)


def test_class_agnostic_methods_stop_after_the_target_layer(tiny_cnn, tiny_batch):
    calls = []
    tiny_cnn.head.register_forward_hook(lambda *args: calls.append(1))
    MICAM(tiny_cnn, target_layers=["features.3"])(tiny_batch)
    assert calls == []
    GradCAM(tiny_cnn, target_layers=["features.3"])(tiny_batch)
    assert calls == [1]


def test_multiple_target_layers_average_their_maps(tiny_cnn, tiny_batch):
    with GradCAM(tiny_cnn, target_layers=["features.1", "features.3"]) as cam:
        both = cam(tiny_batch, targets=0)
        assert set(cam.last_layer_weights) == {"features.1", "features.3"}
    singles = [GradCAM(tiny_cnn, target_layers=[name])(tiny_batch, targets=0) for name in ("features.1", "features.3")]
    mean = (singles[0] + singles[1]) / 2
    flat = mean.flatten(1)
    expected = (mean - flat.min(1).values[:, None, None]) / (flat.max(1).values - flat.min(1).values)[:, None, None]
    torch.testing.assert_close(both, expected)


def test_thousand_calls_leave_no_hooks_and_no_memory_growth():
    """Bound: resident memory grows by less than 20 MiB over 1,000 calls after a warm-up."""
    model = TinyCNN().eval()
    x = torch.rand(2, 3, 16, 16)
    methods = [GradCAM(model, target_layers=["features.3"]), MICAM(model, target_layers=["features.3"])]
    for _ in range(20):
        for cam in methods:
            cam(x)
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i in range(1000):
        methods[i % 2](x)
    gc.collect()
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert no_hooks_left(model)
    assert grown_kib < 20 * 1024
