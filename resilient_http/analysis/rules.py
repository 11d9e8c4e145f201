"""Tuning rules: a table of small named rules turning upstream figures into env variable advice.

Each ``Rule`` (``advice.py``) has a predicate over a ``RuleContext`` (one upstream, all methods
together, plus the pool limits and the settings in force) and a builder for its
``Recommendation``: the full ``RESILIENT_HTTP_*`` name, the value to set, why, and the numbers
behind it. Rules run per host because the settings are per pool, not per method; identical
advice for several hosts is merged. Thresholds are named constants below. The settings in
force come from the telemetry's resource (``settings.py``; the SPEC defaults, marked assumed,
where it carries none), and the evidence says which. Each recommendation names the figure it
should move (``Expect``), which ``resilient-http compare`` checks.

Stale closes are told apart by the connection evidence on the attempt spans (``evidence.py``):
an idle timeout gets a keep-alive below it, a per-connection request cap a keep; without that
evidence no keep-alive value is advised. The rules that move the pool limits (starved pools,
throttling) are ``limit_rules.py``: they must agree with each other, an upstream that throttles
under load never gets a raised limit there, and no limit is raised past what the evidence
bounds (``limit_ceiling.py``); an idle pool's is ``overprovision_rule.py``. This module holds
the others and the table that runs them all.
"""

from __future__ import annotations

import math

from resilient_http.analysis import limit_rules, overprovision_rule
from resilient_http.analysis.advice import (
    MIN_REQUESTS,
    THROTTLING_FLOOR_ATTEMPTS,
    THROTTLING_FLOOR_SHARE,
    Expect,
    Recommendation,
    Rule,
    RuleContext,
    retry_after_max_advised,
)
from resilient_http.analysis.evidence import IdleTimeout, RequestCap
from resilient_http.analysis.limit_rules import POOL_WAIT_P95_HIGH_MS, THROTTLED_SHARE_HIGH
from resilient_http.analysis.model import PoolLimits, UpstreamReport
from resilient_http.analysis.settings import PREFIX, Settings, fmt

__all__ = [
    "MIN_REQUESTS",
    "POOL_WAIT_P95_HIGH_MS",
    "READ_TIMEOUT_TYPES",
    "RULES",
    "THROTTLED_SHARE_HIGH",
    "THROTTLING_FLOOR_ATTEMPTS",
    "THROTTLING_FLOOR_SHARE",
    "Recommendation",
    "Rule",
    "RuleContext",
    "evaluate_rules",
]

# Stale keep-alive connections: connection_closed retries of at least 1 % of the calls, and the
# connection evidence (evidence.py) says why: an idle timeout (advise a keep-alive below it) or a
# per-connection request cap (say so, keep the keep-alive: no setting avoids it). Without
# evidence no keep-alive value is advised: the data does not bound one.
STALE_SHARE_OF_REQUESTS = 0.01
# The keep-alive to advise: this share of the shortest idle time a stale close followed, to the
# 0.1 s below (the client's idle clock starts when it has read the answer, a little after the
# upstream's), never below 0.1 s.
KEEPALIVE_MARGIN = 0.8
KEEPALIVE_STEP_S = 0.1
# Read timeouts: more than 1 % of attempts ended waiting for the response. The SDK records the
# exception class as error.type; these are aiohttp's read timeouts (sock_read). Not counted:
# ConnectionTimeoutError (pool wait + connect: TIMEOUT_CONNECT, or a starved pool) and a plain
# TimeoutError (the call's TIMEOUT_TOTAL deadline ran out).
TIMEOUT_SHARE_HIGH = 0.01
READ_TIMEOUT_TYPES = frozenset({"SocketTimeoutError", "ServerTimeoutError"})
# Raising the read timeout: double it (the telemetry cannot tell how slow the slowest answer is,
# since timed-out attempts end at the timeout).
TIMEOUT_RAISE_FACTOR = 2
# Retry budget step and ceiling (a budget above 50 % no longer prevents retry storms).
BUDGET_RATIO_STEP = 0.1
BUDGET_RATIO_MAX = 0.5


def evaluate_rules(
    hosts: list[UpstreamReport], limits: PoolLimits, settings: Settings
) -> list[Recommendation]:
    """Run every rule on every host; merge identical advice given for several hosts."""
    merged: dict[tuple[str, str, str], Recommendation] = {}
    for host in hosts:
        context = RuleContext(
            host, limits.for_upstream(host.upstream), settings.for_upstream(host.upstream)
        )
        for rule in RULES:
            if not rule.applies(context):
                continue
            advice = rule.recommend(context)
            key = (advice.rule, advice.variable, advice.value)
            earlier = merged.get(key)
            evidence = f"{host.upstream}: {advice.evidence}"
            if earlier is None:
                merged[key] = _with(advice, evidence, (host.upstream,))
            else:
                merged[key] = _with(
                    earlier,
                    f"{earlier.evidence}; {evidence}",
                    (*earlier.upstreams, host.upstream),
                )
    return list(merged.values())


