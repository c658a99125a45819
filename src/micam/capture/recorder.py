"""Recording layer activations (and, on request, their gradients) during one forward pass.

Hooks live only inside ``record_activations`` and are removed in ``finally`` blocks, so an
exception in the model never leaves one behind. Gradients are taken with ``torch.autograd.grad``
with respect to the recorded activations only: parameters' ``.grad`` are never written.

Hooks and train/eval flags live on the model, so calls on one model from several threads would see
each other's: every call holds the model's lock (``model_lock``) and such calls run one at a time
(for parallel explanations give each thread its own copy of the model).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import Tensor, nn


class _StopForward(BaseException):
    """Raised by a hook once every target layer has fired, to skip the rest of the network.

    It derives from BaseException so that a model's own ``except Exception`` does not swallow it.
    """


@dataclass
class Recording:
    """What one forward pass produced: the model output and each target layer's activation."""

    activations: list[Tensor] = field(default_factory=list)
    output: object = None
    finished: bool = False  # False when the forward pass was cut short after the target layers


_model_locks: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock that micam's calls on ``model`` hold (one per model, made on first use)."""
    with _locks_guard:
        lock = _model_locks.get(model)
        if lock is None:
            lock = _model_locks[model] = threading.RLock()
        return lock


@contextmanager
def model_state_preserved(model: nn.Module, eval_mode: bool = True) -> Iterator[None]:
    """Hold the model's lock and put it in eval mode for the duration, then restore every module's
    training flag (another thread's call on the same model waits meanwhile)."""
    with model_lock(model):
        modes = [(module, module.training) for module in model.modules()]
        try:
            if eval_mode:
                model.eval()
            yield
        finally:
            for module, training in modes:
                module.training = training


def record_activations(
    model: nn.Module,
    layers: Sequence[nn.Module],
    inputs: Tensor,
    track_gradients: bool,
    stop_early: bool = False,
) -> Recording:
    """Run ``model(inputs)`` once and return the outputs of ``layers``.

    With ``track_gradients`` the recorded activations are part of an autograd graph that ends at
    the model output (even for frozen models or inside ``torch.no_grad()``), ready for
    ``torch.autograd.grad(score, recording.activations)``; without it no graph is built at all.
    ``stop_early`` skips every layer after the last target layer (no model output then).
    Each target layer must run exactly once.
    """
    # Every slot is filled by its hook; a layer that did not run raises below.
    recording = Recording(activations=cast(list[Tensor], [None] * len(layers)))
    calls = [0] * len(layers)

    def make_hook(position: int) -> Callable[[nn.Module, object, object], object]:
        def hook(module: nn.Module, _inputs: object, output: object) -> object:
            calls[position] += 1
            if calls[position] > 1:
                raise ValueError(
                    f"target layer {type(module).__name__} ran {calls[position]} times in one forward "
                    "pass (a shared module); choose a layer that runs once, e.g. its enclosing block"
                )
            if not isinstance(output, Tensor):
                raise ValueError(
                    f"target layer {type(module).__name__} returned {type(output).__name__}, not a "
                    "tensor; choose a layer whose output is the activation tensor"
                )
            if track_gradients:
                # Differentiate with respect to this tensor; a clone goes downstream so that in-place
                # ops after the layer (ReLU(inplace=True)) neither fail nor alter what we recorded.
                source = output if output.requires_grad else output.detach().requires_grad_(True)
                recording.activations[position] = source
                replacement = source.clone()
            else:
                recording.activations[position] = output.detach().clone()
                replacement = None
            if stop_early and all(count > 0 for count in calls):
                raise _StopForward
            return replacement

        return hook

    handles = []
    try:
        for position, layer in enumerate(layers):
            handles.append(layer.register_forward_hook(make_hook(position)))
        grad_context = torch.enable_grad() if track_gradients else torch.no_grad()
        with grad_context:
            try:
                recording.output = model(inputs)
                recording.finished = True
            except _StopForward:
                recording.finished = False
    finally:
        for handle in handles:
            handle.remove()
    missing = [i for i, count in enumerate(calls) if count == 0]
    if missing:
        raise ValueError(
            f"target layer(s) {[type(layers[i]).__name__ for i in missing]} did not run during the "
            "forward pass; choose layers that the model's forward() actually calls"
        )
    return recording
