"""Weight files: plain state dicts, the usual training-checkpoint layouts, and (only when trusted) pickled models.

``read_checkpoint(path)`` loads with ``torch.load(path, map_location="cpu", weights_only=True)`` (or
safetensors for ``.safetensors`` files) and unwraps a state dict kept under ``state_dict``,
``model_state_dict``, ``model``, ``module`` or ``net``. ``load_into(model, checkpoint)`` strips a key prefix
such as ``module.`` (DataParallel), ``model.`` (Lightning) or ``_orig_mod.`` (``torch.compile``), checks
that every key and shape fits, loads, and returns a one-line report of what it did. Every failure is a
one-line ``ValueError`` that says what to do.
"""

from __future__ import annotations

import pickle
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

# Keys under which training scripts keep the model's state dict (first match wins, up to three levels).
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")
_SHOWN = 3  # keys named in an error message


@dataclass
class Checkpoint:
    """What a weights file held: tensors by name, or a whole ``nn.Module`` (trusted pickles only)."""

    path: str
    tensors: dict[str, Tensor] | None = None
    module: nn.Module | None = None
    key: str | None = None  # the top-level key the tensors were under ("state_dict", ...)


def read_checkpoint(path: str | Path, trust: bool = False) -> Checkpoint:
    """Read a weights file; ``trust=True`` unpickles arbitrary objects (``weights_only=False``)."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"weights must be 'imagenet', 'random' or a checkpoint file; {str(path)!r} is none")
    if file.suffix == ".safetensors":
        return _read_safetensors(file, str(path))
    try:
        content = torch.load(file, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        if trust or found is None:
            raise ValueError(f"{path} is not a PyTorch checkpoint (torch.load failed: {_brief(error)})") from None
        raise ValueError(_pickled_message(str(path), found.group(1))) from None
    except Exception as error:  # text, truncated or foreign files fail in many ways
        raise ValueError(f"{path} is not a PyTorch checkpoint (torch.load failed: {_brief(error)})") from None
    return _unwrap(str(path), content)


def load_into(model: nn.Module, checkpoint: Checkpoint, what: str) -> str:
    """Fill ``model`` (described as ``what`` in errors) from ``checkpoint``; returns the report."""
    if checkpoint.module is not None:
        tensors = dict(checkpoint.module.state_dict())
        source = f"{checkpoint.path} (a pickled {type(checkpoint.module).__name__})"
    else:
        tensors = checkpoint.tensors or {}
        source = checkpoint.path
    expected = model.state_dict()
    prefix = best_prefix(tensors, expected)
    inside = {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}
    ignored = len(tensors) - len(inside)
    # Old checkpoints lack batch norms' step counters; they do not change any output.
    missing = [k for k in expected if k not in inside and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in inside if k not in expected]
    mismatched = [k for k in inside if k in expected and inside[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        raise ValueError(_mismatch_message(source, what, prefix, missing, unexpected, mismatched, inside, expected))
    model.load_state_dict(inside, strict=False)
    details = [f"key {checkpoint.key!r}"] if checkpoint.key else []
    if prefix:
        details.append(f"prefix {prefix!r} stripped")
    if ignored:
        details.append(f"{ignored} tensors outside it ignored")
    return f"loaded {len(inside)} tensors from {source}" + (f" ({', '.join(details)})" if details else "")


def best_prefix(tensors: Iterable[str], expected: Mapping[str, object]) -> str:
    """The key prefix (one or two dotted parts, or none) whose removal matches the most model keys."""
    keys = list(tensors)
    candidates = {""}
    for key in keys:
        parts = key.split(".")
        candidates.update(".".join(parts[:n]) + "." for n in (1, 2) if len(parts) > n)

    def matched(prefix: str) -> int:
        return sum(1 for key in keys if key.startswith(prefix) and key[len(prefix) :] in expected)

    return max(sorted(candidates, key=lambda p: (len(p), p)), key=matched)  # ties: the shortest (max keeps the first)


# ----------------------------------------------------------------------------- helpers
def _read_safetensors(file: Path, shown: str) -> Checkpoint:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ValueError(f"{shown} is a safetensors file; pip install safetensors to read it") from None
    try:
        return Checkpoint(shown, tensors=load_file(str(file), device="cpu"))
    except Exception as error:
        raise ValueError(f"{shown} is not a readable safetensors file ({_brief(error)})") from None


def _unwrap(path: str, content: object) -> Checkpoint:
    keys: list[str] = []
    for _ in range(3):
        if isinstance(content, nn.Module):
            return Checkpoint(path, module=content, key=".".join(keys) or None)
        if not isinstance(content, Mapping):
            break
        tensors = {k: v for k, v in content.items() if isinstance(k, str) and isinstance(v, Tensor)}
        wrapper = next((k for k in WRAPPER_KEYS if isinstance(content.get(k), Mapping | nn.Module)), None)
        if tensors and (wrapper is None or len(tensors) == len(content)):
            return Checkpoint(path, tensors=tensors, key=".".join(keys) or None)
        if wrapper is None:
            break
        keys.append(wrapper)
        content = content[wrapper]
    if isinstance(content, Mapping):
        shown = ", ".join(repr(k) for k in list(content)[:8])
        raise ValueError(
            f"{path} holds no weights micam recognizes (keys: {shown}); expected a state dict, or one under "
            f"{', '.join(repr(k) for k in WRAPPER_KEYS)}"
        )
    raise ValueError(f"{path} holds a {type(content).__name__}, not a state dict or a model")


def _pickled_message(path: str, global_name: str) -> str:
    module_name, _, attribute = global_name.rpartition(".")
    found = getattr(sys.modules.get(module_name), attribute, None)  # only modules already imported: no code runs
    what = (
        f"a pickled model ({global_name}, e.g. saved with torch.save(model))"
        if isinstance(found, type) and issubclass(found, nn.Module)
        else f"pickled Python objects ({global_name}), e.g. a model saved with torch.save(model)"
    )
    return (
        f"{path} holds {what}, which safe loading (torch.load weights_only=True) refuses; only if you trust "
        "the file, pass --trust-checkpoint (trust_checkpoint=True) to unpickle it, which can run arbitrary code"
    )


def _mismatch_message(
    source: str,
    what: str,
    prefix: str,
    missing: list[str],
    unexpected: list[str],
    mismatched: list[str],
    inside: Mapping[str, Tensor],
    expected: Mapping[str, Tensor],
) -> str:
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({_first(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({_first(unexpected)})")
    if mismatched:
        shapes = ", ".join(
            f"{k}: checkpoint {list(inside[k].shape)} vs model {list(expected[k].shape)}" for k in mismatched[:_SHOWN]
        )
        parts.append(f"{len(mismatched)} shape mismatches ({shapes}{', ...' if len(mismatched) > _SHOWN else ''})")
    stripped = f" after stripping {prefix!r}" if prefix else ""
    message = f"{source} does not fit {what}{stripped}: {'; '.join(parts)}"
    head = _head_classes(mismatched, inside, expected)
    if head is not None:
        classes, model_classes = head
        return (
            f"{message}; the checkpoint's classifier has {classes} outputs and the model's {model_classes}: "
            f"pass --num-classes {classes} (num_classes={classes})"
        )
    return f"{message}; is --model the checkpoint's architecture?"


def _head_classes(
    mismatched: list[str], inside: Mapping[str, Tensor], expected: Mapping[str, Tensor]
) -> tuple[int, int] | None:
    """(checkpoint's, model's) class count when only the last layer's output size differs."""
    last = [k for k in expected if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))][-2:]
    if not mismatched or any(k not in last for k in mismatched):
        return None
    key = mismatched[0]
    ours, theirs = expected[key].shape, inside[key].shape
    if len(ours) != len(theirs) or ours[1:] != theirs[1:]:
        return None
    return int(theirs[0]), int(ours[0])


def _first(keys: list[str]) -> str:
    return ", ".join(keys[:_SHOWN]) + (", ..." if len(keys) > _SHOWN else "")


def _brief(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
