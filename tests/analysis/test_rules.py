"""The rules table: one test per rule (fires, with its value and evidence; stays quiet just below
its threshold), healthy data gives no advice, and end-to-end scenarios on real SDK files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from resilient_http.analysis.analyze import analyze_paths
from resilient_http.analysis.model import PoolLimits, UpstreamReport
from resilient_http.analysis.rules import (
    POOL_WAIT_P95_HIGH_MS,
    RULES,
    THROTTLED_SHARE_HIGH,
    Recommendation,
    evaluate_rules,
)
from resilient_http.analysis.settings import Settings
from tests.analysis.sdk_telemetry import Attempt, SdkTelemetry

LIMITS = PoolLimits(limit=100, limit_per_host=10, active_total_peak=6)


def healthy(**changes: Any) -> UpstreamReport:
    """A busy, healthy upstream: fast pool, high reuse, no throttling, no retries."""
    base = UpstreamReport(
        address="api.test",
        port=8080,
        method=None,
        source="metrics+spans",
        requests=1000,
        attempts=1000,
        latency_ms={"p50": 20, "p95": 40, "p99": 80},
        attempt_latency_ms={"p50": 20, "p95": 40, "p99": 80},
        pool_wait_ms={"p50": 0, "p95": 0.5, "p99": 2},
        reuse_ratio=0.98,
        throttled_share=0.0,
        error_rate=0.0,
        active_peak=6,
        idle_peak=4,
    )
    return replace(base, **changes)


def advice(
    upstream: UpstreamReport, limits: PoolLimits = LIMITS, settings: Settings | None = None
) -> dict[str, Recommendation]:
    recommendations = evaluate_rules([upstream], limits, settings or Settings())
    return {r.rule: r for r in recommendations}


def test_every_rule_has_a_test() -> None:
    tested = {name.removeprefix("test_").replace("_", "-") for name in globals()}
    assert {rule.name for rule in RULES} <= tested


def test_healthy_upstream_gets_no_advice() -> None:
    assert advice(healthy()) == {}


def test_pool_starved_per_host() -> None:
    starved = healthy(pool_wait_ms={"p95": 120.0}, active_peak=10)
    (rec,) = advice(starved).values()
    assert (rec.rule, rec.variable, rec.value) == (
        "pool-starved-per-host",
        "RESILIENT_HTTP_LIMIT_PER_HOST",
        "20",
    )
    assert "120 ms" in rec.evidence
    assert "10 of limit_per_host 10" in rec.evidence
    assert rec.upstreams == ("api.test:8080",)
    # Capped by the total limit.
    capped = advice(starved, PoolLimits(limit=15, limit_per_host=10, active_total_peak=10))
    assert capped["pool-starved-per-host"].value == "15"
    # Quiet: wait at the threshold, or connections not at the limit, or a throttling upstream.
    assert advice(replace(starved, pool_wait_ms={"p95": POOL_WAIT_P95_HIGH_MS})) == {}
    assert advice(replace(starved, active_peak=5)) == {}
    assert "pool-starved-per-host" not in advice(replace(starved, throttled_share=0.2))


def test_pool_starved_total() -> None:
    starved = healthy(pool_wait_ms={"p95": 90.0}, active_peak=10)
    limits = PoolLimits(limit=10, limit_per_host=10, active_total_peak=10)
    (rec,) = advice(starved, limits).values()  # per host cannot rise above the total
    assert (rec.rule, rec.variable, rec.value) == (
        "pool-starved-total",
        "RESILIENT_HTTP_LIMIT",
        "20",
    )
    assert "10 of limit 10" in rec.evidence
    quiet = PoolLimits(limit=10, limit_per_host=10, active_total_peak=8)
    assert "pool-starved-total" not in advice(starved, quiet)


def test_stale_keepalive() -> None:
    stale = healthy(reuse_ratio=0.4, retries={"connection_closed": 80, "throttled": 5})
    (rec,) = advice(stale).values()
    assert (rec.rule, rec.variable, rec.value) == (
        "stale-keepalive",
        "RESILIENT_HTTP_KEEPALIVE_TIMEOUT",
        "5",
    )
    assert "80 connection_closed retries of 85 retries" in rec.evidence
    assert "15 s (default)" in rec.evidence
    from_env = Settings.from_env({"RESILIENT_HTTP_KEEPALIVE_TIMEOUT": "4"})
    assert advice(stale, settings=from_env)["stale-keepalive"].value == "2"
    assert "4 s (environment)" in advice(stale, settings=from_env)["stale-keepalive"].evidence
    # Quiet: good reuse, or stale retries a minor part of the retries, or too few of them.
    assert advice(replace(stale, reuse_ratio=0.6)) == {}
    minor = replace(stale, retries={"connection_closed": 40, "server_error": 41})
    assert "stale-keepalive" not in advice(minor)
    assert advice(replace(stale, retries={"connection_closed": 9})) == {}
    # Traces alone (reuse unknown) still show it.
    assert "stale-keepalive" in advice(replace(stale, reuse_ratio=None))


def test_throttled() -> None:
    throttled = healthy(throttled_share=0.2, attempts=1200, retries={"throttled": 200})
    (rec,) = advice(throttled).values()
    assert (rec.rule, rec.variable, rec.value) == (
        "throttled",
        "RESILIENT_HTTP_LIMIT_PER_HOST",
        "5",
    )
    assert "RESILIENT_HTTP_RETRY_AFTER_MAX" in rec.reason
    assert "20 % of 1200 attempts" in rec.evidence
    assert advice(replace(throttled, throttled_share=THROTTLED_SHARE_HIGH)) == {}
    assert advice(replace(throttled, requests=10)) == {}  # too few calls to judge


def test_retry_after_too_long() -> None:
    (rec,) = advice(healthy(suppressed={"retry_after_too_long": 4})).values()
    assert (rec.rule, rec.variable, rec.value) == (
        "retry-after-too-long",
        "RESILIENT_HTTP_RETRY_AFTER_MAX",
        "60",
    )
    assert "4 retries suppressed" in rec.evidence
    assert advice(healthy(suppressed={"retry_after_too_long": 0})) == {}


def test_retry_budget_exhausted() -> None:
    (rec,) = advice(healthy(suppressed={"budget": 12}, error_rate=0.05)).values()
    assert (rec.rule, rec.variable, rec.value) == (
        "retry-budget-exhausted",
        "RESILIENT_HTTP_RETRY_BUDGET_RATIO",
        "0.3",
    )
    assert "12 retries suppressed (budget)" in rec.evidence
    assert "error rate 0.05" in rec.evidence
    at_ceiling = Settings.from_env({"RESILIENT_HTTP_RETRY_BUDGET_RATIO": "0.5"})
    assert advice(healthy(suppressed={"budget": 12}), settings=at_ceiling) == {}


def test_timeouts() -> None:
    slow = healthy(retries={"timeout": 30}, attempt_latency_ms={"p95": 900.0, "p99": 9000.0})
    (rec,) = advice(slow).values()
    assert (rec.rule, rec.variable, rec.value) == ("timeouts", "RESILIENT_HTTP_TIMEOUT_READ", "20")
    assert "30 timeout retries of 1000 attempts" in rec.evidence
    assert "900/9000 ms" in rec.evidence
    assert advice(replace(slow, retries={"timeout": 10})) == {}  # exactly 1 %: quiet


def test_pool_overprovisioned() -> None:
    idle = healthy(active_peak=3)
    limits = PoolLimits(limit=100, limit_per_host=50, active_total_peak=3)
    (rec,) = advice(idle, limits).values()
    assert (rec.rule, rec.variable, rec.value) == (
        "pool-overprovisioned",
        "RESILIENT_HTTP_LIMIT_PER_HOST",
        "10",
    )
    assert advice(idle) == {}  # the default per-host limit (10) is never "too high"
    assert advice(replace(idle, active_peak=13), limits) == {}


def test_identical_advice_for_several_hosts_is_merged() -> None:
    stale = {"reuse_ratio": 0.3, "retries": {"connection_closed": 50}}
    a = healthy(**stale)
    b = healthy(address="b.test", **stale)
    (rec,) = evaluate_rules([a, b], LIMITS, Settings())
    assert rec.upstreams == ("api.test:8080", "b.test:8080")
    assert rec.evidence.count("connection_closed retries") == 2


def test_bad_environment_values_fall_back_to_defaults() -> None:
    settings = Settings.from_env(
        {
            "RESILIENT_HTTP_LIMIT": "lots",
            "RESILIENT_HTTP_TIMEOUT_READ": "3",
            "RESILIENT_HTTP_RETRY_AFTER_MAX": "nan",
            "RESILIENT_HTTP_KEEPALIVE_TIMEOUT": "-1",
        }
    )
    assert (settings.limit, settings.timeout_read) == (100, 3.0)
    assert (settings.retry_after_max, settings.keepalive_timeout) == (30.0, 15.0)
    assert settings.from_environment == {"timeout_read"}


# --- end to end: real SDK files -----------------------------------------------------------


def _recorded(tmp_path: Path, record: Any) -> dict[str, Recommendation]:
    telemetry = SdkTelemetry(tmp_path / "traces.jsonl", tmp_path / "metrics.jsonl")
    telemetry.pool_limits(100, 10)
    record(telemetry)
    telemetry.flush_metrics()
    telemetry.close()
    return {r.rule: r for r in analyze_paths([tmp_path], Settings()).recommendations}


def test_healthy_sdk_traffic_gets_no_advice(tmp_path: Path) -> None:
    def record(t: SdkTelemetry) -> None:
        for i in range(200):
            t.call([Attempt(0.02 + 0.001 * (i % 7), reused=i % 50 != 0)])
        t.open_connections(active=4, idle=4)

    assert _recorded(tmp_path, record) == {}


def test_stale_keepalive_sdk_traffic(tmp_path: Path) -> None:
    def record(t: SdkTelemetry) -> None:
        for i in range(100):
            if i % 4 == 0:  # every fourth call hits a pooled connection the upstream closed
                closed = Attempt(
                    0.001,
                    status=None,
                    error_type="ServerDisconnectedError",
                    retry="connection_closed",
                )
                t.call([closed, Attempt(0.01, reused=False)])  # retried on a new connection
            else:
                t.call([Attempt(0.01, reused=i % 4 == 1)])
        # Reuse: 25 stale + 25 reused of 125 acquisitions = 0.4.

    recommendations = _recorded(tmp_path, record)
    assert set(recommendations) == {"stale-keepalive"}
    assert recommendations["stale-keepalive"].value == "5"


def test_throttled_and_starved_sdk_traffic(tmp_path: Path) -> None:
    def record(t: SdkTelemetry) -> None:
        for i in range(100):
            if i % 5 == 0:
                t.call([Attempt(0.01, status=429, retry="throttled", delay=1.0), Attempt(0.01)])
            else:
                t.call([Attempt(0.01, pool_wait=0.3 if i % 3 == 0 else 0.0)])
        t.open_connections(active=10, idle=0)
        t.suppressed("retry_after_too_long", 2)

    recommendations = _recorded(tmp_path, record)
    # Throttled (20 of 120 attempts) wins over the starved pool: no advice to add concurrency.
    assert set(recommendations) == {"throttled", "retry-after-too-long"}
    assert recommendations["throttled"].value == "5"


@pytest.mark.parametrize("rule", [rule.name for rule in RULES])
def test_rule_names_are_stable(rule: str) -> None:
    # Rule names appear in the --json output ("rule"): renaming one is a breaking change.
    assert rule in {
        "pool-starved-per-host",
        "pool-starved-total",
        "stale-keepalive",
        "throttled",
        "retry-after-too-long",
        "retry-budget-exhausted",
        "timeouts",
        "pool-overprovisioned",
    }
