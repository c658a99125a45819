"""The inference copy computes the model's function on the families users bring (torchvision and timm,
random weights), folds only plain batch norms, and falls back to the model where a copy would differ."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn

from micam import ScoreCAM, inference
from micam.inference import (
    InferenceRunner,
    copy_changes,
    foldable_pairs,
    inference_copy,
    plain_inference,
)
from micam.metrics import class_scores

timm = pytest.importorskip("timm")


def _randomize_norms(model: nn.Module) -> nn.Module:
    """Running statistics far from the identity, so a wrong fold shows in the output."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
            module.running_mean.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            if module.affine:
                module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.bias.data.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
    return model.eval()


# (factory, input size): timm families whose blocks subclass torch modules, and torchvision's.
FAMILIES = {
    "timm efficientnet_b0 (BatchNormAct2d)": (lambda: timm.create_model("efficientnet_b0", num_classes=10), 64),
    "timm mobilenetv3_small_100": (lambda: timm.create_model("mobilenetv3_small_100", num_classes=10), 64),
    "timm convnext_atto": (lambda: timm.create_model("convnext_atto", num_classes=10), 64),
    "timm regnetx_002": (lambda: timm.create_model("regnetx_002", num_classes=10), 64),
    "timm resnet26d (resnet-d)": (lambda: timm.create_model("resnet26d", num_classes=10), 64),
    "timm ese_vovnet19b_dw": (lambda: timm.create_model("ese_vovnet19b_dw", num_classes=10), 64),
    "timm vit_tiny": (lambda: timm.create_model("vit_tiny_patch16_224", num_classes=10, img_size=64), 64),
    "torchvision resnet18": (lambda: torchvision.models.resnet18(num_classes=10), 64),
    "torchvision mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(num_classes=10), 64),
    "torchvision efficientnet_b0": (lambda: torchvision.models.efficientnet_b0(num_classes=10), 64),
    "torchvision regnet_y_400mf": (lambda: torchvision.models.regnet_y_400mf(num_classes=10), 64),
    "torchvision densenet121 (pre-activation)": (lambda: torchvision.models.densenet121(num_classes=10), 64),
}


