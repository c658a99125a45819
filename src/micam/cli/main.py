"""The ``micam`` command line."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Protocol

from micam.cli import benchmark, evaluate, explain, report, reproduce
from micam.runtime import is_disk_full, tune_allocator


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


DEBUG_HELP = "print the traceback of an error before its one-line message (also MICAM_DEBUG=1)"
# Exit codes: scripts tell a finished run, a run with skipped inputs, a refusal and a crash apart.
DONE, SKIPPED_INPUTS, USAGE_ERROR, INTERNAL_ERROR, INTERRUPTED = 0, 1, 2, 3, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="micam", description="Explain what a CNN looks at, with MI-CAM and peers.")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    everywhere = argparse.ArgumentParser(add_help=False)  # --debug also after the command's name
    everywhere.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (module, summary) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=module.__doc__, parents=[everywhere])
        module.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every exception ends in one line on stderr and an exit code (never a traceback
    unless --debug): 0 done, 1 some inputs skipped, 2 a usage or environment error (bad arguments or
    files, a full disk, an unwritable folder), 3 an internal error, 130 interrupted."""
    args = build_parser().parse_args(argv)
    tune_allocator()  # batched forward passes reuse their memory instead of page-faulting through it
    debug = bool(args.debug or os.environ.get("MICAM_DEBUG"))
    prefix = f"micam {args.command}"
    try:
        return COMMANDS[args.command][0].run(args)
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as error:
        if debug:
            traceback.print_exc()
        if isinstance(error, (ValueError, RuntimeError)):
            print(f"{prefix}: error: {error}", file=sys.stderr)
            return USAGE_ERROR
        if isinstance(error, OSError):  # the environment: a full disk, a missing or forbidden path
            what = "disk full" if is_disk_full(error) else (error.strerror or type(error).__name__)
            where = f": {error.filename}" if error.filename else ""
            print(f"{prefix}: error: {what}{where}", file=sys.stderr)
            return USAGE_ERROR
        print(
            f"{prefix}: internal error: {type(error).__name__}: {error} "
            "(rerun with --debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