def _with(advice: Recommendation, evidence: str, upstreams: tuple[str, ...]) -> Recommendation:
    return Recommendation(
        advice.rule,
        advice.variable,
        advice.value,
        advice.reason,
        evidence,
        upstreams,
        advice.data,
        advice.current,
        advice.expect,
    )


# --- keep-alive, retries, timeouts -------------------------------------------------------------


def _stale_closes(c: RuleContext) -> bool:
    closed = c.retries("connection_closed")
    return c.busy and closed > 0 and closed >= STALE_SHARE_OF_REQUESTS * (c.upstream.requests or 0)


def _idle_timeout(c: RuleContext) -> IdleTimeout | None:
    evidence = c.upstream.connections
    return None if evidence is None or not _stale_closes(c) else evidence.idle_timeout()


def _advised_keepalive(found: IdleTimeout) -> float:
    steps = math.floor(found.boundary_s * KEEPALIVE_MARGIN / KEEPALIVE_STEP_S)
    return round(max(1, steps) * KEEPALIVE_STEP_S, 1)


def _stale(c: RuleContext) -> bool:
    found = _idle_timeout(c)
    return found is not None and c.settings.keepalive_timeout > _advised_keepalive(found)


def _stale_advice(c: RuleContext) -> Recommendation:
    found = _idle_timeout(c)
    assert found is not None  # _stale said so
    current = c.settings.keepalive_timeout
    return Recommendation(
        "stale-keepalive",
        PREFIX + "KEEPALIVE_TIMEOUT",
        fmt(_advised_keepalive(found)),
        "the upstream closes keep-alive connections idle longer than its idle timeout, and the "
        "pool keeps them longer: drop them from the pool before the upstream does",
        f"stale only on connections idle >= {fmt(found.boundary_s)} s: {fmt(found.stale)} of "
        f"{fmt(found.reuses_above)} reuses idle that long met a closed connection; 0 of "
        f"{fmt(found.reuses_below)} reuses idle up to {fmt(found.longest_fine_below_s)} s "
        f"failed; {fmt(c.retries('connection_closed'))} connection_closed retries in "
        f"{fmt(c.upstream.requests)} calls; keepalive "
        f"{c.settings.describe('keepalive_timeout', current, ' s')}",
        data={"connection_closed": c.retries("connection_closed"), "boundary_s": found.boundary_s},
        current=fmt(current),
        expect=Expect("retries.connection_closed", "down"),
    )


def _request_cap(c: RuleContext) -> RequestCap | None:
    evidence = c.upstream.connections
    if evidence is None or not _stale_closes(c) or evidence.idle_timeout() is not None:
        return None
    return evidence.request_cap()


def _capped(c: RuleContext) -> bool:
    return _request_cap(c) is not None


def _capped_advice(c: RuleContext) -> Recommendation:
    found = _request_cap(c)
    assert found is not None  # _capped said so
    current = c.settings.keepalive_timeout
    return Recommendation(
        "per-connection-request-cap",
        PREFIX + "KEEPALIVE_TIMEOUT",
        fmt(current),
        "the upstream closes each connection after a number of requests (a per-connection "
        "request cap, as nginx's keepalive_requests), without saying so: no keep-alive setting "
        "avoids it; the SDK resends those calls at once on a new connection, for free",
        f"{fmt(found.stale)} of {fmt(found.stale_total)} stale closes came on a connection "
        f"that had served {found.requests} requests ({fmt(found.stale)} of "
        f"{fmt(found.reuses_at_cap)} such reuses failed), whatever its idle time; "
        f"{fmt(c.retries('connection_closed'))} connection_closed retries in "
        f"{fmt(c.upstream.requests)} calls",
        data={"requests": float(found.requests), "stale": found.stale},
        current=fmt(current),
    )


def _retry_after_long(c: RuleContext) -> bool:
    return retry_after_max_advised(c) is not None


def _retry_after_advice(c: RuleContext) -> Recommendation:
    current = c.settings.retry_after_max
    return Recommendation(
        "retry-after-too-long",
        PREFIX + "RETRY_AFTER_MAX",
        fmt(retry_after_max_advised(c)),
        "the upstream asked to wait longer than RETRY_AFTER_MAX, so those calls failed "
        "without a retry; allow a longer wait if callers can afford it",
        f"{fmt(c.suppressed('retry_after_too_long'))} retries suppressed "
        "(retry_after_too_long); retry_after_max "
        f"{c.settings.describe('retry_after_max', current, ' s')}",
        data={"suppressed": c.suppressed("retry_after_too_long")},
        current=fmt(current),
        expect=Expect("retries_suppressed.retry_after_too_long", "down"),
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
        current=fmt(current),
        expect=Expect("retries_suppressed.budget", "down"),
    )


def _read_timeouts(c: RuleContext) -> float:
    """Attempts that ended in a read timeout, retried or not; without attempt error types
    (call spans alone), the timeout retries (which may include connect timeouts)."""
    types = c.upstream.attempt_error_types
    if types is None:
        return c.retries("timeout")
    return sum(types.get(name, 0.0) for name in READ_TIMEOUT_TYPES)


