"""Metrics that do not reward coverage: area-matched AD / AI and ROAD, by hand and against pytorch-grad-cam."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
from torch import nn

from micam.metrics import (
    METRIC_SPECS,
    TRACKERS,
    MetricBatch,
    MetricOptions,
    area_matched_drop_increase,
    noisy_linear_imputation,
    paper_drop_increase,
    road,
)
from micam.metrics.specs import TABLE_TITLES


def _linear_model(bias: float = 10.0) -> nn.Module:
    """Class 0's logit is bias + sum_i w_i x_i on a 1 x 4 x 4 image, w_i = i + 1 in raster order; class 1's is 0."""
    linear = nn.Linear(16, 2)
    with torch.no_grad():
        linear.weight.zero_()
        linear.weight[0] = torch.arange(1.0, 17.0)
        linear.bias.copy_(torch.tensor([bias, 0.0]))
    return nn.Sequential(nn.Flatten(), linear).eval()


WEIGHTS = torch.arange(1.0, 17.0).view(1, 4, 4)
ONES = torch.ones(1, 1, 4, 4)


def test_area_matched_hand_values():
    # Map ranks pixels like their weights: the top 4 (p = 25) weigh 16 + 15 + 14 + 13 = 58, the top 8
    # (p = 50) 16 + ... + 9 = 100. Y = 10 + 136, B = 10 (baseline 0), O_25 = 68, O_50 = 110.
    result = area_matched_drop_increase(_linear_model(), ONES, WEIGHTS / 16, [0], (25, 50), score="logit")
    drop = [100 * 78 / 146, 100 * 36 / 146]
    increase = [100 * 58 / 68, 100 * 100 / 110]
    assert result["drop_curve"][0].tolist() == pytest.approx(drop, abs=1e-4)
    assert result["increase_curve"][0].tolist() == pytest.approx(increase, abs=1e-4)
    assert result["average_drop"].item() == pytest.approx(sum(drop) / 2, abs=1e-4)
    assert result["average_increase"].item() == pytest.approx(sum(increase) / 2, abs=1e-4)
    assert result["score_kept"][0].tolist() == pytest.approx([68.0, 110.0])
    assert (result["score_full"].item(), result["score_baseline"].item()) == pytest.approx((146.0, 10.0))


def test_area_matched_baseline_value_and_ties():
    # Removed pixels take the baseline (2): O_25 = 10 + 58 + 2 * (136 - 58). A constant map keeps the
    # first 4 pixels in raster order (weights 1..4).
    result = area_matched_drop_increase(_linear_model(), ONES, WEIGHTS / 16, [0], (25,), 2.0, score="logit")
    assert result["score_kept"].item() == pytest.approx(10 + 58 + 2 * 78)
    flat = area_matched_drop_increase(_linear_model(), ONES, torch.full((1, 4, 4), 0.3), [0], (25,), score="logit")
    assert flat["score_kept"].item() == pytest.approx(10 + 1 + 2 + 3 + 4)


def test_same_ranking_same_area_matched_values_whatever_the_coverage():
    wide, narrow = WEIGHTS / 16, (WEIGHTS / 16) ** 4  # same order; 9 vs 3 pixels at >= 0.5
    assert int((wide >= 0.5).sum()) == 9 and int((narrow >= 0.5).sum()) == 3
    model, images = _linear_model(), torch.rand(1, 1, 4, 4) + 0.5
    first = area_matched_drop_increase(model, images, wide, [0], score="logit")
    second = area_matched_drop_increase(model, images, narrow, [0], score="logit")
    for key in ("drop_curve", "increase_curve", "average_drop", "average_increase"):
        assert torch.equal(first[key], second[key]), key
    paper_wide = paper_drop_increase(model, images, wide, [0], score="logit")["average_drop"]
    paper_narrow = paper_drop_increase(model, images, narrow, [0], score="logit")["average_drop"]
    assert paper_wide.item() < paper_narrow.item()  # the thresholded AD rewards the wider map


def test_area_matched_equals_the_paper_on_a_binary_map_of_that_area():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    images = torch.randn(3, 3, 8, 8)
    maps = torch.zeros(3, 8, 8)
    maps.view(3, -1)[:, :16] = 1.0  # 25 % of the pixels, in raster order
    baseline = torch.tensor([0.1, -0.2, 0.3]).view(1, 3, 1, 1)
    area = area_matched_drop_increase(model, images, maps, [0, 1, 2], (25,), baseline)
    paper = paper_drop_increase(model, images, maps, [0, 1, 2], baseline=baseline)
    torch.testing.assert_close(area["average_drop"], paper["average_drop"])
    torch.testing.assert_close(area["average_increase"], paper["average_increase"])


def test_imputing_one_pixel_gives_its_neighbours_weighted_mean():
    images = torch.zeros(1, 1, 5, 5)
    images[0, 0, 1:4, 1:4] = torch.tensor([[12.0, 6.0, 0.0], [12.0, 99.0, 0.0], [0.0, 6.0, 0.0]])
    removed = torch.zeros(1, 5, 5, dtype=torch.bool)
    removed[0, 2, 2] = True
    # edges 6 + 12 + 0 + 6 weigh 1/6, corners 12 + 0 + 0 + 0 weigh 1/12: 4 + 1
    imputed = noisy_linear_imputation(images, removed, noise=0.0)
    assert imputed[0, 0, 2, 2].item() == pytest.approx(5.0, abs=1e-6)
    assert torch.equal(imputed[~removed[:, None]], images[~removed[:, None]])
    # a corner pixel has 3 neighbours in the image, renormalized: (2 * 6 + 2 * 3 + 5) / 5
    corner = torch.zeros(1, 2, 3, 3)
    corner[0, :, 0, 1], corner[0, :, 1, 0], corner[0, :, 1, 1] = 6.0, 3.0, 5.0
    removed = torch.zeros(1, 3, 3, dtype=torch.bool)
    removed[0, 0, 0] = True
    assert noisy_linear_imputation(corner, removed, noise=0.0)[0, :, 0, 0].tolist() == pytest.approx([4.6, 4.6])


def test_imputation_noise_is_seeded_and_only_on_removed_pixels():
    images = torch.rand(2, 3, 8, 8)
    removed = torch.rand(2, 8, 8) < 0.5
    clean = noisy_linear_imputation(images, removed, noise=0.0)
    noisy = noisy_linear_imputation(images, removed, noise=0.01, seed=3)
    assert torch.equal(noisy, noisy_linear_imputation(images, removed, noise=0.01, seed=3))
    assert torch.equal(noisy[~removed[:, None].expand_as(images)], images[~removed[:, None].expand_as(images)])
    difference = (noisy - clean)[removed[:, None].expand_as(images)]
    assert 0 < difference.abs().max().item() < 0.1
    with pytest.raises(ValueError, match="keep at least one pixel"):
        noisy_linear_imputation(images, torch.ones(2, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="percentages"):
        road(_linear_model(), ONES, WEIGHTS / 16, [0], (100,))


def test_imputation_and_road_match_pytorch_grad_cam():
    """Noise 0 on both sides (pytorch-grad-cam draws its noise from the global RNG per image, so only
    noiseless imputation compares exactly). On 10 x 10 images with distinct map values its percentile
    threshold at 100 - p removes exactly our top (MoRF) or bottom (LeRF) p % pixels."""
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 5)
    ).eval()
    images = torch.randn(2, 3, 10, 10)
    maps = torch.stack([torch.randperm(100).float().view(10, 10) / 100 for _ in range(2)])
    classes = [1, 3]

    removed = maps[:1] >= 0.4
    theirs = NoisyLinearImputer(noise=0.0)(images[0], (~removed[0]).float())
    for solver in ("direct", "cg"):  # the same sparse system: a direct solve on both sides, and ours by CG
        ours = noisy_linear_imputation(images[:1], removed, noise=0.0, tolerance=1e-10, solver=solver)[0]
        assert (ours - theirs).abs().max().item() < (1e-6 if solver == "direct" else 1e-4), solver

    percentages = (10, 20, 30, 40, 50, 60, 70, 80, 90)
    result = road(model, images, maps, classes, percentages, noise=0.0, tolerance=1e-10)
    targets = [ClassifierOutputSoftmaxTarget(c) for c in classes]
    cams = maps.numpy().astype(np.float32)
    for order, remover in (("morf", RemoveMostRelevantFirst), ("lerf", RemoveLeastRelevantFirst)):
        for i, p in enumerate(percentages):
            metric = PerturbationConfidenceMetric(remover(100 - p, NoisyLinearImputer(noise=0.0)))
            expected = torch.from_numpy(metric(images, cams, targets, model, return_diff=False))
            assert (result[f"{order}_curve"][:, i] - expected).abs().max().item() < 1e-4, (order, p)
    torch.testing.assert_close(result["combined"], (result["lerf"] - result["morf"]) / 2)


def test_direct_and_conjugate_gradient_imputation_agree(monkeypatch):
    # Isolated holes, a removed block touching two borders, a removed row and a nearly empty image.
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(4, 3, 24, 20, generator=generator)
    removed = torch.rand(4, 24, 20, generator=generator) < 0.1
    removed[1, :15, 8:] = True
    removed[2, 10] = True
    removed[3] = True
    removed[3, 23, 0] = False  # one kept pixel: every other one is imputed from it (all equal to it)
    direct = noisy_linear_imputation(images, removed, noise=0.0, solver="direct")
    iterative = noisy_linear_imputation(images, removed, noise=0.0, solver="cg", tolerance=1e-12)
    torch.testing.assert_close(direct, iterative, rtol=0, atol=1e-6)
    torch.testing.assert_close(direct[3], images[3, :, 23, 0, None, None].expand(3, 24, 20), rtol=0, atol=1e-6)
    assert torch.equal(noisy_linear_imputation(images[:1], torch.zeros(1, 24, 20, dtype=torch.bool)), images[:1])
    with pytest.raises(ValueError, match="solver"):
        noisy_linear_imputation(images, removed, solver="lu")  # type: ignore[arg-type]
    assert torch.equal(noisy_linear_imputation(images, removed, noise=0.0), direct)  # "auto" on the CPU: direct
    # Above DIRECT_MAX_PIXELS pixels per image "auto" solves by conjugate gradients (the LU's fill grows faster).
    monkeypatch.setattr(importlib.import_module("micam.metrics.road"), "DIRECT_MAX_PIXELS", 24 * 20 - 1)
    assert torch.equal(
        noisy_linear_imputation(images, removed, noise=0.0),
        noisy_linear_imputation(images, removed, noise=0.0, solver="cg"),
    )


def test_road_orders_on_a_linear_model():
    # Image, map and weights all rise in raster order: MoRF imputes the brightest, heaviest pixels from
    # darker neighbours (the logit falls), LeRF the darkest from brighter ones (it rises).
    images, maps = WEIGHTS.expand(2, 1, 4, 4), WEIGHTS.expand(2, 4, 4) / 16
    result = road(_linear_model(), images, maps, [0, 0], (25, 50), noise=0.0, score="logit")
    assert tuple(result["morf_curve"].shape) == (2, 2)
    assert (result["morf_curve"] < result["score_full"][:, None]).all()
    assert (result["lerf_curve"] > result["score_full"][:, None]).all()


def test_trackers_are_registered_and_run():
    groups = {tracker.group: tracker for tracker in TRACKERS}
    area_type, road_type = groups["area-matched"], groups["road"]
    assert [t.group for t in TRACKERS][:4] == ["drop-increase", "classic", "deletion-insertion", "localization"]
    assert {spec.table for t in (area_type, road_type) for spec in t.specs} <= set(TABLE_TITLES)
    paired = {c for c, spec in METRIC_SPECS.items() if spec.paired and c.startswith(("area", "road"))}
    assert paired == {"area_matched_drop", "area_matched_increase", "road_morf", "road_lerf"}
    assert "area_matched_drop_p10" in area_type.names_of() and "road_combined" in road_type.names_of()

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    images, maps = torch.randn(2, 3, 8, 8), torch.rand(2, 8, 8)
    batch = MetricBatch(images, maps, [0, 2], model=model)
    area = area_type.from_options(MetricOptions(pixel_baseline=0.0, batch_size=5))
    values = area.update(batch)
    assert set(values) == set(area.names) and all(v.shape == (2,) for v in values.values())
    direct = area_matched_drop_increase(model, images, maps, [0, 2])
    torch.testing.assert_close(values["area_matched_drop"], direct["average_drop"].double())
    torch.testing.assert_close(values["area_matched_increase_p50"], direct["increase_curve"][:, -1].double())

    tracker = road_type.from_options(MetricOptions(batch_size=7))
    tracker.update(batch)
    tracker.update(batch)
    summary = tracker.summary()
    assert summary["road_morf"]["n"] == 4 and not math.isnan(summary["road_lerf"]["mean"])
    assert tuple(tracker.mean_curves()["morf"].shape) == (9,)  # type: ignore[attr-defined]
    # batching changes no value (the noise field is one seeded draw)
    again = road(model, images, maps, [0, 2], batch_size=64)
    torch.testing.assert_close(
        torch.tensor(tracker.values["road_morf"][:2], dtype=torch.float64), again["morf"].double()
    )
