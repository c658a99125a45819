"""Reading scores off any model output: the one place that knows where the classes are.

A model may return a tensor, a tuple, a dict or a HuggingFace ``ModelOutput``; ``output_selector``
picks the scores (an index, a key or a callable), as in the methods and the metrics alike. Scores
are laid out (B, C) for a classifier or (B, C, ...) for a dense model (segmentation): the class axis
is always dim 1. "probability" is the softmax over that axis, or the sigmoid where there is a single
output unit (a binary classifier's logit: a softmax over one unit would always be 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten

OutputSelector = None | int | str | Callable[[Any], Tensor]
ScoreKind = Literal["probability", "logit"]
SCORE_KINDS: tuple[str, ...] = ("probability", "logit")


def select_output(output: object, selector: OutputSelector) -> Tensor:
    """The score tensor of a model output; a clear ValueError where there is none."""
    if selector is None:
        selected = output
    elif callable(selector):
        selected = selector(output)
    else:
        try:
            selected = cast(Any, output)[selector]  # any indexable output; the errors are caught below
        except (KeyError, IndexError, TypeError) as error:
            raise ValueError(
                f"output_selector={selector!r} does not pick anything from the model's {type(output).__name__} "
                f"output ({type(error).__name__}: {error})"
            ) from error
    if not isinstance(selected, Tensor):
        keys = f" with keys {list(output)[:8]}" if isinstance(output, dict) else ""
        raise ValueError(
            f"the model returned {type(output).__name__}{keys}, not a tensor of class scores; pick them with "
            "output_selector=<index> for tuples, <key> for dicts (e.g. 'logits' or 'out'; --output-selector on the "
            "command line), or a callable returning the scores"
        )
    return selected


def check_score_kind(score: str) -> None:
    if score not in SCORE_KINDS:
        raise ValueError(f"score must be 'probability' or 'logit', got {score!r}")


def as_scores(output: Tensor, score: ScoreKind) -> Tensor:
    """Logits as given, or probabilities over the class axis (dim 1; sigmoid for one unit)."""
    check_score_kind(score)
    if output.dim() < 2 or not output.is_floating_point():
        raise ValueError(
            f"class scores must be a floating (B, C) or (B, C, ...) tensor, got {output.dtype} of shape "
            f"{tuple(output.shape)}; pass an output_selector that returns them"
        )
    if score == "logit":
        return output
    return torch.sigmoid(output) if output.shape[1] == 1 else torch.softmax(output, dim=1)


def gather_classes(scores: Tensor, classes: Sequence[int] | Tensor) -> Tensor:
    """(B,) score of ``classes[i]`` in row i; for dense (B, C, ...) scores, its mean over the positions."""
    index = torch.as_tensor(classes, device=scores.device).long().reshape(-1)
    if index.numel() != scores.shape[0]:
        raise ValueError(f"{index.numel()} classes for {scores.shape[0]} outputs; pass one class per image")
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= scores.shape[1]):
        bad = int(index.max()) if int(index.max()) >= scores.shape[1] else int(index.min())
        raise ValueError(f"class {bad} is out of range for a model with {scores.shape[1]} outputs")
    picked = scores.gather(1, index.view(-1, *([1] * (scores.dim() - 1))).expand(-1, 1, *scores.shape[2:]))
    return picked.flatten(1).mean(dim=1)


def class_probabilities(output: Tensor) -> Tensor:
    """(B, C) probabilities of every class (a dense output's averaged over the positions)."""
    return per_class(as_scores(output, "probability"))


def per_class(scores: Tensor) -> Tensor:
    """(B, C) scores: a dense (B, C, ...) output's class score is its mean over the positions."""
    return scores.flatten(2).mean(dim=2) if scores.dim() > 2 else scores


def largest_difference(fast: Any, plain: Any) -> tuple[float, float]:
    """Largest |fast - plain| over every tensor of two model outputs of the same structure (tensors,
    tuples, dicts, nested), and the largest |plain|; inf where the structures, shapes or NaN positions
    differ. How the inference copy's outputs are held against the model's."""
    fast_leaves, fast_spec = tree_flatten(fast)
    plain_leaves, plain_spec = tree_flatten(plain)
    if fast_spec != plain_spec:
        return math.inf, 0.0
    difference, scale = 0.0, 0.0
    for a, b in zip(fast_leaves, plain_leaves, strict=True):
        if not isinstance(b, Tensor):
            continue
        if not isinstance(a, Tensor) or a.shape != b.shape:
            return math.inf, 0.0
        if b.numel() == 0 or not b.is_floating_point():
            if not torch.equal(a, b):
                return math.inf, 0.0
            continue
        a, b = a.double(), b.double()
        finite = b.isfinite()
        if not torch.equal(finite, a.isfinite()):
            return math.inf, 0.0
        if bool(finite.any()):
            difference = max(difference, float((a - b)[finite].abs().max()))
            scale = max(scale, float(b[finite].abs().max()))
    return difference, scale
