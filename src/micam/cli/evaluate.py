"""``micam evaluate``: every method x metric of the MI-CAM paper on labelled images, resumable.

Writes OUT/per_image.csv (one row per image and method, as it goes), OUT/results.json, OUT/results.md
(the paper's Tables 1-3 plus counterfactual and sanity tables), OUT/counterfactual.csv,
OUT/sanity.csv, OUT/skipped.csv and OUT/settings.json.
"""

from __future__ import annotations

import argparse
import signal
from dataclasses import fields

from micam import models
from micam.cli.explain import (
    OUTPUT_SELECTOR_HELP,
    add_image_arguments,
    add_model_arguments,
    model_options,
    model_spec,
    output_selector,
)
from micam.engines import ENGINES
from micam.evaluation import ALL_METHODS, METRIC_GROUPS, EvaluationSettings, evaluate
from micam.evaluation.settings import DEFAULT_METRIC_GROUPS, INPUT_SCALES, PROTOCOLS, reproducing
from micam.evaluation.store import saved_settings
from micam.metrics.confidence import INCREASE_BASELINES
from micam.metrics.deletion_insertion import AUC_X, PIXEL_INDEXING, REMOVED_PIXELS


def _names(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = list(allowed) if text == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise ValueError(f"unknown {what} {unknown or text!r}; choose from {', '.join(allowed)} or 'all'")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    default = EvaluationSettings(data="")
    add = parser.add_argument
    add("--data", required=True, help="annotations JSON, CSV (file,label[,boxes]) or ImageNet-style class folder")
    add_model_arguments(parser, weights_default=default.weights)
    add_image_arguments(parser)
    add("--layer", default=None, help="target layer name (default: the shipped model's, else its last conv block)")
    add(
        "--methods",
        default=None,
        help=f"comma-separated from {', '.join(ALL_METHODS)}, or 'all' (default; with --resume: the run's own)",
    )
    add(
        "--metrics",
        default=None,
        help=f"comma-separated from {', '.join(METRIC_GROUPS)}, or 'all' / 'default' (the default: every group, "
        "road included, about 1.6 s per image and map on a 2-core CPU; list the others to leave it out; with "
        "--resume: the run's own). A resumed run may gain metrics: its earlier rows are kept and the new "
        "columns computed for every image",
    )
    add("--limit", type=int, default=None, help="only the first N images")
    add("--batch-size", type=int, default=default.batch_size, help="images per batch (default: %(default)s)")
    add("--forward-batch-size", type=int, default=None, help="images per metric forward pass (64 CPU, 1024 CUDA)")
    add("--score-cam-batch-size", type=int, default=None, help="masked images per Score-CAM pass (32 CPU, 1024 CUDA)")
    add("--out", default=default.out, help="output folder (default: %(default)s)")
    add("--device", default=default.device, help="cpu, cuda or auto (default)")
    add("--resume", action="store_true", help="continue the run in --out, skipping finished images")
    add(
        "--target",
        default=default.target,
        choices=("predicted", "label"),
        help="class explained (default: %(default)s)",
    )
    add(
        "--protocol",
        default=None,
        choices=tuple(PROTOCOLS),
        help="'stated' (default): the paper's stated definitions; 'authors': emulate the authors' published "
        "scripts (raw 0-255 input, their deletion indexing and AI baseline, 8-bit gray MI-CAM, no tolerance); "
        "each switch below can be set on its own",
    )
    add("--input-scale", default=None, choices=INPUT_SCALES, help="model input: normalized, or raw 0-255 pixels")
    add("--pixel-indexing", default=None, choices=PIXEL_INDEXING, help="deletion/insertion: pixels, or the authors'")
    add("--increase-baseline", default=None, choices=INCREASE_BASELINES, help="AI's B: empty image, or the authors'")
    add("--geometry", default=None, choices=("auto", "stretch", "crop"), help="resize rule (default: the protocol's)")
    add("--score", default=default.score, choices=("probability", "logit"), help="class score (default: probability)")
    add("--threshold", type=float, default=default.threshold, help="AD/AI map threshold (default: %(default)s)")
    add("--steps", type=int, default=default.steps, help="deletion/insertion steps (default: %(default)s)")
    add("--baseline", default=default.baseline, choices=REMOVED_PIXELS, help="removed pixels' value")
    add("--insertion-order", default=default.insertion_order, choices=("standard", "paper"))
    add(
        "--auc-x",
        default=None,
        choices=AUC_X,
        help="deletion/insertion AUC over the fraction of pixels changed (default), or 'even' k/steps "
        "(the rule of runs made before 2026-11-27; a resumed older run needs it)",
    )
    add("--tolerance", type=float, default=None, help="pointing-game tolerance in px (default: 15; authors: 0)")
    add("--mi-preset", default=None, choices=("default", "authors"), help="MI-CAM preset (default: the protocol's)")
    add(
        "--mi-column-max",
        action="store_true",
        default=None,
        help="MI-CAM: the authors' literal np.max(cam, 0) (each column's maximum) in place of the ReLU",
    )
    add("--counterfactual-images", type=int, default=None, help="images for it (default: 50 on CUDA, 10 on CPU)")
    add("--sanity-images", type=int, default=None, help="images for the sanity check (default: 4 on CUDA, 1 on CPU)")
    add("--seed", type=int, default=default.seed)
    add(
        "--loader-workers", type=int, default=None, help="processes decoding images (default: 2; 0 decodes in this one)"
    )
    add(
        "--engine",
        default=default.engine,
        choices=tuple(ENGINES),
        help="where shards of images run: 'local' (default, this process) or 'ray' (Ray actors: pip install "
        "'micam[ray]'); the rows are the same",
    )
    add(
        "--address",
        default=None,
        help="ray: 'auto' or 'ray://HOST:PORT' joins a running cluster (default: start a local Ray runtime)",
    )
    add("--workers", type=int, default=None, help="ray: actors (default: one per GPU, else one per CPU core)")
    add("--output-selector", type=output_selector, default=default.output_selector, help=OUTPUT_SELECTOR_HELP)


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the runner keeps every finished batch; --resume continues


def run(args: argparse.Namespace) -> int:
    values = {
        f.name: getattr(args, f.name)
        for f in fields(EvaluationSettings)
        if hasattr(args, f.name) and f.name not in models.LOAD_OPTIONS  # those come from model_options
    }
    values["model"] = model_spec(args)
    values.update(model_options(args))
    saved = saved_settings(args.out, args.resume)  # a resumed run keeps its methods and metrics unless told
    values["methods"] = _names(args.methods, ALL_METHODS, "method(s)") if args.methods else saved.get("methods")
    metrics = ",".join(DEFAULT_METRIC_GROUPS) if args.metrics == "default" else args.metrics
    values["metrics"] = _names(metrics, METRIC_GROUPS, "metric(s)") if metrics else saved.get("metrics")
    if values["metrics"] is None:
        values["metrics"] = list(DEFAULT_METRIC_GROUPS)
    # The protocol's switches where not given; a resumed run's own (as it was made) where it has them.
    values["protocol"] = args.protocol or saved.get("protocol") or "stated"
    chosen = PROTOCOLS[values["protocol"]]
    earlier = reproducing(saved) if saved and not args.protocol else {}
    for key, value in chosen.items():
        if values.get(key) is None:
            values[key] = earlier.get(key, value)
    values = {key: value for key, value in values.items() if value is not None}
    previous = signal.signal(signal.SIGTERM, _stop)  # `kill` and job schedulers stop it as cleanly as Ctrl-C
    try:
        results = evaluate(EvaluationSettings(**values))
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"{args.out}/results.md")
    return 1 if results["skipped"]["count"] else 0
