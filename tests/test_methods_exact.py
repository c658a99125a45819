"""Each method on tiny hand-built models whose expected maps are computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import mutual_info_score
from torch import nn

from conftest import H_G, H_R, RGB, G, LinearHead, R, channel_picker, mi_model
from micam import MICAM, EigenCAM, GradCAM, GradCAMPlusPlus, ScoreCAM, XGradCAM


def unit(t: torch.Tensor) -> torch.Tensor:
    return (t - t.min()) / (t.max() - t.min())


def test_mi_cam_reference_weights_and_map_by_hand():
    # gray takes four values, one per (R, G) pair, so I(R; gray) = H(R) and I(G; gray) = H(G).
    with MICAM(mi_model(), target_layers=["conv"], estimator="reference") as cam:
        maps = cam(RGB)
        torch.testing.assert_close(cam.last_weights, torch.tensor([[H_R, H_G]], dtype=torch.float64))
    torch.testing.assert_close(maps[0], unit(H_R * R + H_G * G))


def test_mi_cam_binned_weights_by_hand():
    # With 2 bins the gray values 0, .299 | .587, .886 fall in bins G = 0 | G = 1: I(R; .) = 0, I(G; .) = H(G).
    with MICAM(mi_model(), target_layers=["conv"], estimator="binned", bins=2) as cam:
        maps = cam(RGB)
        torch.testing.assert_close(cam.last_weights, torch.tensor([[0.0, H_G]], dtype=torch.float64))
    torch.testing.assert_close(maps[0], G)


def test_mi_cam_relu_after_upsampling_and_blur_order():
    # One channel equal to the input's red channel minus 0.5: ReLU keeps the positive half only.
    conv = channel_picker([0])
    conv.bias = nn.Parameter(torch.tensor([-0.5]))
    model = LinearHead(conv, torch.eye(1))
    x = torch.stack([R, R, R])[None]
    with MICAM(model, target_layers=[model.conv], estimator="reference") as cam:
        maps = cam(x)
    torch.testing.assert_close(maps[0], R)  # ReLU(ln2 * (R - .5)) scaled = R


def test_mi_cam_authors_preset_matches_a_per_channel_sklearn_loop():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 5, 4, stride=4), nn.ReLU())  # 16x16 -> 4x4: nearest x4 blocks
    x = torch.randint(0, 256, (2, 3, 16, 16)).float()
    with MICAM(model, target_layers=["1"], preset="authors") as cam:
        cam(x)
        weights = cam.last_weights
    activations = model(x).detach()
    # tf.image.rgb_to_grayscale on a uint8 image: luma of the [0, 1] pixels, then trunc(g * 255.5)
    unit = 0.2989 * (x[:, 0] / 255) + 0.5870 * (x[:, 1] / 255) + 0.1140 * (x[:, 2] / 255)
    gray = (unit * 255.5).floor()
    assert torch.equal(cam.gray_image(x), gray)
    for i in range(2):
        up = F.interpolate(activations[i : i + 1], scale_factor=4, mode="nearest")[0]
        expected = [mutual_info_score(gray[i].flatten().numpy(), up[k].flatten().numpy()) for k in range(5)]
        np.testing.assert_allclose(weights[i].numpy(), expected, rtol=1e-9, atol=1e-12)


def test_the_authors_gray_is_8_bit_as_tensorflow_returns_it():
    cam = MICAM(nn.Sequential(nn.Conv2d(3, 2, 1)), preset="authors")
    pixels = torch.tensor([[0.0, 0, 0], [1, 1, 1], [128, 128, 128], [255, 255, 255], [255, 0, 0]])
    x = pixels.T.reshape(1, 3, 1, 5)
    # 0.9999 * v / 255 * 255.5, truncated: 0, 1.0018 -> 1, 128.24 -> 128, 255.47 -> 255; 0.2989 * 255.5 = 76.37
    assert cam.gray_image(x)[0, 0].tolist() == [0.0, 1.0, 128.0, 255.0, 76.0]
    assert MICAM(nn.Sequential(nn.Conv2d(3, 2, 1))).gray_image(x).dtype == torch.float32  # the float default


def test_mi_cam_authors_blur_is_applied_before_the_relu():
    model = nn.Sequential(nn.Conv2d(3, 2, 4, stride=4))
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32) * 255
    with MICAM(model, preset="authors") as cam:
        blurred = cam(x)
    with MICAM(model, preset="authors", blur=False) as cam:
        sharp = cam(x)
    assert not torch.allclose(blurred, sharp)
    assert cam.settings["blur"] is None and cam.settings["estimator"] == "reference"


# ---------------------------------------------------------------- gradient methods, closed form
HEAD = torch.tensor([[2.0, -1.0, 0.5], [-1.0, 1.0, 1.0]])


def gradient_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Target layer = copies of R, G, B; score_c = sum_k HEAD[c, k] * mean(A_k)."""
    torch.manual_seed(7)
    x = torch.rand(1, 3, 5, 5)
    return LinearHead(channel_picker([0, 1, 2]), HEAD), x, x[0]


@pytest.mark.parametrize("category", [0, 1])
def test_grad_cam_and_xgrad_cam_by_hand(category):
    model, x, activations = gradient_model()
    gradient = HEAD[category] / 25  # d score / d A_k(x, y) for a mean over 5x5 positions
    expected = unit((gradient[:, None, None] * activations).sum(0).clamp(min=0))
    for method in (GradCAM, XGradCAM):  # XGrad-CAM: sum_xy (A / sum A) * g = g for a constant g
        with method(model, target_layers=["conv"]) as cam:
            torch.testing.assert_close(cam(x, targets=[category])[0], expected)
            torch.testing.assert_close(cam.last_weights[0], gradient, rtol=1e-5, atol=1e-7)


