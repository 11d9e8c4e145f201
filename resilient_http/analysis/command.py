"""``resilient-http analyze PATH... [--json] [--html FILE] [--jobs N]``, or ``analyze
--prometheus URL [--since DURATION] [--selector '{...}'] [--prometheus-header 'NAME: VALUE']
[--prometheus-timeout SECONDS]``: argparse wiring.

``resilient_http/cli.py`` calls ``add_arguments`` on its ``analyze`` sub-parser and ``run`` with
the parsed namespace; ``python -m resilient_http.analysis`` does the same on its own parser.
Errors (a missing path, nothing usable read) are one line on stderr and exit status 1, never a
traceback.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from collections.abc import Sequence

from resilient_http.analysis.prometheus_arguments import QUERY_TIMEOUT_S
from resilient_http.cli import missing_extra, positive_int, run_subcommand

__all__ = ["add_arguments", "main", "run"]

PROG = "resilient-http analyze"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare PATH..., ``--prometheus``, ``--json`` and ``--html FILE`` on ``parser``."""
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="OTLP JSON lines files or folders (searched recursively for *.json, *.jsonl, "
        "rotated and .gz files); - reads standard input (plain or gzip)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON document")
    parser.add_argument(
        "--html", metavar="FILE", help="also write the text report as an HTML page to FILE"
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        metavar="N",
        help="reading processes (default: one per CPU for inputs over 8 MB)",
    )
    parser.add_argument(
        "--prometheus",
        metavar="URL",
        help="analyse the SDK's metrics in this Prometheus (or Thanos/Mimir query API) instead "
        "of files, per upstream and per service (job)",
    )
    parser.add_argument(
        "--since",
        default="1h",
        metavar="DURATION",
        help="with --prometheus: the range, ending now, as a Prometheus duration (default 1h)",
    )
    parser.add_argument(
        "--selector",
        default="",
        metavar="'{MATCHERS}'",
        help="with --prometheus: label matchers applied to every series read, "
        """e.g. '{job=~"checkout|search"}'""",
    )
    parser.add_argument(
        "--prometheus-header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="with --prometheus: a header sent with every request to it (repeatable), e.g. "
        "'X-Scope-OrgID: tenant-1' for Mimir, or 'Authorization: Bearer TOKEN'",
    )
    parser.add_argument(
        "--prometheus-timeout",
        type=_seconds,
        default=QUERY_TIMEOUT_S,
        metavar="SECONDS",
        help="with --prometheus: how long an answer may keep it waiting (default "
        f"{QUERY_TIMEOUT_S:g}: above Prometheus's own 2-minute query timeout)",
    )
    parser.add_argument(
        "--recorded",
        action="store_true",
        help="with --prometheus: counts from the bundled recording rules' series (one sample "
        "per minute: fast on large fleets, exact to the rules' step)",
    )


def run(args: argparse.Namespace) -> int:
    """Analyse ``args.paths`` and print the report; 0 on success, 1 with a one-line message."""
    # Imported here, not at the top: building the parser must not need the `cli` extra
    # (orjson, ddsketch, rich), so that a plain install can say which extra is missing.
    from resilient_http.analysis.analyze import analyze_paths
    from resilient_http.analysis.reader import InputError
    from resilient_http.analysis.report import render_text, to_json, write_json

    prometheus = getattr(args, "prometheus", None)
    if bool(prometheus) == bool(args.paths):
        print(f"{PROG}: error: give PATH... or --prometheus URL (one of them)", file=sys.stderr)
        return 2
    if prometheus:
        return _run_prometheus(args, prometheus)
    try:
        analysis = analyze_paths(args.paths, jobs=getattr(args, "jobs", None))
    except InputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    html_path = getattr(args, "html", None)
    if args.json:
        write_json(to_json(analysis), sys.stdout)
    if not args.json or html_path:
        from resilient_http._text_console import TextConsole

        # With --json the text report is only recorded for the HTML file: printed to nowhere
        # (a quiet console would not record it either).
        console = TextConsole(record=bool(html_path), file=io.StringIO() if args.json else None)
        render_text(analysis, console)
        if html_path:
            try:
                console.save_html(html_path)
            except OSError as exc:
                print(f"{PROG}: error: cannot write {html_path}: {exc.strerror}", file=sys.stderr)
                return 1
    return 0


def _run_prometheus(args: argparse.Namespace, url: str) -> int:
    from resilient_http.analysis.fleet_report import fleet_json, render_fleet_text
    from resilient_http.analysis.prometheus import PrometheusError, analyze_prometheus
    from resilient_http.analysis.prometheus_arguments import (
        PrometheusArgumentError,
        parse_header,
    )
    from resilient_http.analysis.report import write_json

    try:
        headers = [parse_header(text) for text in args.prometheus_header]
        fleet = analyze_prometheus(
            url,
            args.since,
            args.selector,
            recorded=args.recorded,
            headers=headers,
            timeout=args.prometheus_timeout,
        )
    except PrometheusArgumentError as exc:  # only these: exit 2 means a bad argument
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except PrometheusError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        write_json(fleet_json(fleet), sys.stdout)
        return 0
    from resilient_http._text_console import TextConsole

    render_fleet_text(fleet, TextConsole())
    return 0


def _seconds(text: str) -> float:
    """An ``argparse`` type for a timeout: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m resilient_http.analysis``)."""
    parser = argparse.ArgumentParser(prog=PROG, description="Tuning report from OTLP JSON files.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    message = missing_extra(PROG, "cli")
    if message is not None:
        print(message, file=sys.stderr)
        return 2
    return run_subcommand(run, args)
