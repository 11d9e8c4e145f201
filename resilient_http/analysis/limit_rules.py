"""The rules that set the pool limits (``LIMIT``, ``LIMIT_PER_HOST``), and their thresholds.

They have to agree with each other, since they move the calls in flight: starved pools raise
a limit, an upstream throttling under load gets fewer calls in flight, an idle pool may lower
the per-host limit (``overprovision_rule.py``). An upstream that throttles under load
(``RuleContext.is_throttling``: 429s, or 503s that grow with load; random 503s are server
errors) never gets a raised limit: the requests queueing for its connections are the
backpressure that keeps it within its rate, and the advice says so (the throttled rule in its
evidence, ``pool-backpressure`` when throttling is below the throttled rule's threshold). Nor
is a per-host limit raised past what the evidence bounds (``limit_ceiling.py``: where
throttling began, an adaptive limiter that holds the calls back, a limit lowered in the
environment that a run at it cannot see past); ``pool-backpressure`` keeps a limit held there,
so following the advice round after round reaches a fixed point. The table that runs them is
``rules.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from resilient_http.analysis.advice import (
    THROTTLED_SHARE_HIGH,
    Expect,
    Recommendation,
    RuleContext,
)
from resilient_http.analysis.evidence import CalmLevel
from resilient_http.analysis.limit_ceiling import raise_ceiling
from resilient_http.analysis.settings import PREFIX, fmt

__all__ = [
    "POOL_WAIT_P95_HIGH_MS",
    "THROTTLED_SHARE_HIGH",
    "backpressure",
    "backpressure_advice",
    "peak_text",
    "per_host_advice",
    "per_host_starved",
    "throttled",
    "throttled_advice",
    "total_advice",
    "total_starved",
]

# Pool starvation: a p95 wait, over ALL acquisitions (those that did not queue count as 0),
# above 50 ms: more than 5 % of requests queued that long for a pooled connection. That is
# queueing, not scheduling jitter (an uncontended acquire takes well under 1 ms).
POOL_WAIT_P95_HIGH_MS = 50.0
# Which limit requests queued at. A request queues only when a limit is full, so queueing
# proves one was; the open-connections gauge that could say which is sampled once per export
# interval (60 s by default) and under-reads the peak. So: the total limit when the gauge saw it
# full (90 % counts as reaching it) or when the per-host limit cannot be the tighter one;
# otherwise the per-host limit, even when the sampled gauge never caught it full.
LIMIT_SATURATION = 0.9
# Raising a binding limit: the per-host one to the connections the calls wanted at once
# (Little's law, ``_raised_per_host``), else (and the total one) double it.
LIMIT_RAISE_FACTOR = 2
# A per-host limit for throttling is advised at a number of connections in use where at most
# half as many attempts were throttled as over all (evidence.CalmLevel): a clear drop, and, once
# applied, a run whose calm level promises no such drop gets no further advice (no walk).
CALM_SHARE_OF_OVERALL = 0.5
# A rate limit: at least half the attempts throttled under load were answered 429. Its bound is
# the rate the upstream let through times the time an attempt holds a connection, rounded down
# (errs low: fewer calls, never more). The rate is the one it let through while it was binding,
# between its 429s (``evidence.RateTimeline``, from the attempt spans); without spans, over the
# whole run, which counts the Retry-After waits the client sent little in, and so errs lower.
RATE_LIMITED_SHARE = 0.5
# A rate limit is acted on once more than 1 % of the attempts were answered 429, not only above
# ``THROTTLED_SHARE_HIGH``: a limit at the edge of its rate (the demo's ``throttled`` at 3
# connections) is throttled about 5 % of the time, now above and now below that threshold, so the
# advice would change from run to run; its bound comes from its own rate, and a limit within
# that rate is answered no 429 at all.
RATE_LIMITED_ACT_SHARE = 0.01


def per_host_starved(c: RuleContext) -> bool:
    """Requests queue at the per-host limit, which can still be raised (not throttling, and
    below the ceiling the evidence sets)."""
    return (
        _queueing(c)
        and not c.is_throttling  # never more concurrency for a throttling upstream
        and _per_host_binds(c)
        and _bounded_raise(c) > c.limit_per_host
    )


def per_host_advice(c: RuleContext) -> Recommendation:
    """``LIMIT_PER_HOST`` at the connections the calls wanted (at most ``LIMIT`` and the
    ceiling)."""
    ceiling = raise_ceiling(c)
    bounded = ""
    if ceiling is not None and ceiling.in_use < _raised_per_host(c):
        bounded = f"; raised no further than {ceiling.in_use}: {ceiling.evidence}"
    return Recommendation(
        "pool-starved-per-host",
        PREFIX + "LIMIT_PER_HOST",
        str(_bounded_raise(c)),
        "requests queue for a pooled connection while the per-host limit is fully used",
        f"{_queue_text(c)}, peak active connections "
        f"{peak_text(c.upstream.active_peak, c.limit_per_host)} of limit_per_host "
        f"{c.limit_per_host}; {_demand_text(c)}; {_not_throttling_text(c)}{bounded}",
        data={"pool_wait_p95_ms": c.pool_wait_p95, "active_peak": c.upstream.active_peak},
        current=str(c.limit_per_host),
        expect=POOL_WAIT_DOWN,
    )


def total_starved(c: RuleContext) -> bool:
    """Requests queue while the whole pool is in use (not throttling)."""
    return _queueing(c) and not c.is_throttling and _total_binds(c)


def total_advice(c: RuleContext) -> Recommendation:
    """Double ``LIMIT``."""
    peak = c.limits.active_total_peak or 0.0
    return Recommendation(
        "pool-starved-total",
        PREFIX + "LIMIT",
        str(c.limit * LIMIT_RAISE_FACTOR),
        "requests queue for a pooled connection while the total pool limit is fully used",
        f"{_queue_text(c)}, peak active connections {fmt(peak)} of limit {c.limit}; "
        f"{_not_throttling_text(c)}",
        data={"pool_wait_p95_ms": c.pool_wait_p95, "active_total_peak": peak},
        current=str(c.limit),
        expect=POOL_WAIT_DOWN,
    )


def throttled(c: RuleContext) -> bool:
    """A busy upstream's rate limit answered more than ``RATE_LIMITED_ACT_SHARE`` of the
    attempts 429 and its rate bounds the per-host limit below the current one; or more than
    ``THROTTLED_SHARE_HIGH`` of the attempts throttled under load, and a remedy not yet in
    force: a per-host limit the data bounds (a calm level below it), else adaptive concurrency
    (already adaptive: no further advice, so applying the advice converges)."""
    if not c.busy:
        return False
    # 429s counted first: the rate bound reads the answers' timeline, which most upstreams
    # (never rate-limited) need not have read at all
    if (c.upstream.rate_limited or 0.0) > RATE_LIMITED_ACT_SHARE * (c.upstream.attempts or 0.0):
        bound = _rate_bound(c)
        if bound is not None:
            return bound.limit < c.limit_per_host or c.limit_per_host == 0
    if c.throttled_share <= THROTTLED_SHARE_HIGH:
        return False
    calm = _calm_level(c)
    if calm is not None:
        return calm.in_use < c.limit_per_host or c.limit_per_host == 0
    return c.settings.concurrency == "static"


def throttled_advice(c: RuleContext) -> Recommendation:
    """``LIMIT_PER_HOST`` at the most connections in use the upstream stayed calm at, else
    ``CONCURRENCY=adaptive``."""
    queue = ""
    if _queueing(c):
        queue = (
            f"; requests also queue for a connection, {_queue_text(c)}: that is the "
            "backpressure fewer calls in flight give, not a reason to raise the limit"
        )
    over = (
        f"> {fmt(THROTTLED_SHARE_HIGH * 100)} %"
        if c.throttled_share > THROTTLED_SHARE_HIGH
        else f"a rate limit's 429s: > {fmt(RATE_LIMITED_ACT_SHARE * 100)} %"
    )
    evidence = (
        f"{fmt(c.throttled_share * 100)} % of {fmt(c.upstream.attempts)} attempts throttled "
        f"under load ({over}); {c.load_text()}; limit_per_host {c.limit_per_host}{queue}"
    )
    data: dict[str, float | None] = {
        "throttled_share": c.throttled_share,
        "attempts": c.upstream.attempts,
    }
    bound = _rate_bound(c)
    if bound is not None:
        return Recommendation(
            "throttled",
            PREFIX + "LIMIT_PER_HOST",
            str(bound.limit),
            "the upstream rate-limits (429): send no more calls at once than its rate allows "
            "at the time an attempt takes (Little's law)",
            f"{evidence}; {bound.rate_text}, at "
            f"{fmt(bound.service_s * 1000)} ms an attempt holds a connection: "
            f"{fmt(bound.rate * bound.service_s)} calls at once",
            data={**data, "rate_per_s": bound.rate},
            current=str(c.limit_per_host),
            expect=Expect("throttled_share", "down"),
        )
    calm = _calm_level(c)
    if calm is not None:
        return Recommendation(
            "throttled",
            PREFIX + "LIMIT_PER_HOST",
            str(calm.in_use),
            "the upstream throttles more the more calls it is sent at once: send no more at "
            "once than it answered without throttling (RESILIENT_HTTP_CONCURRENCY=adaptive "
            "finds such a limit by itself where the upstream's capacity varies)",
            f"{evidence}; with at most {calm.in_use} connections in use "
            f"{fmt(calm.share * 100)} % of {fmt(calm.attempts)} attempts were throttled "
            f"(up to {calm.highest_seen} in use seen)",
            data={**data, "calm_in_use": float(calm.in_use)},
            current=str(c.limit_per_host),
            expect=Expect("throttled_share", "down"),
        )
    return Recommendation(
        "throttled",
        PREFIX + "CONCURRENCY",
        "adaptive",
        "the upstream throttles more the more calls it is sent at once: let the SDK send fewer "
        "concurrent calls while it throttles (adaptive concurrency lowers the calls in flight on "
        "429 and 503 with Retry-After, and raises them again up to LIMIT_PER_HOST while calls "
        "succeed); the data shows no number of calls in flight the upstream stayed calm at",
        evidence,
        data=data,
        current=c.settings.concurrency,
        expect=Expect("throttled_share", "down"),
    )


def backpressure(c: RuleContext) -> bool:
    """Requests queue at a limit for an upstream that throttles, below the throttled rule's
    threshold (above it, that rule lowers the limit and says the queue is expected); or at a
    per-host limit the starvation rule would raise but the evidence holds (``limit_ceiling``)."""
    if not _queueing(c):
        return False
    if c.is_throttling:
        return not throttled(c) and (_per_host_binds(c) or _total_binds(c))
    return _per_host_binds(c) and _bounded_raise(c) <= c.limit_per_host < _raised_per_host(c)


def backpressure_advice(c: RuleContext) -> Recommendation:
    """Keep the binding limit as it is, saying why the queue is backpressure."""
    per_host = _per_host_binds(c)
    name, current = ("LIMIT_PER_HOST", c.limit_per_host) if per_host else ("LIMIT", c.limit)
    peak = c.upstream.active_peak if per_host else c.limits.active_total_peak
    data: dict[str, float | None] = {
        "pool_wait_p95_ms": c.pool_wait_p95,
        "throttled_attempts": c.throttled_attempts,
    }
    ceiling = None if c.is_throttling else raise_ceiling(c)
    if ceiling is None:
        reason = (
            "requests queue for a pooled connection, but the upstream throttles (429/503): the "
            "queue is the backpressure that keeps it within its rate; keep this limit rather "
            "than raise it (raising it brings the throttling back)"
        )
        why = c.throttling_text()
    else:
        reason = f"requests queue for a pooled connection, but {ceiling.reason}"
        wanted = _raised_per_host(c)
        why = f"{ceiling.evidence}; {_demand_text(c)}: {wanted} if nothing holds the limit"
        data["wanted_per_host"] = float(wanted)
    return Recommendation(
        "pool-backpressure",
        PREFIX + name,
        str(current),
        reason,
        f"{_queue_text(c)}, peak active connections {peak_text(peak, current)} of "
        f"{name.lower()} {current}; {why}",
        data=data,
        current=str(current),
    )


# --- helpers -------------------------------------------------------------------------------------

POOL_WAIT_DOWN = Expect("pool_wait_ms.p95", "down")


@dataclass(frozen=True)
class _RateBound:
    limit: int
    rate: float
    service_s: float
    rate_text: str


def _rate_bound(c: RuleContext) -> _RateBound | None:
    """For a rate limit (most throttled attempts answered 429): the calls in flight the rate
    the upstream let through allows, by Little's law (rate x the time an attempt holds a
    connection); None for other throttling, or without the means and a rate.

    The rate is the one it let through between its 429s (``RATE_LIMITED_SHARE``), else over the
    whole run (no attempt spans, e.g. Prometheus)."""
    limited = c.upstream.rate_limited or 0.0
    attempts, window = c.upstream.attempts or 0.0, c.upstream.window_s
    attempt, wait = c.upstream.attempt_mean_s, c.upstream.pool_wait_mean_s or 0.0
    if limited < RATE_LIMITED_SHARE * c.throttled_attempts or attempt is None:
        return None
    service = attempt - wait
    timeline = c.upstream.rate_timeline
    binding = None if timeline is None else timeline.binding_rate(max(service, 0.0))
    if binding is not None:
        rate = binding.rate
        text = (
            f"it let through {fmt(rate)} attempts/s while it throttled ({fmt(binding.answers)} "
            f"answered without throttling in the {fmt(binding.seconds * 1000)} ms between the "
            f"429s of {binding.bursts} burst(s) of them, each answer counted at its end less "
            "the time an attempt holds a connection)"
        )
    elif window:
        rate = (attempts - c.throttled_attempts) / window
        text = (
            f"it answered {fmt(rate)} attempts/s without throttling over the whole run "
            "(Retry-After waits included: errs low)"
        )
    else:
        return None
    if service <= 0 or rate <= 0:
        return None
    return _RateBound(max(1, math.floor(rate * service)), rate, service, text)


def _calm_level(c: RuleContext) -> CalmLevel | None:
    """The most connections in use the upstream throttled at most ``THROTTLED_SHARE_HIGH`` of
    the attempts at, where that is at most half the share over all attempts (a limit there
    promises a clear drop); None without evidence, or without such a level."""
    evidence = c.upstream.connections
    calm = None if evidence is None else evidence.calm_level(THROTTLED_SHARE_HIGH)
    if calm is None or calm.share > CALM_SHARE_OF_OVERALL * c.throttled_share:
        return None
    return calm


def _queueing(c: RuleContext) -> bool:
    return c.pool_wait_p95 > POOL_WAIT_P95_HIGH_MS


def _per_host_binds(c: RuleContext) -> bool:
    """Queued requests waited for the per-host limit (see ``LIMIT_SATURATION``)."""
    per_host = c.limit_per_host
    active = c.upstream.active_peak
    seen_full = active is None or active >= LIMIT_SATURATION * per_host
    return per_host > 0 and (seen_full or not _total_binds(c))


def _total_binds(c: RuleContext) -> bool:
    """Queued requests waited for the total limit (see ``LIMIT_SATURATION``)."""
    peak = c.limits.active_total_peak
    seen_full = peak is not None and peak >= LIMIT_SATURATION * c.limit
    per_host_looser = c.limit_per_host <= 0 or c.limit_per_host >= c.limit
    return c.limit > 0 and (seen_full or per_host_looser)


def _raised_per_host(c: RuleContext) -> int:
    """The connections the calls wanted at once, by Little's law: calls in flight (queued or
    holding a connection) over connections held = mean attempt time over mean time holding a
    connection (the attempt less its pool wait); doubled when the means are not in the data."""
    current = c.limit_per_host
    attempt, wait = c.upstream.attempt_mean_s, c.upstream.pool_wait_mean_s
    if attempt is not None and wait is not None and 0 < wait < attempt:
        # rounded first: 10 x 0.25 / 0.05 is 50.000000000000004 in floats, not 51 connections
        raised = max(math.ceil(round(current * attempt / (attempt - wait), 6)), current + 1)
    else:
        raised = current * LIMIT_RAISE_FACTOR
    return min(raised, c.limit) if c.limit > 0 else raised


def _bounded_raise(c: RuleContext) -> int:
    """``_raised_per_host``, no further than the evidence's ceiling (``limit_ceiling``)."""
    raised, ceiling = _raised_per_host(c), raise_ceiling(c)
    return raised if ceiling is None else min(raised, ceiling.in_use)


