"""The ``resilient-http`` command line: ``config``, ``demo``, ``analyze`` and ``compare``.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args)``;
this module only dispatches, so ``--help`` stays fast and CLI-only dependencies load on use.
``add_arguments`` never needs an extra: a plain ``pip install resilient-http-sdk`` builds every
parser, and a subcommand whose extra is missing says so in one line (exit 2) instead of running.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

from ._version import DISTRIBUTION, __version__

__all__ = [
    "EXTRA_MODULES",
    "SUBCOMMANDS",
    "build_parser",
    "main",
    "missing_extra",
    "positive_int",
    "run_subcommand",
]

EXTRA_MODULES: dict[str, tuple[str, ...]] = {"cli": ("rich", "orjson", "ddsketch")}
"""The modules each optional extra of ``pyproject.toml`` brings (a test keeps them equal)."""

SUBCOMMANDS: dict[str, tuple[str, str, str | None]] = {
    # subcommand: (module implementing it, one-line help, the extra it needs or None)
    "config": (
        "resilient_http._cli_config",
        "print the effective configuration and its sources",
        None,
    ),
    "demo": (
        "resilient_http.demo",
        "load a faulty local upstream, then print the tuning report",
        "cli",
    ),
    "analyze": (
        "resilient_http.analysis.command",
        "read OTLP JSON telemetry and recommend pool and retry settings",
        "cli",
    ),
    "compare": (
        "resilient_http.analysis.compare",
        "check that settings applied after BEFORE moved each advised figure the promised way",
        "cli",
    ),
}


class _Subcommand(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def build_parser() -> argparse.ArgumentParser:
    """The ``resilient-http`` parser with every subcommand's arguments (no extra needed)."""
    parser = argparse.ArgumentParser(
        prog="resilient-http", description="resilient_http command line"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text, _extra) in SUBCOMMANDS.items():
        module: _Subcommand = importlib.import_module(module_name)
        module.add_arguments(commands.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    module_name, _help, extra = SUBCOMMANDS[args.command]
    message = None if extra is None else missing_extra(f"resilient-http {args.command}", extra)
    if message is not None:
        print(message, file=sys.stderr)
        return 2
    module: _Subcommand = importlib.import_module(module_name)
    return run_subcommand(module.run, args)


def run_subcommand(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``run(args)``, a subcommand's exit status, as every entry point runs it: Ctrl-C is one
    line and 130; a reader of stdout gone before the end (``| head``) is 0 and nothing more.

    Text is printed on ``_text_console.TextConsole``, which raises ``BrokenPipeError`` as a
    plain ``print`` does (rich's own ``Console`` would exit 1).
    """
    try:
        status = run(args)
        # What stdout still buffers (a pipe is block-buffered) is written now, so that a reader
        # gone by then meets the handler below, not the interpreter's exit (status 120).
        sys.stdout.flush()
        return status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `resilient-http config | head`: not an error of ours
        # The interpreter flushes stdout again on exit: into nothing now, not the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def missing_extra(prog: str, extra: str) -> str | None:
    """The one line telling how to install ``extra`` for ``prog``, or None when its modules are
    all installed (checked before running, so a command never stops half way on an import)."""
    missing = [name for name in EXTRA_MODULES[extra] if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return (
        f"{prog}: error: needs the '{extra}' extra ({', '.join(missing)} not installed): "
        f"pip install '{DISTRIBUTION}[{extra}]'"
    )


def positive_int(text: str) -> int:
    """An ``argparse`` type for the subcommands' counts: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value
