"""Reproduce the paper's Table 4 (inference time) side by side: ``python benchmarks/table4.py --help``.

Same options and files as ``micam benchmark`` (it calls ``micam.benchmark.run_benchmark``); works with micam
installed or with ``PYTHONPATH=src``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == "__main__":
    try:
        import micam  # noqa: F401
    except ImportError:  # a checkout without an install
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from micam.benchmark import run_benchmark, write_benchmark
    from micam.cli.benchmark import add_arguments, options

    parser = argparse.ArgumentParser(prog="benchmarks/table4.py", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args()
    try:
        result = run_benchmark(**options(args))
    except ValueError as error:  # an unknown method, no CUDA device: one line, exit 2
        parser.error(str(error))
    for path in write_benchmark(result, args.out):
        print(path)
