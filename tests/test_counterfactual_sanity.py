"""Similarity measures, the counterfactual weight analysis and the cascading randomization check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from conftest import H_G, RGB, TinyCNN, mi_model
from micam import MICAM, GradCAM
from micam.estimators.fused import fused_available
from micam.metrics import (
    blur_box,
    cascading_randomization,
    counterfactual_weights,
    hog,
    parametrized_layers,
    set_box,
    spearman,
    ssim,
)
from micam.metrics.similarity import _hog_tensor, _ssim_window_2d


def entropy(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, (4, 50)), rng.normal(size=(4, 50))
    ours = spearman(torch.tensor(a, dtype=torch.float64), torch.tensor(b))
    for i in range(4):
        assert ours[i].item() == pytest.approx(spearmanr(a[i], b[i]).statistic, abs=1e-12)
    assert spearman(torch.tensor([1.0, 2, 3]), torch.tensor([3.0, 2, 1])).item() == pytest.approx(-1.0)


def test_ssim_by_hand():
    a = torch.rand(2, 20, 20)
    torch.testing.assert_close(ssim(a, a), torch.ones(2, dtype=torch.float64))
    # Constant maps c1, c2: variances and covariance vanish, SSIM = (2 c1 c2 + C1) / (c1^2 + c2^2 + C1).
    c1, c2, k1 = 0.2, 0.6, 0.01**2
    value = ssim(torch.full((1, 16, 16), c1), torch.full((1, 16, 16), c2)).item()
    assert value == pytest.approx((2 * c1 * c2 + k1) / (c1**2 + c2**2 + k1), rel=1e-6)


def test_ssim_equals_the_2d_float64_window_to_1e_6():
    generator = torch.Generator().manual_seed(0)
    for size in ((224, 224), (14, 14), (11, 30)):
        a = torch.rand(3, *size, generator=generator)
        b = (0.6 * a + 0.4 * torch.rand(3, *size, generator=generator)) ** 2  # related, not equal
        smooth = F.avg_pool2d(a[:, None], 5, stride=1, padding=2)[:, 0]  # a CAM-like smooth map
        for x, y in ((a, b), (smooth, a), (smooth, smooth * 0.5)):
            torch.testing.assert_close(ssim(x, y), _ssim_window_2d(x, y), rtol=0, atol=1e-6)


def test_hog_of_step_edges_by_hand():
    vertical = torch.zeros(1, 16, 16)
    vertical[..., 8:] = 1.0  # central differences of 1 in columns 7 and 8, angle 0 -> bin 0
    descriptor = hog(vertical).view(4, 9)
    torch.testing.assert_close(descriptor[:, 0], torch.full((4,), 8.0, dtype=torch.float64))
    assert descriptor[:, 1:].abs().sum() == 0
    horizontal = vertical.transpose(1, 2)  # angle pi/2 -> bin 4
    assert hog(horizontal).view(4, 9)[:, 4].tolist() == [8.0] * 4


@pytest.mark.skipif(not fused_available(), reason="numba is not installed")
def test_hog_kernel_equals_the_tensor_code():
    # The numba pass bins by sign tests against the boundaries; the tensor code by atan2. Integer maps
    # give exact axis gradients (on a boundary when orientations = 6) and zero ones; odd sizes leave
    # partial cells out; maps smaller than a cell have no cells at all.
    generator = torch.Generator().manual_seed(0)
    smooth = F.interpolate(torch.rand(3, 1, 7, 7, generator=generator), size=(224, 224), mode="bilinear")[:, 0]
    cases = [
        smooth,
        smooth.double(),
        torch.rand(2, 37, 53, generator=generator),
        torch.randint(-2, 3, (2, 48, 40), generator=generator).float(),
        (torch.rand(2, 64, 64, generator=generator) > 0.5).float() * -1.0,
        torch.zeros(1, 16, 16),
        torch.rand(2, 5, 5, generator=generator),
    ]
    for maps in cases:
        for cell, orientations in ((8, 9), (4, 6), (3, 9), (4, 8), (8, 4), (5, 3), (4, 2), (4, 1), (8, 50)):
            fast = hog(maps, cell, orientations)
            assert fast.shape == (maps.shape[0], (maps.shape[1] // cell) * (maps.shape[2] // cell) * orientations)
            torch.testing.assert_close(fast, _hog_tensor(maps, cell, orientations), rtol=0, atol=1e-12)


def _hog_by_every_sign_test(maps: torch.Tensor, cell: int, orientations: int) -> torch.Tensor:
    """The rule the kernel implements, written out: fold each gradient into the upper half plane, count
    the boundaries whose sign test it passes (every one of them; the one at pi / 2 as u <= 0), add
    magnitudes in raster order."""
    x = maps.double().numpy()
    b, h, w = x.shape
    gx, gy = np.zeros_like(x), np.zeros_like(x)
    gx[:, :, 1:-1] = x[:, :, 2:] - x[:, :, :-2]
    gy[:, 1:-1, :] = x[:, 2:, :] - x[:, :-2, :]
    flip = (gy < 0) | ((gy == 0) & (gx < 0))
    u, v = np.where(flip, -gx, gx), np.where(flip, -gy, gy)
    bins = np.zeros(x.shape, dtype=np.int64)
    for k in range(1, orientations):
        if 2 * k == orientations:
            bins += u <= 0
        else:
            angle = k * math.pi / orientations
            bins += (v * math.cos(angle) - u * math.sin(angle)) >= 0
    magnitude = np.sqrt(gx * gx + gy * gy)
    cells_down, cells_across = h // cell, w // cell
    out = np.zeros((b, cells_down * cells_across * orientations))
    for n in range(b):
        for i in range(cells_down * cell):
            for j in range(cells_across * cell):
                out[n, ((i // cell) * cells_across + j // cell) * orientations + bins[n, i, j]] += magnitude[n, i, j]
    return torch.from_numpy(out)


@pytest.mark.skipif(not fused_available(), reason="numba is not installed")
@pytest.mark.parametrize("orientations", [3, 4, 6, 8, 9, 12, 50])
def test_hog_kernel_bins_as_testing_every_boundary(orientations):
    # The kernel makes only half of the sign tests (the boundaries on its gradient's side of pi / 2) and
    # chooses them by quadrant; its descriptor is bit for bit that of making all of them on the folded
    # gradient, ties included: integer maps put gradients exactly on 45 and 90 degrees (boundaries when
    # orientations is 4, 8 or 12), where a wrong tie moves a whole magnitude to the next bin. At 50
    # orientations the computed cosine of the pi / 2 boundary is negative (-1.6e-16).
    generator = torch.Generator().manual_seed(orientations)
    cases = [
        torch.randint(-2, 3, (2, 24, 20), generator=generator).float(),
        F.interpolate(torch.rand(2, 1, 5, 5, generator=generator), size=(32, 27), mode="bilinear")[:, 0],
        torch.randn(1, 17, 19, generator=generator, dtype=torch.float64),
    ]
    for maps in cases:
        assert torch.equal(hog(maps, 4, orientations), _hog_by_every_sign_test(maps, 4, orientations))


@pytest.mark.parametrize("orientations", [8, 50, 100])
def test_hog_bins_vertical_gradients_at_the_right_angle_boundary(orientations):
    # Rows of constant value: every gradient is exactly vertical (angle pi / 2), which is the boundary
    # orientations / 2 itself; atan2 gives pi / 2 exactly, and the kernel must agree (its computed
    # cos(pi / 2) is -1.6e-16 at 50 and 100 orientations, +6e-17 at 8).
    rows = torch.arange(16, dtype=torch.float32)[:, None].expand(16, 16)
    maps = torch.stack([rows, -rows])
    descriptor = hog(maps, 4, orientations).view(2, 16, orientations)
    torch.testing.assert_close(descriptor, _hog_tensor(maps, 4, orientations).view(2, 16, orientations), rtol=0, atol=0)
    assert descriptor[:, 4:12, orientations // 2].eq(32.0).all()  # inner cells: 16 pixels of |gy| = 2


def test_hog_kernel_runs_on_torchs_thread_count_with_the_same_descriptor():
    """The maps run in parallel on numba's threads, as many as torch's (a one-thread process stays at
    one); each map's histograms sum in the same order whatever the count."""
    numba = pytest.importorskip("numba")
    maps = F.interpolate(torch.rand(5, 1, 7, 7, generator=torch.Generator().manual_seed(3)), size=(64, 64))[:, 0]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = hog(maps)
        if fused_available():
            assert numba.get_num_threads() == 1
        torch.set_num_threads(2)
        two = hog(maps)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)
    assert torch.equal(one[2:3], hog(maps[2:3]))  # a map's descriptor does not depend on the others


