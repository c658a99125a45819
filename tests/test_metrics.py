"""Metrics on tiny models whose scores are known by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from micam.metrics import (
    auc,
    box_mask,
    class_scores,
    classic_drop_increase,
    deletion_insertion,
    energy_pointing_game,
    make_baseline,
    paper_drop_increase,
    pointing_game,
)


class LeftHalfMean(nn.Module):
    """Two logits: (mean of the left half of channel 0, 0). Class 0's probability is sigmoid(mean)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = x[:, 0, :, : x.shape[-1] // 2].mean(dim=(1, 2))
        return torch.stack([left, torch.zeros_like(left)], dim=1)


ONES = torch.ones(1, 1, 4, 4)
LEFT = torch.zeros(1, 4, 4)
LEFT[..., :2] = 1.0


def test_class_scores_logit_and_probability():
    model = LeftHalfMean()
    assert class_scores(model, ONES, [0], "logit").item() == pytest.approx(1.0)
    assert class_scores(model, ONES, [0]).item() == pytest.approx(1 / (1 + math.exp(-1)))
    with pytest.raises(ValueError, match="one class per image"):
        class_scores(model, ONES, [0, 1])


def test_paper_average_drop_and_increase_by_hand():
    cam = torch.zeros(1, 4, 4)
    cam[0, :2, :2] = 1.0  # keeps the top-left quadrant: half of the left half
    result = paper_drop_increase(LeftHalfMean(), ONES, cam, [0], score="logit")
    assert result["score_full"].item() == pytest.approx(1.0)
    assert result["score_focused"].item() == pytest.approx(0.5)
    assert result["average_drop"].item() == pytest.approx(50.0)  # 100 * (1 - 0.5) / 1
    assert result["average_increase"].item() == pytest.approx(100.0)  # 100 * (0.5 - 0) / 0.5
    # With probabilities: Y = s(1), O = s(.5), B = s(0) = .5
    s = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    result = paper_drop_increase(LeftHalfMean(), ONES, cam, [0])
    assert result["average_drop"].item() == pytest.approx(100 * (s(1) - s(0.5)) / s(1), rel=1e-5)
    assert result["average_increase"].item() == pytest.approx(100 * (s(0.5) - 0.5) / s(0.5), rel=1e-5)


def test_classic_drop_and_increase_by_hand():
    half = torch.full((1, 4, 4), 0.5)
    result = classic_drop_increase(LeftHalfMean(), ONES, half, [0], score="logit")
    assert result["average_drop"].item() == pytest.approx(50.0)
    assert result["increase_in_confidence"].item() == 0.0
    result = classic_drop_increase(LeftHalfMean(), -ONES, half, [0], score="logit")  # -1 -> -0.5: a rise
    # a drop relative to a negative score is undefined (NaN), the increase is still counted
    assert math.isnan(result["average_drop"].item()) and result["increase_in_confidence"].item() == 1.0


