"""Reproduce the paper's Table 4 (inference time) side by side: ``python benchmarks/table4.py --help``.

Same options as ``micam benchmark``; works with micam installed or with ``PYTHONPATH=src``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    try:
        import micam  # noqa: F401
    except ImportError:  # a checkout without an install
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from micam.cli.main import main

    sys.exit(main(["benchmark", *sys.argv[1:]]))
