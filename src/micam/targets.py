"""What to explain: a target turns one sample's model output into the scalar score to explain.

The callables follow pytorch-grad-cam's convention (they receive one sample's output, a 1-D
tensor of logits for a classifier), so targets written for that library work here unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

Target = Callable[[Tensor], Tensor]
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
        return f"ClassifierOutputTarget({self.category})"


class ClassifierOutputSoftmaxTarget(ClassifierOutputTarget):
    """The softmax probability of one class."""

    def __call__(self, model_output: Tensor) -> Tensor:
        return super().__call__(torch.softmax(model_output, dim=-1))


def normalize_targets(targets: TargetsSpec, output: Tensor | None, batch_size: int) -> list[Target]:
    """One target per sample: None -> each sample's top class, an int -> that class for all."""
    if targets is None:
        if output is None:
            raise ValueError("targets=None needs the model output to pick the top class")
        return [ClassifierOutputTarget(int(c)) for c in _as_2d_logits(output).argmax(dim=1).tolist()]
    if isinstance(targets, bool):
        raise TypeError("targets must be None, an int, a list of ints or a list of callables")
    if isinstance(targets, int):
        return [ClassifierOutputTarget(targets)] * batch_size
    if callable(targets):
        return [targets] * batch_size
    targets = list(targets)
    if len(targets) != batch_size:
        raise ValueError(f"got {len(targets)} targets for a batch of {batch_size}; pass one per sample")
    return [ClassifierOutputTarget(t) if isinstance(t, int) else t for t in targets]


def target_scores(targets: Sequence[Target], output: Tensor) -> Tensor:
    """The (B,) scores of each sample's target; vectorized when all targets are class indices."""
    if all(type(t) is ClassifierOutputTarget for t in targets):
        logits = _as_2d_logits(output)
        index = torch.tensor([t.category for t in targets], device=logits.device)  # type: ignore[attr-defined]
        if index.numel() and int(index.max()) >= logits.shape[1]:
            raise ValueError(f"target class {int(index.max())} is out of range for {logits.shape[1]} outputs")
        return logits.gather(1, index[:, None]).squeeze(1)
    scores = [torch.as_tensor(t(sample)) for t, sample in zip(targets, output, strict=True)]
    return torch.stack([s.reshape(()) if s.numel() == 1 else s.sum() for s in scores])


def _as_2d_logits(output: Tensor) -> Tensor:
    if output.dim() == 1:
        return output[None]
    if output.dim() != 2:
        raise ValueError(
            f"class targets need a (B, num_classes) model output, got shape {tuple(output.shape)}; "
            "pass callable targets or an output_selector that returns the class scores"
        )
    return output
