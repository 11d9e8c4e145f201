"""The rules on telemetry files written by the real OpenTelemetry SDK: healthy traffic gets no
advice, each problem its own, and the throttled and pool-starvation rules never contradict each
other (lowered for a throttling upstream, never raised back while it throttles, nor when a run
at a limit lowered in the environment cannot show what lies above it; raised when the queue is
not throttling's backpressure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resilient_http.analysis.analyze import analyze_paths
from resilient_http.analysis.rules import Recommendation
from resilient_http.analysis.settings import Settings
from tests.analysis.sdk_telemetry import Attempt, SdkTelemetry


def _recorded(
    tmp_path: Path, record: Any, limit_per_host: int = 10, settings: Settings | None = None
) -> dict[str, Recommendation]:
    telemetry = SdkTelemetry(tmp_path / "traces.jsonl", tmp_path / "metrics.jsonl")
    telemetry.pool_limits(100, limit_per_host)
    record(telemetry)
    telemetry.flush_metrics()
    telemetry.close()
    analysis = analyze_paths([tmp_path], settings or Settings())
    return {r.rule: r for r in analysis.recommendations}


def _rate_limited(t: SdkTelemetry, calls: int, *, throttled_every: int | None, active: int) -> None:
    """``calls`` calls, a third of them queued 300 ms for a connection; every
    ``throttled_every``-th answered 429 first (retried after its Retry-After)."""
    for i in range(calls):
        wait = 0.3 if i % 3 == 0 else 0.0
        if throttled_every and i % throttled_every == 0:
            refused = Attempt(0.02, status=429, retry="throttled", delay=0.1, pool_wait=wait)
            t.call([refused, Attempt(0.02)])
        else:
            t.call([Attempt(0.02, pool_wait=wait)])
    t.open_connections(active=active, idle=0)


def test_healthy_sdk_traffic_gets_no_advice(tmp_path: Path) -> None:
    def record(t: SdkTelemetry) -> None:
        for i in range(200):
            t.call([Attempt(0.02 + 0.001 * (i % 7), reused=i % 50 != 0)])
        t.open_connections(active=4, idle=4)

    assert _recorded(tmp_path, record) == {}


def _stale_reuses(t: SdkTelemetry, *, idle: float, served: int | None) -> None:
    """100 calls; every fourth reuses a connection idle ``idle`` seconds (that had served
    ``served`` requests, else 1 to 25) that the upstream closed; the others reuse connections
    idle 0.1 to 2.5 s that had served 1 to 3 requests."""
    for i in range(100):
        if i % 4 == 0:  # every fourth call hits a pooled connection the upstream closed
            closed = Attempt(
                0.001,
                status=None,
                error_type="ServerDisconnectedError",
                retry="connection_closed",
                idle=idle,
                served=i // 4 + 1 if served is None else served,
                in_use=2,
            )
            t.call([closed, Attempt(0.01, reused=False, in_use=2)])  # on a new connection
        else:
            t.call([Attempt(0.01, idle=0.1 * (i % 25 + 1), served=i % 3 + 1, in_use=2)])


def test_stale_keepalive_sdk_traffic(tmp_path: Path) -> None:
    recommendations = _recorded(tmp_path, lambda t: _stale_reuses(t, idle=5.0, served=None))
    assert set(recommendations) == {"stale-keepalive"}
    advice = recommendations["stale-keepalive"]
    assert advice.value == "4"
    assert "stale only on connections idle >= 5 s" in advice.evidence
    assert "0 of 75 reuses idle up to 2.5 s failed" in advice.evidence


def test_request_cap_sdk_traffic_gets_no_keepalive_change(tmp_path: Path) -> None:
    # The closed connections had each served 4 requests; their idle times are short, as others.
    recommendations = _recorded(tmp_path, lambda t: _stale_reuses(t, idle=0.3, served=4))
    assert set(recommendations) == {"per-connection-request-cap"}
    capped = recommendations["per-connection-request-cap"]
    assert capped.value == capped.current == "15"
    assert "25 of 25 stale closes came on a connection that had served 4 requests" in (
        capped.evidence
    )


def test_throttled_sdk_traffic_lowers_the_limit_even_while_calls_queue(tmp_path: Path) -> None:
    # At 10 connections: 40 of 240 attempts throttled (16.7 %), and calls queue.
    def record(t: SdkTelemetry) -> None:
        _rate_limited(t, 200, throttled_every=5, active=10)
        t.suppressed("retry_after_too_long", 2)

    recommendations = _recorded(tmp_path, record)
    # Fewer calls in flight, never more: the queue is the backpressure the advice asks for.
    assert set(recommendations) == {"throttled", "retry-after-too-long"}
    throttled = recommendations["throttled"]
    assert (throttled.variable, throttled.value) == ("RESILIENT_HTTP_CONCURRENCY", "adaptive")
    assert "requests also queue for a connection" in throttled.evidence
    assert recommendations["retry-after-too-long"].value == "60"


def test_lowered_limit_is_not_raised_back_while_the_upstream_throttles(tmp_path: Path) -> None:
    # At 5 connections after the throttled advice: 5 of 205 attempts throttled (2.4 %, below
    # the throttled rule's 5 %), and calls queue. The starvation rule would say 10 again.
    def record(t: SdkTelemetry) -> None:
        _rate_limited(t, 200, throttled_every=40, active=5)

    recommendations = _recorded(tmp_path, record, limit_per_host=5)
    assert set(recommendations) == {"pool-backpressure"}
    kept = recommendations["pool-backpressure"]
    assert (kept.variable, kept.value, kept.current) == ("RESILIENT_HTTP_LIMIT_PER_HOST", "5", "5")
    assert "the upstream is throttling: 5 of 205 attempts (2.44 %) throttled under load" in (
        kept.evidence
    )
    assert "5 of limit_per_host 5" in kept.evidence


def test_queueing_without_throttling_raises_the_limit(tmp_path: Path) -> None:
    # The same queueing with no throttling at all: the limit is what holds calls back.
    def record(t: SdkTelemetry) -> None:
        _rate_limited(t, 200, throttled_every=None, active=5)

    recommendations = _recorded(tmp_path, record, limit_per_host=5)
    assert set(recommendations) == {"pool-starved-per-host"}
    raised = recommendations["pool-starved-per-host"]
    assert (raised.value, raised.current) == ("10", "5")
    # 67 of 200 acquisitions queued 300 ms: the p95 over all of them is in the 300 ms bucket.
    assert "33.5 % of them queued" in raised.evidence


def test_queueing_at_a_limit_lowered_in_the_environment_keeps_it(tmp_path: Path) -> None:
    # The same queueing at a per-host limit of 5 set in the environment (as the throttled advice
    # sets it): a run at 5 cannot show whether the upstream throttles above 5, so the advice
    # keeps it rather than raise it back (4 -> 20 -> 4 ... round after round).
    def record(t: SdkTelemetry) -> None:
        _rate_limited(t, 200, throttled_every=None, active=5)

    lowered = Settings.from_env({"RESILIENT_HTTP_LIMIT_PER_HOST": "5"})
    recommendations = _recorded(tmp_path, record, limit_per_host=5, settings=lowered)
    assert set(recommendations) == {"pool-backpressure"}
    kept = recommendations["pool-backpressure"]
    assert (kept.variable, kept.value, kept.current) == ("RESILIENT_HTTP_LIMIT_PER_HOST", "5", "5")
    assert kept.expect is None
    assert "limit_per_host 5 (environment; the SDK's default 10)" in kept.evidence
    assert kept.data["wanted_per_host"] == 10


def _tail(t: SdkTelemetry, slow_every: int | None) -> None:
    """200 calls of 5 ms; every ``slow_every``-th takes 1 s."""
    for i in range(200):
        slow = slow_every is not None and i % slow_every == 0
        t.call([Attempt(1.0 if slow else 0.005)])
    t.open_connections(active=2, idle=2)


def test_a_long_tail_on_a_fast_upstream_gets_hedging(tmp_path: Path) -> None:
    recommendations = _recorded(tmp_path, lambda t: _tail(t, slow_every=40))
    assert set(recommendations) == {"long-tail"}
    advice = recommendations["long-tail"]
    assert (advice.variable, advice.value) == ("RESILIENT_HTTP_HEDGE_AFTER", "auto")
    assert advice.expect is not None
    assert (advice.expect.figure, advice.expect.direction) == ("latency_ms.p99", "down")
    assert "hedging is off" in advice.evidence


def test_an_even_upstream_gets_no_hedging(tmp_path: Path) -> None:
    assert _recorded(tmp_path, lambda t: _tail(t, slow_every=None)) == {}
