"""``resilient-http demo``: argparse wiring (the run itself is ``runner.py``).

Only the scenario names are imported here: ``resilient-http --help`` and the other subcommands
build this parser too, and should not pay for rich, the analysis or the load machinery.
"""

from __future__ import annotations

import argparse

from resilient_http.cli import positive_int
from resilient_http.demo.scenarios import DEFAULT_SCENARIO, SCENARIOS

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the demo's flags on ``parser``."""
    parser.add_argument(
        "--scenario",
        choices=list(SCENARIOS),
        default=DEFAULT_SCENARIO,
        help=f"what the upstream does wrong (default: {DEFAULT_SCENARIO})",
    )
    parser.add_argument(
        "--requests", type=positive_int, metavar="N", help="calls to make (default: per scenario)"
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        metavar="C",
        help="calls in flight at once (default: per scenario)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also run the same load with aiohttp's defaults, the seed note's 30/10 and the "
        "current config, and show them side by side",
    )
    parser.add_argument(
        "--telemetry-file",
        metavar="PATH",
        help="OTLP JSON lines file to write and report from, started fresh (default: "
        "$RESILIENT_HTTP_TELEMETRY_FILE, else ./resilient-http-demo.jsonl, if it does not exist "
        "yet; an existing file is never touched: then ./resilient-http-demo-N.jsonl)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of the text report"
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit status (see ``runner.run_demo``)."""
    # Imported here: the runner needs the `cli` extra, which cli.main has checked by now.
    from resilient_http.demo.runner import run_demo

    return run_demo(args)
