"""The demo's run, from load to tuning report.

One run of the chosen scenario goes through ``ResilientSession`` with the current configuration
(``RESILIENT_HTTP_*``) and the telemetry of ``configure_telemetry()``; the report is then
``resilient-http analyze`` of the file that run wrote, checked against the upstream's own
counters. ``--compare`` adds four runs of the same load without telemetry (plain aiohttp,
aiohttp-retry, the SDK with static settings and with the adaptive strategies), each against a
fresh upstream with the same seeded faults. Errors are one line on stderr: exit 2 for bad
settings, 1 for an unwritable telemetry file or an unreadable report.

A Ctrl-C while the load runs cuts the calls in flight short and starts no more (no comparison
either); the demo then flushes the telemetry and reports on the calls made, the cut ones
counted as interrupted, and exits 130. A second Ctrl-C stops at once.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import signal
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import resilient_http as rh
from resilient_http._text_console import TextConsole
from resilient_http.analysis.analyze import analyze_paths
from resilient_http.analysis.reader import InputError
from resilient_http.analysis.report import Analysis, render_text, write_json
from resilient_http.demo.checks import Check, cross_check
from resilient_http.demo.load import ClientSetup, RunResult, run_once
from resilient_http.demo.output import (
    json_document,
    print_checks,
    print_comparison,
    print_header,
    print_interrupted,
    print_summary,
)
from resilient_http.demo.scenarios import SCENARIOS, Scenario
from resilient_http.demo.telemetry import (
    create_telemetry_file,
    otlp_endpoint,
    sdk_disabled,
    start_telemetry,
)

__all__ = ["run_demo"]

PROG = "resilient-http demo"
# The shell's convention for a process ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130
# Flushing the telemetry at the end may wait this long for a collector that is down.
FLUSH_TIMEOUT_S = 10.0


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo for the parsed ``args``; returns the exit status."""
    scenario = SCENARIOS[args.scenario]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", rh.ConfigWarning)  # e.g. a misspelt variable's name
        try:
            config = rh.ClientConfig.from_env()
        except rh.ConfigError as exc:
            return _fail(2, str(exc))
    for warning in caught:
        print(f"{PROG}: warning: {warning.message}", file=sys.stderr)
    # With --json only the document goes to stdout; the text is rendered into nowhere.
    console = TextConsole(file=io.StringIO()) if args.json else TextConsole()
    load = _Load(
        console,
        console.is_terminal and not args.json,
        scenario,
        args.requests or scenario.requests,
        args.concurrency or scenario.concurrency,
    )
    path: Path | None = None
    handle: rh.TelemetryHandle | None = None
    if sdk_disabled():
        telemetry_text = "off (OTEL_SDK_DISABLED=true): no telemetry file, no tuning report"
    else:
        try:
            path = create_telemetry_file(args.telemetry_file)
            handle = start_telemetry(path)
        except OSError as exc:
            reason = exc.strerror or exc
            return _fail(1, f"cannot write the telemetry file {exc.filename}: {reason}")
        except rh.ConfigError as exc:
            if not args.telemetry_file and path is not None:
                path.unlink()  # the empty file this run created for itself
            return _fail(2, str(exc))
        telemetry_text = _telemetry_text(path)
    current = ClientSetup("current config", "sdk", config, telemetry=handle is not None)
    print_header(console, scenario, current, load.requests, load.concurrency, telemetry_text)
    main, comparison, interrupted = asyncio.run(
        _run_all(load, current, handle, compare=args.compare)
    )
    print_summary(console, main)
    if comparison:
        print_comparison(console, comparison)
    analysis: Analysis | None = None
    checks: list[Check] = []
    if handle is None or path is None:
        console.print(
            "Telemetry is off (OTEL_SDK_DISABLED=true): no telemetry file was written, so "
            "there is no tuning report. The figures above are the demo's and the upstream's "
            "own counts.",
            highlight=False,
        )
    else:
        try:
            analysis = analyze_paths([path])
        except InputError as exc:
            if not interrupted:
                return _fail(1, f"cannot report from {path}: {exc}")
            # Interrupted before a call was recorded: nothing to report on.
        if analysis is not None:
            console.print()
            console.rule(f"Tuning report: resilient-http analyze {path.name}", align="left")
            render_text(analysis, console)
            console.print()
        if interrupted:
            print_interrupted(console, main, path)
        elif analysis is not None:
            checks = cross_check(analysis, main)
            print_checks(console, checks, path)
    if args.json:
        telemetry_file = None if handle is None else path
        document = json_document(
            scenario,
            load.requests,
            load.concurrency,
            telemetry_file,
            main,
            analysis,
            checks,
            comparison,
            interrupted=interrupted,
        )
        write_json(document, sys.stdout)
    if interrupted:
        print(f"{PROG}: interrupted: {main.load.interrupted} calls cut short", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


@dataclass(frozen=True)
class _Load:
    """The load of this demo run, and where its progress is shown."""

    console: Console
    show_progress: bool
    scenario: Scenario
    requests: int
    concurrency: int

    async def run(self, setup: ClientSetup, stop: asyncio.Event) -> RunResult:
        """One run through ``setup`` against a fresh upstream, with a progress bar, until
        ``stop``."""
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, disable=not self.show_progress) as bar:
            task = bar.add_task(setup.label, total=self.requests, failed=0)
            failed = 0

            def call_done(ok: bool) -> None:
                nonlocal failed
                failed += not ok
                bar.update(task, advance=1, failed=failed)

            return await run_once(
                self.scenario.plan,
                setup,
                self.requests,
                self.concurrency,
                call_done,
                stop,
                self.scenario.gaps,
                self.scenario.pace,
            )


