"""Targets beyond classification, each checked against values worked out by hand on a tiny model, and
scores read off any output: the class axis is dim 1, for dense outputs too."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from micam import GradCAM, ScoreCAM
from micam.metrics import class_scores, deletion_insertion, paper_drop_increase
from micam.targets import (
    BinaryClassifierOutputTarget,
    DetectionBoxTarget,
    RegressionOutputTarget,
    SemanticSegmentationTarget,
    SimilarityTarget,
)


class PooledHead(nn.Module):
    """conv -> ReLU -> global average pool -> linear: d(output_j)/d(A_k(i, j')) = W[j, k] / (h * w)."""

    def __init__(self, outputs: int, features: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, features, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(features, outputs)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


def _pooled(outputs: int) -> PooledHead:
    torch.manual_seed(0)
    return PooledHead(outputs).eval()


def test_binary_target_explains_the_positive_logit_and_its_negation():
    model, x = _pooled(1), torch.randn(1, 3, 6, 6)
    w = model.head.weight.detach()[0] / 36
    with GradCAM(model, target_layers=["features"]) as cam:
        cam(x, targets=[BinaryClassifierOutputTarget(1)])
        torch.testing.assert_close(cam.last_weights[0], w, rtol=1e-6, atol=1e-7)
        cam(x, targets=[BinaryClassifierOutputTarget(0)])
        torch.testing.assert_close(cam.last_weights[0], -w, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="0 or 1"):
        BinaryClassifierOutputTarget(2)
    logit = torch.tensor([0.7])
    assert float(BinaryClassifierOutputTarget(0)(logit)) == pytest.approx(-0.7)


def test_single_unit_probability_is_the_sigmoid():
    model, x = _pooled(1), torch.randn(3, 3, 6, 6)
    with torch.no_grad():
        expected = torch.sigmoid(model(x))[:, 0]
    torch.testing.assert_close(class_scores(model, x, [0, 0, 0]), expected)


def test_regression_target_picks_a_value_and_a_direction():
    model, x = _pooled(2), torch.randn(1, 3, 5, 5)
    with GradCAM(model, target_layers=["features"]) as cam:
        cam(x, targets=[RegressionOutputTarget(index=1, sign=-1)])
        torch.testing.assert_close(cam.last_weights[0], -model.head.weight.detach()[1] / 25, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="index="):
        RegressionOutputTarget()(torch.tensor([1.0, 2.0]))
    assert float(RegressionOutputTarget()(torch.tensor([3.5]))) == 3.5


class TinySegmenter(nn.Module):
    """conv features -> 1x1 conv to C class maps at the same resolution: (B, C, H, W) logits."""

    def __init__(self, classes: int = 3, features: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, features, 3, padding=1), nn.ReLU())
        self.classifier = nn.Conv2d(features, classes, 1)

    def forward(self, x):
        return self.classifier(self.features(x))


def test_segmentation_target_sums_the_class_over_the_mask():
    torch.manual_seed(1)
    model, x = TinySegmenter().eval(), torch.randn(1, 3, 6, 6)
    mask = torch.zeros(6, 6)
    mask[1:4, 2:5] = 1  # 9 pixels
    target = SemanticSegmentationTarget(2, mask)
    with torch.no_grad():
        logits = model(x)[0]
    assert float(target(logits)) == pytest.approx(float(logits[2][mask.bool()].sum()), rel=1e-6)
    with GradCAM(model, target_layers=["features"]) as cam:
        cam(x, targets=[target])
        # d(sum_mask logit_2)/d(A_k(i, j)) = W[2, k] * mask(i, j): the mean is W[2, k] * 9 / 36
        expected = model.classifier.weight.detach()[2, :, 0, 0] * 9 / 36
        torch.testing.assert_close(cam.last_weights[0], expected, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="resolution"):
        target(torch.zeros(3, 4, 4))


def test_score_cam_on_a_segmentation_output_takes_the_softmax_over_the_classes():
    torch.manual_seed(2)
    model, x = TinySegmenter().eval(), torch.randn(1, 3, 6, 6)
    mask = torch.ones(6, 6)
    target = SemanticSegmentationTarget(1, mask)
    with ScoreCAM(model, target_layers=["features"]) as cam:
        cam(x, targets=[target])
        weights = cam.last_weights[0]
    with torch.no_grad():
        activations = model.features(x)[0]
        expected, wrong_axis = [], []
        for k in range(activations.shape[0]):
            a = activations[k]
            m = (a - a.min()) / (a.max() - a.min())
            logits = model(x * m)[0]
            expected.append(target(torch.softmax(logits, dim=0)))  # over the 3 classes
            wrong_axis.append(target(torch.softmax(logits, dim=-1)))  # over the image width
    torch.testing.assert_close(weights, torch.stack(expected), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(weights, torch.stack(wrong_axis), rtol=1e-3)


def test_metrics_score_dense_outputs_by_the_class_mean_over_positions():
    torch.manual_seed(3)
    model, x = TinySegmenter().eval(), torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        probabilities = torch.softmax(model(x), dim=1)
    expected = probabilities[[0, 1], [2, 0]].mean(dim=(1, 2))
    torch.testing.assert_close(class_scores(model, x, [2, 0]), expected, rtol=1e-6, atol=1e-7)
    maps = torch.rand(2, 6, 6)
    result = paper_drop_increase(model, x, maps, [2, 0])
    torch.testing.assert_close(result["score_full"], expected, rtol=1e-6, atol=1e-7)
    curves = deletion_insertion(model, x, maps, [2, 0], steps=4)
    torch.testing.assert_close(curves["deletion_curve"][:, 0], expected, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="out of range"):
        class_scores(model, x, [3, 0])


def test_similarity_target_is_the_cosine_to_the_reference_embedding():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    x = torch.randn(1, 3, 5, 5)
    reference = torch.tensor([1.0, -2.0, 0.5, 3.0])
    with torch.no_grad():
        e = model(x)[0]
    target = SimilarityTarget(reference)
    cosine = float(e @ reference / (e.norm() * reference.norm()))
    assert float(target(e)) == pytest.approx(cosine, rel=1e-6)
    # d cos / d e = r / (|e||r|) - (e.r) e / (|e|^3 |r|); each of the 25 positions gets 1/25 of it
    gradient = reference / (e.norm() * reference.norm()) - (e @ reference) * e / (e.norm() ** 3 * reference.norm())
    with GradCAM(model, target_layers=["1"]) as cam:
        cam(x, targets=[target])
        torch.testing.assert_close(cam.last_weights[0], gradient / 25, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="all zeros"):
        SimilarityTarget(torch.zeros(4))


def test_detection_target_adds_iou_and_score_of_the_best_matching_box_of_the_same_label():
    output = {
        "boxes": torch.tensor([[0.0, 0.0, 10.0, 8.0], [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]),
        "labels": torch.tensor([1, 2, 1]),
        "scores": torch.tensor([0.9, 0.8, 0.7]),
    }
    # reference 1: label 1 at [0, 0, 10, 10] -> detection 0 (IoU 80 / 100 = 0.8; detection 1 is label 2)
    # reference 2: label 1 at [20, 20, 30, 25] -> detection 2 (IoU 50 / 100 = 0.5, not above 0.5): nothing
    target = DetectionBoxTarget([1, 1], torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 25.0]]))
    assert float(target(output)) == pytest.approx(0.8 + 0.9)
    loose = DetectionBoxTarget([1, 1], target.boxes, iou_threshold=0.4)
    assert float(loose(output)) == pytest.approx(0.8 + 0.9 + 0.5 + 0.7)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0).long(), "scores": torch.zeros(0)}
    assert float(target(empty)) == 0.0


