"""What to explain: a target turns one sample's model output into the scalar score to explain.

The callables follow pytorch-grad-cam's convention (they receive one sample's output: a 1-D tensor
of logits for a classifier, (C, H, W) scores for a segmentation model, a dict of boxes, labels and
scores for a torchvision detector), so targets written for that library work here unchanged.

=================================  =====================================================
task                               target
=================================  =====================================================
classification                     an int, ``ClassifierOutputTarget`` (logit) or
                                   ``ClassifierOutputSoftmaxTarget`` (probability)
binary classifier (one logit)      ``BinaryClassifierOutputTarget(1)`` / ``(0)``
regression                         ``RegressionOutputTarget(index, sign)``
semantic segmentation              ``SemanticSegmentationTarget(category, mask)``
embedding (re-identification)      ``SimilarityTarget(reference_embedding)``
detection (torchvision)            ``DetectionBoxTarget(labels, boxes)``
=================================  =====================================================
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any, SupportsInt, cast

import torch
from torch import Tensor

from micam.outputs import gather_classes, per_class

Target = Callable[[Any], Tensor]
TargetsSpec = None | int | Sequence[int | Target] | Target


class ClassifierOutputTarget:
    """The raw output (logit) of one class."""

    def __init__(self, category: int) -> None:
        self.category = int(category)

    def __call__(self, model_output: Tensor) -> Tensor:
        if model_output.dim() == 1:
            return model_output[self.category]
        return model_output[:, self.category]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.category})"


class ClassifierOutputSoftmaxTarget(ClassifierOutputTarget):
    """The softmax probability of one class."""

    def __call__(self, model_output: Tensor) -> Tensor:
        return super().__call__(torch.softmax(model_output, dim=-1))


class BinaryClassifierOutputTarget:
    """A single-logit (sigmoid) classifier: the logit for the positive class (``category=1``), its
    negative for the negative class (``category=0``), so that either decision can be explained."""

    def __init__(self, category: int) -> None:
        if category not in (0, 1):
            raise ValueError(f"a binary classifier's category is 0 or 1, got {category!r}")
        self.category = category

    def __call__(self, model_output: Tensor) -> Tensor:
        logit = model_output.reshape(-1)
        if logit.numel() != 1:
            raise ValueError(f"BinaryClassifierOutputTarget needs one logit per sample, got {logit.numel()}")
        return logit[0] if self.category == 1 else -logit[0]

    def __repr__(self) -> str:
        return f"BinaryClassifierOutputTarget({self.category})"


class RegressionOutputTarget:
    """One regressed value (``index`` into a sample's flattened output; None for a single output),
    times ``sign``: +1 explains what raises the prediction, -1 what lowers it."""

    def __init__(self, index: int | None = None, sign: float = 1.0) -> None:
        if sign not in (1, -1, 1.0, -1.0):
            raise ValueError(f"sign must be +1 or -1, got {sign!r}")
        self.index, self.sign = index, float(sign)

    def __call__(self, model_output: Tensor) -> Tensor:
        values = model_output.reshape(-1)
        if self.index is None and values.numel() != 1:
            raise ValueError(f"the model regresses {values.numel()} values; pass index= to pick one")
        return self.sign * values[0 if self.index is None else self.index]

    def __repr__(self) -> str:
        return f"RegressionOutputTarget(index={self.index}, sign={self.sign:+g})"


class SemanticSegmentationTarget:
    """The summed score of ``category`` over the pixels of ``mask`` (as pytorch-grad-cam defines
    it): explains why the model labels that region with that class. The mask is (H, W) at the
    output's resolution (bool or 0/1 float; soft weights allowed)."""

    def __init__(self, category: int, mask: Tensor) -> None:
        self.category = int(category)
        self.mask = torch.as_tensor(mask).float()

    def __call__(self, model_output: Tensor) -> Tensor:
        scores = model_output[self.category]
        if scores.shape != self.mask.shape:
            raise ValueError(
                f"the mask is {tuple(self.mask.shape)} but the model's class scores are {tuple(scores.shape)}; "
                "pass a mask at the output's resolution"
            )
        return (scores * self.mask.to(scores.device, scores.dtype)).sum()

    def __repr__(self) -> str:
        return f"SemanticSegmentationTarget({self.category}, mask of {int(self.mask.gt(0).sum())} pixels)"


class SimilarityTarget:
    """Cosine similarity between a sample's embedding (its output, flattened) and a reference
    embedding: explains what makes this image look like the reference (re-identification, retrieval)."""

    def __init__(self, reference: Tensor) -> None:
        self.reference = torch.as_tensor(reference).detach().float().reshape(-1)
        if not bool(self.reference.norm() > 0):
            raise ValueError("the reference embedding is all zeros; cosine similarity is undefined")

    def __call__(self, model_output: Tensor) -> Tensor:
        embedding = model_output.reshape(-1)
        if embedding.numel() != self.reference.numel():
            raise ValueError(f"embedding has {embedding.numel()} values, the reference {self.reference.numel()}")
        reference = self.reference.to(embedding.device, embedding.dtype)
        return torch.nn.functional.cosine_similarity(embedding, reference, dim=0)

    def __repr__(self) -> str:
        return f"SimilarityTarget(reference of {self.reference.numel()} values)"


class DetectionBoxTarget:
    """For a torchvision-style detector (one dict of ``boxes`` (N, 4) xyxy, ``labels`` (N,), ``scores``
    (N,) per image): for each reference box, the detection of the same label that overlaps it most,
    counted when its IoU exceeds ``iou_threshold``, adds IoU + its score; the target is the sum (0 when
    nothing matches). Explains why the detector found these objects where it did."""

    def __init__(self, labels: Sequence[int] | Tensor, boxes: Tensor, iou_threshold: float = 0.5) -> None:
        self.labels = torch.as_tensor(labels).long().reshape(-1)
        self.boxes = torch.as_tensor(boxes).float().reshape(-1, 4)
        if self.labels.numel() != self.boxes.shape[0]:
            raise ValueError(f"{self.labels.numel()} labels for {self.boxes.shape[0]} boxes; pass one label per box")
        self.iou_threshold = iou_threshold

    def __call__(self, model_output: dict[str, Tensor]) -> Tensor:
        boxes, labels, scores = model_output["boxes"], model_output["labels"], model_output["scores"]
        total = scores.sum() * 0  # keeps the graph (and the device) when nothing matches
        if boxes.numel() == 0:
            return total
        overlaps = _box_iou(self.boxes.to(boxes.device, boxes.dtype), boxes)  # (references, detections)
        same = self.labels.to(labels.device)[:, None] == labels[None, :]
        overlaps = torch.where(same, overlaps, torch.zeros_like(overlaps))
        best, index = overlaps.max(dim=1)
        for iou, i in zip(best, index, strict=True):
            if float(iou.detach()) > self.iou_threshold:
                total = total + iou + scores[i]
        return total

    def __repr__(self) -> str:
        return f"DetectionBoxTarget({self.labels.tolist()}, {self.boxes.shape[0]} boxes)"


def _box_iou(a: Tensor, b: Tensor) -> Tensor:
    """(len(a), len(b)) intersection over union of xyxy boxes."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(dim=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp_min(torch.finfo(a.dtype).tiny)


def normalize_targets(targets: TargetsSpec, output: Tensor | None, batch_size: int) -> list[Target]:
    """One target per sample: None -> each sample's top class, an int -> that class for all."""
    if targets is None:
        if not isinstance(output, Tensor):
            raise ValueError(
                "targets=None needs class scores to pick the top class; pass targets (callables for "
                "detectors and other non-classifier outputs) or an output_selector"
            )
        return [ClassifierOutputTarget(int(c)) for c in _class_scores(output).argmax(dim=1).tolist()]
    if isinstance(targets, bool):
        raise TypeError("targets must be None, an int, a list of ints or a list of callables")
    if _is_class_index(targets):
        return [ClassifierOutputTarget(_as_index(targets))] * batch_size
    if callable(targets):
        return [targets] * batch_size
    targets = list(cast(Sequence[Any], targets))  # not a class index, not a callable: a sequence
    if len(targets) != batch_size:
        raise ValueError(f"got {len(targets)} targets for a batch of {batch_size}; pass one per sample")
    return [ClassifierOutputTarget(_as_index(t)) if _is_class_index(t) else cast(Target, t) for t in targets]


def _is_class_index(value: object) -> bool:
    """An int, a numpy integer or a one-element integer tensor (not a bool)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Integral):
        return True
    if not isinstance(value, Tensor) or value.numel() != 1:
        return False
    return not value.is_floating_point() and value.dtype != torch.bool


def _as_index(value: object) -> int:
    return int(cast(SupportsInt, value))  # an int, a numpy integer or a one-element tensor: _is_class_index


def all_callables(targets: TargetsSpec) -> bool:
    """Whether ``targets`` are callables only (they may read outputs that are not score tensors)."""
    if targets is None or isinstance(targets, int):
        return False
    if callable(targets):
        return True
    return all(callable(t) and not isinstance(t, ClassifierOutputTarget) for t in targets)


def target_scores(targets: Sequence[Target], output: Any) -> Tensor:
    """The (B,) scores of each sample's target; vectorized when all targets are class indices
    (for a dense (B, C, ...) output, a class's score is its mean over the positions)."""
    if all(type(t) is ClassifierOutputTarget for t in targets):
        logits = _class_scores(output, reduce=False)
        classes = cast(Sequence[ClassifierOutputTarget], targets)  # every target is one
        return gather_classes(logits, [t.category for t in classes])
    scores = [torch.as_tensor(t(sample)) for t, sample in zip(targets, output, strict=True)]
    return torch.stack([s.reshape(()) if s.numel() == 1 else s.sum() for s in scores])


def _class_scores(output: Any, reduce: bool = True) -> Tensor:
    """(B, C) class scores ((B, C, ...) when not ``reduce``: dense scores kept per position)."""
    if not isinstance(output, Tensor):
        raise ValueError(
            f"class targets need class scores, the model returned {type(output).__name__}; pass callable "
            "targets or an output_selector that returns the class scores"
        )
    if output.dim() == 1:
        return output[None]
    if output.dim() < 2:
        raise ValueError(f"class targets need a (B, C) or (B, C, ...) output, got shape {tuple(output.shape)}")
    return per_class(output) if reduce else output
