"""What the demo prints: its header, the client's summary, the comparison table, the checks,
and the ``--json`` document. The tuning report itself is ``analysis/report.py``'s rendering,
reused as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from resilient_http.analysis.report import Analysis, to_json
from resilient_http.demo.checks import Check
from resilient_http.demo.load import ClientSetup, LoadResult, RunResult
from resilient_http.demo.scenarios import Scenario

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "json_document",
    "print_checks",
    "print_comparison",
    "print_header",
    "print_interrupted",
    "print_summary",
]


def print_header(
    console: Console,
    scenario: Scenario,
    setup: ClientSetup,
    requests: int,
    concurrency: int,
    telemetry: str,
) -> None:
    """What is about to run, and where the telemetry goes."""
    console.print(f"[bold]resilient-http demo[/bold]: scenario [bold]{scenario.name}[/bold]")
    for label, text in (
        ("upstream", f"{scenario.summary} (its own process on 127.0.0.1)"),
        ("expect", scenario.expect),
        ("client", setup.describe()),
        ("load", _load_text(scenario, requests, concurrency)),
        ("telemetry", telemetry),
    ):
        console.print(f"  {label:<10}{text}", highlight=False, markup=False, soft_wrap=True)


def _load_text(scenario: Scenario, requests: int, concurrency: int) -> str:
    if scenario.pace is not None:
        return (
            f"{requests} GET calls started at {scenario.pace:.0f}/s whatever the answers, "
            f"at most {concurrency} at a time"
        )
    return f"{requests} GET calls, {concurrency} at a time"


def print_summary(console: Console, run: RunResult) -> None:
    """The client's view of a run and the upstream's counters, in a few lines."""
    load, up = run.load, run.upstream
    latency = load.latency_ms()
    console.print(
        f"Client: {load.calls} calls in {load.seconds:.2f} s ({load.throughput:.0f}/s), "
        f"{load.succeeded} answered 2xx ({load.success_rate:.1%}), {load.failed} failed"
        f"{_interrupted(load)}; "
        f"latency p50/p95/p99 {_ms(latency['p50'])}/{_ms(latency['p95'])}/"
        f"{_ms(latency['p99'])} ms{_failures(load)}",
        highlight=False,
        soft_wrap=True,
    )
    statuses = ", ".join(f"{n} x {s}" for s, n in sorted(up.responses_by_status.items()))
    console.print(
        f"Upstream ({run.upstream_address}) counted: {up.requests} requests on "
        f"{up.connections_opened} connections (at most {up.max_open_connections} open); "
        f"answers {statuses or 'none'}; {up.stale_closes} stale keep-alive closes, "
        f"{up.resets} resets, {up.rate_limited} rate limited",
        highlight=False,
        soft_wrap=True,
    )


def print_comparison(console: Console, runs: list[RunResult]) -> None:
    """The same load through each client setup, side by side."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"Same load, {len(runs)} clients (latency in ms; these runs record no telemetry)",
        title_justify="left",
        box=box.SIMPLE,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("client", no_wrap=True)
    for column in ("success", "2xx/s", "p95", "p99", "errors", "429/503", "sent", "connects"):
        table.add_column(column, justify="right", no_wrap=True)
    for run in runs:
        load, latency = run.load, run.load.latency_ms()
        table.add_row(
            run.setup.label,
            f"{load.success_rate:.1%}",
            f"{load.goodput:.0f}",
            *(_ms(latency[q]) for q in ("p95", "p99")),
            str(load.failed),
            f"{run.throttled_share:.0%}",
            str(run.upstream.requests),
            str(run.connects),
        )
    console.print(table)
    for run in runs:
        console.print(
            f"  {run.setup.label}: {run.setup.describe()}", highlight=False, soft_wrap=True
        )
    console.print(
        f"  2xx/s: calls answered 2xx per second (goodput); errors: of {runs[0].load.calls} "
        "calls; 429/503: share of the requests the upstream received (sent) answered so; "
        "connects: connection attempts the client made, refused ones included (aiohttp itself "
        "resends once on a dead keep-alive connection)",
        highlight=False,
        soft_wrap=True,
    )


