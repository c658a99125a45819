"""``micam explain``: top-5 classes, a heatmap overlay PNG and the raw map (.npy) per image and method."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import TypedDict, cast

import numpy as np
import torch
from PIL import Image

from micam import models
from micam.evaluation.files import write_atomically
from micam.images import BACKGROUNDS, DEFAULT_MAX_PIXELS, ReadImage, read_image
from micam.methods import CONTROLS, METHODS, BaseCAM
from micam.methods.factory import make_method
from micam.outputs import class_probabilities, select_output
from micam.plot.overlay import restore_image, save_overlay
from micam.runtime import DiskFull, is_disk_full, output_folder

MODEL_HELP = (
    f"{', '.join(models.MODEL_NAMES)} (default: mobilenet_v2), torchvision:NAME, timm:NAME, "
    "path/to/file.py:FACTORY or package.module:FACTORY (a callable returning an nn.Module)"
)


# One of an image's top classes in summary.json ("class" is a keyword, hence the functional form).
Prediction = TypedDict("Prediction", {"class": int, "name": str, "probability": float})


OUTPUT_SELECTOR_HELP = "key (dict outputs, e.g. logits) or index (tuple outputs) of the class scores in the output"


def output_selector(text: str) -> str | int:
    """``--output-selector``: an index for tuple outputs when the text is a number, else a dict key."""
    return int(text) if text.lstrip("-").isdigit() else text


def add_model_arguments(parser: argparse.ArgumentParser, weights_default: str = "imagenet") -> None:
    """--model and the options of ``micam.models.load``, shared by ``explain`` and ``evaluate``."""
    add = parser.add_argument
    add("--model", default=None, metavar="SPEC", help=MODEL_HELP)
    add(
        "--weights",
        default=weights_default,
        help="'imagenet' (default; not defined for factories), 'random' or a checkpoint file (a state dict, "
        "also under 'state_dict' / 'model' / 'model_state_dict', 'module.' / 'model.' prefixes stripped)",
    )
    add("--num-classes", type=_positive_int, default=None, metavar="N", help="classifier head size of the model")
    add("--labels", default=None, metavar="FILE", help="class names: one per line, or a JSON list")
    add("--size", type=_positive_int, default=None, metavar="PX", help="crop size (default: the model's, else 224)")
    add("--mean", type=_three_floats, default=None, metavar="R,G,B", help="normalization mean (default: the model's)")
    add("--std", type=_three_floats, default=None, metavar="R,G,B", help="normalization std (default: the model's)")
    add(
        "--trust-checkpoint",
        action="store_true",
        help="unpickle a whole model saved with torch.save(model) (runs code from the file: only files you trust)",
    )


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    """How image files are read (``micam.images``), shared by ``explain`` and ``evaluate``."""
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help="skip images with more pixels, like unreadable ones (decompression bombs; default %(default)s, 0: none)",
    )
    parser.add_argument(
        "--background",
        default="white",
        choices=tuple(BACKGROUNDS),
        help="what transparent pixels are composited on (default: %(default)s)",
    )


def model_spec(args: argparse.Namespace) -> str | None:
    """--model, or None (the model pickled in --weights) when it is omitted with --trust-checkpoint."""
    if args.model is not None:
        spec: str = args.model
        return spec
    trusted_file = args.trust_checkpoint and args.weights not in ("imagenet", "random")
    return None if trusted_file else "mobilenet_v2"


def model_options(args: argparse.Namespace) -> models.LoadOptions:
    """The keyword options of ``micam.models.load`` given on the command line (those not given left out)."""
    values = {
        "num_classes": args.num_classes,
        "labels": args.labels,
        "input_size": args.size,
        "mean": args.mean,
        "std": args.std,
        "layer": getattr(args, "layer", None),
        "trust_checkpoint": args.trust_checkpoint or None,
    }
    return cast(models.LoadOptions, {key: value for key, value in values.items() if value is not None})


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _three_floats(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected 3 comma-separated numbers (R,G,B), got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files (PNG, JPEG, BMP, ...)")
    add_model_arguments(parser)
    add_image_arguments(parser)
    parser.add_argument(
        "--class",
        dest="class_index",
        type=int,
        default=None,
        metavar="N",
        help="explain class N (default: each image's top class)",
    )
    parser.add_argument(
        "--method",
        default="mi-cam",
        help=f"one of {', '.join(METHODS)} (or the controls {', '.join(CONTROLS)}), a comma-separated list, "
        "or 'all' (the paper's six; default: %(default)s)",
    )
    parser.add_argument(
        "--layer", default=None, help="target layer name (default: the shipped model's, else its last conv block)"
    )
    parser.add_argument("--out", type=Path, default=Path("micam-out"), help="output folder (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto (default)")
    parser.add_argument("--top", type=int, default=5, help="how many classes to print (default: %(default)s)")
    parser.add_argument("--score-cam-batch-size", type=int, default=32, help="masked images per forward pass")
    parser.add_argument("--output-selector", type=output_selector, default=None, help=OUTPUT_SELECTOR_HELP)
    parser.add_argument("--mi-preset", default="default", choices=("default", "authors"), help="MI-CAM preset")
    parser.add_argument(
        "--mi-column-max",
        action="store_true",
        help="MI-CAM: the authors' literal np.max(cam, 0) (each column's maximum) in place of the ReLU",
    )


def parse_methods(text: str) -> list[str]:
    names = list(METHODS) if text == "all" else [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METHODS and name not in CONTROLS]
    if unknown or not names:
        raise ValueError(
            f"unknown method(s) {unknown or text!r}; choose from {', '.join([*METHODS, *CONTROLS])} or 'all'"
        )
    return names


def build_method(name: str, loaded: models.LoadedModel, layer: str | None, args: argparse.Namespace) -> BaseCAM:
    """A method on ``loaded``'s model (on ``layer``, default its target layer); MI-CAM grays the
    restored photo (its normalization is known)."""
    return make_method(
        name,
        loaded.model,
        layer or loaded.target_layer,
        pixel_mean=loaded.mean,
        pixel_std=loaded.std,
        score_cam_batch_size=args.score_cam_batch_size,
        mi_preset=args.mi_preset,
        mi_column_max=args.mi_column_max,
        reshape_transform=loaded.reshape_transform,
        output_selector=args.output_selector,
    )


def run(args: argparse.Namespace) -> int:
    if args.max_pixels < 0:
        raise ValueError(f"--max-pixels must be 0 (no limit) or more, got {args.max_pixels}")
    if args.top < 1 or args.score_cam_batch_size < 1:
        raise ValueError(
            f"--top and --score-cam-batch-size must be at least 1, got {args.top} and {args.score_cam_batch_size}"
        )
    method_names = parse_methods(args.method)
    output_folder(args.out)  # before the model loads: a wrong --out is said at once
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    loaded = models.load(model_spec(args), weights=args.weights, device=device, **model_options(args))
    if loaded.weights_report:
        print(loaded.weights_report, file=sys.stderr)
    classes = len(loaded.categories)
    if args.class_index is not None and not 0 <= args.class_index < classes:
        raise ValueError(
            f"--class {args.class_index} is out of range: the model has {classes} classes (0-{classes - 1})"
        )
    methods = {name: build_method(name, loaded, None, args) for name in method_names}
    images: dict[str, object] = {}
    summary: dict[str, object] = {
        "model": loaded.name,
        "weights": args.weights,
        "weights_report": loaded.weights_report,
        "classes": classes,
        "target_layer": loaded.target_layer_name,
        "preprocessing": {
            "resize": loaded.resize_size,
            "crop": loaded.input_size,
            "mean": list(loaded.mean),
            "std": list(loaded.std),
            "interpolation": loaded.interpolation.value,
            "transparency_on": args.background,
        },
        "device": device,
        "images": images,
    }
    failures: dict[str, str] = {}
    used_stems: set[str] = set()
    started = time.perf_counter()
    try:
        for path in args.images:
            try:
                read = read_image(path, args.max_pixels or None, args.background)
            except (OSError, ValueError) as error:
                failures[str(path)] = f"{type(error).__name__}: {error}"
                print(f"skipped {path}: {error}", file=sys.stderr)
                continue
            stem = _unique_stem(path.stem, used_stems)
            images[stem] = _explain_image(path, read, args.out / stem, loaded, methods, device, args)
        summary["failures"] = failures
        summary["seconds"] = round(time.perf_counter() - started, 3)
        write_atomically(args.out / "summary.json", json.dumps(summary, indent=2))
    except OSError as error:
        if is_disk_full(error):
            raise DiskFull(
                f"disk full: {len(images)} images explained in {args.out} (their PNG and .npy files; summary.json "
                "not written); free some space and run again"
            ) from error
        raise
    done = len(images)
    print(f"explained {done} image(s) with {len(methods)} method(s) in {summary['seconds']} s; results in {args.out}")
    if failures:
        print(f"{len(failures)} input(s) could not be read and were skipped", file=sys.stderr)
        return 1
    return 0


def _explain_image(
    path: Path,
    read: ReadImage,
    folder: Path,
    loaded: models.LoadedModel,
    methods: dict[str, BaseCAM],
    device: str,
    args: argparse.Namespace,
) -> dict[str, object]:
    """Print an image's top classes, write its input, overlays and maps into ``folder``, and return
    its summary.json record."""
    if not folder.resolve().is_relative_to(args.out.resolve()):  # the stem is sanitized: never taken
        raise RuntimeError(f"output folder {folder} would lie outside --out {args.out}")
    folder.mkdir(parents=True, exist_ok=True)
    x = loaded.preprocess(read.image)[None].to(device)
    with torch.no_grad():
        output = select_output(loaded.model(x), args.output_selector)
        probabilities = class_probabilities(output)[0]
    top = probabilities.topk(min(args.top, probabilities.numel()))
    predictions: list[Prediction] = [
        {"class": int(c), "name": _name(loaded, int(c)), "probability": round(float(p), 6)}
        for p, c in zip(top.values, top.indices, strict=True)
    ]
    explained = predictions[0]["class"] if args.class_index is None else args.class_index
    print(f"{path}:" + (f" ({'; '.join(read.notes)})" if read.notes else ""))
    for rank, item in enumerate(predictions, 1):
        print(f"  {rank}. {_shown(item['name'], item['class'])}: {item['probability']:.3f}")
    if args.class_index is not None:
        print(f"  explaining {_shown(_name(loaded, explained), explained)}: {float(probabilities[explained]):.3f}")
    picture = restore_image(x[0], loaded.mean, loaded.std)
    Image.fromarray((picture * 255).round().astype(np.uint8)).save(folder / "input.png")
    explanations: dict[str, object] = {}
    for name, method in methods.items():
        tick = time.perf_counter()
        cam = method(x, targets=explained)[0].cpu().numpy()
        seconds = time.perf_counter() - tick
        file_stem = name.replace("+", "p")
        np.save(folder / f"{file_stem}.npy", cam)
        save_overlay(folder / f"{file_stem}.png", picture, cam)
        explanations[name] = {
            "overlay": f"{folder.name}/{file_stem}.png",
            "map": f"{folder.name}/{file_stem}.npy",
            "seconds": round(seconds, 4),
        }
        print(f"  {name}: {folder / (file_stem + '.png')} ({seconds:.2f} s)")
    return {
        "source": str(path),
        "read": read.notes,
        "top": predictions,
        "explained_class": explained,
        "explained_name": _name(loaded, explained),
        "methods": explanations,
    }


def _name(loaded: models.LoadedModel, index: int) -> str:
    return loaded.categories[index] if index < len(loaded.categories) else f"class {index}"


def _shown(name: str, index: int) -> str:
    """ "Egyptian cat (class 285)", or just "class 7" for unnamed classes."""
    return name if name == f"class {index}" else f"{name} (class {index})"


def _unique_stem(stem: str, used: set[str]) -> str:
    """A folder name for an image's outputs: its file stem with anything but letters, digits, ``-``, ``_``
    and inner dots replaced (``...png`` would give ``..``, a way out of ``--out``), unique in this run."""
    stem = re.sub(r"[^\w.-]", "_", stem).strip(".") or "image"
    candidate, counter = stem, 1
    while candidate in used:
        counter += 1
        candidate = f"{stem}-{counter}"
    used.add(candidate)
    return candidate