def _small_conv_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The last of the Conv2d layers with a spatial output and the fewest output channels (few masked
    passes for Score-CAM; squeeze-and-excitation convs, which see one position, are left out)."""
    spatial: dict[str, bool] = {}
    hooks = [
        module.register_forward_hook(
            lambda _m, _i, out, name=name: spatial.__setitem__(name, out.shape[-2:].numel() > 1)
        )
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d)
    ]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    convs = [
        (m.out_channels, -i, n)
        for i, (n, m) in enumerate(model.named_modules())
        if isinstance(m, nn.Conv2d) and spatial.get(n)
    ]
    return min(convs)[2]


@pytest.mark.filterwarnings("ignore:a CAM is constant")  # random weights: some maps are; the weights are compared
@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_copy_computes_the_models_function_and_score_cam_is_unchanged(family):
    torch.manual_seed(0)
    build, size = FAMILIES[family]
    model = _randomize_norms(build())
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        expected = model(x)
    runner = InferenceRunner(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning: the copy must be right by itself
        got = runner(x)
    assert runner.fast is not model or not foldable_pairs(model)  # a copy was used wherever one helps
    scale = float(expected.abs().max())
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4 * scale + 1e-5)
    assert all("BatchNormAct" not in change for change in copy_changes(runner.fast))
    if "vit" in family:  # no conv layer with spatial maps to mask; the copy itself is what matters
        return
    layer = _small_conv_layer(model, x[:1])
    with ScoreCAM(model, target_layers=[layer], batch_size=32) as cam:
        fast = cam(x[:1], targets=[3])
        fast_weights = cam.last_weights
    with plain_inference(), ScoreCAM(model, target_layers=[layer], batch_size=32) as cam:
        plain = cam(x[:1], targets=[3])
        plain_weights = cam.last_weights
    torch.testing.assert_close(fast_weights, plain_weights, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-3)


def test_timm_batchnorm_with_activation_is_never_folded():
    model = _randomize_norms(timm.create_model("efficientnet_b0", num_classes=10))
    modules = dict(model.named_modules())
    act_norms = [n for n, m in modules.items() if type(m).__name__ == "BatchNormAct2d"]
    assert act_norms and all(isinstance(modules[n], nn.BatchNorm2d) for n in act_norms)  # what isinstance saw
    assert not {norm for _, norm in foldable_pairs(model)} & set(act_norms)
    mixed = _randomize_norms(nn.Sequential(nn.Conv2d(3, 4, 3), modules[act_norms[0]].__class__(4), nn.Conv2d(4, 4, 1)))
    mixed.append(nn.BatchNorm2d(4))
    assert foldable_pairs(mixed) == [("2", "3")]  # the plain pair only


class _StandardizedConv(nn.Conv2d):
    """Weight standardization (as timm's StdConv2d): scaling the weight does not scale the output."""

    def forward(self, x):
        w = self.weight
        w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / (w.std(dim=(1, 2, 3), keepdim=True) + 1e-5)
        return nn.functional.conv2d(x, w, self.bias, self.stride, self.padding)


def test_a_conv_subclass_is_folded_only_where_a_probe_proves_it():
    torch.manual_seed(1)
    model = _randomize_norms(
        nn.Sequential(
            _StandardizedConv(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 4),
        )
    )
    copy = inference_copy(model)
    assert isinstance(copy[1], nn.BatchNorm2d)  # refused: folding would change the function
    assert isinstance(copy[4], nn.Identity)  # a plain Conv2d -> BatchNorm2d pair is folded
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(copy(x), model(x), rtol=1e-5, atol=1e-5)


def test_a_copy_that_differs_is_dropped_with_one_warning_naming_what_it_changed(monkeypatch):
    torch.manual_seed(2)
    model = _randomize_norms(
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    )
    real_copy = inference.inference_copy

    def broken_copy(module, **kwargs):
        made = real_copy(module, **kwargs)
        with torch.no_grad():
            made[0].bias.add_(3.0)  # what a wrongly folded norm would do
        return made

    monkeypatch.setattr(inference, "inference_copy", broken_copy)
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        expected = torch.softmax(model(x), dim=1)[torch.arange(4), torch.tensor([0, 1, 2, 3])]
    with pytest.warns(RuntimeWarning, match=r"BatchNorm2d folded into Conv2d") as caught:
        scores = class_scores(model, x, [0, 1, 2, 3], batch_size=2)  # first batch checked, both fall back
    assert len(caught) == 1
    torch.testing.assert_close(scores, expected, rtol=1e-6, atol=1e-7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runner = InferenceRunner(model)  # the model is remembered: no second copy, no second warning
        assert runner.fast is model
        torch.testing.assert_close(class_scores(runner, x, [0, 1, 2, 3]), expected, rtol=1e-6, atol=1e-7)


def test_dict_outputs_are_checked_leaf_by_leaf_and_scored_with_an_output_selector():
    class DictModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            features = self.body(x).flatten(1)
            return {"logits": self.head(features), "features": features}

    torch.manual_seed(3)
    model = _randomize_norms(DictModel())
    x = torch.randn(2, 3, 9, 9)
    runner = InferenceRunner(model)
    assert runner.fast is not model
    out = runner(x)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(out["features"], expected["features"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="output_selector"):
        class_scores(model, x, [0, 1])
    scores = class_scores(model, x, [0, 2], score="logit", output_selector="logits")
    torch.testing.assert_close(scores, expected["logits"][[0, 1], [0, 2]], rtol=1e-5, atol=1e-6)


def test_runners_share_one_copy_until_the_model_changes():
    torch.manual_seed(4)
    model = _randomize_norms(
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    )
    x = torch.randn(2, 3, 8, 8)
    first, second = InferenceRunner(model), InferenceRunner(model)
    assert first.fast is second.fast is inference.shared_copy(model)  # one deep copy for every call site
    with torch.no_grad():
        model[0].weight.mul_(2.0)  # an in-place change bumps the version counter: a new copy
    changed = InferenceRunner(model)
    assert changed.fast is not first.fast
    with torch.no_grad():
        torch.testing.assert_close(changed(x), model.eval()(x), rtol=1e-5, atol=1e-5)
    model[0].weight.data.mul_(0.5)  # through .data: no version bump, so the shared copy is stale ...
    stale = InferenceRunner(model)
    assert stale.fast is changed.fast
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ... and the first batch's check makes it anew, without a warning
        got = stale(x)
    assert stale.fast is not changed.fast
    with torch.no_grad():
        torch.testing.assert_close(got, model(x), rtol=1e-5, atol=1e-5)
