"""``resilient-http config``: the effective configuration and where each value came from."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from ._exceptions import ConfigError
from .config import describe_environment
from .pool import cleanup_closed_needed

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the flags of ``config``."""
    parser.add_argument("--json", action="store_true", help="print JSON for machines")


def run(args: argparse.Namespace) -> int:
    """Print the settings; exit 2 with a one-line message when a variable is invalid."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            reports = describe_environment()
        except ConfigError as error:
            print(f"resilient-http config: error: {error}", file=sys.stderr)
            return 2
    for warning in caught:
        print(f"resilient-http config: warning: {warning.message}", file=sys.stderr)
    cleanup = "on" if cleanup_closed_needed() else "off"
    if args.json:
        settings = {r.variable: {"value": r.value, "source": r.source} for r in reports}
        print(json.dumps({"settings": settings, "cleanup_closed_auto": cleanup}, indent=2))
        return 0
    width = max(len(r.variable) for r in reports)
    value_width = max(len(r.value) for r in reports)
    for r in reports:
        print(f"{r.variable:<{width}}  {r.value:<{value_width}}  ({r.source})")
    print(f"# ENABLE_CLEANUP_CLOSED=auto is {cleanup} on this Python")
    return 0