def _timeouts(c: RuleContext) -> bool:
    attempts = c.upstream.attempts or 0.0
    return c.busy and attempts > 0 and _read_timeouts(c) > TIMEOUT_SHARE_HIGH * attempts


def _timeout_advice(c: RuleContext) -> Recommendation:
    current = c.settings.timeout_read
    latency = c.upstream.attempt_latency_ms
    # An attempt's duration runs from asking the pool for a connection to the response headers.
    waited = f", pool wait included (p95 {fmt(c.pool_wait_p95)} ms)" if c.pool_wait_p95 else ""
    return Recommendation(
        "timeouts",
        PREFIX + "TIMEOUT_READ",
        fmt(current * TIMEOUT_RAISE_FACTOR),
        "attempts time out waiting for the response: if the upstream is slow rather than "
        "stuck, a longer read timeout turns these timeouts (and the retries that resend work "
        "the upstream may still be doing) into successes",
        f"{fmt(_read_timeouts(c))} of {fmt(c.upstream.attempts)} attempts ended in a read "
        f"timeout (> {fmt(TIMEOUT_SHARE_HIGH * 100)} %), {fmt(c.retries('timeout'))} timeout "
        f"retries; attempt p95/p99 {fmt(latency.get('p95'))}/{fmt(latency.get('p99'))} ms"
        f"{waited}; timeout_read {c.settings.describe('timeout_read', current, ' s')}",
        data={"read_timeouts": _read_timeouts(c), "attempt_p99_ms": latency.get("p99")},
        current=fmt(current),
        expect=Expect("retries.timeout", "down"),
    )


# --- hedging -------------------------------------------------------------------------------------

#: A tail worth hedging: the attempts' p99 at least this many times their p50 ...
TAIL_FACTOR = 10.0
#: ... on an otherwise fast upstream (attempt p50 at most this, in ms), where a copy is cheap ...
FAST_P50_MS = 100.0
#: ... and not a tail of throttling (its waits are the upstream's to set: a copy adds load),
#: nor of an upstream failing calls (an outage: its fast failures are no fast answers).
TAIL_THROTTLED_SHARE_MAX = 0.01
TAIL_ERROR_RATE_MAX = 0.01


def _long_tail(c: RuleContext) -> bool:
    """Slow answers, not waits: the attempts' own latency (retries' backoff and Retry-After
    waits are not in it), with neither throttling, failing calls nor a queue for connections
    to explain it."""
    latency = c.upstream.attempt_latency_ms
    p50, p99 = latency.get("p50"), latency.get("p99")
    return (
        c.busy
        and c.settings.config.hedge_after == "off"
        and not c.upstream.hedges
        and p50 is not None
        and p99 is not None
        and 0 < p50 <= FAST_P50_MS
        and p99 >= TAIL_FACTOR * p50
        and (c.upstream.throttled_share or 0.0) <= TAIL_THROTTLED_SHARE_MAX
        and (c.upstream.error_rate or 0.0) <= TAIL_ERROR_RATE_MAX
        and not c.upstream.breaker_rejected
        and c.pool_wait_p95 <= p50
    )


def _hedge_advice(c: RuleContext) -> Recommendation:
    latency = c.upstream.attempt_latency_ms
    return Recommendation(
        "long-tail",
        PREFIX + "HEDGE_AFTER",
        "auto",
        "a few slow answers set the tail of an otherwise fast upstream: a second copy of a "
        "slow idempotent call, sent after the upstream's running p95 (and at least twice its "
        "median), usually answers first; each copy is charged to the retry budget",
        f"attempt p50 {fmt(latency.get('p50'))} ms, p99 {fmt(latency.get('p99'))} ms "
        f"(>= {fmt(TAIL_FACTOR)}x the p50), no throttling or queue for connections to explain "
        f"it (pool wait p95 {fmt(c.pool_wait_p95)} ms); hedging is off",
        data={"p50_ms": latency.get("p50"), "p99_ms": latency.get("p99")},
        current=c.settings.values.get(PREFIX + "HEDGE_AFTER", "off"),
        expect=Expect("latency_ms.p99", "down"),
    )


RULES: tuple[Rule, ...] = (
    Rule("pool-starved-per-host", limit_rules.per_host_starved, limit_rules.per_host_advice),
    Rule("pool-starved-total", limit_rules.total_starved, limit_rules.total_advice),
    Rule("pool-backpressure", limit_rules.backpressure, limit_rules.backpressure_advice),
    Rule("stale-keepalive", _stale, _stale_advice),
    Rule("per-connection-request-cap", _capped, _capped_advice),
    Rule("throttled", limit_rules.throttled, limit_rules.throttled_advice),
    Rule("retry-after-too-long", _retry_after_long, _retry_after_advice),
    Rule("retry-budget-exhausted", _budget, _budget_advice),
    Rule("timeouts", _timeouts, _timeout_advice),
    Rule("long-tail", _long_tail, _hedge_advice),
    Rule(
        "pool-overprovisioned",
        overprovision_rule.overprovisioned,
        overprovision_rule.overprovisioned_advice,
    ),
)