def peak_text(peak: float | None, limit: int | None = None) -> str:
    """The sampled peak of connections in use; below a ``limit`` requests queued at, it says
    that the samples missed the full moments."""
    if peak is None:
        return "not in telemetry"
    if limit is not None and peak < LIMIT_SATURATION * limit:
        return f"{fmt(peak)} (sampled: the samples missed the moments requests queued)"
    return fmt(peak)


def _queue_text(c: RuleContext) -> str:
    """``pool wait p95 350 ms over all acquisitions (> 50 ms, 32 % of them queued)``."""
    share = c.upstream.pool_queued_share
    queued = "" if share is None else f", {fmt(share * 100)} % of them queued"
    return (
        f"pool wait p95 {fmt(c.pool_wait_p95)} ms over all acquisitions "
        f"(> {fmt(POOL_WAIT_P95_HIGH_MS)} ms{queued})"
    )


def _demand_text(c: RuleContext) -> str:
    attempt, wait = c.upstream.attempt_mean_s, c.upstream.pool_wait_mean_s
    if attempt is None or wait is None or not 0 < wait < attempt:
        return "the means of attempts and pool waits are not in the data: doubled"
    return (
        f"calls wanted about {fmt(c.limit_per_host * attempt / (attempt - wait))} connections "
        f"at once (mean attempt {fmt(attempt * 1000)} ms, of which {fmt(wait * 1000)} ms "
        "queued for a connection: Little's law)"
    )


def _not_throttling_text(c: RuleContext) -> str:
    return f"no throttling under load ({c.load_text()})"
