"""Smoke tests of the benchmark harness (``benchmarks/``, ``make bench``).

They run ``python -m benchmarks --json`` in a subprocess at a tiny scale, exactly as ``make
bench`` does at full scale, and check the document's shape and that every measured number is
positive: the harness cannot rot unnoticed. Nothing here judges performance.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import variants
from benchmarks.otel import Providers, make_providers
from benchmarks.variants import ClientSettings, VariantUnavailable
from resilient_http.upstream import FaultPlan, FaultyUpstream

ROOT = Path(__file__).resolve().parents[1]
GOAL_STATUSES = {"met", "missed", "unavailable", "not run"}
TINY = ("--requests", "200", "--rounds", "1", "--warmup", "20", "--concurrency", "8")


def run_bench(*args: str) -> dict[str, Any]:
    """The harness's JSON document for these flags."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--json", "--quiet", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    document: dict[str, Any] = json.loads(completed.stdout)
    return document


def assert_measured(variant: dict[str, Any]) -> None:
    """A variant that ran: every figure present and positive."""
    assert variant["status"] == "ok", variant
    for key in ("ratio_median", "cpu_ratio_median", "requests_per_s", "cpu_us_per_request"):
        assert variant[key] > 0, key
    assert 0 < variant["p50_ms"] <= variant["p99_ms"]
    assert variant["server_cpu_share"] >= 0
    assert variant["connections_opened"] >= 1
    assert variant["attempts_per_request"] >= 1
    assert 0 < variant["success_rate"] <= 1
    for run in variant["runs"]:
        assert run["requests"] > 0
        assert run["wall_s"] > 0
        assert run["server_requests"] >= run["requests"]


def test_tiny_run_reports_every_scenario_as_json() -> None:
    document = run_bench(
        *TINY,
        "--variants",
        "aiohttp_tuned,sdk_plain",
        "--fault-requests",
        "100",
        "--analyze-spans",
        "2000",
    )

    machine = document["machine"]
    assert machine["nproc"] >= 1
    assert machine["python"]
    assert machine["versions"]["aiohttp"]
    assert document["client_settings"]["limit_per_host"] == 8
    assert set(document["scenarios"]) == {"healthy", "stale", "throttle"}
    for name, scenario in document["scenarios"].items():
        assert set(scenario["variants"]) == {"aiohttp_tuned", "sdk_plain"}, name
        for variant in scenario["variants"].values():
            assert_measured(variant)
        assert scenario["variants"]["aiohttp_tuned"]["ratio_median"] == 1.0
    healthy = document["scenarios"]["healthy"]["variants"]
    assert healthy["sdk_plain"]["success_rate"] == 1.0
    stale_runs = document["scenarios"]["stale"]["variants"]["sdk_plain"]["runs"]
    assert stale_runs[0]["stale_closes"] > 0  # the fault flags reached the upstream
    throttle = document["scenarios"]["throttle"]
    assert "expected" in throttle["note"]
    assert "repeat=false" in " ".join(throttle["upstream_flags"])
    # Throttled at most once per call: one retry always gets through, so a retrying client has
    # no legitimate failure; a client without retries makes exactly one request per call.
    assert throttle["variants"]["sdk_plain"]["success_rate"] == 1.0
    assert throttle["variants"]["aiohttp_tuned"]["attempts_per_request"] == 1.0

    analyze = document["analyze"]
    assert {(row["spans"], row["jobs"]) for row in analyze} == {(2000, "default"), (2000, "1")}
    for row in analyze:
        assert row["spans_per_s"] > 0
        assert row["peak_rss_mb"] > 0
        assert row["upstreams"] >= 1

    goals = document["goals"]
    assert len(goals) >= 6
    assert {goal["status"] for goal in goals} <= GOAL_STATUSES
    assert any(goal["goal"].startswith("sdk_plain >= 0.93x") for goal in goals)


def test_a_telemetry_goal_is_shown_next_to_its_opentelemetry_floor() -> None:
    document = run_bench(
        *TINY, "--scenario", "healthy", "--variants", "sdk_metrics_10pct,otel_floor_10pct"
    )
    healthy = document["scenarios"]["healthy"]["variants"]
    assert_measured(healthy["otel_floor_10pct"])
    goal = next(g for g in document["goals"] if g["goal"].startswith("sdk_metrics_10pct"))
    assert goal["status"] in ("met", "missed")
    floor = healthy["otel_floor_10pct"]["ratio_median"]
    assert goal["value"].endswith(f"(OpenTelemetry floor, otel_floor_10pct: {floor:.2f}x)")
    plain = next(g for g in document["goals"] if g["goal"].startswith("sdk_plain"))
    assert plain["status"] == "not run"  # no floor and no number for a variant that did not run


def test_httpx_variant_runs_when_the_bench_extra_is_installed() -> None:
    for module in ("httpx", "sniffio"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: the bench extra (pip install -e '.[bench]')")
    document = run_bench(*TINY, "--variants", "httpx", "--scenario", "healthy")
    variants = document["scenarios"]["healthy"]["variants"]
    assert set(variants) == {"aiohttp_tuned", "httpx"}
    assert_measured(variants["httpx"])


def test_bad_flags_exit_2_with_a_message() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--variants", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert "unknown variant" in completed.stderr


class _SessionWithoutTelemetryArguments:
    """A ResilientSession from before ``tracer_provider=``/``meter_provider=`` existed."""

    def __init__(self, config: object = None, **kwargs: object) -> None:
        unknown = next(iter(kwargs))
        raise TypeError(f"ClientSession.__init__() got an unexpected keyword argument {unknown!r}")


async def test_sdk_telemetry_variant_is_unavailable_without_the_arguments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("resilient_http.ResilientSession", _SessionWithoutTelemetryArguments)
    with pytest.raises(VariantUnavailable, match="telemetry not landed"):
        async with variants.VARIANTS["sdk_metrics_10pct"].factory(ClientSettings()):
            pass


async def test_other_type_errors_of_the_sdk_variant_propagate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(config: object = None, **kwargs: object) -> None:
        raise TypeError("unsupported operand type(s)")

    monkeypatch.setattr("resilient_http.ResilientSession", broken)
    with pytest.raises(TypeError, match="unsupported operand"):
        async with variants.VARIANTS["sdk_traces_100pct"].factory(ClientSettings()):
            pass


async def test_otel_contrib_records_its_metrics_and_samples_a_tenth_of_traces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # sdk_metrics_10pct's goal is relative to otel_contrib: it must pay for metrics on every
    # request and for 10 % sampled spans, as the SDK variant does.
    made: list[Providers] = []

    def recording_providers(sampling_ratio: float) -> Providers:
        providers = make_providers(sampling_ratio)
        made.append(providers)
        return providers

    monkeypatch.setattr(variants, "make_providers", recording_providers)
    calls = 1000
    async with FaultyUpstream(FaultPlan(echo=False)) as upstream:
        url = upstream.make_url("/")
        async with variants.VARIANTS["otel_contrib"].factory(ClientSettings()) as fetch:
            statuses = [await fetch(url) for _ in range(calls)]
    assert statuses == [200] * calls
    (providers,) = made
    assert "TraceIdRatioBased{0.1}" in providers.tracer_provider.sampler.get_description()
    assert providers.metric_exporter.histogram_counts["http.client.duration"] == calls
    # Random trace ids: about 100 sampled traces (binomial, sd ~9.5); the bounds are > 5 sd out.
    assert 45 <= providers.span_exporter.spans <= 160
