"""Tuning rules: a table of small named rules turning upstream figures into env variable advice.

Each ``Rule`` has a predicate over a ``RuleContext`` (one upstream, all methods together, plus the
pool limits and the settings in force) and a builder for its ``Recommendation``: the full
``RESILIENT_HTTP_*`` name, the value to set, why, and the numbers behind it. Rules run per
host because the settings are per pool, not per method; identical advice for several hosts is
merged. Thresholds are named constants below. Settings the telemetry does not carry (keep-alive,
timeouts, retry settings) come from ``settings.py``: the analysing process's environment when
set there, else the SPEC defaults, and the evidence says which.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from resilient_http.analysis.model import PoolLimits, UpstreamReport
from resilient_http.analysis.settings import PREFIX, Settings, fmt

__all__ = ["RULES", "Recommendation", "Rule", "RuleContext", "evaluate_rules"]

# Below this many logical calls a share (2 of 10 throttled...) is noise: share rules stay quiet.
MIN_REQUESTS = 20
# Pool starvation: a p95 wait above 50 ms for a pooled connection is queueing, not scheduling
# jitter (an uncontended acquire takes well under 1 ms).
POOL_WAIT_P95_HIGH_MS = 50.0
# "At the limit": the open-connections gauge is sampled once per export interval, so its peak
# under-reads the true one; 90 % of the limit counts as reaching it.
LIMIT_SATURATION = 0.9
# Raising a binding limit: double it (one step gives a clear before/after to compare).
LIMIT_RAISE_FACTOR = 2
# Stale keep-alive connections: below 60 % reuse, with connection_closed making at least half
# of the retries and at least 1 % of the calls, pooled connections outlive the upstream's idle
# timeout.
REUSE_RATIO_LOW = 0.6
STALE_SHARE_OF_RETRIES = 0.5
STALE_SHARE_OF_REQUESTS = 0.01
# Keep-alive to suggest: below common upstream idle timeouts (nginx/ALB 60 s, Node.js 5 s).
KEEPALIVE_SUGGESTED_S = 5.0
# Throttling: more than 5 % of attempts answered 429/503.
THROTTLED_SHARE_HIGH = 0.05
# Timeouts: retries on timeout for more than 1 % of attempts.
TIMEOUT_SHARE_HIGH = 0.01
# Raising the read timeout: double it (the telemetry cannot tell how slow the slowest answer is,
# since timed-out attempts end at the timeout).
TIMEOUT_RAISE_FACTOR = 2
# Retry budget step and ceiling (a budget above 50 % no longer prevents retry storms).
BUDGET_RATIO_STEP = 0.1
BUDGET_RATIO_MAX = 0.5
# Over-provisioned pool: a per-host limit of at least 20 with peak use at most 25 % of it and
# no waiting.
OVERPROVISION_MIN_LIMIT = 20
OVERPROVISION_USE_MAX = 0.25
OVERPROVISION_WAIT_MAX_MS = 1.0


@dataclass(frozen=True)
class Recommendation:
    """One piece of advice: set ``variable`` to ``value``, because ``reason`` (``evidence``)."""

    rule: str
    variable: str
    value: str
    reason: str
    evidence: str
    upstreams: tuple[str, ...] = ()
    data: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleContext:
    """What a rule sees: one upstream (methods folded), the pool limits and the settings."""

    upstream: UpstreamReport
    limits: PoolLimits
    settings: Settings

    @property
    def limit_per_host(self) -> int:
        """The per-host limit reported by the SDK, else the setting."""
        reported = self.limits.limit_per_host
        return self.settings.limit_per_host if reported is None else reported

    @property
    def limit(self) -> int:
        """The total limit reported by the SDK, else the setting."""
        return self.settings.limit if self.limits.limit is None else self.limits.limit

    @property
    def pool_wait_p95(self) -> float:
        """Pool wait p95 in ms (0 when unknown)."""
        return self.upstream.pool_wait_ms.get("p95") or 0.0

    @property
    def busy(self) -> bool:
        """Enough calls for shares to mean something."""
        return (self.upstream.requests or 0.0) >= MIN_REQUESTS

    def retries(self, reason: str) -> float:
        """Retries of one reason."""
        return self.upstream.retries.get(reason, 0.0)

    def suppressed(self, reason: str) -> float:
        """Retries not made, for one reason."""
        return self.upstream.suppressed.get(reason, 0.0)


@dataclass(frozen=True)
class Rule:
    """A named rule: ``applies`` decides, ``recommend`` words the advice with its evidence."""

    name: str
    applies: Callable[[RuleContext], bool]
    recommend: Callable[[RuleContext], Recommendation]


def evaluate_rules(
    hosts: list[UpstreamReport], limits: PoolLimits, settings: Settings
) -> list[Recommendation]:
    """Run every rule on every host; merge identical advice given for several hosts."""
    merged: dict[tuple[str, str, str], Recommendation] = {}
    for host in hosts:
        context = RuleContext(host, limits, settings)
        for rule in RULES:
            if not rule.applies(context):
                continue
            advice = rule.recommend(context)
            advice = Recommendation(
                advice.rule,
                advice.variable,
                advice.value,
                advice.reason,
                f"{host.upstream}: {advice.evidence}",
                (host.upstream,),
                advice.data,
            )
            key = (advice.rule, advice.variable, advice.value)
            earlier = merged.get(key)
            if earlier is None:
                merged[key] = advice
            else:
                merged[key] = Recommendation(
                    earlier.rule,
                    earlier.variable,
                    earlier.value,
                    earlier.reason,
                    f"{earlier.evidence}; {advice.evidence}",
                    earlier.upstreams + advice.upstreams,
                    earlier.data,
                )
    return list(merged.values())


# --- the rules --------------------------------------------------------------------------------


def _per_host_starved(c: RuleContext) -> bool:
    per_host = c.limit_per_host
    active = c.upstream.active_peak
    throttled = (c.upstream.throttled_share or 0.0) > THROTTLED_SHARE_HIGH
    at_limit = active is None or active >= LIMIT_SATURATION * per_host
    return (
        c.pool_wait_p95 > POOL_WAIT_P95_HIGH_MS
        and per_host > 0
        and at_limit
        and not throttled  # more concurrency against a throttling upstream makes it worse
        and _raised_per_host(c) > per_host
    )


def _raised_per_host(c: RuleContext) -> int:
    raised = c.limit_per_host * LIMIT_RAISE_FACTOR
    return min(raised, c.limit) if c.limit > 0 else raised


def _per_host_advice(c: RuleContext) -> Recommendation:
    active = c.upstream.active_peak
    seen = "not in telemetry" if active is None else fmt(active)
    return Recommendation(
        "pool-starved-per-host",
        PREFIX + "LIMIT_PER_HOST",
        str(_raised_per_host(c)),
        "requests queue for a pooled connection while the per-host limit is fully used",
        f"pool wait p95 {fmt(c.pool_wait_p95)} ms > {fmt(POOL_WAIT_P95_HIGH_MS)} ms, "
        f"peak active connections {seen} of limit_per_host {c.limit_per_host}",
        data={"pool_wait_p95_ms": c.pool_wait_p95, "active_peak": active},
    )


def _total_starved(c: RuleContext) -> bool:
    peak = c.limits.active_total_peak
    return (
        c.pool_wait_p95 > POOL_WAIT_P95_HIGH_MS
        and c.limit > 0
        and peak is not None
        and peak >= LIMIT_SATURATION * c.limit
    )


def _total_advice(c: RuleContext) -> Recommendation:
    peak = c.limits.active_total_peak or 0.0
    return Recommendation(
        "pool-starved-total",
        PREFIX + "LIMIT",
        str(c.limit * LIMIT_RAISE_FACTOR),
        "requests queue for a pooled connection while the total pool limit is fully used",
        f"pool wait p95 {fmt(c.pool_wait_p95)} ms, peak active connections {fmt(peak)} "
        f"of limit {c.limit}",
        data={"pool_wait_p95_ms": c.pool_wait_p95, "active_total_peak": peak},
    )


def _stale(c: RuleContext) -> bool:
    closed = c.retries("connection_closed")
    reuse = c.upstream.reuse_ratio
    return (
        c.busy
        and closed > 0
        and closed >= STALE_SHARE_OF_RETRIES * c.upstream.retries_total
        and closed >= STALE_SHARE_OF_REQUESTS * (c.upstream.requests or 0.0)
        and (reuse is None or reuse < REUSE_RATIO_LOW)
        and c.settings.keepalive_timeout > 1.0
    )


def _stale_advice(c: RuleContext) -> Recommendation:
    current = c.settings.keepalive_timeout
    value = KEEPALIVE_SUGGESTED_S if current > KEEPALIVE_SUGGESTED_S else max(1.0, current / 2)
    reuse = c.upstream.reuse_ratio
    return Recommendation(
        "stale-keepalive",
        PREFIX + "KEEPALIVE_TIMEOUT",
        fmt(value),
        "the upstream closes idle keep-alive connections before the pool drops them: keep "
        "them for less time than the upstream's idle timeout",
        f"{fmt(c.retries('connection_closed'))} connection_closed retries of "
        f"{fmt(c.upstream.retries_total)} retries, {fmt(c.upstream.requests)} requests; "
        f"reuse ratio {'unknown' if reuse is None else fmt(reuse)}; keepalive "
        f"{c.settings.describe('keepalive_timeout', current, ' s')}",
        data={"connection_closed": c.retries("connection_closed"), "reuse_ratio": reuse},
    )


def _throttled(c: RuleContext) -> bool:
    return c.busy and (c.upstream.throttled_share or 0.0) > THROTTLED_SHARE_HIGH


def _throttled_advice(c: RuleContext) -> Recommendation:
    current = c.limit_per_host or math.ceil(c.upstream.active_peak or c.settings.limit_per_host)
    share = c.upstream.throttled_share or 0.0
    return Recommendation(
        "throttled",
        PREFIX + "LIMIT_PER_HOST",
        str(max(1, current // 2)),
        "the upstream throttles (429/503): send fewer concurrent requests to it, and keep "
        f"RESILIENT_HTTP_RETRY_AFTER_MAX at {fmt(c.settings.retry_after_max)} s or more so "
        "its Retry-After is honoured",
        f"{fmt(share * 100)} % of {fmt(c.upstream.attempts)} attempts throttled "
        f"(> {fmt(THROTTLED_SHARE_HIGH * 100)} %), limit_per_host {current}",
        data={"throttled_share": share, "attempts": c.upstream.attempts},
    )


def _retry_after_long(c: RuleContext) -> bool:
    return c.suppressed("retry_after_too_long") > 0


def _retry_after_advice(c: RuleContext) -> Recommendation:
    current = c.settings.retry_after_max
    return Recommendation(
        "retry-after-too-long",
        PREFIX + "RETRY_AFTER_MAX",
        fmt(current * 2),
        "the upstream asked to wait longer than RETRY_AFTER_MAX, so those calls failed "
        "without a retry; allow a longer wait if callers can afford it",
        f"{fmt(c.suppressed('retry_after_too_long'))} retries suppressed "
        "(retry_after_too_long); retry_after_max "
        f"{c.settings.describe('retry_after_max', current, ' s')}",
        data={"suppressed": c.suppressed("retry_after_too_long")},
    )


def _budget(c: RuleContext) -> bool:
    return c.suppressed("budget") > 0 and c.settings.retry_budget_ratio < BUDGET_RATIO_MAX


def _budget_advice(c: RuleContext) -> Recommendation:
    current = c.settings.retry_budget_ratio
    value = min(BUDGET_RATIO_MAX, round(current + BUDGET_RATIO_STEP, 2))
    rate = c.upstream.error_rate
    return Recommendation(
        "retry-budget-exhausted",
        PREFIX + "RETRY_BUDGET_RATIO",
        fmt(value),
        "the retry budget ran out, so failures were returned without retry: the budget "
        "protects a failing upstream from retry storms; raise it only if the failures are "
        "short bursts that a retry would absorb",
        f"{fmt(c.suppressed('budget'))} retries suppressed (budget); error rate "
        f"{'unknown' if rate is None else fmt(rate)}; budget ratio "
        f"{c.settings.describe('retry_budget_ratio', current)}",
        data={"suppressed": c.suppressed("budget"), "error_rate": rate},
    )


def _timeouts(c: RuleContext) -> bool:
    attempts = c.upstream.attempts or 0.0
    return c.busy and attempts > 0 and c.retries("timeout") > TIMEOUT_SHARE_HIGH * attempts


def _timeout_advice(c: RuleContext) -> Recommendation:
    current = c.settings.timeout_read
    latency = c.upstream.attempt_latency_ms
    return Recommendation(
        "timeouts",
        PREFIX + "TIMEOUT_READ",
        fmt(current * TIMEOUT_RAISE_FACTOR),
        "attempts time out waiting for the response: if the upstream is slow rather than "
        "stuck, a longer read timeout turns these retries (which resend work the upstream may "
        "still be doing) into successes",
        f"{fmt(c.retries('timeout'))} timeout retries of {fmt(c.upstream.attempts)} attempts "
        f"(> {fmt(TIMEOUT_SHARE_HIGH * 100)} %), attempt p95/p99 {fmt(latency.get('p95'))}/"
        f"{fmt(latency.get('p99'))} ms; timeout_read "
        f"{c.settings.describe('timeout_read', current, ' s')}",
        data={"timeout_retries": c.retries("timeout"), "attempt_p99_ms": latency.get("p99")},
    )


def _overprovisioned(c: RuleContext) -> bool:
    active = c.upstream.active_peak
    return (
        c.busy
        and active is not None
        and c.limit_per_host >= OVERPROVISION_MIN_LIMIT
        and active <= OVERPROVISION_USE_MAX * c.limit_per_host
        and c.upstream.pool_wait_ms.get("p95") is not None
        and c.pool_wait_p95 <= OVERPROVISION_WAIT_MAX_MS
    )


def _overprovisioned_advice(c: RuleContext) -> Recommendation:
    active = c.upstream.active_peak or 0.0
    return Recommendation(
        "pool-overprovisioned",
        PREFIX + "LIMIT_PER_HOST",
        str(max(2 * math.ceil(active), 10)),
        "the per-host limit is far above what is used; a lower one bounds the connections a "
        "burst can open to the upstream (optional)",
        f"peak active connections {fmt(active)} of limit_per_host {c.limit_per_host}, "
        f"pool wait p95 {fmt(c.pool_wait_p95)} ms",
        data={"active_peak": active},
    )


RULES: tuple[Rule, ...] = (
    Rule("pool-starved-per-host", _per_host_starved, _per_host_advice),
    Rule("pool-starved-total", _total_starved, _total_advice),
    Rule("stale-keepalive", _stale, _stale_advice),
    Rule("throttled", _throttled, _throttled_advice),
    Rule("retry-after-too-long", _retry_after_long, _retry_after_advice),
    Rule("retry-budget-exhausted", _budget, _budget_advice),
    Rule("timeouts", _timeouts, _timeout_advice),
    Rule("pool-overprovisioned", _overprovisioned, _overprovisioned_advice),
)
