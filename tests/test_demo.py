"""``resilient-http demo`` end to end, in a subprocess, as a user runs it.

Small loads keep the file fast; every figure the demo's report gives about a run is checked
against what the upstream (another process) counted, and each scenario's advice against the
direction an operator expects.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

import resilient_http as rh
from resilient_http.analysis.analyze import analyze_paths
from resilient_http.analysis.report import to_json
from resilient_http.cli import main
from resilient_http.demo.scenarios import SCENARIOS
from resilient_http.demo.telemetry import create_telemetry_file
from tests.helpers import run_python
from tests.otlp_receiver import OTLPReceiver

ROOT = Path(__file__).resolve().parents[1]
PER_HOST = "RESILIENT_HTTP_LIMIT_PER_HOST"
KEEPALIVE = "RESILIENT_HTTP_KEEPALIVE_TIMEOUT"


async def run_demo(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> tuple[int, str, str]:
    """``python -m resilient_http demo ARGS`` with warnings as errors; (status, stdout, stderr).

    The autouse fixture has already removed RESILIENT_HTTP_* and OTEL_* from os.environ.
    """
    return await run_python(
        "-W",
        "error",
        "-m",
        "resilient_http",
        "demo",
        *args,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


async def run_json(*args: str, telemetry_file: Path) -> dict[str, Any]:
    """The demo's ``--json`` document; the file comes from RESILIENT_HTTP_TELEMETRY_FILE."""
    code, out, err = await run_demo(
        *args, "--json", env={"RESILIENT_HTTP_TELEMETRY_FILE": str(telemetry_file)}
    )
    assert code == 0, err
    assert err == ""
    document: dict[str, Any] = json.loads(out)
    return document


async def run_healthy(
    telemetry_file: Path, requests: int, env: dict[str, str]
) -> tuple[int, str, str]:
    """The ``healthy`` scenario with ``requests`` calls into ``telemetry_file``."""
    return await run_demo(
        "--scenario",
        "healthy",
        "--requests",
        str(requests),
        "--telemetry-file",
        str(telemetry_file),
        env=env,
    )


def the_upstream(document: dict[str, Any]) -> dict[str, Any]:
    """The report's single upstream row (the demo calls one upstream, with GET only)."""
    (row,) = document["report"]["upstreams"]
    assert f"{row['server.address']}:{row['server.port']}" == document["upstream"]["address"]
    assert row["http.request.method"] == "GET"
    return dict(row)


def recommendations(document: dict[str, Any]) -> dict[str, str]:
    return {r["variable"]: r["value"] for r in document["report"]["recommendations"]}


async def test_report_figures_agree_with_the_upstreams_counters(tmp_path: Path) -> None:
    telemetry_file = tmp_path / "demo.jsonl"
    telemetry_file.write_text("left over from an earlier run: not JSON\n")
    # Named with --telemetry-file: the one way to have the demo start an existing file fresh.
    document = await run_json(
        "--requests", "300", "--telemetry-file", str(telemetry_file), telemetry_file=telemetry_file
    )
    client, upstream = document["client"], document["upstream"]
    row = the_upstream(document)
    assert document["scenario"] == "mixed"
    assert client["calls"] == row["requests"] == 300
    assert row["attempts"] == upstream["requests"]  # every attempt reached the upstream
    assert row["new_connections"] == upstream["connections_opened"]
    dropped = upstream["stale_closes"] + upstream["resets"] + upstream["disconnects"]
    assert dropped > 0
    assert upstream["stale_closes"] > 0
    closed = row["retries"].get("connection_closed", 0)
    assert closed == dropped - client["connection_errors"]
    throttled = sum(upstream["responses_by_status"].get(s, 0) for s in ("429", "503"))
    assert throttled > 0
    assert row["retries"].get("throttled", 0) <= throttled
    assert round(row["throttled_share"] * row["attempts"]) == throttled
    assert sum(row["retries"].values()) == row["attempts"] - row["requests"]
    assert row["errors"] == client["failed"]
    assert all(check["agrees"] for check in document["checks"]), document["checks"]
    # The file was started fresh, is valid OTLP JSON lines, and analyses to the same report.
    lines = telemetry_file.read_text().splitlines()
    assert all(json.loads(line) for line in lines)
    again = to_json(analyze_paths([telemetry_file]))
    assert again["corrupt_lines"] == 0
    assert again["upstreams"] == document["report"]["upstreams"]