def test_a_torchvision_detector_is_explained_through_its_own_detections():
    torch.manual_seed(5)
    detector = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=3, box_score_thresh=0.0
    ).eval()
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        found = detector(x)[0]
    target = DetectionBoxTarget(found["labels"][:2], found["boxes"][:2])
    with GradCAM(detector, target_layers=["backbone.body.16"]) as cam:
        maps = cam(x, targets=[target])
        assert isinstance(cam.last_output, list) and set(cam.last_output[0]) == {"boxes", "labels", "scores"}
    assert maps.shape == (1, 128, 128) and float(maps.max()) == 1.0 and float(maps.min()) == 0.0
    with pytest.raises(ValueError, match="callable"), GradCAM(detector, target_layers=["backbone.body.16"]) as cam:
        cam(x, targets=[1])  # a class index cannot be read off a list of dicts


def test_numpy_and_tensor_class_indices_are_targets_like_ints():
    import numpy as np

    model, x = _pooled(5), torch.randn(2, 3, 6, 6)
    with GradCAM(model, target_layers=["features"]) as cam:
        expected = cam(x, targets=[3, 1])
        for targets in (np.array([3, 1]), torch.tensor([3, 1]), [np.int64(3), torch.tensor(1)]):
            torch.testing.assert_close(cam(x, targets=list(targets)), expected)
        torch.testing.assert_close(cam(x, targets=np.int64(3)), cam(x, targets=3))
