"""The rules table: one test per rule (fires, with its value and evidence; stays quiet just below
its threshold), healthy data gives no advice. End-to-end scenarios on real SDK files, the
throttled and pool rules' interplay among them, are ``test_rules_on_sdk_files.py``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import aiohttp
import pytest

import resilient_http as rh
from resilient_http.analysis.evidence import ConnectionEvidence
from resilient_http.analysis.model import PoolLimits, UpstreamReport
from resilient_http.analysis.rules import (
    POOL_WAIT_P95_HIGH_MS,
    READ_TIMEOUT_TYPES,
    RULES,
    Recommendation,
    evaluate_rules,
)
from resilient_http.analysis.settings import Settings
from resilient_http.analysis.spans import SpanAggregator
from resilient_http.retry import RetryReason, classify_failure
from tests.analysis.otlp_lines import SECOND, UPSTREAM, rate_limited_spans, traces_request

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
        pool_queued=20,
        pool_queued_share=0.02,
        reuse_ratio=0.98,
        connections_acquired=1000,
        new_connections=20,
        throttled_attempts=0,
        throttled_share=0.0,
        error_rate=0.0,
        attempt_error_types={},
        active_peak=6,
        idle_peak=4,
    )
    return replace(base, **changes)


def throttling(attempts: float, throttled: float, **changes: Any) -> UpstreamReport:
    """A healthy upstream whose ``throttled`` of ``attempts`` attempts were answered 429."""
    return healthy(
        attempts=attempts,
        throttled_attempts=throttled,
        throttled_share=throttled / attempts,
        rate_limited=throttled,
        retries={"throttled": throttled},
        **changes,
    )


def answered_503(attempts: int, throttled: int, *, grows: bool) -> UpstreamReport:
    """``throttled`` of ``attempts`` attempts answered 503 (none 429), half of the attempts with
    2 connections in use and half with 10: all 503s with 10 in use when ``grows``, evenly
    spread otherwise."""
    evidence = ConnectionEvidence()
    half = attempts // 2
    for index in range(attempts):
        in_use = 2 if index < half else 10
        if grows:
            failed = index >= half and index - half < throttled
        else:
            failed = index % half < throttled // 2
        evidence.add_attempt(in_use, failed, 1.0)
    return healthy(
        attempts=attempts,
        throttled_attempts=throttled,
        throttled_share=throttled / attempts,
        rate_limited=0,
        retries={"throttled": throttled},
        connections=evidence,
    )


def reuses(stale_idle: float | None = None, cap: int | None = None) -> ConnectionEvidence:
    """400 reuses, idle 0.01 to 8 s, on connections that served 0 to 19 requests: those idle at
    least ``stale_idle`` seconds, or that served ``cap`` requests, met a closed connection."""
    evidence = ConnectionEvidence()
    for index in range(400):
        idle, served = 0.01 + (index % 40) * 0.2, index % 20
        stale = (stale_idle is not None and idle >= stale_idle) or served == cap
        evidence.add_reuse(idle, served, stale, 1.0)
        evidence.add_attempt(5, False, 1.0)
    return evidence


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


def test_long_tail() -> None:
    tail = healthy(attempt_latency_ms={"p50": 5.0, "p95": 8.0, "p99": 1000.0})
    (rec,) = advice(tail).values()
    assert (rec.rule, rec.variable, rec.value) == (
        "long-tail",
        "RESILIENT_HTTP_HEDGE_AFTER",
        "auto",
    )
    # a tail that throttling or a queue for connections explains is not hedged
    assert advice(replace(tail, throttled_share=0.05)).get("long-tail") is None
    assert advice(replace(tail, pool_wait_ms={"p95": 50.0})).get("long-tail") is None
    hedged = Settings.from_env({"RESILIENT_HTTP_HEDGE_AFTER": "0.2"})
    assert advice(tail, settings=hedged).get("long-tail") is None  # hedging is on already


def test_pool_starved_per_host() -> None:
    starved = healthy(pool_wait_ms={"p95": 120.0}, active_peak=10)
    (rec,) = advice(starved).values()
    assert (rec.rule, rec.variable, rec.value) == (
        "pool-starved-per-host",
        "RESILIENT_HTTP_LIMIT_PER_HOST",
        "20",
    )
    assert "pool wait p95 120 ms over all acquisitions (> 50 ms, 2 % of them queued)" in (
        rec.evidence
    )
    assert "10 of limit_per_host 10" in rec.evidence
    assert "no throttling under load (0 attempts answered 429/503" in rec.evidence
    assert (rec.current, rec.upstreams) == ("10", ("api.test:8080",))
    # With the means in the data, as many connections as the calls wanted at once (Little's
    # law): attempts of 250 ms, 200 ms of them queued -> 10 x 250 / 50 = 50.
    means = replace(starved, attempt_mean_s=0.25, pool_wait_mean_s=0.2)
    little = advice(means)["pool-starved-per-host"]
    assert little.value == "50"
    assert "calls wanted about 50 connections at once" in little.evidence
    # A limit the SDK's default or above, set in the environment, is raised as any other.
    raised = Settings.from_env({"RESILIENT_HTTP_LIMIT_PER_HOST": "10"})
    assert advice(means, settings=raised)["pool-starved-per-host"].value == "50"
    # Capped by the total limit.
    capped = advice(starved, PoolLimits(limit=15, limit_per_host=10, active_total_peak=10))
    assert capped["pool-starved-per-host"].value == "15"
    # Requests queue only at a full limit: a sampled gauge that never caught it full (it is
    # read once per export interval) does not hide the queue, the evidence says so.
    sampled = advice(replace(starved, active_peak=5))["pool-starved-per-host"]
    assert "peak active connections 5 (sampled: the samples missed the moments" in (
        sampled.evidence
    )
    # Quiet: wait at the threshold, or the total limit was the full one (seen full by its gauge).
    assert advice(replace(starved, pool_wait_ms={"p95": POOL_WAIT_P95_HIGH_MS})) == {}
    total_full = PoolLimits(limit=20, limit_per_host=10, active_total_peak=20)
    assert set(advice(replace(starved, active_peak=5), total_full)) == {"pool-starved-total"}
    # A stray 503 (2 of 1000 attempts: below the throttling floor) does not stop it...
    stray = throttling(1000, 2, pool_wait_ms={"p95": 120.0}, active_peak=10)
    assert set(advice(stray)) == {"pool-starved-per-host"}
    # ...but an upstream that throttles at all never gets a raised limit (see the interplay).
    throttles = throttling(1000, 10, pool_wait_ms={"p95": 120.0}, active_peak=10)
    assert set(advice(throttles)) == {"pool-backpressure"}


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
    # The per-host limit cannot be tighter than the total: the total is the full one even when
    # its sampled gauge did not catch it.
    assert "pool-starved-total" in advice(starved, replace(limits, active_total_peak=8))
    # Quiet: a tighter per-host limit and a total never seen full (the per-host rule speaks).
    quiet = PoolLimits(limit=20, limit_per_host=10, active_total_peak=10)
    assert set(advice(starved, quiet)) == {"pool-starved-per-host"}
    throttles = throttling(1000, 30, pool_wait_ms={"p95": 90.0}, active_peak=10)
    assert "pool-starved-total" not in advice(throttles, limits)


def test_pool_backpressure() -> None:
    # Calls queue at the per-host limit of an upstream that throttles, below the throttled
    # rule's threshold: keep the limit, and say the upstream throttles.
    queued = throttling(307, 7, pool_wait_ms={"p95": 916.0}, pool_queued_share=0.075)
    limits = PoolLimits(limit=100, limit_per_host=2, active_total_peak=2)
    (rec,) = advice(replace(queued, active_peak=2), limits).values()
    assert (rec.rule, rec.variable, rec.value, rec.current) == (
        "pool-backpressure",
        "RESILIENT_HTTP_LIMIT_PER_HOST",
        "2",
        "2",
    )
    assert "the upstream is throttling: 7 of 307 attempts (2.28 %) throttled under load" in (
        rec.evidence
    )
    assert rec.expect is None  # a keep changes nothing
    assert "pool wait p95 916 ms" in rec.evidence
    # The total limit, when that is the one in use.
    total = PoolLimits(limit=10, limit_per_host=20, active_total_peak=10)
    (rec,) = advice(replace(queued, active_peak=10), total).values()
    assert (rec.variable, rec.value) == ("RESILIENT_HTTP_LIMIT", "10")
    # Quiet: no queueing, throttling below the floor (2 of 307 < 1 %... and < 3 attempts), or
    # above the throttled rule's threshold (that rule speaks instead).
    assert advice(replace(queued, pool_wait_ms={"p95": 0.0}, active_peak=2), limits) == {}
    below_floor = throttling(307, 2, pool_wait_ms={"p95": 916.0}, active_peak=2)
    assert set(advice(below_floor, limits)) == {"pool-starved-per-host"}
    heavy = throttling(307, 40, pool_wait_ms={"p95": 916.0}, active_peak=2)
    assert set(advice(heavy, limits)) == {"throttled"}


def queued_at_four(**changes: Any) -> UpstreamReport:
    """Calls queue at a per-host limit of 4, with no throttling: attempts of 250 ms, 200 ms of
    them queued, so the calls wanted 4 x 250 / 50 = 20 connections at once (Little's law)."""
    return healthy(
        pool_wait_ms={"p95": 120.0},
        attempt_mean_s=0.25,
        pool_wait_mean_s=0.2,
        active_peak=4,
        **changes,
    )


FOUR = PoolLimits(limit=100, limit_per_host=4, active_total_peak=4)


def test_pool_backpressure_keeps_a_limit_lowered_in_the_environment() -> None:
    # A run at a per-host limit lowered in the environment never sends the upstream more calls
    # at once: it cannot show whether the upstream throttles above it (the throttled rule lowers
    # it so), so the queue is not raised away: the advice keeps it and names the raise.
    lowered = Settings.from_env({"RESILIENT_HTTP_LIMIT_PER_HOST": "4"})
    (kept,) = advice(queued_at_four(), FOUR, lowered).values()
    assert (kept.rule, kept.variable, kept.value, kept.current) == (
        "pool-backpressure",
        "RESILIENT_HTTP_LIMIT_PER_HOST",
        "4",
        "4",
    )
    assert kept.expect is None
    assert "the per-host limit was lowered in the environment" in kept.reason
    assert "limit_per_host 4 (environment; the SDK's default 10)" in kept.evidence
    assert "calls wanted about 20 connections at once" in kept.evidence
    assert kept.data["wanted_per_host"] == 20
    # The same queue at a limit of 4 that is not from the environment is raised.
    assert advice(queued_at_four(), FOUR)["pool-starved-per-host"].value == "20"


def test_pool_backpressure_under_an_adaptive_limiter() -> None:
    # The adaptive limiter's waits are reported as pool wait: while it holds the calls below the
    # per-host limit, a higher LIMIT_PER_HOST does not shorten them.
    adaptive = Settings.from_env({"RESILIENT_HTTP_CONCURRENCY": "adaptive"})
    held = queued_at_four(concurrency_limit_low=2.0, concurrency_limit_last=3.0)
    (kept,) = advice(held, FOUR, adaptive).values()
    assert (kept.rule, kept.value) == ("pool-backpressure", "4")
    assert "adaptive concurrency limit down to 2 (last 3) of limit_per_host 4" in kept.evidence
    # A limiter that never went below the per-host limit: the queue is the pool's.
    at_top = queued_at_four(concurrency_limit_low=4.0, concurrency_limit_last=4.0)
    assert advice(at_top, FOUR, adaptive)["pool-starved-per-host"].value == "20"


def test_pool_starved_raise_stops_where_throttling_began() -> None:
    # 19 of 2000 attempts answered 503, all with 8 connections in use: too few to count as
    # throttling (0.95 %, below the 1 % floor) but clearly growing with load, so a raise goes no
    # further than 7, where the upstream stayed calm.
    evidence = ConnectionEvidence()
    for index in range(2000):
        in_use = 1 + index % 8
        evidence.add_attempt(in_use, in_use == 8 and index < 8 * 19, 1.0)
    throttled = sum(row[1] for row in evidence.in_use.values())
    assert throttled == 19
    starved = healthy(
        pool_wait_ms={"p95": 120.0},
        attempts=2000,
        attempt_mean_s=0.25,
        pool_wait_mean_s=0.2,
        active_peak=8,
        throttled_attempts=throttled,
        throttled_share=throttled / 2000,
        rate_limited=0,
        connections=evidence,
    )
    eight = PoolLimits(limit=100, limit_per_host=8, active_total_peak=8)
    (kept,) = advice(starved, eight).values()
    assert (kept.rule, kept.value, kept.data["wanted_per_host"]) == ("pool-backpressure", "8", 40)
    assert "more connections than it stayed calm at bring the throttling back" in kept.reason
    five = PoolLimits(limit=100, limit_per_host=5, active_total_peak=5)
    (raised,) = advice(replace(starved, active_peak=5), five).values()
    assert (raised.rule, raised.value) == ("pool-starved-per-host", "7")
    assert "raised no further than 7: 19 attempts answered 429/503" in raised.evidence
    assert "it stayed calm with at most 7 connections in use" in raised.evidence


def test_stale_keepalive() -> None:
    # Reuses idle 4.01 s or more failed (100 of them), those idle up to 3.81 s never did.
    evidence = reuses(stale_idle=4.0)
    stale = healthy(retries={"connection_closed": 100, "throttled": 5}, connections=evidence)
    (rec,) = advice(stale).values()
    assert (rec.rule, rec.variable, rec.value, rec.current) == (
        "stale-keepalive",
        "RESILIENT_HTTP_KEEPALIVE_TIMEOUT",
        "3.2",
        "15",
    )
    assert "stale only on connections idle >= 4 s: 200 of 200 reuses idle that long" in (
        rec.evidence
    )
    assert "0 of 200 reuses idle up to 3.81 s failed" in rec.evidence
    assert "15 s (assumed default" in rec.evidence
    assert rec.expect is not None
    assert (rec.expect.figure, rec.expect.direction) == ("retries.connection_closed", "down")
    from_env = Settings.from_env({"RESILIENT_HTTP_KEEPALIVE_TIMEOUT": "4"})
    assert "4 s (environment)" in advice(stale, settings=from_env)["stale-keepalive"].evidence
    # Converges: a keep-alive already at the advised value (or below) gets no advice.
    applied = Settings.from_env({"RESILIENT_HTTP_KEEPALIVE_TIMEOUT": "3.2"})
    assert advice(stale, settings=applied) == {}
    # Quiet: too few stale retries, or no evidence (the data bounds no value), or closes that
    # follow no idle time.
    assert advice(replace(stale, retries={"connection_closed": 9})) == {}
    assert advice(replace(stale, connections=None)) == {}
    assert advice(replace(stale, connections=reuses())) == {}


def test_per_connection_request_cap() -> None:
    # Every reuse of a connection that had served 7 requests failed, whatever its idle time.
    capped = healthy(retries={"connection_closed": 20}, connections=reuses(cap=7))
    (rec,) = advice(capped).values()
    assert (rec.rule, rec.variable, rec.value, rec.current) == (
        "per-connection-request-cap",
        "RESILIENT_HTTP_KEEPALIVE_TIMEOUT",
        "15",
        "15",
    )
    assert "20 of 20 stale closes came on a connection that had served 7 requests" in (rec.evidence)
    assert "request cap" in rec.reason
    assert rec.expect is None
    assert advice(replace(capped, retries={"connection_closed": 9})) == {}


def test_throttled() -> None:
    throttled = throttling(1200, 240)
    (rec,) = advice(throttled).values()
    assert (rec.rule, rec.variable, rec.value, rec.current) == (
        "throttled",
        "RESILIENT_HTTP_CONCURRENCY",
        "adaptive",
        "static",
    )
    assert "RETRY_AFTER_MAX" not in rec.reason  # no Retry-After was refused
    assert "20 % of 1200 attempts throttled under load" in rec.evidence
    assert "240 of them 429 (a rate limit)" in rec.evidence
    assert "queue" not in rec.evidence
    assert rec.expect is not None
    assert (rec.expect.figure, rec.expect.direction) == ("throttled_share", "down")
    # Calls queueing too: the evidence says it is the expected backpressure, nothing raises.
    queued = advice(replace(throttled, pool_wait_ms={"p95": 300.0}, active_peak=10))
    assert set(queued) == {"throttled"}
    assert "requests also queue for a connection, pool wait p95 300 ms" in (
        queued["throttled"].evidence
    )
    # Retry-After waits refused: the retry-after rule speaks.
    refused = advice(replace(throttled, suppressed={"retry_after_too_long": 5}))
    assert refused["retry-after-too-long"].value == "60"
    # Converges: adaptive concurrency in force gets no further concurrency advice.
    adaptive = Settings.from_env({"RESILIENT_HTTP_CONCURRENCY": "adaptive"})
    assert advice(throttled, settings=adaptive) == {}
    assert advice(replace(throttled, rate_limited=12)) == {}  # 1 %: below the threshold
    assert advice(replace(throttled, requests=10)) == {}  # too few calls to judge


def test_a_rate_limit_at_the_edge_of_its_rate_is_bounded_below_the_5_percent_threshold() -> None:
    # At 3 connections the demo's 200/s limit answers about 5 % of the attempts 429, now above
    # and now below THROTTLED_SHARE_HIGH: its own rate (between its 429s) bounds the limit at 2
    # either way, so the advice does not change from run to run; within the rate (no 429s, or
    # under 1 %) nothing is advised.
    aggregator = SpanAggregator()
    aggregator.add_request(traces_request(rate_limited_spans(dict(UPSTREAM))))
    (stats,) = aggregator.attempts.values()

    def at_three(share: float) -> UpstreamReport:
        return throttling(
            stats.count,
            round(stats.count * share),
            window_s=(stats.last_end - stats.first_start) / SECOND,
            attempt_mean_s=0.0129,
            pool_wait_mean_s=0.0,
            connections=None,
            rate_timeline=stats.timeline,
        )

    three = PoolLimits(limit=100, limit_per_host=3, active_total_peak=3)
    for share in (0.045, 0.055):
        rec = advice(at_three(share), three)["throttled"]
        assert (rec.variable, rec.value) == ("RESILIENT_HTTP_LIMIT_PER_HOST", "2"), share
    assert "a rate limit's 429s: > 1 %" in advice(at_three(0.045), three)["throttled"].evidence
    assert advice(at_three(0.008), three) == {}
    two = PoolLimits(limit=100, limit_per_host=2, active_total_peak=2)
    assert advice(at_three(0.045), two) == {}  # its bound already: converged


def test_503s_that_grow_with_load_are_throttling_and_random_ones_are_not() -> None:
    grows = answered_503(1000, 100, grows=True)
    (rec,) = advice(grows).values()
    # The most connections in use with at most 5 % throttled (0 % at 2): the limit the data
    # bounds; applied, the same data no longer asks for less (no walk).
    assert (rec.rule, rec.variable, rec.value, rec.current) == (
        "throttled",
        "RESILIENT_HTTP_LIMIT_PER_HOST",
        "2",
        "10",
    )
    assert "with at most 2 connections in use 0 % of 500 attempts were throttled" in rec.evidence
    two = PoolLimits(limit=100, limit_per_host=2, active_total_peak=2)
    assert "throttled" not in advice(grows, two)
    assert "429/503 grow with load: 0 % of attempts with at most 2 connections in use, 20 %" in (
        rec.evidence
    )
    # The same 503s spread evenly over the load are server errors: no concurrency advice, and
    # queueing is judged on its own (the per-host limit is raised).
    spread = answered_503(1000, 100, grows=False)
    assert advice(spread) == {}
    starved = advice(replace(spread, pool_wait_ms={"p95": 120.0}, active_peak=10))
    assert set(starved) == {"pool-starved-per-host"}
    assert "do not grow with load" in starved["pool-starved-per-host"].evidence
    # A load that never varied tells nothing: the 503s are not taken for throttling.
    constant = replace(spread, connections=None)
    assert set(advice(replace(constant, pool_wait_ms={"p95": 120.0}, active_peak=10))) == {
        "pool-starved-per-host"
    }


def test_a_rate_limit_gets_the_calls_its_rate_allows() -> None:
    # 1200 attempts in 10 s, 240 answered 429: 96 attempts/s let through, each holding a
    # connection 30 ms (50 ms an attempt, 20 ms of it queued): 2.88 calls at once -> 2.
    limited = throttling(
        1200, 240, window_s=10.0, attempt_mean_s=0.05, pool_wait_mean_s=0.02, connections=None
    )
    rec = advice(limited)["throttled"]
    assert (rec.variable, rec.value) == ("RESILIENT_HTTP_LIMIT_PER_HOST", "2")
    assert "it answered 96 attempts/s without throttling over the whole run" in rec.evidence
    at_two = PoolLimits(limit=100, limit_per_host=2, active_total_peak=2)
    assert "throttled" not in advice(limited, at_two)


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
    # 30 read timeouts of 1000 attempts: 12 retried, 18 returned (the budget ran out, say).
    slow = healthy(
        retries={"timeout": 12},
        attempt_error_types={"SocketTimeoutError": 30},
        attempt_latency_ms={"p95": 900.0, "p99": 9000.0},
    )
    (rec,) = advice(slow).values()
    assert (rec.rule, rec.variable, rec.value) == ("timeouts", "RESILIENT_HTTP_TIMEOUT_READ", "20")
    assert "30 of 1000 attempts ended in a read timeout (> 1 %), 12 timeout retries" in (
        rec.evidence
    )
    assert "900/9000 ms, pool wait included (p95 0.5 ms)" in rec.evidence
    assert advice(replace(slow, attempt_error_types={"SocketTimeoutError": 10})) == {}  # 1 %
    # Pool-wait/connect timeouts and the call's deadline are not read timeouts.
    other = {"ConnectionTimeoutError": 30.0, "TimeoutError": 30.0}
    assert advice(replace(slow, retries={"timeout": 30}, attempt_error_types=other)) == {}
    # Without attempt error types (call spans alone): the timeout retries.
    assert "timeouts" in advice(replace(slow, retries={"timeout": 30}, attempt_error_types=None))


def test_read_timeout_types_are_what_the_sdk_retries_as_sent_timeouts() -> None:
    for name in READ_TIMEOUT_TYPES:
        kind = classify_failure(getattr(aiohttp, name)())
        assert kind is not None
        assert (kind.reason, kind.request_sent) == (RetryReason.TIMEOUT, True)
    # The pool wait / connect timeout is a timeout too, but not a read one.
    connect = classify_failure(aiohttp.ConnectionTimeoutError())
    assert connect is not None
    assert not connect.request_sent


def test_pool_overprovisioned() -> None:
    # 400 calls on 8 connections opened in all (at most 8 in use at once), limit 40, no queue.
    idle = healthy(requests=400, attempts=400, new_connections=8, active_peak=8, window_s=2.0)
    idle = replace(idle, pool_wait_ms={"p50": 0.0, "p95": 0.0, "p99": 0.0}, pool_queued_share=0)
    limits = PoolLimits(limit=100, limit_per_host=40, active_total_peak=8)
    (rec,) = advice(idle, limits).values()
    assert (rec.rule, rec.variable, rec.value, rec.current) == (
        "pool-overprovisioned",
        "RESILIENT_HTTP_LIMIT_PER_HOST",
        "16",
        "40",
    )
    assert "the pool opened 8 connections in 400 calls over 2 s" in rec.evidence
    assert "the sampled gauge peaked at 8), of limit_per_host 40" in rec.evidence
    # Never below the SPEC default; 20 -> 10 halves the limit, so it is still said.
    small = replace(idle, new_connections=3)
    assert advice(small, replace(limits, limit_per_host=20))["pool-overprovisioned"].value == "10"
    # Quiet: the default limit (10 -> 8 is noise), a suggestion that does not halve the limit
    # (30 -> 16), too few calls, connections churning (the bound is then loose), any queueing,
    # or a limit the SDK did not report.
    assert advice(idle, replace(limits, limit_per_host=10)) == {}
    assert advice(idle, replace(limits, limit_per_host=30)) == {}
    assert advice(replace(idle, requests=199), limits) == {}
    assert advice(replace(idle, new_connections=400, active_peak=3), limits) == {}
    assert advice(replace(idle, pool_wait_ms={"p95": 2.0}), limits) == {}
    assert advice(replace(idle, pool_wait_ms={}), limits) == {}
    assert advice(idle, replace(limits, limit_per_host=None)) == {}


def test_identical_advice_for_several_hosts_is_merged() -> None:
    stale = {"retries": {"connection_closed": 50}, "connections": reuses(stale_idle=4.0)}
    a = healthy(**stale)
    b = healthy(address="b.test", **stale)
    (rec,) = evaluate_rules([a, b], LIMITS, Settings())
    assert rec.upstreams == ("api.test:8080", "b.test:8080")
    assert rec.evidence.count("connection_closed retries") == 2
    assert rec.expect is not None


def test_settings_are_read_by_the_sdks_own_reader() -> None:
    # LIMIT=5 lowers the default per-host limit in the analysis as in ClientConfig.
    environ = {"RESILIENT_HTTP_LIMIT": "5", "RESILIENT_HTTP_TIMEOUT_READ": "3"}
    settings = Settings.from_env(environ)
    config = rh.ClientConfig.from_env(environ)
    assert (settings.limit, settings.limit_per_host) == (config.limit, config.limit_per_host)
    assert settings.limit_per_host == 5
    assert settings.source("RESILIENT_HTTP_TIMEOUT_READ") == "environment"
    assert settings.source("RESILIENT_HTTP_LIMIT_PER_HOST").startswith("default, lowered")
    # Invalid values are an error, as for the SDK, never silently a default.
    with pytest.raises(rh.ConfigError, match="RESILIENT_HTTP_LIMIT='lots'"):
        Settings.from_env({"RESILIENT_HTTP_LIMIT": "lots"})


def test_settings_without_telemetry_say_they_are_assumed() -> None:
    assert "15 s (assumed default" in Settings().describe("keepalive_timeout", 15, " s")


@pytest.mark.parametrize("rule", [rule.name for rule in RULES])
def test_rule_names_are_stable(rule: str) -> None:
    # Rule names appear in the --json output ("rule"): renaming one is a breaking change.
    assert rule in {
        "pool-starved-per-host",
        "pool-starved-total",
        "pool-backpressure",
        "stale-keepalive",
        "per-connection-request-cap",
        "throttled",
        "retry-after-too-long",
        "retry-budget-exhausted",
        "timeouts",
        "pool-overprovisioned",
        "long-tail",
    }


def test_a_rate_limit_is_measured_where_it_binds() -> None:
    # The demo's throttled scenario in spans: a 200/s limit, 1 s Retry-After waits. Over the whole
    # run it let through 125 attempts/s (1.6 calls at 12.9 ms: 1); between its 429s, 200/s
    # (2.58: 2, where 2 connections still meet no 429).
    aggregator = SpanAggregator()
    aggregator.add_request(traces_request(rate_limited_spans(dict(UPSTREAM))))
    (stats,) = aggregator.attempts.values()
    limited = throttling(
        stats.count,
        stats.throttled,
        window_s=(stats.last_end - stats.first_start) / SECOND,
        attempt_mean_s=0.0129,
        pool_wait_mean_s=0.0,
        connections=None,
        rate_timeline=stats.timeline,
    )
    rec = advice(limited)["throttled"]
    assert (rec.variable, rec.value) == ("RESILIENT_HTTP_LIMIT_PER_HOST", "2")
    assert (
        "it let through 200 attempts/s while it throttled (18 answered without throttling in "
        "the 90 ms between the 429s of 3 burst(s) of them, each answer counted at its end less "
        "the time an attempt holds a connection), at 12.9 ms an attempt holds a connection: "
        "2.58 calls at once"
    ) in rec.evidence
    # Without spans (the Prometheus path): the whole run's rate, as before.
    whole_run = advice(replace(limited, rate_timeline=None))["throttled"]
    assert whole_run.value == "1"
    assert "over the whole run (Retry-After waits included: errs low)" in whole_run.evidence
