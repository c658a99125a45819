"""``micam report``: one self-contained HTML page (no network, images inlined) of a results folder:
the tables of ``micam evaluate`` and ``micam benchmark`` and the figures of ``micam reproduce``; over
evaluations of several models, MI-CAM's ranks and paired verdicts across them (as docs/results.md has)."""

from __future__ import annotations

import argparse
from pathlib import Path

from micam.reports.html import write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, required=True, help="folder with results.json / benchmark.md / figures")
    parser.add_argument("--out", type=Path, default=None, help="HTML file (default: RESULTS/report.html)")
    parser.add_argument("--title", default="micam report")


def run(args: argparse.Namespace) -> int:
    out = write_report(args.results, args.out or args.results / "report.html", args.title)
    print(out)
    return 0
