"""The MI estimators against scikit-learn and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score, normalized_mutual_info_score

import micam.estimators.plugin as mi_module
from micam import mutual_information
from micam.estimators import equal_width_bin_codes


def numpy_bin_codes(x: np.ndarray, bins: int) -> np.ndarray:
    lo, hi = x.min(), x.max()
    if hi == lo:
        return np.zeros(x.shape, dtype=int)
    return np.clip(np.floor((x - lo) * (bins / (hi - lo))), 0, bins - 1).astype(int)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def test_reference_equals_sklearn_on_ties_and_continuous_values(rng):
    n = 500
    rows = [
        rng.integers(0, 4, n).astype(float),  # many ties
        rng.normal(size=n),  # all distinct
        rng.normal(size=n).round(1),  # some ties
        np.full(n, 2.5),  # constant
        rng.integers(0, 50, n) * 0.1,
    ]
    a = np.stack(rows)
    for b in (rng.normal(size=n).round(1), rng.integers(0, 3, n).astype(float), np.zeros(n), rng.normal(size=n)):
        ours = mutual_information(torch.tensor(a), torch.tensor(b), estimator="reference").numpy()
        expected = np.array([mutual_info_score(b, row) for row in a])
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-9)


def test_reference_constant_inputs_give_exact_zero(rng):
    b = torch.tensor(rng.normal(size=100))
    assert mutual_information(torch.full((100,), 3.0, dtype=torch.float64), b, "reference").item() == 0.0
    assert mutual_information(b, torch.zeros(100, dtype=torch.float64), "reference").item() == 0.0
    for estimator in ("binned", "normalized"):
        value = mutual_information(torch.ones(2, 100), torch.rand(100), estimator)
        assert torch.equal(value, torch.zeros(2, dtype=torch.float64))


def test_hand_computed_values():
    x = torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert mutual_information(x, x.clone(), "reference").item() == pytest.approx(math.log(2), abs=1e-12)
    assert mutual_information(x, torch.tensor([0.0, 1.0, 0.0, 1.0]), "reference").item() == pytest.approx(0, abs=1e-12)
    # Three equiprobable values against a copy: ln 3; normalized: exactly 1.
    y = torch.tensor([0.0, 1.0, 2.0] * 4)
    assert mutual_information(y, y * 7 + 1, "binned", bins=3).item() == pytest.approx(math.log(3), abs=1e-12)
    assert mutual_information(y, y * 7 + 1, "normalized", bins=3).item() == pytest.approx(1.0, abs=1e-12)


def test_binned_and_normalized_equal_sklearn_on_the_bin_codes(rng):
    a = rng.normal(size=(6, 2000)) ** 3
    b = rng.normal(size=2000) + a[0]
    for bins in (2, 7, 32):
        codes_b = numpy_bin_codes(b, bins)
        binned = mutual_information(torch.tensor(a), torch.tensor(b), "binned", bins=bins).numpy()
        normalized = mutual_information(torch.tensor(a), torch.tensor(b), "normalized", bins=bins).numpy()
        for i, row in enumerate(a):
            codes_a = numpy_bin_codes(row, bins)
            assert binned[i] == pytest.approx(mutual_info_score(codes_b, codes_a), abs=1e-9)
            assert normalized[i] == pytest.approx(normalized_mutual_info_score(codes_b, codes_a), abs=1e-9)
        assert (normalized >= 0).all() and (normalized <= 1).all()
        assert binned[0] > 5 * binned[1:].max()  # the dependent pair stands out


def test_bin_codes_follow_the_documented_rule(rng):
    x = rng.normal(size=(3, 1000))
    for bins in (2, 10, 32):
        np.testing.assert_array_equal(
            equal_width_bin_codes(torch.tensor(x), bins).numpy(), np.stack([numpy_bin_codes(r, bins) for r in x])
        )
    assert equal_width_bin_codes(torch.tensor([0.0, 0.5, 1.0]), 2).tolist() == [0, 1, 1]


def test_broadcasting_and_chunking_match_row_by_row(rng, monkeypatch):
    a = torch.tensor(rng.normal(size=(2, 3, 300)))
    b = torch.tensor(rng.normal(size=(2, 1, 300)))
    for estimator in ("binned", "normalized", "reference"):
        whole = mutual_information(a, b, estimator)
        assert whole.shape == (2, 3) and whole.dtype == torch.float64
        monkeypatch.setattr(mi_module, "_SAMPLES_PER_CHUNK", 300)  # one row per chunk
        chunked = mutual_information(a, b, estimator)
        monkeypatch.undo()
        single = torch.stack(
            [torch.stack([mutual_information(a[i, j], b[i, 0], estimator) for j in range(3)]) for i in range(2)]
        )
        torch.testing.assert_close(whole, single, rtol=0, atol=1e-12)
        torch.testing.assert_close(chunked, single, rtol=0, atol=1e-12)
    shared = mutual_information(a, b[0, 0], "reference")
    torch.testing.assert_close(
        shared[1], torch.stack([mutual_information(a[1, j], b[0, 0], "reference") for j in range(3)])
    )


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "message"),
    [
        (torch.rand(5), torch.rand(4), {}, "pair samples"),
        (torch.rand(0), torch.rand(0), {}, "empty"),
        (torch.tensor([1.0, float("nan")]), torch.rand(2), {}, "NaN"),
        (torch.rand(5), torch.rand(5), {"estimator": "kde"}, "unknown estimator"),
        (torch.rand(5), torch.rand(5), {"bins": 1}, "bins"),
        (torch.rand(5), torch.rand(5), {"bins": 5000}, "bins"),
    ],
)
def test_bad_arguments_are_explained(a, b, kwargs, message):
    with pytest.raises(ValueError, match=message):
        mutual_information(a, b, **kwargs)
