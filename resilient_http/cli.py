"""The ``resilient-http`` command line: ``config``, ``analyze`` (and ``demo`` when it lands).

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args)``;
this module only dispatches, so ``--help`` stays fast and CLI-only dependencies load on use.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Protocol

from ._version import __version__

__all__ = ["main", "positive_int"]

# subcommand -> (module implementing it, one-line help)
_SUBCOMMANDS = {
    "config": ("resilient_http._cli_config", "print the effective configuration and its sources"),
    "demo": ("resilient_http.demo", "load a faulty local upstream, then print the tuning report"),
    "analyze": (
        "resilient_http.analysis.command",
        "read OTLP JSON telemetry and recommend pool and retry settings",
    ),
}


class _Subcommand(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="resilient-http", description="resilient_http command line"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules: dict[str, _Subcommand] = {}
    for name, (module_name, help_text) in _SUBCOMMANDS.items():
        module: _Subcommand = importlib.import_module(module_name)
        module.add_arguments(commands.add_parser(name, help=help_text, description=help_text))
        modules[name] = module
    args = parser.parse_args(argv)
    try:
        return modules[args.command].run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `resilient-http config | head`: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def positive_int(text: str) -> int:
    """An ``argparse`` type for the subcommands' counts: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value