async def test_default_run_prints_the_report_and_writes_the_default_file(tmp_path: Path) -> None:
    code, out, err = await run_demo("--requests", "200", cwd=tmp_path)
    assert code == 0, err
    assert err == ""  # no OTLP endpoint: nothing tried localhost:4318 (that would warn)
    telemetry_file = tmp_path / "resilient-http-demo.jsonl"
    assert str(telemetry_file) in out
    assert "scenario mixed" in out
    for heading in ("Tuning report", "Calls (latency in ms)", "Connection pools", "Retries by"):
        assert heading in out
    assert "Recommendations" in out
    assert "The report checked against the upstream's own counters" in out
    assert "DIFFERS" not in out
    assert "\x1b[" not in out  # not a terminal: no progress bar, no colours
    assert analyze_paths([telemetry_file]).upstreams[0].requests == 200


async def test_an_existing_telemetry_file_survives_the_demo_untouched(tmp_path: Path) -> None:
    # A service's telemetry file, named by RESILIENT_HTTP_TELEMETRY_FILE (the demo's default),
    # and an earlier demo's file in the current folder.
    service_file = tmp_path / "service" / "telemetry.jsonl"
    service_file.parent.mkdir()
    service_file.write_bytes(b'{"resourceMetrics": []}\n{"resourceSpans": []}\n' * 1000)
    earlier_demo = tmp_path / "resilient-http-demo.jsonl"
    earlier_demo.write_bytes(b"an earlier demo's file\n")
    before = {path: (path.read_bytes(), path.stat()) for path in (service_file, earlier_demo)}
    code, out, err = await run_demo(
        "--scenario",
        "healthy",
        "--requests",
        "20",
        cwd=tmp_path,
        env={"RESILIENT_HTTP_TELEMETRY_FILE": str(service_file)},
    )
    assert code == 0, err
    for path, (content, stat) in before.items():
        assert path.read_bytes() == content, path
        assert (path.stat().st_mtime_ns, path.stat().st_size) == (stat.st_mtime_ns, stat.st_size)
    written = tmp_path / "resilient-http-demo-2.jsonl"
    assert f"telemetry {written}" in out
    assert analyze_paths([written]).upstreams[0].requests == 20
    assert sorted(os.listdir(tmp_path)) == [
        "resilient-http-demo-2.jsonl",
        "resilient-http-demo.jsonl",
        "service",
    ]


def test_the_demo_creates_its_file_only_where_none_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    configured = tmp_path / "configured.jsonl"
    env = {"RESILIENT_HTTP_TELEMETRY_FILE": str(configured)}
    # The configured file while it does not exist, then the default, then numbered ones.
    expected = ["configured.jsonl", "resilient-http-demo.jsonl", "resilient-http-demo-2.jsonl"]
    for name in expected:
        assert create_telemetry_file(None, env) == tmp_path / name
    assert create_telemetry_file(None, {}) == tmp_path / "resilient-http-demo-3.jsonl"
    assert all((tmp_path / name).read_bytes() == b"" for name in expected)
    # Named with --telemetry-file: started fresh, whatever it held.
    configured.write_text("old")
    assert create_telemetry_file(str(configured), env) == configured
    assert configured.read_bytes() == b""


async def test_ctrl_c_leaves_an_analyzable_file_and_reports_interrupted_calls(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    telemetry_file = tmp_path / "interrupted.jsonl"
    # A healthy but slow upstream and far more calls than run in the test's time: every call
    # the report does not count as answered was cut short by the Ctrl-C.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        "-m",
        "resilient_http",
        "demo",
        "--scenario",
        "pool-starved",
        "--requests",
        "1000000",
        "--telemetry-file",
        str(telemetry_file),
        "--json",
        cwd=tmp_path,
        env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group, as a terminal gives a command
    )
    async with asyncio.timeout(60):  # a safety net only
        # Calls are being answered once the demo exports their durations (every 100 ms).
        await receiver.wait_for(lambda r: bool(r.metric_points("resilient_http.request.duration")))
        # A terminal's Ctrl-C: SIGINT to the whole foreground process group.
        os.killpg(process.pid, signal.SIGINT)
        out, err = await process.communicate()
    assert process.returncode == 130, err
    client = (document := json.loads(out))["client"]
    assert document["interrupted"] is True
    assert (
        err.decode()
        == f"resilient-http demo: interrupted: {client['interrupted']} calls cut short\n"
    )
    assert client["interrupted"] > 0
    assert client["failed"] == 0  # the upstream never failed: the cut calls are not errors
    assert document["checks"] == []
    row = the_upstream(document)
    assert (row["requests"], row["interrupted"]) == (client["calls"], client["interrupted"])
    assert (row["errors"], row["error_rate"]) == (0, 0.0)
    # The upstream (another process) was not stopped by the Ctrl-C: it answered every call it
    # was not cut off from, and still gave the demo its counters.
    assert set(document["upstream"]["responses_by_status"]) == {"200"}
    assert client["errors"] == {}
    again = to_json(analyze_paths([telemetry_file]))
    assert again["corrupt_lines"] == 0
    assert again["upstreams"] == document["report"]["upstreams"]