def test_hog_refuses_empty_cells_and_orientations():
    for cell, orientations in ((0, 9), (8, 0)):
        with pytest.raises(ValueError, match="cell >= 1 and orientations >= 1"):
            hog(torch.rand(1, 16, 16), cell, orientations)


def test_hog_without_numba_uses_the_tensor_code(monkeypatch):
    monkeypatch.setenv("MICAM_FUSED", "0")
    maps = torch.rand(2, 24, 24)
    assert torch.equal(hog(maps), _hog_tensor(maps, 8, 9))


def test_counterfactual_mi_weights_by_hand():
    # do(top row = 0): G (1 on the top row) becomes constant, so its MI drops to 0; R keeps 6 of 16 ones.
    with MICAM(mi_model(), target_layers=["conv"], estimator="reference") as cam:
        result = counterfactual_weights(cam, RGB, set_box([0, 0, 3, 0], 0.0))
    expected = torch.tensor([[entropy(6 / 16), 0.0]], dtype=torch.float64)
    torch.testing.assert_close(result["counterfactual_weights"], expected)
    change = (abs(entropy(6 / 16) - math.log(2)) + H_G) / 2
    assert result["mean_abs_change"].item() == pytest.approx(change, abs=1e-12)
    assert result["relative_change"].item() == pytest.approx(change / ((math.log(2) + H_G) / 2), abs=1e-12)
    assert result["rank_correlation"].item() == pytest.approx(1.0)
    assert torch.equal(result["counterfactual_images"][0, :, 0], torch.zeros(3, 4))