def test_deletion_and_insertion_curves_by_hand():
    # Ranking: the 8 left-half pixels first (ties in raster order), 4 pixels (25 %) per step.
    result = deletion_insertion(LeftHalfMean(), ONES, LEFT, [0], steps=4, score="logit", batch_size=3)
    torch.testing.assert_close(result["deletion_curve"][0], torch.tensor([1.0, 0.5, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(result["insertion_curve"][0], torch.tensor([0.0, 0.5, 1.0, 1.0, 1.0]))
    assert result["deletion_auc"].item() == pytest.approx(0.25)
    assert result["insertion_auc"].item() == pytest.approx(0.75)
    paper = deletion_insertion(LeftHalfMean(), ONES, LEFT, [0], steps=4, score="logit", insertion_order="paper")
    torch.testing.assert_close(paper["insertion_curve"][0], torch.tensor([0.0, 0.0, 0.0, 0.5, 1.0]))
    torch.testing.assert_close(paper["deletion_curve"], result["deletion_curve"])


def test_deletion_insertion_batches_do_not_change_results():
    torch.manual_seed(0)
    images, maps = torch.rand(3, 1, 8, 8), torch.rand(3, 8, 8)
    small = deletion_insertion(LeftHalfMean(), images, maps, [0, 0, 0], steps=10, batch_size=4)
    large = deletion_insertion(LeftHalfMean(), images, maps, [0, 0, 0], steps=10, batch_size=1000)
    for key in small:
        torch.testing.assert_close(small[key], large[key])
    assert small["deletion_curve"].shape == (3, 11)


def test_auc_and_baselines():
    assert auc(torch.tensor([1.0, 1.0, 1.0])).item() == pytest.approx(1.0)
    assert auc(torch.tensor([0.0, 1.0])).item() == pytest.approx(0.5)
    x = torch.arange(8.0).view(1, 2, 2, 2)
    assert torch.equal(make_baseline(x, "zero"), torch.zeros_like(x))
    torch.testing.assert_close(make_baseline(x, "mean")[0, :, 0, 0], torch.tensor([1.5, 5.5]))
    assert torch.equal(make_baseline(x, 2.0), torch.full_like(x, 2.0))
    with pytest.raises(ValueError, match="baseline"):
        make_baseline(x, "noise")


def test_pointing_game_with_and_without_tolerance():
    cam = torch.zeros(1, 10, 10)
    cam[0, 2, 7] = 1.0  # peak at x = 7, y = 2
    box = [[[0, 0, 4, 4]]]  # 3 px left of the peak
    assert pointing_game(cam, box, tolerance=0).item() == 0.0
    assert pointing_game(cam, box, tolerance=2).item() == 0.0
    assert pointing_game(cam, box, tolerance=3).item() == 1.0
    assert pointing_game(cam, [[[5, 0, 9, 4], [0, 0, 1, 1]]], tolerance=0).item() == 1.0  # any box counts
    far = [[[0, 6, 3, 9]]]  # dx = 4, dy = 4: distance sqrt(32) ~ 5.66
    assert pointing_game(cam, far, tolerance=5.6).item() == 0.0
    assert pointing_game(cam, far, tolerance=5.7).item() == 1.0


def test_energy_pointing_game_by_hand():
    cam = torch.ones(2, 4, 4)
    cam[1] = 0.0
    boxes = [[[0, 0, 1, 1], [1, 1, 2, 2]], [[0, 0, 3, 3]]]  # union of two overlapping 2x2 boxes: 7 px
    shares = energy_pointing_game(cam, boxes)
    assert shares[0].item() == pytest.approx(7 / 16)
    assert math.isnan(shares[1].item())
    assert box_mask([[0, 0, 1, 1], [1, 1, 2, 2]], (4, 4)).sum().item() == 7
    with pytest.raises(ValueError, match="x0 <= x1"):
        energy_pointing_game(cam[:1], [[[3, 0, 1, 1]]])


def test_drop_increase_on_logits_is_nan_where_a_denominator_is_not_positive():
    from micam.metrics import classic_drop_increase, paper_drop_increase

    class Offset(torch.nn.Module):
        """One logit: the image's mean minus 0.6 (negative for dark images)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(1, 2, 3))[:, None] - 0.6

    images = torch.stack([torch.full((1, 4, 4), 1.0), torch.full((1, 4, 4), 0.5)])
    maps = torch.zeros(2, 4, 4)
    maps[:, :, :2] = 1.0  # keeps the left half
    result = paper_drop_increase(Offset(), images, maps, [0, 0], score="logit")
    # image 0: Y = 0.4, O = 0.5 - 0.6 = -0.1 -> AD = 100 * 0.5 / 0.4 = 125, AI undefined (O <= 0)
    assert result["average_drop"][0].item() == pytest.approx(125.0)
    assert math.isnan(result["average_increase"][0].item())
    # image 1: Y = -0.1 -> AD undefined; never a negative percentage
    assert math.isnan(result["average_drop"][1].item())
    classic = classic_drop_increase(Offset(), images, maps, [0, 0], score="logit")
    assert classic["average_drop"][0].item() == pytest.approx(125.0) and math.isnan(classic["average_drop"][1].item())
    from micam.metrics import area_matched_drop_increase

    area = area_matched_drop_increase(Offset(), images, maps, [0, 0], percentages=[50], score="logit")
    # image 0 keeps its left half as above: AD 125, AI undefined; image 1's Y is negative: AD undefined
    assert area["drop_curve"][0, 0].item() == pytest.approx(125.0) and math.isnan(area["increase_curve"][0, 0].item())
    assert math.isnan(area["average_drop"][1].item())


def test_deletion_auc_integrates_over_the_fraction_of_pixels_actually_removed():
    from micam.metrics.deletion_insertion import changed_fractions

    # 15 x 15 = 225 pixels, 100 steps: 3 per step, everything removed after 75 steps
    fractions = changed_fractions(225, 100)
    assert fractions[75].item() == 1.0 and fractions[74].item() == pytest.approx(222 / 225)
    falling = torch.clamp(1 - torch.arange(101) / 75, min=0)  # score falls linearly to 0 at step 75
    assert auc(falling[None], fractions).item() == pytest.approx(0.5)  # a triangle over x in [0, 1]
    assert auc(falling[None]).item() == pytest.approx(0.375)  # evenly spaced x: squeezed into [0, 0.75]
    # 224 x 224: 502 pixels per step, the last step 478
    fractions = changed_fractions(224 * 224, 100)
    assert fractions[1].item() == pytest.approx(502 / 50176) and fractions[100].item() == 1.0


def test_deletion_insertion_reports_its_fractions_and_uses_them(tiny_cnn):
    images = torch.rand(1, 3, 15, 15, generator=torch.Generator().manual_seed(0))
    maps = torch.rand(1, 15, 15, generator=torch.Generator().manual_seed(1))
    result = deletion_insertion(tiny_cnn, images, maps, [1], steps=100)
    assert result["fractions"][75].item() == 1.0
    torch.testing.assert_close(result["deletion_auc"], auc(result["deletion_curve"], result["fractions"]))
    # every point from step 75 on is the fully deleted image
    assert torch.allclose(result["deletion_curve"][0, 75:], result["deletion_curve"][0, 75:76].expand(26))


def test_ssim_on_maps_smaller_than_its_window():
    from micam.metrics import ssim

    small = torch.rand(2, 7, 5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(small, small), torch.ones(2, dtype=torch.float64))  # a 5 x 5 window fits
    other = torch.rand(2, 7, 5, generator=torch.Generator().manual_seed(1))
    assert (ssim(small, other) < 0.9).all()
    big = torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(2))
    assert torch.equal(ssim(big, big * 0.5), ssim(big, big * 0.5, window=11))  # large maps: unchanged
    with pytest.raises(ValueError, match="one shape"):
        ssim(small, big)


class _ValuesAsScores(nn.Module):
    """Scores = the input's values in H x W x C order: class k reads value k of the flattened image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1)


def test_authors_indexing_changes_values_of_the_flattened_hwc_image():
    images = torch.ones(1, 3, 2, 2)
    maps = torch.tensor([[[4.0, 3.0], [2.0, 1.0]]])  # pixel 0 first, then 1, 2, 3
    model = _ValuesAsScores()
    # value 1 = pixel (0, 0), channel 1: changed at step 2 (their indices 0..s-1 are values, not pixels)
    theirs = deletion_insertion(model, images, maps, [1], steps=4, score="logit", indexing="authors", auc_x="even")
    assert theirs["deletion_curve"][0].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    # value 5 = pixel (0, 1), channel 2: never changed (only the first H x W = 4 of 12 values ever are)
    theirs = deletion_insertion(model, images, maps, [5], steps=4, score="logit", indexing="authors", auc_x="even")
    assert theirs["deletion_curve"][0].tolist() == [1.0] * 5
    # whole pixels: pixel (0, 0) is deleted at step 1, every channel
    ours = deletion_insertion(model, images, maps, [1], steps=4, score="logit")
    assert ours["deletion_curve"][0].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    # insertion restores the same values from the baseline
    theirs = deletion_insertion(model, images, maps, [1], steps=4, score="logit", indexing="authors", auc_x="even")
    assert theirs["insertion_curve"][0].tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]


def test_the_authors_increase_baseline_keeps_only_the_pixels_where_the_map_is_zero():
    images = torch.ones(1, 3, 2, 2)
    maps = torch.tensor([[[1.0, 0.6], [0.2, 0.0]]])
    model = _ValuesAsScores()
    # class 9 = value 9 of the H x W x C image = pixel (1, 1), channel 0, where the map is 0
    stated = paper_drop_increase(model, images, maps, [9], score="logit")
    theirs = paper_drop_increase(model, images, maps, [9], score="logit", increase_baseline="authors")
    assert stated["score_baseline"].item() == 0.0  # the empty image
    assert theirs["score_baseline"].item() == 1.0  # their B keeps the zero-map pixel
    assert stated["average_drop"].item() == theirs["average_drop"].item() == 100.0  # O: map < 0.5 removed