def print_checks(console: Console, checks: list[Check], telemetry_file: Path) -> None:
    """The report's figures next to the same quantities counted by the demo and the upstream."""
    from rich import box
    from rich.table import Table

    table = Table(
        title="The report checked against the upstream's own counters",
        title_justify="left",
        box=box.SIMPLE,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("figure", no_wrap=True)
    table.add_column("report", justify="right")
    table.add_column("counted", justify="right")
    table.add_column("", no_wrap=True)
    table.add_column("counted by")
    for check in checks:
        table.add_row(
            check.name,
            "-" if check.report is None else str(check.report),
            str(check.expected),
            "ok" if check.agrees else "[bold red]DIFFERS[/bold red]",
            check.source,
        )
    console.print(table)
    _print_telemetry_file(console, telemetry_file)


def print_interrupted(console: Console, main: RunResult, telemetry_file: Path) -> None:
    """What a Ctrl-C left: the calls made, those cut short, and the file to analyse again."""
    load = main.load
    console.print(
        f"Interrupted (Ctrl-C) after {load.calls} calls: {load.interrupted} cut short, counted "
        "as interrupted, not as errors. The checks against the upstream's counters need a "
        "complete run.",
        highlight=False,
        soft_wrap=True,
    )
    _print_telemetry_file(console, telemetry_file)


def _print_telemetry_file(console: Console, telemetry_file: Path) -> None:
    console.print(
        f"Telemetry file: {telemetry_file}\n"
        f"  read it again with: resilient-http analyze {telemetry_file}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def json_document(
    scenario: Scenario,
    requests: int,
    concurrency: int,
    telemetry_file: Path | None,
    main: RunResult,
    analysis: Analysis | None,
    checks: list[Check],
    comparison: list[RunResult],
    *,
    interrupted: bool = False,
) -> dict[str, Any]:
    """``--json``: the run, both sides' counts, the report and the checks (none when a Ctrl-C
    cut the run short), for machines."""
    upstream = main.upstream.to_dict()
    del upstream["request_log"]  # per-request detail; the counters are what the demo reports
    return {
        "scenario": scenario.name,
        "interrupted": interrupted,
        "requests": requests,
        "concurrency": concurrency,
        "telemetry_file": None if telemetry_file is None else str(telemetry_file),
        "client": _client_json(main.setup, main.load),
        "upstream": {"address": main.upstream_address, **upstream},
        "report": None if analysis is None else to_json(analysis),
        "checks": [
            {
                "name": c.name,
                "report": c.report,
                "counted": c.expected,
                "agrees": c.agrees,
                "source": c.source,
            }
            for c in checks
        ],
        "compare": _comparison_json(comparison),
    }


def _comparison_json(runs: list[RunResult]) -> list[dict[str, Any]]:
    """``--compare`` rows for the JSON document."""
    return [
        {
            **_client_json(run.setup, run.load),
            "goodput_per_s": round(run.load.goodput, 1),
            "throttled_share": round(run.throttled_share, 4),
            "new_connections": run.upstream.connections_opened,
            "connection_attempts": run.connects,
            "upstream_requests": run.upstream.requests,
            "retries": run.extra_requests,
            "max_open_connections": run.upstream.max_open_connections,
        }
        for run in runs
    ]


def _client_json(setup: ClientSetup, load: LoadResult) -> dict[str, Any]:
    return {
        "label": setup.label,
        "setup": setup.describe(),
        "calls": load.calls,
        "succeeded": load.succeeded,
        "failed": load.failed,
        "interrupted": load.interrupted,
        "success_rate": round(load.success_rate, 4),
        "seconds": round(load.seconds, 3),
        "throughput_per_s": round(load.throughput, 1),
        "latency_ms": {q: None if v is None else round(v, 3) for q, v in load.latency_ms().items()},
        "statuses": {str(s): n for s, n in sorted(load.statuses.items())},
        "errors": dict(sorted(load.errors.items())),
        "connection_errors": load.connection_errors,
    }


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _interrupted(load: LoadResult) -> str:
    return f", {load.interrupted} interrupted" if load.interrupted else ""


def _failures(load: LoadResult) -> str:
    if not load.errors:
        return ""
    return " (raised: " + ", ".join(f"{n} {name}" for name, n in load.errors.most_common()) + ")"