@pytest.mark.parametrize(
    ("scenario", "requests", "expected"),
    [
        ("healthy", 100, {}),
        ("pool-starved", 150, {PER_HOST: "up"}),
        ("overloaded", 150, {PER_HOST: "down"}),
    ],
)
async def test_each_scenario_moves_the_advice_its_own_way(
    tmp_path: Path, scenario: str, requests: int, expected: dict[str, str]
) -> None:
    # Defaults in force: LIMIT_PER_HOST 10. Starved raises the per-host limit, overloaded (503s
    # that grow with the calls in flight) lowers it, healthy changes nothing. Every scenario,
    # its advice applied, is tests/test_scenario_advice.py.
    document = await run_json(
        "--scenario", scenario, "--requests", str(requests), telemetry_file=tmp_path / "t.jsonl"
    )
    advised = recommendations(document)
    assert set(advised) == set(expected)
    for variable, direction in expected.items():
        assert (int(advised[variable]) > 10) == (direction == "up"), advised
    assert all(check["agrees"] for check in document["checks"]), document["checks"]
    assert the_upstream(document)["requests"] == requests


def test_an_unknown_scenario_exits_2_listing_the_scenarios(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--scenario", "sunny"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'sunny'" in err
    for name in SCENARIOS:
        assert name in err


def test_bad_settings_exit_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RESILIENT_HTTP_LIMIT", "lots")
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("resilient-http demo: error: RESILIENT_HTTP_LIMIT='lots'")
    assert err.count("\n") == 1


def test_an_unwritable_telemetry_file_exits_1_before_any_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-folder" / "t.jsonl"
    assert main(["demo", "--telemetry-file", str(missing)]) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        f"resilient-http demo: error: cannot write the telemetry file {missing}: "
        "No such file or directory\n"
    )
    assert captured.out == ""