def test_counterfactual_keeps_the_class_of_the_actual_image(tiny_batch):
    # Behind a GAP + linear head, Grad-CAM's weights are head.weight[c] / (h w) whatever the input:
    # an intervention leaves them unchanged, provided the same class c is explained.
    model = TinyCNN().eval()
    classes = model(tiny_batch[:2]).argmax(1)
    with GradCAM(model, target_layers=["features.3"]) as cam:
        result = counterfactual_weights(cam, tiny_batch[:2], blur_box([0, 0, 7, 7]))
    expected = (model.head.weight[classes] / 16).double().detach()
    torch.testing.assert_close(result["actual_weights"], expected)
    torch.testing.assert_close(result["counterfactual_weights"], expected)
    assert torch.equal(result["mean_abs_change"], torch.zeros(2, dtype=torch.float64))
    assert not torch.equal(result["counterfactual_images"], tiny_batch[:2])


def test_cascading_randomization_degrades_maps_and_leaves_the_model_alone(tiny_batch):
    model = TinyCNN().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layers = parametrized_layers(model)
    assert layers == ["head", "features.2", "features.0"]
    rows = cascading_randomization(model, lambda m: GradCAM(m, target_layers=["features.3"]), tiny_batch, seed=1)
    assert [row["layer"] for row in rows] == ["original", *layers]
    for key in ("ssim", "spearman", "hog"):
        torch.testing.assert_close(rows[0][key], torch.ones(3, dtype=torch.float64))
        assert float(rows[-1][key].mean()) < 0.9
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    again = cascading_randomization(model, lambda m: GradCAM(m, target_layers=["features.3"]), tiny_batch, seed=1)
    torch.testing.assert_close(again[-1]["map"], rows[-1]["map"])
    with pytest.raises(ValueError, match="unknown layers"):
        cascading_randomization(model, lambda m: MICAM(m), tiny_batch, layers=["nope"])