def test_grad_cam_plus_plus_by_hand():
    model, x, activations = gradient_model()
    g = HEAD[0] / 25
    totals = activations.sum(dim=(1, 2))
    coefficient = g**2 / (2 * g**2 + totals * g**3 + 1e-6)
    weights = 25 * coefficient * g.clamp(min=0)
    with GradCAMPlusPlus(model, target_layers=["conv"]) as cam:
        maps = cam(x, targets=0)
        torch.testing.assert_close(cam.last_weights[0], weights)
    torch.testing.assert_close(maps[0], unit((weights[:, None, None] * activations).sum(0).clamp(min=0)))


def test_eigen_cam_rank_one_activations_by_hand():
    # A_k(x, y) = u_k * s(x, y): the first principal direction is u / |u|, the projection |u| (s - mean s).
    s = torch.arange(16.0).view(4, 4) ** 1.5
    u = torch.tensor([1.0, 2.0, 0.5])
    conv = nn.Conv2d(1, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(u.view(3, 1, 1, 1))
    with EigenCAM(nn.Sequential(conv), target_layers=["0"]) as cam:
        maps = cam(s[None, None])
        torch.testing.assert_close(cam.last_weights[0], u / u.norm())
    torch.testing.assert_close(maps[0], unit((s - s.mean()).clamp(min=0)))


# ---------------------------------------------------------------- Score-CAM against a slow reference
def slow_score_cam_weights(model: nn.Module, x: torch.Tensor, activations: torch.Tensor, category: int) -> torch.Tensor:
    weights = torch.zeros(activations.shape[1])
    for k in range(activations.shape[1]):
        up = F.interpolate(activations[None, None, 0, k], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        if up.max() == up.min():
            continue
        mask = (up - up.min()) / (up.max() - up.min())
        with torch.no_grad():
            weights[k] = torch.softmax(model(x * mask), dim=1)[0, category]
    return weights


def test_score_cam_matches_a_slow_reference_and_batching_does_not_matter(tiny_cnn, tiny_batch):
    x = tiny_batch[:2]
    activations = tiny_cnn.features(x).detach()
    results = []
    for batch_size in (1, 4, 64):
        with ScoreCAM(tiny_cnn, target_layers=["features.3"], batch_size=batch_size) as cam:
            maps = cam(x, targets=[2, 4])
            results.append((maps, cam.last_weights))
    for i, category in enumerate([2, 4]):
        expected = slow_score_cam_weights(tiny_cnn, x[i : i + 1], activations[i : i + 1], category)
        torch.testing.assert_close(results[0][1][i], expected, rtol=1e-5, atol=1e-7)
        expected_map = F.interpolate(
            (expected[:, None, None] * activations[i]).sum(0).clamp(min=0)[None, None], size=(16, 16), mode="bilinear"
        )[0, 0]
        torch.testing.assert_close(results[0][0][i], unit(expected_map), rtol=1e-5, atol=1e-6)
    for maps, weights in results[1:]:
        torch.testing.assert_close(maps, results[0][0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(weights, results[0][1], rtol=1e-5, atol=1e-7)


def test_score_cam_skips_constant_channels_and_can_subtract_the_baseline(tiny_cnn, tiny_batch):
    x = tiny_batch[:2]
    with ScoreCAM(tiny_cnn, target_layers=["features.3"]) as cam:
        cam(x, targets=[1, 3])
        plain = cam.last_weights.clone()
    with ScoreCAM(tiny_cnn, target_layers=["features.3"], subtract_baseline=True) as cam:
        cam(x, targets=[1, 3])
        shifted = cam.last_weights
    with torch.no_grad():
        baseline = torch.softmax(tiny_cnn(torch.zeros_like(x)), dim=1)[:, [1, 3]].diagonal()
    for i in range(2):
        active = plain[i] != 0
        torch.testing.assert_close(shifted[i, active], plain[i, active] - baseline[i])


def test_score_cam_pads_chunks_to_few_shapes_where_cudnn_autotunes(tiny_cnn, tiny_batch, monkeypatch):
    """On CUDA with cudnn.benchmark each new batch shape is autotuned: chunks are padded to multiples
    of 64 (or the buffer size), and the padding rows never change a weight."""
    x = torch.cat([tiny_batch] * 30)  # 90 images x K channels: a ragged last chunk
    with ScoreCAM(tiny_cnn, target_layers=["features.3"], batch_size=200) as cam:
        cam(x, targets=[i % 5 for i in range(90)])
        expected = cam.last_weights.clone()
    shapes: list[int] = []
    monkeypatch.setattr(ScoreCAM, "_tuned_shapes", staticmethod(lambda inputs: True))
    with ScoreCAM(tiny_cnn, target_layers=["features.3"], batch_size=200) as cam:
        handle = tiny_cnn.register_forward_pre_hook(lambda module, args: shapes.append(args[0].shape[0]))
        try:
            cam(x, targets=[i % 5 for i in range(90)])
            padded = cam.last_weights.clone()
        finally:
            handle.remove()
    torch.testing.assert_close(padded, expected)
    masked_batches = shapes[1:]  # the first pass records the activations
    assert masked_batches and all(n == 200 or n % 64 == 0 for n in masked_batches), masked_batches
    assert 200 in masked_batches and any(n != 200 for n in masked_batches)