async def test_sdk_disabled_writes_nothing_and_still_summarises(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    telemetry_file = tmp_path / "off.jsonl"
    code, out, err = await run_demo(
        "--scenario",
        "healthy",
        "--requests",
        "50",
        "--telemetry-file",
        str(telemetry_file),
        env={"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url},
    )
    assert code == 0, err
    assert not telemetry_file.exists()
    assert receiver.raw == []
    assert "Telemetry is off (OTEL_SDK_DISABLED=true)" in out
    assert "Client: 50 calls" in out
    assert "Upstream (127.0.0.1:" in out
    assert "counted: 50 requests" in out
    assert "Tuning report" not in out


async def test_otlp_endpoint_adds_export_to_the_file(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    telemetry_file = tmp_path / "both.jsonl"
    code, out, err = await run_healthy(
        telemetry_file, 40, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
    )
    assert code == 0, err
    assert f"and OTLP to {receiver.url}" in out
    services = {resource["service.name"] for resource, _, _ in receiver.spans()}
    assert services == {"resilient-http-demo"}
    assert len(list(receiver.spans())) == 80  # 40 calls: one INTERNAL and one CLIENT span each
    assert receiver.metric_points("resilient_http.request.duration")
    assert analyze_paths([telemetry_file]).spans == 80


async def test_compare_shows_static_and_adaptive_beside_aiohttp_and_aiohttp_retry(
    tmp_path: Path,
) -> None:
    code, out, err = await run_demo(
        "--scenario",
        "stale-keepalive",
        "--requests",
        "60",
        "--concurrency",
        "4",
        "--compare",
        "--telemetry-file",
        str(tmp_path / "c.jsonl"),
    )
    assert code == 0, err
    table = out[out.index("Same load, 4 clients") : out.index("Tuning report")]
    header = next(line for line in table.splitlines() if line.split()[:1] == ["client"])
    columns = ["client", "success", "2xx/s", "p95", "p99", "errors", "429/503", "sent", "connects"]
    assert header.split() == columns
    labels = [line.split()[0] for line in table.splitlines()[4:8]]
    assert labels == ["aiohttp", "aiohttp-retry", "SDK", "SDK"]
    for label in ("SDK static", "SDK adaptive"):
        assert label in table
    assert "limit 100, no per-host limit, no retries" in table
    assert "aiohttp_retry.RetryClient: aiohttp's pool" in table
    assert "concurrency static, hedging off, breaker on" in table
    assert "concurrency adaptive, hedging auto, breaker on" in table


async def test_compare_json_counts_what_each_client_sent(tmp_path: Path) -> None:
    document = await run_json(
        "--scenario", "healthy", "--requests", "40", "--compare", telemetry_file=tmp_path / "t"
    )
    rows = {row["label"]: row for row in document["compare"]}
    assert list(rows) == ["aiohttp", "aiohttp-retry", "SDK static", "SDK adaptive"]
    for row in rows.values():
        assert row["calls"] == row["succeeded"] == row["upstream_requests"] == 40
        assert row["throttled_share"] == 0
        # Healthy: every connection attempt was accepted, and none was made twice.
        assert row["connection_attempts"] == row["new_connections"] > 0
        assert row["goodput_per_s"] > 0


async def test_outage_opens_the_breaker_and_the_report_agrees_with_the_upstream(
    tmp_path: Path,
) -> None:
    document = await run_json(
        "--scenario", "outage", "--requests", "250", telemetry_file=tmp_path / "o.jsonl"
    )
    client, upstream = document["client"], document["upstream"]
    row = the_upstream(document)
    assert row["breaker"]["opened"] is True
    # Calls failed at once by the open breaker never reached the upstream.
    rejected = client["errors"]["CircuitOpenError"]
    assert row["breaker"]["rejected"] == row["error_types"]["CircuitOpenError"] == rejected > 0
    assert upstream["outages_begun"] == 1
    assert upstream["requests"] < client["calls"] - rejected
    assert all(check["agrees"] for check in document["checks"]), document["checks"]
    assert recommendations(document) == {}


async def test_long_tail_gets_hedging_advice_and_with_it_hedges(tmp_path: Path) -> None:
    document = await run_json(
        "--scenario", "long-tail", "--requests", "600", telemetry_file=tmp_path / "a.jsonl"
    )
    assert recommendations(document) == {"RESILIENT_HTTP_HEDGE_AFTER": "auto"}
    assert all(check["agrees"] for check in document["checks"]), document["checks"]
    code, out, err = await run_demo(
        "--scenario",
        "long-tail",
        "--requests",
        "600",
        "--json",
        env={
            "RESILIENT_HTTP_TELEMETRY_FILE": str(tmp_path / "b.jsonl"),
            "RESILIENT_HTTP_HEDGE_AFTER": "auto",
        },
    )
    assert code == 0, err
    hedged = json.loads(out)
    row = the_upstream(hedged)
    assert sum(row["hedges"].values()) > 0
    assert row["hedges"].get("won", 0) > 0
    assert "RESILIENT_HTTP_HEDGE_AFTER" not in recommendations(hedged)
    assert [check for check in hedged["checks"] if not check["agrees"]] == []


async def test_limit_5_means_the_same_to_the_config_and_to_the_analysis(tmp_path: Path) -> None:
    # The analysis reads the settings from the telemetry (resource attributes and the pool-limit
    # gauge), not from its own environment: analysed here with no RESILIENT_HTTP_* set.
    telemetry_file = tmp_path / "limit5.jsonl"
    # Enough calls to last several metric exports (the demo's 100 ms), so the pool-limit gauge
    # is sampled while the pool exists.
    code, _, err = await run_healthy(telemetry_file, 400, {"RESILIENT_HTTP_LIMIT": "5"})
    assert code == 0, err
    config = rh.ClientConfig.from_env({"RESILIENT_HTTP_LIMIT": "5"})
    analysis = analyze_paths([telemetry_file])
    (host,) = analysis.hosts
    limits = analysis.limits.for_upstream(host.upstream)
    settings = analysis.settings.for_upstream(host.upstream)
    assert (limits.limit, limits.limit_per_host) == (config.limit, config.limit_per_host) == (5, 5)
    assert (settings.limit, settings.limit_per_host) == (5, 5)
    assert settings.source("RESILIENT_HTTP_LIMIT") == "environment"
    assert settings.source(PER_HOST) == "default, lowered to RESILIENT_HTTP_LIMIT"
    assert settings.source(KEEPALIVE) == "default"
    assert to_json(analysis)["settings"]["RESILIENT_HTTP_LIMIT"] == {
        "value": "5",
        "source": "environment",
    }


async def test_peaks_of_a_run_shorter_than_one_export_interval_carry_a_caveat(
    tmp_path: Path,
) -> None:
    # 60 s between exports (the OTel default) and a run of well under a second: the pool gauges
    # are only read at shutdown, so the report must not present a peak as if it were measured.
    telemetry_file = tmp_path / "short.jsonl"
    code, out, err = await run_healthy(
        telemetry_file, 40, {"OTEL_METRIC_EXPORT_INTERVAL": "60000", "COLUMNS": "200"}
    )
    assert code == 0, err
    assert "shorter than one export interval" in out
    row = the_row(analyze_paths([telemetry_file]))
    assert "shorter than one export interval" in row["open_connections_peak"]["caveat"]


def the_row(analysis: Any) -> dict[str, Any]:
    (row,) = to_json(analysis)["upstreams"]
    return dict(row)
