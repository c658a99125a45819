"""The ``micam`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Protocol

from micam.cli import benchmark, evaluate, explain, report, reproduce


class Command(Protocol):
    """A command's module: its arguments, its run, and a docstring (the command's description)."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# name -> (module with add_arguments / run and a docstring, one-line help)
COMMANDS: dict[str, tuple[Command, str]] = {
    "explain": (explain, "heatmaps and top-5 classes for images"),
    "evaluate": (evaluate, "the paper's metrics on labelled images (resumable)"),
    "benchmark": (benchmark, "time MI-CAM against its peers (Table 4)"),
    "report": (report, "a self-contained HTML page of a results folder"),
    "reproduce": (reproduce, "the paper's tables and figures in one command"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="micam", description="Explain what a CNN looks at, with MI-CAM and peers.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (module, summary) in COMMANDS.items():
        module.add_arguments(commands.add_parser(name, help=summary, description=module.__doc__))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][0].run(args)
    except (ValueError, RuntimeError) as error:
        print(f"micam {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"micam {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug of micam's or of the model's: one line, exit 3 (MICAM_DEBUG=1 re-raises)
        if os.environ.get("MICAM_DEBUG"):
            raise
        print(
            f"micam {args.command}: internal error: {type(error).__name__}: {error} "
            "(rerun with MICAM_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 3


if __name__ == "__main__":
    sys.exit(main())
