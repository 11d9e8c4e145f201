"""``analyze --prometheus`` against a real Prometheus scraping real services.

Three SDK processes (``tests/prometheus_load.py``) run demo loads against the bundled upstream
with different faults, each serving ``/metrics`` (``OTEL_METRICS_EXPORTER=prometheus``) and
writing its telemetry file. Prometheus scrapes them every second. The report computed with
PromQL must count exactly what the file analysis of the same runs counts, per upstream and per
service, and its percentiles must fall in the same histogram bucket.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from resilient_http.analysis.recording_rules import GROUP, render_rules
from resilient_http.telemetry.instruments import DURATION_BUCKETS
from tests.helpers import clean_environ, run_python
from tests.prometheus_server import free_port, prometheus_binary, query, running_prometheus

pytestmark = pytest.mark.prometheus

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "otel-collector" / "grafana" / "dashboards" / "resilient-http.json"
SCENARIOS = ("mixed", "throttled", "stale-keepalive")
# Figures that are counts (exact from metrics in both sources).
COUNTS = (
    "requests",
    "attempts",
    "retries",
    "retries_suppressed",
    "errors",
    "interrupted",
    "connections_acquired",
    "new_connections",
    "pool_queued",
    "attempt_error_types",
    "reuse_ratio",
    "throttled_share",
    "error_rate",
    "hedges",
)
# The mixed load hedges its calls (an attempt with no answer after this long): hedges counted.
HEDGED = {"mixed": "0.02"}
# Rules decided by counts alone (the pool rules also read gauges, which Prometheus sees only at
# its scrapes and the file at its exports; the throttling rule tells load-dependent throttling
# from random 503s by the connections in use of each attempt, which only spans carry).
COUNT_RULES = frozenset({"stale-keepalive", "retry-after-too-long", "timeouts"})
STARTUP_SAFETY_NET_S = 120.0
# The shipped rules evaluate every minute; here every 200 ms, so the test need not wait.
RULES_INTERVAL_MS = 200
RULES_FILE = "recording-rules.yml"


@dataclass
class Service:
    """One SDK process under load."""

    job: str
    port: int
    telemetry_file: Path
    process: asyncio.subprocess.Process
    done_at: float = 0.0


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[list[Service]]:
    prometheus_binary()  # skip before starting anything
    started: list[Service] = []
    try:
        for job in SCENARIOS:
            port = free_port()
            telemetry_file = tmp_path / f"{job}.jsonl"
            env = clean_environ(
                OTEL_METRICS_EXPORTER="prometheus",
                OTEL_TRACES_EXPORTER="none",
                OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
                OTEL_EXPORTER_PROMETHEUS_PORT=str(port),
                OTEL_SERVICE_NAME=job,
                RESILIENT_HTTP_TELEMETRY_FILE=str(telemetry_file),
                **({"RESILIENT_HTTP_HEDGE_AFTER": HEDGED[job]} if job in HEDGED else {}),
            )
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.prometheus_load",
                job,
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            started.append(Service(job, port, telemetry_file, process))
        yield started
    finally:
        for service in started:
            if service.process.returncode is None:
                service.process.kill()
                await service.process.wait()


async def _line(service: Service) -> str:
    assert service.process.stdout is not None
    return (await service.process.stdout.readline()).decode().strip()


async def _stop(service: Service) -> None:
    assert service.process.stdin is not None
    service.process.stdin.close()
    assert await service.process.wait() == 0


def _scrape_config(services: list[Service]) -> str:
    jobs = "".join(
        f"  - job_name: {s.job}\n    static_configs: [{{targets: ['127.0.0.1:{s.port}']}}]\n"
        for s in services
    )
    return (
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files: [{RULES_FILE}]\nscrape_configs:\n{jobs}"
    )


async def _scraped_after_done(url: str, services: list[Service]) -> float:
    """Wait until Prometheus holds a successful scrape of every service taken after its last
    call (its final figures); the latest of those scrapes' times."""
    async with asyncio.timeout(STARTUP_SAFETY_NET_S):
        while True:
            # timestamp() of a plain selector is the sample's own time (of `up == 1` it would
            # be the evaluation time): the start of the latest scrape.
            stamps, ups = await query(url, "timestamp(up)"), await query(url, "up")
            scraped = {row["metric"]["job"]: float(row["value"][1]) for row in stamps}  # type: ignore[index]
            healthy = {row["metric"]["job"] for row in ups if row["value"][1] == "1"}  # type: ignore[index]
            if all(scraped.get(s.job, 0.0) > s.done_at and s.job in healthy for s in services):
                return max(scraped.values())
            await asyncio.sleep(0.2)  # spaces the queries out; the scrape result is the wait