async def _run_all(
    load: _Load, current: ClientSetup, handle: rh.TelemetryHandle | None, *, compare: bool
) -> tuple[RunResult, list[RunResult], bool]:
    """The reported run, then (``--compare``) the four runs without telemetry; and whether a
    Ctrl-C cut them short."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_ctrl_c() -> None:
        stop.set()
        # Python's own handler again (KeyboardInterrupt): a second Ctrl-C stops at once.
        loop.remove_signal_handler(signal.SIGINT)

    loop.add_signal_handler(signal.SIGINT, on_ctrl_c)
    try:
        try:
            main = await load.run(current, stop)
        finally:
            if handle is not None:
                # Flushed now: the file is complete before it is read, and the comparison's
                # runs (which report nothing) are not sampled into it.
                await handle.aclose(timeout=FLUSH_TIMEOUT_S)
        comparison = []
        for setup in _comparison_setups(current) if compare else ():
            run = await load.run(setup, stop)
            if stop.is_set():
                break  # a run cut short would not compare with the others
            comparison.append(run)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    return main, comparison, stop.is_set()


def _comparison_setups(current: ClientSetup) -> tuple[ClientSetup, ...]:
    """Plain aiohttp, aiohttp-retry, and the SDK with the static and the adaptive strategies,
    each with the current config's pool, timeouts and retries."""
    config = current.config or rh.ClientConfig.from_env()
    static = config.replace(concurrency="static", hedge_after="off")
    adaptive = config.replace(
        concurrency="adaptive", hedge_after="auto", breaker=config.breaker.replace(enabled=True)
    )
    return (
        ClientSetup("aiohttp", "aiohttp"),
        ClientSetup("aiohttp-retry", "aiohttp-retry", config),
        ClientSetup("SDK static", "sdk", static),
        ClientSetup("SDK adaptive", "sdk", adaptive),
    )


def _telemetry_text(path: Path) -> str:
    endpoints = {otlp_endpoint("TRACES"), otlp_endpoint("METRICS")} - {None}
    if endpoints:
        return f"{path}, and OTLP to {', '.join(sorted(e for e in endpoints if e))}"
    return f"{path} (no OTLP export: OTEL_EXPORTER_OTLP_ENDPOINT is not set)"


def _fail(code: int, message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code
