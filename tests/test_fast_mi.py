"""The fused MI routes against the straightforward computation, scikit-learn, and a memory bound."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import mutual_info_score
from torch import nn

from micam import MICAM, mutual_information
from micam.estimators import fused as fused_module
from micam.estimators import fused_available, upsampled_mutual_information

ROOT = Path(__file__).resolve().parents[1]
needs_fused = pytest.mark.skipif(not fused_available(), reason="numba is not installed: only the chunked route exists")


def _maps(batch: int, channels: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Maps with the awkward cases: ReLU zeros, ties, a constant map, a near-constant one, a mostly-zero one."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, h, w, generator=generator)
    x[:, ::2] = x[:, ::2].relu()
    x[:, 1] = x[:, 1].round()
    x[:, 3] = 0.0
    x[:, 5] = 7.0 + 1e-6 * x[:, 5]
    if channels > 7:
        x[:, 7] = (x[:, 7] - 1).relu()  # ~84 % zeros: one value group covering most pixels
    return x


def _gray(batch: int, size: tuple[int, int], seed: int = 1, levels: int | None = None) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    gray = torch.rand(batch, *size, generator=generator) * 255
    return gray.round() if levels is None else (gray / (256 / levels)).floor()


def _straightforward(maps: torch.Tensor, gray: torch.Tensor, mode: str, estimator: str, bins: int = 32) -> torch.Tensor:
    size = tuple(gray.shape[-2:])
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    up = F.interpolate(maps, size=size, mode=mode, **kwargs).flatten(2)
    return mutual_information(up, gray.flatten(1)[:, None], estimator, bins)  # type: ignore[arg-type]


def _assert_close(ours: torch.Tensor, expected: torch.Tensor) -> float:
    relative = ((ours - expected).abs() / expected.abs().clamp(min=1e-12)).max().item()
    assert relative <= 1e-6, relative
    zero = expected == 0
    assert torch.equal(ours[zero], expected[zero])  # constant maps stay exactly 0
    return relative


SHAPES = [
    ((2, 24, 14, 14), (224, 224)),
    ((1, 16, 7, 7), (224, 224)),
    ((2, 8, 13, 17), (200, 224)),
    ((1, 6, 5, 5), (17, 31)),
]
FUSED_CASES = [("bilinear", "binned"), ("nearest", "binned"), ("nearest", "reference")]


@pytest.mark.parametrize(("shape", "size"), SHAPES)
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("estimator", ["binned", "normalized", "reference"])
def test_auto_route_equals_the_straightforward_computation(shape, size, mode, estimator):
    maps = _maps(*shape)
    for gray in (_gray(shape[0], size), _gray(shape[0], size, levels=5)):
        ours = upsampled_mutual_information(maps, gray, mode, estimator)
        _assert_close(ours, _straightforward(maps, gray, mode, estimator))
        chunked = upsampled_mutual_information(maps, gray, mode, estimator, route="chunked")
        _assert_close(chunked, _straightforward(maps, gray, mode, estimator))


@needs_fused
@pytest.mark.parametrize(("mode", "estimator"), FUSED_CASES)
def test_fused_route_is_taken_and_exact_at_the_papers_shapes(mode, estimator):
    for channels, side in ((64, 14), (64, 7)):
        maps = _maps(2, channels, side, side, seed=side)
        gray = _gray(2, (224, 224))
        ours = upsampled_mutual_information(maps, gray, mode, estimator, bins=16, route="fused")
        _assert_close(ours, _straightforward(maps, gray, mode, estimator, bins=16))


@needs_fused
def test_fused_bilinear_pixels_are_atens_bit_for_bit():
    for h, w in ((14, 14), (7, 7), (28, 28)):
        assert fused_module._bilinear_matches_aten(h, w, 224, 224)


@needs_fused
def test_block_counts_equal_sklearn_on_block_replicated_maps():
    """The authors' computation: sklearn's MI of the gray image and each nearest-upsampled map."""
    maps = _maps(1, 8, 14, 14, seed=3)
    gray = _gray(1, (224, 224))
    ours = upsampled_mutual_information(maps, gray, "nearest", "reference", route="fused")[0]
    g = gray[0].numpy().ravel()
    for k in range(maps.shape[1]):
        block = np.repeat(np.repeat(maps[0, k].numpy(), 16, axis=0), 16, axis=1).ravel()
        assert ours[k].item() == pytest.approx(mutual_info_score(g, block), rel=1e-9, abs=1e-12)


def _adversarial_maps(h: int, w: int) -> torch.Tensor:
    """Maps whose upsampled values sit on or next to bin boundaries, or round in unusual steps."""
    generator = torch.Generator().manual_seed(h * 100 + w)
    ramp = torch.arange(h * w, dtype=torch.float32).reshape(h, w)
    noise = torch.randn(8, h, w, generator=generator)
    edge = torch.full((h, w), 7.0)
    edge.view(-1)[0], edge.view(-1)[-1] = 3.0, 11.0
    return torch.stack(
        [
            ramp,  # a ramp: rows of values spread evenly over the bins
            ramp.round() * 3 - 40,  # integer values, negative and positive: edges land on bin boundaries
            -noise[0].abs(),  # all non-positive
            noise[1] * 1e-40,  # subnormal values: rounding in absolute steps
            noise[2] * 1e30,
            torch.full((h, w), 7.0),  # constant non-zero: upsampled values may differ in the last bit
            (noise[3] - 1.5).relu(),  # mostly zero
            noise[4].relu() * (torch.rand(h, w, generator=generator) < 0.2),  # isolated peaks
            edge,  # 7 everywhere but a 3 and an 11: 7 is a bin edge, and upsampled 7s round to either side
        ]
    )[None]


@needs_fused
def test_tiled_binned_kernel_bounds_cover_rounding_across_a_bin_edge():
    """Maps within a few ulps of 7, a bin edge (lo 3, hi 11, 4 bins): computed pixels inside a tile round
    beyond its computed corners, so tile bounds without their rounding slack miscount some of these."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(23):  # the 23rd batch's map 29 is one that the bounds without slack miscount
        maps = 7.0 + torch.randint(-40, 41, (1, 64, 7, 7), generator=generator).float() * 2**-21
        batches.append(maps * (1 + torch.rand(1, 64, 1, 1, generator=generator) * 1e-3))
    maps = torch.cat(batches, dim=1)
    maps[..., 0, 0], maps[..., -1, -1] = 3.0, 11.0
    gray = _gray(1, (224, 224))
    ours = upsampled_mutual_information(maps, gray, "bilinear", "binned", bins=4, route="fused")
    torch.testing.assert_close(ours, _straightforward(maps, gray, "bilinear", "binned", 4), rtol=1e-10, atol=1e-13)


