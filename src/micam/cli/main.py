"""The ``micam`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from micam.cli import explain


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="micam", description="Explain what a CNN looks at, with MI-CAM and peers.")
    commands = parser.add_subparsers(dest="command", required=True)
    explain.add_arguments(
        commands.add_parser("explain", help="heatmaps and top-5 classes for images", description=explain.__doc__)
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "explain":
            return explain.run(args)
    except (ValueError, RuntimeError) as error:
        print(f"micam {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
