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
    assert result["average_drop"].item() == 0.0 and result["increase_in_confidence"].item() == 1.0


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
