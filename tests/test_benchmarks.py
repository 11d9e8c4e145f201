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
from benchmarks.measure import Measurement
from benchmarks.otel import Providers, make_providers
from benchmarks.report import evaluate_goals
from benchmarks.runner import RunPlan, ScenarioResult, VariantResult
from benchmarks.variants import ClientSettings, VariantUnavailable
from resilient_http.upstream import FaultPlan, FaultyUpstream

ROOT = Path(__file__).resolve().parents[1]
GOAL_STATUSES = {"met", "missed", "unavailable", "not run"}
TINY = ("--requests", "200", "--rounds", "1", "--warmup", "20", "--concurrency", "8")
# One tiny scaling row: 4 calls in flight over 2 upstream hosts, 100-byte bodies.
TINY_SCALING = (
    *("--scaling-concurrency", "4", "--scaling-hosts", "2", "--scaling-bodies", "100"),
    *("--scaling-faults", "none", "--scaling-scale", "0.05", "--scaling-rounds", "1"),
)
# The goals the report must list, in its words (the targets).
GOAL_TEXTS = [
    "sdk_plain >= 0.95x aiohttp_same_timeouts (healthy, median of per-round ratios)",
    "sdk_plain >= 1.00x aiohttp_retry (healthy, median of per-round ratios)",
    "sdk_strategies_on >= 0.97x sdk_strategies_off (healthy, median of per-round ratios)",
    "sdk_metrics_10pct >= 1.25x otel_contrib (healthy, median of per-round ratios)",
    "sdk_traces_100pct >= 0.45x aiohttp_tuned (healthy, median of per-round ratios)",
    "sdk_plain >= 0.85x aiohttp_tuned (stale, median of per-round ratios)",
    "scaling: every row sdk_plain >= 0.90x aiohttp_same_timeouts (median per row)",
]


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


