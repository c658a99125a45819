"""``micam reproduce``: the paper's tables and figures from one command, on the shared real data.

Steps (each shows progress; a total time estimate is printed before anything runs):
1. figures (OUT/figures): method comparison grids (Fig. 1/4), multiple objects (Fig. 5), localization
   with boxes and the pointing-game peak (Fig. 6), counterfactual weights of MI-CAM (Fig. 7) and of the
   baselines (Fig. 10), the sanity-check strip (Fig. 8), channel weights (Fig. 9);
2. ``micam evaluate`` of MobileNetV2 on the first N annotated validation images (Tables 1-3, plus the
   counterfactual and sanity tables), and of MobileNetV1 for the paper's Table 5 (AD/AI) where its
   weights file is present;
3. ``micam benchmark`` (Table 4), bounded in time;
4. ``micam report``: OUT/report.html binding all of it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from micam import models
from micam.benchmark import run_benchmark, write_benchmark
from micam.evaluation import EvaluationSettings, evaluate
from micam.inference import inference_copy, preferred_layout
from micam.methods import METHODS
from micam.paper_figures import draw_paper_figures
from micam.reports.html import write_report
from micam.runtime import format_seconds, output_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    default_shared = os.environ.get("MICAM_SHARED_DATA", "../shared/data")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--limit", type=int, default=50, help="validation images to evaluate (default: %(default)s)")
    parser.add_argument("--shared", type=Path, default=Path(default_shared), help="shared data (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--benchmark-budget", type=float, default=300.0, help="seconds for the benchmark step")
    parser.add_argument("--resume", action="store_true", help="continue the evaluations in OUT")


def run(args: argparse.Namespace) -> int:
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    annotations = args.shared / "ilsvrc2012-val" / "annotations.json"
    if not annotations.exists():
        raise ValueError(
            f"shared data not found at {args.shared} (needs ilsvrc2012-val/annotations.json); pass --shared DIR "
            "or set MICAM_SHARED_DATA"
        )
    output_folder(args.out)
    v1_weights = args.shared / "weights" / "mobilenet_v1_1.0_224_dequant_from_coral_tflite.pth"
    loaded = models.load("mobilenet_v2", device=device)
    estimate = _estimate(loaded, args.limit, device, args.benchmark_budget, v1_weights.exists())
    print(
        f"micam reproduce: {args.limit} images on {device}; estimated total {format_seconds(estimate)}", file=sys.stderr
    )
    started = time.perf_counter()
    figures = args.out / "figures"
    draw_paper_figures(loaded, annotations, args.shared / "photos", figures, device)
    print(f"figures done ({format_seconds(time.perf_counter() - started)})", file=sys.stderr)
    evaluate(
        EvaluationSettings(
            data=str(annotations),
            model="mobilenet_v2",
            limit=args.limit,
            out=str(args.out / "eval-mobilenet_v2"),
            device=device,
            resume=args.resume,
        )
    )
    if v1_weights.exists():
        evaluate(
            EvaluationSettings(
                data=str(annotations),
                model="mobilenet_v1",
                weights=str(v1_weights),
                limit=args.limit,
                out=str(args.out / "table5-mobilenet_v1"),
                device=device,
                resume=args.resume,
                metrics=["drop-increase"],
            )
        )
    timed = run_benchmark(device=device, time_budget=args.benchmark_budget, command=" ".join(sys.argv))
    written = write_benchmark(timed, args.out / "benchmark")
    print(f"wrote {written[0]} and {written[1]}", file=sys.stderr)
    report = write_report(args.out, args.out / "report.html", "micam: the MI-CAM paper reproduced")
    elapsed = time.perf_counter() - started
    (args.out / "reproduce.json").write_text(json.dumps({"limit": args.limit, "device": device, "seconds": elapsed}))
    print(f"done in {format_seconds(elapsed)} (estimated {format_seconds(estimate)}): {report}")
    return 0


def _estimate(loaded: models.LoadedModel, limit: int, device: str, benchmark_budget: float, with_v1: bool) -> float:
    """Seconds, from the measured cost of one forward pass times the passes each step makes."""
    x = preferred_layout(torch.zeros(32, 3, loaded.input_size, loaded.input_size, device=device))
    runner = inference_copy(loaded.model)  # what the masked and perturbed passes run on
    with torch.no_grad():
        runner(x)
        tick = time.perf_counter()
        runner(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    per_image = (time.perf_counter() - tick) / 32
    channels = 1280
    methods = len(METHODS) + 2
    per_eval_image = channels + methods * (2 * 101 + 5)
    counterfactual = min(limit, 50 if device.startswith("cuda") else 10) * 2 * channels
    sanity = (4 if device.startswith("cuda") else 1) * 20 * (channels + 5 * 2)
    figure_passes = 12 * channels + 20 * channels
    passes = limit * per_eval_image + counterfactual + sanity + figure_passes
    if with_v1:
        passes += limit * (1024 + methods * 3)
    return passes * per_image + benchmark_budget
