"""Models named by a spec: ``torchvision:NAME``, ``timm:NAME``, ``path/to/file.py:FACTORY``, ``package.module:FACTORY``.

``build(spec, weights, num_classes, checkpoint)`` returns the model (weights loaded, not yet in eval
mode) and the preprocessing its own configuration asks for, where it has one: the transforms of
torchvision's ImageNet weights, or timm's ``resolve_data_config``. A factory is any callable returning
an ``nn.Module``; it gets ``num_classes=N`` when a class count is asked for.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.transforms import InterpolationMode

from micam.models.base import IMAGENET_MEAN, IMAGENET_STD
from micam.models.checkpoints import Checkpoint, load_into

Triple = tuple[float, float, float]
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


@dataclass(frozen=True)
class Preprocessing:
    """Shorter side to ``resize_size``, centre crop ``input_size``, normalize with ``mean`` / ``std``."""

    input_size: int
    resize_size: int
    mean: Triple
    std: Triple
    interpolation: InterpolationMode = InterpolationMode.BILINEAR

    def override(
        self,
        input_size: int | None = None,
        resize_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> Preprocessing:
        """These values with the given ones replaced; a new crop size keeps the resize/crop ratio."""
        changed = replace(self)
        if input_size is not None:
            if int(input_size) < 1:
                raise ValueError(f"the input size must be a positive number of pixels, got {input_size}")
            ratio = self.resize_size / self.input_size
            changed = replace(changed, input_size=int(input_size), resize_size=round(int(input_size) * ratio))
        if resize_size is not None:
            changed = replace(changed, resize_size=int(resize_size))
        if mean is not None:
            changed = replace(changed, mean=_triple(mean, "mean"))
        if std is not None:
            changed = replace(changed, std=_triple(std, "std"))
            if min(changed.std) <= 0:
                raise ValueError(f"std values must be positive, got {changed.std}")
        return changed


DEFAULT_PREPROCESSING = Preprocessing(224, 256, IMAGENET_MEAN, IMAGENET_STD)


@dataclass
class Built:
    model: nn.Module
    preprocessing: Preprocessing
    weights_report: str = ""


def forms(shipped: Sequence[str]) -> str:
    """The model specs ``load`` accepts, for error messages."""
    return (
        f"a shipped name ({', '.join(shipped)}), torchvision:NAME (e.g. torchvision:resnet18), timm:NAME "
        "(e.g. timm:resnet18), path/to/file.py:FACTORY or package.module:FACTORY (a callable returning an nn.Module)"
    )


def parse(spec: str, shipped: Sequence[str]) -> tuple[str, str]:
    """(kind, rest) with kind "torchvision", "timm", "file" or "module"; ValueError for anything else."""
    for kind in ("torchvision", "timm"):
        if spec.startswith(f"{kind}:") and spec[len(kind) + 1 :]:
            return kind, spec[len(kind) + 1 :]
    if ":" in spec:
        source, attribute = spec.rsplit(":", 1)
        if _IDENTIFIER.fullmatch(attribute):
            if source.endswith(".py") or "/" in source or os.sep in source:
                return "file", spec
            if _IDENTIFIER.fullmatch(source):
                return "module", spec
    raise ValueError(f"unknown model {spec!r}; --model accepts {forms(shipped)}")


def build(
    spec: str, kind: str, rest: str, weights: str, num_classes: int | None, checkpoint: Checkpoint | None
) -> Built:
    """Build the model of a parsed spec with ``weights`` ("imagenet", "random" or the read ``checkpoint``)."""
    if kind == "torchvision":
        built = _torchvision(rest, weights, num_classes)
    elif kind == "timm":
        built = _timm(rest, weights, num_classes)
    else:
        if weights == "imagenet":
            raise ValueError(
                f"ImageNet weights are not defined for the factory model {spec}; pass --weights PATH "
                "(weights=PATH) to a checkpoint, or --weights random to use the model as the factory returns it"
            )
        built = Built(_factory(spec, kind, num_classes), DEFAULT_PREPROCESSING)
    if checkpoint is not None:
        built.weights_report = load_into(built.model, checkpoint, spec)
    return built


# ----------------------------------------------------------------------------- torchvision
def _torchvision(name: str, weights: str, num_classes: int | None) -> Built:
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        close = difflib.get_close_matches(name, available, n=5, cutoff=0.5) or available[:5]
        raise ValueError(f"torchvision has no classification model {name!r}; close names: {', '.join(close)}")
    builder = torchvision.models.get_model_builder(name)
    options = {} if num_classes is None else {"num_classes": num_classes}
    if weights != "imagenet":
        return Built(builder(weights=None, **options), DEFAULT_PREPROCESSING)
    enum = torchvision.models.get_model_weights(name).DEFAULT
    classes = len(enum.meta["categories"])
    if num_classes is not None and num_classes != classes:
        raise ValueError(_imagenet_head(f"torchvision:{name}", classes, num_classes))
    try:  # the builder applies what its weights need (e.g. Inception's input transform)
        model = builder(weights=enum)
    except Exception as error:  # network errors come in many types
        filename = os.path.basename(enum.url)
        cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
        raise RuntimeError(
            f"could not get the ImageNet weights of torchvision:{name} ({_brief(error)}). Offline, put the file "
            f"{filename} (from {enum.url}) at {cached}, or pass --weights PATH, or --weights random"
        ) from error
    transform = enum.transforms()
    preprocessing = Preprocessing(
        input_size=int(transform.crop_size[0]),
        resize_size=int(transform.resize_size[0]),
        mean=_triple(transform.mean, "mean"),
        std=_triple(transform.std, "std"),
        interpolation=transform.interpolation,
    )
    return Built(model, preprocessing)


# ----------------------------------------------------------------------------- timm
def _timm(name: str, weights: str, num_classes: int | None) -> Built:
    try:
        import timm
        import timm.data
    except ImportError:
        raise ValueError("timm:NAME models need timm: pip install timm") from None
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; close names: {', '.join(close)}" if close else "; list them with timm.list_models()"
        raise ValueError(f"timm has no model {name!r}{hint}")
    options: dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
    if weights == "imagenet":
        if num_classes is not None:  # timm would put a random head on the pretrained trunk: nothing to explain
            raise ValueError(_imagenet_head(f"timm:{name}", None, num_classes))
        try:
            model = timm.create_model(name, pretrained=True)
        except Exception as error:  # Hugging Face Hub and network errors
            cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
            raise RuntimeError(
                f"could not get the pretrained weights of timm:{name} ({_brief(error)}). Offline, copy the model's "
                f"Hugging Face cache folder into {cache} (HF_HUB_OFFLINE=1 then skips the network), or pass "
                "--weights PATH, or --weights random"
            ) from error
    else:
        model = timm.create_model(name, pretrained=False, **options)
    config = timm.data.resolve_data_config({}, model=model)
    size = int(config["input_size"][1])
    interpolation = config.get("interpolation", "bilinear")
    try:
        mode = InterpolationMode(interpolation)
    except ValueError:
        mode = InterpolationMode.BICUBIC
    preprocessing = Preprocessing(
        input_size=size,
        resize_size=math.floor(size / float(config.get("crop_pct", 0.875))),
        mean=_triple(config["mean"], "mean"),
        std=_triple(config["std"], "std"),
        interpolation=mode,
    )
    return Built(model, preprocessing)


# ----------------------------------------------------------------------------- factories
def _factory(spec: str, kind: str, num_classes: int | None) -> nn.Module:
    source, attribute = spec.rsplit(":", 1)
    module = _import_file(source) if kind == "file" else _import_module(source)
    factory: object = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise ValueError(f"{source} has no {attribute!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ValueError(f"{spec} is a {type(factory).__name__}, not a callable returning an nn.Module")
    # num_classes goes only to a factory that takes it; ``load`` then checks the model's output count
    options = {"num_classes": num_classes} if num_classes is not None and _accepts(factory, "num_classes") else {}
    try:
        model = factory(**options)
    except Exception as error:  # the user's code: any error, reported in one line
        raise ValueError(f"calling {spec} failed: {_brief(error)}") from error
    if not isinstance(model, nn.Module):
        raise ValueError(f"{spec} returned a {type(model).__name__}, not an nn.Module")
    return model


def _import_file(source: str) -> object:
    path = Path(source).expanduser()
    if not path.is_file():
        raise ValueError(f"model file {source} not found")
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
    name = "micam_user_{}_{}".format(re.sub(r"\W", "_", path.stem), digest)
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot import {source} as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # classes defined there can be pickled and found again
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise ValueError(f"importing {source} failed: {_brief(error)}") from error
    return module


def _import_module(source: str) -> object:
    try:
        return importlib.import_module(source)
    except ModuleNotFoundError as error:
        here = os.getcwd()
        if here in sys.path or not (error.name and source.startswith(error.name)):
            raise ValueError(f"cannot import {source} ({_brief(error)})") from error
        sys.path.insert(0, here)  # like `python -m`: modules of the current folder are importable
        try:
            return importlib.import_module(source)
        except Exception as second:
            raise ValueError(f"cannot import {source} ({_brief(second)})") from second
    except Exception as error:
        raise ValueError(f"importing {source} failed: {_brief(error)}") from error


def _accepts(function: Callable[..., object], parameter: str) -> bool:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return True  # builtins without a signature: let the call decide
    return parameter in signature.parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
    )


# ----------------------------------------------------------------------------- small helpers
def _imagenet_head(spec: str, classes: int | None, num_classes: int) -> str:
    has = f"have {classes} classes" if classes is not None else "come with their own head"
    return (
        f"the ImageNet weights of {spec} {has}, so --num-classes {num_classes} cannot use them; pass --weights PATH "
        f"(a checkpoint with a {num_classes}-class head) or --weights random"
    )


def _triple(values: Sequence[float], what: str) -> Triple:
    numbers = tuple(float(v) for v in values)
    if len(numbers) != 3:
        raise ValueError(f"{what} needs 3 values (R, G, B), got {len(numbers)}: {values}")
    return numbers


def _brief(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