def goals_by_text(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The document's goals by their text; every status one of the four."""
    goals = {goal["goal"]: goal for goal in document["goals"]}
    assert {goal["status"] for goal in goals.values()} <= GOAL_STATUSES
    return goals


def assert_judged(goal: dict[str, Any]) -> None:
    """A throughput goal that had its numbers: met or missed, with its ratio and target."""
    assert goal["status"] in ("met", "missed"), goal
    assert goal["ratio"] > 0
    assert goal["target"] > 0
    assert f"{goal['ratio']:.2f}x" in goal["value"]


def test_tiny_run_reports_the_throughput_scenarios_as_json() -> None:
    measured = ("aiohttp_tuned", "aiohttp_same_timeouts", "aiohttp_retry", "sdk_plain")
    document = run_bench(
        *TINY,
        *TINY_SCALING,
        "--variants",
        ",".join(measured),
        "--fault-requests",
        "100",
        "--fault-rounds",
        "2",
        "--analyze-spans",
        "2000",
        # the resilience scenarios wait out real outages: their own test runs them once
        "--scenario",
        "healthy,stale,throttle,scaling,analyze",
    )

    machine = document["machine"]
    assert machine["nproc"] >= 1
    assert machine["python"]
    assert machine["versions"]["aiohttp"]
    assert document["client_settings"]["limit_per_host"] == 8
    assert set(document["scenarios"]) == {"healthy", "stale", "throttle"}
    for name, scenario in document["scenarios"].items():
        assert set(scenario["variants"]) == set(measured), name
        for variant in scenario["variants"].values():
            assert_measured(variant)
        assert scenario["variants"]["aiohttp_tuned"]["ratio_median"] == 1.0
    healthy = document["scenarios"]["healthy"]["variants"]
    assert healthy["sdk_plain"]["success_rate"] == 1.0
    stale = document["scenarios"]["stale"]
    assert stale["rounds"] == 2
    assert len(stale["variants"]["sdk_plain"]["runs"]) == 2
    assert stale["variants"]["sdk_plain"]["runs"][0]["stale_closes"] > 0  # the flags arrived
    throttle = document["scenarios"]["throttle"]
    assert "expected" in throttle["note"]
    assert "repeat=false" in " ".join(throttle["upstream_flags"])
    # Throttled at most once per call: one retry always gets through, so a retrying client has
    # no legitimate failure; a client without retries makes exactly one request per call.
    assert throttle["variants"]["sdk_plain"]["success_rate"] == 1.0
    assert throttle["variants"]["aiohttp_tuned"]["attempts_per_request"] == 1.0

    (row,) = document["scaling"]
    conditions = (row["concurrency"], row["hosts"], row["body_bytes"], row["fault"])
    assert conditions == (4, 2, 100, "none")
    assert row["status"] in ("met", "missed")

    analyze = document["analyze"]
    assert {(row["spans"], row["jobs"]) for row in analyze} == {(2000, "default"), (2000, "1")}
    for row in analyze:
        assert row["spans_per_s"] > 0
        assert row["peak_rss_mb"] > 0
        assert row["upstreams"] >= 1

    goals = goals_by_text(document)
    assert list(goals)[: len(GOAL_TEXTS)] == GOAL_TEXTS
    for text in (GOAL_TEXTS[0], GOAL_TEXTS[1], GOAL_TEXTS[5], GOAL_TEXTS[6]):
        assert_judged(goals[text])
    # The strategies' and telemetry variants did not run: no number for their goals.
    for text in GOAL_TEXTS[2:5]:
        assert goals[text]["status"] == "not run"
    assert len(goals) >= 10


def test_tiny_scaling_table_has_every_row_with_both_clients_measured() -> None:
    document = run_bench(
        "--scenario",
        "scaling",
        *("--scaling-concurrency", "1,8", "--scaling-hosts", "1,3"),
        *("--scaling-bodies", "100,65536", "--scaling-faults", "none,stale"),
        *("--scaling-scale", "0.05", "--scaling-rounds", "2"),
    )
    assert document["scenarios"] == {}
    rows = document["scaling"]
    conditions = {(r["concurrency"], r["hosts"], r["body_bytes"], r["fault"]) for r in rows}
    assert conditions == {
        (c, hosts, body, fault)
        for c in (1, 8)
        for hosts in (1, 3)
        for body in (100, 65536)
        for fault in ("none", "stale")
    }
    for row in rows:
        assert row["goal"] == "sdk_plain >= 0.90x aiohttp_same_timeouts"
        assert row["status"] in ("met", "missed"), row
        assert row["rounds"] == 2
        assert row["requests"] >= 1
        assert row["ratio_median"] > 0
        assert row["cpu_ratio_median"] > 0
        assert len(row["ratios"]) == 2
        c, hosts = row["concurrency"], row["hosts"]
        assert row["limit_per_host"] == (-(-c // hosts) if c >= hosts else c)
        assert set(row["variants"]) == {"aiohttp_same_timeouts", "sdk_plain"}
        assert row["variants"]["aiohttp_same_timeouts"]["ratio_median"] == 1.0
        for variant in row["variants"].values():
            assert_measured(variant)
            for run in variant["runs"]:
                # Every host got calls: each opened at least one connection.
                assert run["connections_opened"] >= hosts
                if row["fault"] == "stale" and run["requests"] >= 3 * hosts:
                    assert run["stale_closes"] > 0
        if row["fault"] == "none":
            for variant in row["variants"].values():
                assert variant["success_rate"] == 1.0
    goal = goals_by_text(document)[GOAL_TEXTS[6]]
    assert_judged(goal)
    met = sum(row["status"] == "met" for row in rows)
    assert goal["value"].startswith(f"{met}/16 rows met, lowest")


def test_a_telemetry_goal_is_shown_next_to_its_opentelemetry_floor() -> None:
    document = run_bench(
        *TINY,
        "--scenario",
        "healthy",
        "--variants",
        "sdk_metrics_10pct,otel_contrib,otel_floor_10pct",
    )
    healthy = document["scenarios"]["healthy"]["variants"]
    for name in ("sdk_metrics_10pct", "otel_contrib", "otel_floor_10pct"):
        assert_measured(healthy[name])
    goal = goals_by_text(document)[GOAL_TEXTS[3]]
    assert_judged(goal)
    # One round: the floor's figure is its run's throughput over otel_contrib's.
    (floor_run,) = healthy["otel_floor_10pct"]["runs"]
    (contrib_run,) = healthy["otel_contrib"]["runs"]
    floor = floor_run["requests_per_s"] / contrib_run["requests_per_s"]
    assert goal["value"].endswith(f"(OpenTelemetry floor, otel_floor_10pct: {floor:.2f}x)")
    plain = goals_by_text(document)[GOAL_TEXTS[0]]
    assert plain["status"] == "not run"  # no number for a variant that did not run


def test_httpx_variant_runs_when_the_bench_extra_is_installed() -> None:
    for module in ("httpx", "sniffio"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: the bench extra (pip install -e '.[bench]')")
    document = run_bench(*TINY, "--variants", "httpx", "--scenario", "healthy")
    variants = document["scenarios"]["healthy"]["variants"]
    assert set(variants) == {"aiohttp_tuned", "httpx"}
    assert_measured(variants["httpx"])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--variants", "nope"), "unknown variant"),
        (("--scaling-faults", "nope"), "expected a comma list of none, stale"),
        (("--scaling-concurrency", "0"), "expected integers >= 1"),
    ],
)
def test_bad_flags_exit_2_with_a_message(flags: tuple[str, ...], message: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert message in completed.stderr


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


def _run(variant: str, requests_per_s: float, cpu_us_per_request: float) -> Measurement:
    """A made-up run: only throughput and CPU per request matter to the goals."""
    return Measurement(
        variant=variant,
        requests=100,
        succeeded=100,
        wall_s=100 / requests_per_s,
        cpu_s=cpu_us_per_request * 100 / 1e6,
        requests_per_s=requests_per_s,
        cpu_us_per_request=cpu_us_per_request,
        p50_ms=1.0,
        p99_ms=2.0,
        server_cpu_s=0.0,
        server_cpu_share=0.0,
        client_cpu_share=1.0,
        connections_opened=1,
        server_requests=100,
        stale_closes=0,
        capped=False,
    )


def test_a_goal_is_the_median_of_per_round_ratios_between_its_two_variants() -> None:
    # Per round sdk_plain / aiohttp_same_timeouts = 0.50, 1.00, 0.96: median 0.96 (met). The
    # ratio of the medians (1000 / 1000) is not what is judged: only the two runs of one round
    # saw the same machine.
    reference = VariantResult("aiohttp_same_timeouts")
    reference.runs = [_run("ref", 2000, 50), _run("ref", 1000, 100), _run("ref", 1000, 100)]
    sdk = VariantResult("sdk_plain")
    sdk.runs = [_run("sdk", 1000, 100), _run("sdk", 1000, 100), _run("sdk", 960, 104)]
    plan = RunPlan(requests=100, concurrency=8, rounds=3, warmup=0, time_cap_s=1.0)
    variants = {"aiohttp_same_timeouts": reference, "sdk_plain": sdk}
    healthy = ScenarioResult("healthy", [], plan, variants)

    goals = {goal.goal: goal for goal in evaluate_goals({"healthy": healthy}, [])}

    goal = goals[GOAL_TEXTS[0]]
    assert goal.status == "met"
    assert goal.ratio == pytest.approx(0.96)
    assert goal.value.startswith("0.96x (rounds 0.50 1.00 0.96; by CPU 0.96x)")
    assert goals[GOAL_TEXTS[1]].status == "not run"  # aiohttp_retry did not run
    assert goals[GOAL_TEXTS[6]].status == "not run"  # nor did the scaling table


def test_the_resilience_scenarios_report_their_figures_and_goals() -> None:
    document = run_bench("--scenario", "resilience", "--resilience-scale", "0.2")
    results = {result["scenario"]: result["rows"] for result in document["resilience"]}
    assert set(results) == {"outage", "overloaded", "long-tail"}
    assert set(results["outage"]) == {"sdk_breaker", "aiohttp_retry"}
    for row in results["outage"].values():
        assert row["calls"] > 0
        assert row["connects_during_outage"] > 0  # the hanging upstream was reached
    assert set(results["overloaded"]) == {
        "sdk_static_10",
        "sdk_static_50",
        "sdk_adaptive",
        "aiohttp_retry",
    }
    assert results["overloaded"]["sdk_static_10"]["throttled_share"] == 0  # capacity exactly
    assert results["overloaded"]["sdk_static_50"]["throttled_share"] > 0.2  # far over it
    tail = results["long-tail"]
    assert tail["sdk_no_hedging"]["extra_requests_share"] == 0  # nothing but the calls
    assert tail["sdk_no_hedging"]["p99_ms"] >= 1000  # the 1 s answers are the p99
    goals = [
        goal
        for goal in document["goals"]
        if goal["goal"].startswith(("outage:", "overloaded:", "long-tail:"))
    ]
    assert len(goals) == 5
    assert {goal["status"] for goal in goals} <= {"met", "missed"}
