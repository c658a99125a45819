"""The value-based estimators "ksg" and "hsic": accuracy on Gaussian pairs, invariances, MI-CAM use."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

import micam
from micam import MICAM
from micam.estimators import (
    ESTIMATORS,
    Estimator,
    HSICEstimator,
    KSGEstimator,
    fused_available,
    get_estimator,
    hsic_dependence,
    ksg_mutual_information,
    ksg_subsample_error,
    subsample_indices,
    upsampled_mutual_information,
)
from micam.estimators import fused as fused_module
from micam.estimators import subsample as subsample_module
from micam.estimators.hsic import textbook_hsic
from micam.imaging import grayscale, upsample
from micam.methods import mi_cam as mi_cam_module

RHOS = (0.0, 0.5, 0.9)
N = 2048  # the default subsample: every sample is used
# KSG (k = 3) on 2,048 Gaussian samples: over 8 seeds its error was at most 0.043 nats for these rhos.
KSG_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def gaussian_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """(3, N) x and y with correlation RHOS[i] in row i."""
    generator = torch.Generator().manual_seed(2024)
    x = torch.randn(3, N, generator=generator, dtype=torch.float64)
    z = torch.randn(3, N, generator=generator, dtype=torch.float64)
    rho = torch.tensor(RHOS, dtype=torch.float64)[:, None]
    return x, rho * x + (1 - rho**2).sqrt() * z


def test_ksg_matches_the_gaussian_mutual_information(gaussian_pairs):
    x, y = gaussian_pairs
    values = micam.mutual_information(x, y, estimator="ksg")
    truth = torch.tensor([-0.5 * math.log(1 - r * r) for r in RHOS], dtype=torch.float64)
    assert values.dtype == torch.float64 and values.shape == (3,)
    assert (values - truth).abs().max().item() < KSG_TOLERANCE, (values, truth)
    torch.testing.assert_close(values, ksg_mutual_information(x, y), rtol=0, atol=0)


def test_hsic_is_zero_for_independent_pairs_and_grows_with_correlation(gaussian_pairs):
    x, y = gaussian_pairs
    raw = micam.mutual_information(x, y, estimator="hsic")
    normalized = micam.mutual_information(x, y, estimator="hsic-normalized")
    for values in (raw, normalized):
        assert values.dtype == torch.float64 and (values >= 0).all()
        assert values[0] < 0.05 * values[1] and values[1] < values[2]
    assert raw[0] < 1e-3 and raw[2] > 0.03  # measured: 1.4e-4, 0.011, 0.054
    assert normalized[2] <= 1.0
    torch.testing.assert_close(raw[2], hsic_dependence(x[2], y[2]), rtol=0, atol=0)
    torch.testing.assert_close(normalized[2], hsic_dependence(x[2], y[2], normalized=True), rtol=0, atol=0)


@pytest.mark.parametrize("entries", [1 << 22, 1 << 16, 1000])  # one band; the CPU's blocks; 3-row bands, one ragged
def test_hsic_equals_the_textbook_formula_whatever_the_blocks(monkeypatch, entries):
    # The Gram matrices are formed one band of their upper triangle at a time, off-diagonal pairs counted twice.
    monkeypatch.setattr(subsample_module, "_CPU_ENTRIES_PER_BLOCK", entries)
    generator = torch.Generator().manual_seed(11)
    x = torch.randn(3, 301, generator=generator, dtype=torch.float64).relu()  # ties at 0, as ReLU maps have
    y = x[0] + torch.randn(301, generator=generator, dtype=torch.float64)
    raw = hsic_dependence(x, y)
    normalized = hsic_dependence(x, y, normalized=True)
    for row in range(3):
        expected = textbook_hsic(x[row], y)
        torch.testing.assert_close(raw[row], expected, rtol=1e-10, atol=0)
        scale = (textbook_hsic(x[row], x[row]) * textbook_hsic(y, y)).sqrt()
        torch.testing.assert_close(normalized[row], expected / scale, rtol=1e-10, atol=0)
    assert raw[0] > 10 * raw[1:].max()  # y depends on row 0 only
    # Two distinct gray rows, one shared by two maps: each has its own Gram bands and sums.
    pairs = torch.stack([y, x[1] - y, y])
    paired = hsic_dependence(x, pairs)
    for row in range(3):
        torch.testing.assert_close(paired[row], textbook_hsic(x[row], pairs[row]), rtol=1e-10, atol=0)


@pytest.mark.parametrize("entries", [1 << 22, 1000])
def test_ksg_does_not_depend_on_the_block_size(monkeypatch, entries):
    generator = torch.Generator().manual_seed(12)
    x = torch.randn(3, 500, generator=generator)
    y = x + torch.randn(3, 500, generator=generator)
    expected = ksg_mutual_information(x, y)  # the CPU's own blocks
    monkeypatch.setattr(subsample_module, "_CPU_ENTRIES_PER_BLOCK", entries)
    assert torch.equal(ksg_mutual_information(x, y), expected)  # distances and neighbour counts are exact


@pytest.mark.parametrize("estimator", ["ksg", "hsic", "hsic-normalized"])
def test_an_affine_rescaling_of_one_variable_changes_nothing(gaussian_pairs, estimator):
    x, y = gaussian_pairs[0][1:, :1024], gaussian_pairs[1][1:, :1024]
    before = micam.mutual_information(x, y, estimator=estimator)
    after = micam.mutual_information(-3.0 * x + 7.0, y, estimator=estimator)
    # KSG: exact but for the tie-breaking jitter, which x -> -x turns over (a neighbour count or two moves).
    torch.testing.assert_close(after, before, rtol=0, atol=2e-4 if estimator == "ksg" else 1e-9)


@pytest.mark.parametrize("estimator", ["ksg", "hsic", "hsic-normalized"])
def test_value_based_estimators_broadcast_like_the_others_and_give_zero_for_constants(estimator):
    generator = torch.Generator().manual_seed(1)
    a = torch.rand(2, 3, 300, generator=generator)
    b = torch.rand(300, generator=generator)
    values = micam.mutual_information(a, b, estimator=estimator)
    assert values.shape == (2, 3) and values.dtype == torch.float64
    one_by_one = torch.stack([micam.mutual_information(row, b, estimator=estimator) for row in a.reshape(6, 300)])
    torch.testing.assert_close(values.reshape(6), one_by_one, rtol=0, atol=1e-12)
    assert micam.mutual_information(torch.full((300,), 2.0), b, estimator=estimator).item() == 0.0
    assert micam.mutual_information(b, torch.zeros(300), estimator=estimator).item() == 0.0
    assert micam.mutual_information(a[:, :0], b, estimator=estimator).shape == (2, 0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        micam.mutual_information(torch.full((300,), math.nan), b, estimator=estimator)


def test_the_subsample_is_seeded_and_the_same_everywhere():
    first = subsample_indices(50_176)
    assert first.shape == (2048,) and first.unique().numel() == 2048 and int(first.max()) < 50_176
    assert torch.equal(first, subsample_indices(50_176))
    assert not torch.equal(first, subsample_indices(50_176, seed=1))
    assert torch.equal(subsample_indices(100), torch.arange(100))
    generator = torch.Generator().manual_seed(3)
    a, b = torch.rand(4, 5000, generator=generator), torch.rand(5000, generator=generator)
    torch.testing.assert_close(
        micam.mutual_information(a, b, "ksg"), micam.mutual_information(a, b, "ksg"), rtol=0, atol=0
    )
    ours = ksg_mutual_information(a, b, samples=256)
    assert not torch.equal(ours, ksg_mutual_information(a, b, samples=256, seed=1))


def test_settings_are_checked():
    with pytest.raises(ValueError, match="k must be a positive integer"):
        KSGEstimator(k=0)
    with pytest.raises(ValueError, match="samples must be an integer >= 2"):
        HSICEstimator(samples=1)
    with pytest.raises(ValueError, match="jitter"):
        KSGEstimator(jitter=-1.0)
    with pytest.raises(ValueError, match="needs more than 3 samples"):
        ksg_mutual_information(torch.rand(3), torch.rand(3))
    # No bins: any bins value is accepted (and ignored), as for "reference".
    assert get_estimator("ksg", 1) is ESTIMATORS["ksg"] and get_estimator("hsic", "x") is ESTIMATORS["hsic"]
    assert all(ESTIMATORS[name].value_based for name in ("ksg", "hsic", "hsic-normalized"))
    assert not ESTIMATORS["binned"].value_based
    with pytest.raises(NotImplementedError, match="computes from codes"):
        Estimator.from_values(ESTIMATORS["binned"], torch.rand(1, 5), torch.rand(1, 5))


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )


@pytest.mark.parametrize("estimator", ["ksg", "hsic", "hsic-normalized"])
@pytest.mark.parametrize("layer", ["0", "1"])
def test_mi_cam_takes_the_value_based_estimators(estimator, layer):
    model = _tiny_model().eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    with MICAM(model, target_layers=[layer], estimator=estimator) as cam:
        maps = cam(x)
        weights = cam.last_weights
        assert cam.settings["estimator"] == estimator and cam.settings["bins"] is None
    assert maps.shape == (2, 16, 16) and maps.min() >= 0 and maps.max() <= 1
    assert weights.shape == (2, 4) and (weights >= 0).all() and weights.sum() > 0
    activations = model[: int(layer) + 1](x).detach()
    straightforward = micam.mutual_information(
        upsample(activations, (16, 16), "bilinear").flatten(2), grayscale(x).flatten(1)[:, None], estimator
    )
    torch.testing.assert_close(weights, straightforward, rtol=0, atol=1e-12)


@pytest.mark.parametrize("estimator", ["ksg", "hsic"])
def test_value_based_estimators_have_no_fused_route(estimator):
    activations, gray = torch.rand(1, 2, 4, 4), torch.rand(1, 16, 16)
    assert "no fused kernel" in (ESTIMATORS[estimator].fused_blocker("nearest") or "")
    with pytest.raises(RuntimeError, match="fused route cannot be used"):
        upsampled_mutual_information(activations, gray, "nearest", estimator, route="fused")
    if fused_available():
        reason = fused_module._fused_blocker(activations, gray, "bilinear", ESTIMATORS[estimator], (16, 16))
        assert reason is not None and "subsample" in reason
    auto = upsampled_mutual_information(activations, gray, "bilinear", estimator)
    torch.testing.assert_close(
        auto, upsampled_mutual_information(activations, gray, "bilinear", estimator, route="chunked")
    )


def test_shuffling_the_gray_pixels_destroys_what_ksg_measures():
    # A smooth 64 x 64 gray image and a ReLU map that is a function of it (half its pixels tied at 0).
    rows = torch.linspace(0, 1, 64)
    gray = (torch.sin(6 * rows)[:, None] * torch.cos(4 * rows)[None, :]).flatten()
    activation = (gray - gray.median()).relu()
    shuffled = gray[torch.randperm(gray.numel(), generator=torch.Generator().manual_seed(0))]
    matched = micam.mutual_information(activation, gray, "ksg").item()
    broken = micam.mutual_information(activation, shuffled, "ksg").item()
    print(f"KSG(map; gray) = {matched:.3f} nats, KSG(map; shuffled gray) = {broken:.3f} nats")
    assert matched > 1.0 and broken < 0.05 * matched
    assert micam.mutual_information(activation, shuffled, "hsic") < 0.05 * micam.mutual_information(
        activation, gray, "hsic"
    )


def test_the_subsample_error_is_measured_against_a_larger_sample():
    generator = torch.Generator().manual_seed(6)
    x = torch.randn(2, 8192, generator=generator, dtype=torch.float64)
    y = 0.7 * x + math.sqrt(1 - 0.49) * torch.randn(2, 8192, generator=generator, dtype=torch.float64)
    error = ksg_subsample_error(x, y, samples=512, reference_samples=2048)
    torch.testing.assert_close(error.estimate, ksg_mutual_information(x, y, samples=512), rtol=0, atol=0)
    torch.testing.assert_close(error.reference, ksg_mutual_information(x, y, samples=2048), rtol=0, atol=0)
    truth = -0.5 * math.log(1 - 0.49)
    assert (error.reference - truth).abs().max() < 0.03
    torch.testing.assert_close(error.absolute, (error.estimate - error.reference).abs())
    torch.testing.assert_close(error.relative, error.absolute / error.reference)
    assert (error.absolute < 0.1).all()
    same = ksg_subsample_error(x[0, :1000], y[0, :1000], samples=2048)  # fewer samples than the subsample
    assert same.absolute.item() == 0.0 and same.relative.item() == 0.0


def test_mi_cam_warns_once_about_reference_with_bilinear_upsampling(monkeypatch):
    monkeypatch.setitem(mi_cam_module._warned, "reference_ties", False)
    monkeypatch.setenv("MICAM_FUSED", "0")  # the warning is about the settings, whatever the route
    model = _tiny_model().eval()
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with MICAM(model, target_layers=["1"], estimator="reference", upsample_mode="nearest") as cam:
            cam(x)
        with MICAM(model, target_layers=["1"], estimator="binned") as cam:
            cam(x)
    with (
        pytest.warns(UserWarning, match=r"1 ulp apart.*0\.07 nats") as caught,
        MICAM(model, target_layers=["1"], estimator="reference") as cam,
    ):
        cam(x)
        cam(x)
    assert len([w for w in caught if "ulp" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process
        with MICAM(model, target_layers=["1"], estimator="reference") as cam:
            cam(x)