async def _dashboard_figures(url: str) -> dict[str, dict[tuple[Any, ...], int]]:
    """The Grafana dashboard's report panels, evaluated as Grafana would over the last 10m."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    figures: dict[str, dict[tuple[Any, ...], int]] = {}
    for key, title in (("calls", "Calls over the range"), ("retries", "Retries by reason")):
        (panel,) = [p for p in panels if p["title"].startswith(title) and p["type"] == "table"]
        expr = panel["targets"][0]["expr"]
        for variable, value in (("$service", ".*"), ("$upstream", ".*"), ("$__range", "10m")):
            expr = expr.replace(variable, value)
        figures[key] = {}
        for row in await query(url, expr):
            labels: dict[str, str] = row["metric"]  # type: ignore[assignment]
            reason = labels.get("resilient_http_retry_reason")
            host = (labels["server_address"], int(labels["server_port"]))
            figures[key][host + ((reason,) if reason else ())] = round(float(row["value"][1]))  # type: ignore[index]
    return figures


async def _recorded_after(url: str, scraped_at: float) -> None:
    """Wait until the recording rules have read the samples up to ``scraped_at`` (their windows
    end half an interval before each evaluation)."""
    async with asyncio.timeout(STARTUP_SAFETY_NET_S), aiohttp.ClientSession() as client:
        while True:
            async with client.get(f"{url}/api/v1/rules") as resp:
                groups = (await resp.json())["data"]["groups"]
            (group,) = [g for g in groups if g["name"] == GROUP]
            evaluated = group.get("lastEvaluation", "0001-01-01T00:00:00Z")
            # RFC 3339 with nanoseconds: cut to microseconds for fromisoformat.
            at = datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", evaluated))
            if at.timestamp() - RULES_INTERVAL_MS / 2000 > scraped_at:
                return
            await asyncio.sleep(0.2)  # spaces the queries out; the evaluation is the wait


def _rows(report: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {
        (u["server.address"], u["server.port"], u["http.request.method"]): u
        for u in report["upstreams"]
    }


def _metrics_only(telemetry_file: Path) -> Path:
    """The file's metric lines alone. With spans, the file analysis takes latency percentiles
    from them (attempt spans start once a connection is had, the attempt histogram when one
    is asked for); without, from the same histograms Prometheus holds, as compared here."""
    copy = telemetry_file.with_suffix(".metrics.jsonl")
    with telemetry_file.open() as lines, copy.open("w") as out:
        out.writelines(line for line in lines if '"resourceMetrics"' in line)
    return copy


def _in_the_same_bucket(ours: float, theirs: float) -> bool:
    """Whether ``theirs`` (ms) lies in the duration bucket that holds ``ours`` (the file's
    percentiles are also tightened by each stream's min and max, within the bucket)."""
    lower = 0.0
    for upper in (*DURATION_BUCKETS, float("inf")):
        if ours / 1000 <= upper:
            return lower <= theirs / 1000 <= upper
        lower = upper
    raise AssertionError("unreachable: the last bucket has no upper bound")


def _same_counts(from_prometheus: dict[str, Any], from_files: dict[str, Any]) -> None:
    prometheus_rows, file_rows = _rows(from_prometheus), _rows(from_files)
    assert prometheus_rows.keys() == file_rows.keys()
    for key, row in prometheus_rows.items():
        expected = file_rows[key]
        assert {k: row[k] for k in COUNTS} == {k: expected[k] for k in COUNTS}, key
        assert row["breaker"]["rejected"] == expected["breaker"]["rejected"], key
        for figure in ("latency_ms", "attempt_latency_ms", "pool_wait_ms"):
            for quantile, theirs in expected[figure].items():
                ours = row[figure][quantile]
                assert (ours is None) == (theirs is None), (key, figure)
                if theirs is not None:
                    assert _in_the_same_bucket(ours, theirs), (key, figure, quantile, ours, theirs)
    rules = {(r["rule"], r["variable"], r["value"]) for r in from_prometheus["recommendations"]}
    expected_rules = {(r["rule"], r["variable"], r["value"]) for r in from_files["recommendations"]}
    assert {r for r in rules if r[0] in COUNT_RULES} == {
        r for r in expected_rules if r[0] in COUNT_RULES
    }


async def test_prometheus_report_counts_what_the_files_count(
    services: list[Service], tmp_path: Path
) -> None:
    rules = {RULES_FILE: render_rules(RULES_INTERVAL_MS)}
    folder = tmp_path / "prometheus"
    async with running_prometheus(_scrape_config(services), folder, files=rules) as url:
        async with asyncio.timeout(STARTUP_SAFETY_NET_S):
            for service in services:
                assert await _line(service) == "serving"
            for service in services:
                assert await _line(service) == "done"
                service.done_at = time.time()
        scraped_at = await _scraped_after_done(url, services)
        code, out, err = await run_python(
            "-m", "resilient_http", "analyze", "--prometheus", url, "--since", "10m", "--json",
            cwd=ROOT, env=clean_environ(),
        )  # fmt: skip
        assert code == 0, err
        dashboard = await _dashboard_figures(url)
        await _recorded_after(url, scraped_at)
        code, recorded_out, err = await run_python(
            "-m", "resilient_http", "analyze", "--prometheus", url, "--since", "10m", "--json",
            "--recorded", cwd=ROOT, env=clean_environ(),
        )  # fmt: skip
        assert code == 0, err
        for service in services:
            await _stop(service)
    from_prometheus = json.loads(out)
    assert (from_prometheus["files"], from_prometheus["lines"]) == (0, 0)
    assert from_prometheus["prometheus"] == {
        "url": url,
        "since": "10m",
        "selector": "",
        "recorded": False,
    }
    files = [str(_metrics_only(s.telemetry_file)) for s in services]
    code, out, err = await run_python(
        "-m", "resilient_http", "analyze", *files, "--json", cwd=ROOT, env=clean_environ()
    )
    assert code == 0, err
    from_files = json.loads(out)
    _same_counts(from_prometheus, from_files)
    # The dashboard's report row shows the report's own figures.
    hosts = {(u["server.address"], u["server.port"]): u for u in from_prometheus["upstreams"]}
    assert dashboard["calls"] == {host: u["requests"] for host, u in hosts.items()}
    assert dashboard["retries"] == {
        (*host, reason): n for host, u in hosts.items() for reason, n in u["retries"].items()
    }
    from_rules = json.loads(recorded_out)
    assert from_rules["prometheus"]["recorded"] is True
    _same_counts(from_rules, from_files)
    assert [s["job"] for s in from_prometheus["services"]] == sorted(SCENARIOS)
    # The hedged load hedged (the figures compared above are not all empty).
    hedges = {s["job"]: s["upstreams"][0]["hedges"] for s in from_prometheus["services"]}
    assert {job for job, counted in hedges.items() if sum(counted.values())} == set(HEDGED)
    for part in from_prometheus["services"]:
        (service,) = [s for s in services if s.job == part["job"]]
        code, out, err = await run_python(
            "-m", "resilient_http", "analyze", str(_metrics_only(service.telemetry_file)), "--json",
            cwd=ROOT, env=clean_environ(),
        )  # fmt: skip
        assert code == 0, err
        _same_counts(part, json.loads(out))
