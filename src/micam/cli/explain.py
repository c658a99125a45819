"""``micam explain``: top-5 classes, a heatmap overlay PNG and the raw map (.npy) per image and method."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from micam import models
from micam.evaluation.datasets import read_rgb
from micam.methods import METHODS, BaseCAM
from micam.methods.factory import make_method
from micam.reports import restore_image, save_overlay


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files (PNG, JPEG, BMP, ...)")
    parser.add_argument("--model", default="mobilenet_v2", choices=models.MODEL_NAMES, help="default: %(default)s")
    parser.add_argument("--weights", default="imagenet", help="'imagenet' (default), 'random' or a checkpoint file")
    parser.add_argument(
        "--method",
        default="mi-cam",
        help=f"one of {', '.join(METHODS)}, a comma-separated list, or 'all' (default: %(default)s)",
    )
    parser.add_argument("--layer", default=None, help="target layer name (default: the model's last conv block)")
    parser.add_argument("--out", type=Path, default=Path("micam-out"), help="output folder (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto (default)")
    parser.add_argument("--top", type=int, default=5, help="how many classes to print (default: %(default)s)")
    parser.add_argument("--score-cam-batch-size", type=int, default=32, help="masked images per forward pass")
    parser.add_argument("--mi-preset", default="default", choices=("default", "authors"), help="MI-CAM preset")


def parse_methods(text: str) -> list[str]:
    names = list(METHODS) if text == "all" else [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        raise ValueError(f"unknown method(s) {unknown or text!r}; choose from {', '.join(METHODS)} or 'all'")
    return names


def build_method(name: str, loaded: models.LoadedModel, layer: str | None, args: argparse.Namespace) -> BaseCAM:
    """A method on ``loaded``'s model; MI-CAM grays the restored photo (its normalization is known)."""
    return make_method(
        name,
        loaded.model,
        layer or loaded.target_layer,
        pixel_mean=loaded.mean,
        pixel_std=loaded.std,
        score_cam_batch_size=args.score_cam_batch_size,
        mi_preset=args.mi_preset,
    )


def run(args: argparse.Namespace) -> int:
    method_names = parse_methods(args.method)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    loaded = models.load(args.model, weights=args.weights, device=device)
    methods = {name: build_method(name, loaded, args.layer, args) for name in method_names}
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, object] = {"model": args.model, "weights": args.weights, "device": device, "images": {}}
    failures: dict[str, str] = {}
    used_stems: set[str] = set()
    started = time.perf_counter()
    for path in args.images:
        try:
            image = read_rgb(path)
        except (OSError, UnidentifiedImageError, ValueError) as error:
            failures[str(path)] = f"{type(error).__name__}: {error}"
            print(f"skipped {path}: cannot read it as an image ({error})", file=sys.stderr)
            continue
        stem = _unique_stem(path.stem, used_stems)
        folder = args.out / stem
        folder.mkdir(parents=True, exist_ok=True)
        x = loaded.preprocess(image)[None].to(device)
        with torch.no_grad():
            probabilities = torch.softmax(loaded.model(x), dim=1)[0]
        top = probabilities.topk(args.top)
        predictions = [
            {"class": int(c), "name": loaded.categories[int(c)], "probability": round(float(p), 6)}
            for p, c in zip(top.values, top.indices, strict=True)
        ]
        print(f"{path}:")
        for rank, item in enumerate(predictions, 1):
            print(f"  {rank}. {item['name']} (class {item['class']}): {item['probability']:.3f}")
        picture = restore_image(x[0], loaded.mean, loaded.std)
        Image.fromarray((picture * 255).round().astype(np.uint8)).save(folder / "input.png")
        record: dict[str, object] = {"source": str(path), "top": predictions, "methods": {}}
        for name, method in methods.items():
            tick = time.perf_counter()
            cam = method(x, targets=predictions[0]["class"])[0].cpu().numpy()
            seconds = time.perf_counter() - tick
            file_stem = name.replace("+", "p")
            np.save(folder / f"{file_stem}.npy", cam)
            save_overlay(folder / f"{file_stem}.png", picture, cam)
            record["methods"][name] = {  # type: ignore[index]
                "overlay": f"{stem}/{file_stem}.png",
                "map": f"{stem}/{file_stem}.npy",
                "seconds": round(seconds, 4),
            }
            print(f"  {name}: {folder / (file_stem + '.png')} ({seconds:.2f} s)")
        summary["images"][stem] = record  # type: ignore[index]
    summary["failures"] = failures
    summary["seconds"] = round(time.perf_counter() - started, 3)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    done = len(summary["images"])  # type: ignore[arg-type]
    print(f"explained {done} image(s) with {len(methods)} method(s) in {summary['seconds']} s; results in {args.out}")
    if failures:
        print(f"{len(failures)} input(s) could not be read and were skipped", file=sys.stderr)
        return 1
    return 0


def _unique_stem(stem: str, used: set[str]) -> str:
    candidate, counter = stem, 1
    while candidate in used:
        counter += 1
        candidate = f"{stem}-{counter}"
    used.add(candidate)
    return candidate