# Shapes where ATen's bilinear kernel rounds as the fused one (whole scale factors), and others (nearest only).
TILED_BILINEAR = [((7, 7), (224, 224)), ((14, 14), (224, 224)), ((28, 28), (224, 224)), ((4, 6), (64, 96))]
TILED_NEAREST = [((13, 17), (200, 224)), ((5, 5), (17, 31)), ((1, 1), (9, 9)), ((3, 4), (5, 6)), ((30, 20), (20, 16))]


@needs_fused
@pytest.mark.parametrize(
    ("map_size", "size", "mode"),
    [(*shape, "bilinear") for shape in TILED_BILINEAR]
    + [(*shape, "nearest") for shape in TILED_BILINEAR + TILED_NEAREST],
)
@pytest.mark.parametrize("bins", [4, 32, 256])
def test_tiled_binned_kernel_counts_every_pixel_as_the_straightforward_computation(map_size, size, mode, bins):
    """Tiles inside one bin are counted at once: the MI must be that of equal counts (agreement to
    1e-10, where one pixel counted in another bin moves it by more than 1e-8)."""
    maps = _adversarial_maps(*map_size)
    for gray in (_gray(1, size), _gray(1, size, levels=3)):
        ours = upsampled_mutual_information(maps, gray, mode, "binned", bins=bins, route="fused")
        expected = _straightforward(maps, gray, mode, "binned", bins)
        torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-13)


def test_fused_route_refuses_what_it_cannot_do_exactly():
    maps, gray = _maps(1, 8, 7, 7), _gray(1, (56, 56))
    with pytest.raises(RuntimeError, match="fused route"):
        upsampled_mutual_information(maps.double(), gray.double(), "bilinear", "binned", route="fused")
    with pytest.raises(RuntimeError, match="fused route"):
        upsampled_mutual_information(maps, gray, "bilinear", "reference", route="fused")


def test_switching_the_fused_route_off_falls_back(monkeypatch):
    monkeypatch.setenv("MICAM_FUSED", "0")
    assert not fused_available()
    maps, gray = _maps(1, 8, 7, 7), _gray(1, (56, 56))
    _assert_close(upsampled_mutual_information(maps, gray), _straightforward(maps, gray, "bilinear", "binned"))


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 32, 3, stride=4, padding=1), nn.ReLU(), nn.Conv2d(32, 40, 3, 2, 1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(40, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@pytest.mark.parametrize("preset", ["default", "authors"])
def test_mi_cam_weights_equal_the_straightforward_weights(preset):
    torch.manual_seed(0)
    model = _Tiny().eval()
    x = torch.rand(2, 3, 64, 64) * (255 if preset == "authors" else 1)
    cam = MICAM(model, target_layers=["features.2"], preset=preset)
    cam(x)
    with torch.no_grad():
        activations = model.features(x)
    gray = cam.gray_image(x)  # the method's own gray image (8-bit for the authors' preset)
    expected = _straightforward(activations, gray, cam.upsample_mode, cam.estimator, cam.bins)
    _assert_close(cam.last_weights, expected)


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, torch
    from micam.estimators import upsampled_mutual_information
    route, estimator, mode = sys.argv[1:4]
    torch.manual_seed(0)
    # MobileNetV2's last block at 224x224, batch 32: the layer's own activations and the gray images.
    activations = torch.randn(32, 1280, 7, 7).relu_()
    gray = torch.rand(32, 224, 224) * 255
    upsampled_mutual_information(activations[:1, :8], gray[:1], mode, estimator, route=route)  # load kernels
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    weights = upsampled_mutual_information(activations, gray, mode, estimator, route=route)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"extra_peak_mib": (after - before) / 1024, "shape": list(weights.shape)}))
    """
)


def _extra_peak(route: str, estimator: str, mode: str) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, route, estimator, mode],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["shape"] == [32, 1280]
    return report["extra_peak_mib"]


@pytest.mark.parametrize(
    ("route", "estimator", "mode"),
    [
        pytest.param("fused", "binned", "bilinear", marks=needs_fused),
        pytest.param("fused", "reference", "nearest", marks=needs_fused),
        ("chunked", "binned", "bilinear"),
    ],
)
def test_batch_32_mobilenet_v2_needs_under_1_gb_beyond_its_activations(route, estimator, mode):
    """Measured peak RSS growth (a naive upsample-everything computation would need ~8 GB)."""
    assert _extra_peak(route, estimator, mode) < 1024
