"""Time MI-CAM against its peers and the authors' algorithm (the paper's Table 4, side by side, one run).

Per model and batch size: the forward pass, Grad-CAM, Score-CAM (ours and pytorch-grad-cam's),
MI-CAM (binned/bilinear and the authors' preset), and the authors' algorithm (nearest upsampling,
a Python loop of ``sklearn.metrics.mutual_info_score`` per channel, weighted sum, 11x11 sigma-7 blur,
ReLU), each the median of repeated runs, with the ratios the issue sets targets for. Cells whose
estimated time exceeds ``--cell-budget`` (or the rest of ``--time-budget``) are reported as skipped
with their estimate. Writes ``OUT/benchmark.json`` and ``OUT/benchmark.md``; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from micam.benchmark import METHODS, MODELS, run_benchmark, write_benchmark
from micam.runtime import output_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help="comma-separated model names or specs (torchvision:NAME, timm:NAME, file.py:FACTORY; random weights)",
    )
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)}")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell (median); slow cells run fewer")
    parser.add_argument("--batch-sizes", default="1,32", help="comma-separated batch sizes")
    parser.add_argument("--size", type=int, default=224, help="input side in pixels")
    parser.add_argument("--cell-budget", type=float, default=90.0, help="skip a cell estimated to take longer (s)")
    parser.add_argument("--time-budget", type=float, default=None, help="skip cells once the whole run nears this (s)")
    parser.add_argument("--score-cam-batch", type=int, default=32, help="masked images per forward in Score-CAM")
    parser.add_argument("--out", default="benchmark-out", help="folder for benchmark.json and benchmark.md")


def options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``run_benchmark`` that the options give (``benchmarks/table4.py`` shares them)."""
    return {
        "models": _split(args.models),
        "methods": _split(args.methods),
        "device": args.device,
        "repeats": args.repeats,
        "batch_sizes": _batch_sizes(args.batch_sizes),
        "size": args.size,
        "cell_budget": args.cell_budget,
        "time_budget": args.time_budget,
        "score_cam_batch": args.score_cam_batch,
        "command": " ".join(sys.argv),
    }


def run(args: argparse.Namespace) -> int:
    output_folder(args.out)
    result = run_benchmark(**options(args))
    written = write_benchmark(result, args.out)
    print(f"wrote {written[0]} and {written[1]}", file=sys.stderr)
    timed = {row["model"] for row in result.results}
    missing = [name for name in _split(args.models) if name not in timed]
    if missing:
        print(f"{len(missing)} model(s) could not be loaded and were skipped: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


def _batch_sizes(text: str) -> list[int]:
    try:
        return [int(b) for b in _split(text)]
    except ValueError:
        raise ValueError(f"--batch-sizes must be comma-separated whole numbers, got {text!r}") from None


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
