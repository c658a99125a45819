"""Every method explains 1-D signals (B, C, L) of Conv1d models and 3-D volumes (B, C, D, H, W) of
Conv3d models, with maps at the input's size; the numbers follow the same definitions as for images."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from micam import MICAM, EigenCAM, GradCAM, GradCAMPlusPlus, ScoreCAM, XGradCAM, mutual_information
from micam.imaging import BT601_LUMA, _separable_blur, gaussian_blur, grayscale

METHODS = [GradCAM, GradCAMPlusPlus, XGradCAM, EigenCAM, ScoreCAM, MICAM]


def conv_net(dims: int, in_channels: int, seed: int) -> nn.Sequential:
    """conv -> ReLU -> strided conv (the target layer, "2") -> ReLU -> global average pool -> linear (3 classes)."""
    torch.manual_seed(seed)
    conv = {1: nn.Conv1d, 3: nn.Conv3d}[dims]
    pool = {1: nn.AdaptiveAvgPool1d, 3: nn.AdaptiveAvgPool3d}[dims]
    return nn.Sequential(
        conv(in_channels, 4, 3, padding=1),
        nn.ReLU(),
        conv(4, 6, 3, stride=2, padding=1),
        nn.ReLU(),
        pool(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    ).eval()


def signals() -> tuple[nn.Sequential, torch.Tensor]:
    return conv_net(1, 1, seed=0), torch.randn(2, 1, 64, generator=torch.Generator().manual_seed(1))


def volumes() -> tuple[nn.Sequential, torch.Tensor]:
    return conv_net(3, 3, seed=0), torch.randn(2, 3, 8, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("data", [signals, volumes], ids=["1d", "3d"])
@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.__name__)
def test_every_method_returns_maps_at_the_input_size(method, data):
    model, x = data()
    maps = method(model, target_layers=["2"])(x, targets=None if method.class_agnostic else [0, 2])
    assert maps.shape == (x.shape[0], *x.shape[2:]) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    for single in maps:
        assert single.max() > single.min()  # not constant


def test_grad_cam_1d_equals_its_definition_computed_by_hand():
    model, x = signals()
    targets = [0, 2]
    activations = model[:3](x)  # (B, 6, 32): the target layer's output
    # y_c = sum_k W[c, k] mean_l ReLU(A_k(l)) + b_c, so dy_c/dA_k(l) = W[c, k] [A_k(l) > 0] / 32.
    gradients = model[6].weight[targets][:, :, None] * (activations > 0) / activations.shape[2]
    weights = gradients.mean(dim=2)
    cam = torch.relu((weights[:, :, None] * activations).sum(dim=1))  # (B, 32)
    # Linear upsampling 32 -> 64 with half-pixel centres: output i samples source (i + 0.5) / 2 - 0.5.
    source = ((torch.arange(64) + 0.5) / 2 - 0.5).clamp(min=0)
    left = source.floor().long()
    right = (left + 1).clamp(max=31)
    frac = source - left
    up = cam[:, left] * (1 - frac) + cam[:, right] * frac
    lo, hi = up.amin(dim=1, keepdim=True), up.amax(dim=1, keepdim=True)
    expected = ((up - lo) / (hi - lo)).detach()
    with GradCAM(model, target_layers=["2"]) as grad_cam:
        maps = grad_cam(x, targets=targets)
        torch.testing.assert_close(grad_cam.last_weights, weights.detach())
    torch.testing.assert_close(maps, expected)


def test_mi_cam_1d_weights_are_the_mi_of_each_upsampled_map_with_the_signal():
    model, x = signals()
    with MICAM(model, target_layers=["2"]) as cam:
        cam(x)
        up = F.interpolate(model[:3](x).detach(), size=64, mode="linear", align_corners=False)
        expected = mutual_information(up, x[:, 0][:, None])  # one channel: gray is the signal itself
        assert torch.equal(cam.last_weights, expected)


def test_mi_cam_3d_weights_use_the_luma_of_the_restored_volume():
    model, x = volumes()
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    with MICAM(model, target_layers=["2"], pixel_mean=mean, pixel_std=std) as cam:
        cam(x)
        restored = x * torch.tensor(std).view(1, 3, 1, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1, 1)
        gray = sum(w * restored[:, c] for c, w in enumerate(BT601_LUMA))
        up = F.interpolate(model[:3](x).detach(), size=(8, 16, 16), mode="trilinear", align_corners=False)
        expected = mutual_information(up.flatten(2), gray.flatten(1)[:, None])
        torch.testing.assert_close(cam.last_weights, expected)
    assert torch.allclose(grayscale(x, BT601_LUMA, mean, std), gray, atol=1e-6)


@pytest.mark.parametrize("data", [signals, volumes], ids=["1d", "3d"])
def test_mi_cam_authors_preset_blurs_along_every_axis(data):
    model, x = data()
    maps = MICAM(model, target_layers=["2"], preset="authors")(x)
    assert maps.shape == (x.shape[0], *x.shape[2:]) and torch.isfinite(maps).all()


def test_the_generic_blur_is_the_image_blur_on_images():
    maps = torch.rand(2, 20, 30, generator=torch.Generator().manual_seed(0))
    kernel = torch.exp(-((torch.arange(11.0) - 5) ** 2) / (2 * 7.0**2))
    torch.testing.assert_close(_separable_blur(maps, kernel / kernel.sum(), 5, "reflect"), gaussian_blur(maps, 11, 7.0))
    volume = torch.zeros(1, 9, 9, 9)
    volume[0, 4, 4, 4] = 1.0
    blurred = gaussian_blur(volume, 5, 1.0)
    torch.testing.assert_close(blurred.sum(), torch.tensor(1.0))  # mass kept away from the borders
    torch.testing.assert_close(blurred, blurred.permute(0, 2, 3, 1))  # the same kernel along every axis


def video() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18(weights=None).eval()
    return model, torch.randn(1, 3, 8, 56, 56, generator=torch.Generator().manual_seed(0))


def test_r3d_18_video_model():
    model, x = video()
    for method in (GradCAM, MICAM):
        maps = method(model, target_layers=["layer4"])(x)
        assert maps.shape == (1, 8, 56, 56) and torch.isfinite(maps).all()
        assert maps.min() == 0 and maps.max() == 1


def test_default_target_layer_of_conv1d_and_conv3d_models():
    for data in (signals, volumes):
        model, x = data()
        with MICAM(model) as cam:
            assert cam(x).shape == (2, *x.shape[2:])
            assert cam.target_layer_names == ["3"]  # the ReLU closing the last conv's block
    model, x = video()
    for method in (GradCAM, MICAM):
        assert method(model)(x).shape == (1, 8, 56, 56)


def test_a_signal_batch_for_an_image_model_is_refused_without_an_unsqueeze_hint(tiny_cnn):
    with pytest.raises(ValueError, match=r"4-D \(B, C, H, W\).*Conv2d.*\(1, 1, 256\).*Conv1d") as error:
        GradCAM(tiny_cnn, target_layers=["features.3"])(torch.rand(1, 1, 256))
    assert "unsqueeze" not in str(error.value)


def test_a_conv1d_model_takes_a_signal_batch_and_refuses_other_layouts():
    model, _ = signals()
    maps = GradCAM(model, target_layers=["2"])(torch.randn(1, 1, 256, generator=torch.Generator().manual_seed(3)))
    assert maps.shape == (1, 256)
    with pytest.raises(ValueError, match=r"3-D \(B, C, L\).*Conv1d.*Conv2d") as error:
        GradCAM(model, target_layers=["2"])(torch.rand(1, 1, 16, 16))
    assert "unsqueeze" not in str(error.value)
    with pytest.raises(ValueError, match=r"3-D \(B, C, L\).*unsqueeze\(0\)"):
        GradCAM(model, target_layers=["2"])(torch.rand(1, 256))  # one (C, L) signal
    with pytest.raises(ValueError, match=r"not \(B, K, l\)"):
        GradCAM(model, target_layers=["6"])(torch.rand(1, 1, 64))  # the linear head: no positions
