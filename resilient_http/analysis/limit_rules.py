"""The rules that set the pool limits (``LIMIT``, ``LIMIT_PER_HOST``), and their thresholds.

They have to agree with each other, since they move the calls in flight: starved pools raise
a limit, an upstream throttling under load gets adaptive concurrency, an idle pool may lower the
per-host limit. An upstream that throttles under load (``RuleContext.is_throttling``: 429s, or
503s that grow with load; random 503s are server errors) never gets a raised limit: the requests
queueing for its connections are the backpressure that keeps it within its rate, and the advice
says so (the throttled rule in its evidence, ``pool-backpressure`` when throttling is below the
throttled rule's threshold). The table that runs them is ``rules.py``.
"""

from __future__ import annotations

import math

from resilient_http.analysis.advice import Expect, Recommendation, RuleContext
from resilient_http.analysis.settings import PREFIX, fmt

__all__ = [
    "POOL_WAIT_P95_HIGH_MS",
    "THROTTLED_SHARE_HIGH",
    "backpressure",
    "backpressure_advice",
    "overprovisioned",
    "overprovisioned_advice",
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
# Raising a binding limit: double it (one step gives a clear before/after to compare).
LIMIT_RAISE_FACTOR = 2
# Throttling to act on: more than 5 % of attempts throttled under load (429s, and 503s shown to
# grow with load; the floor for "throttles at all", which only stops limits from being raised,
# is in advice.py).
THROTTLED_SHARE_HIGH = 0.05
# Over-provisioned per-host limit: optional advice, given only on strong evidence, since the
# limit matters in exactly the bursts a telemetry window may not contain.
# - The peak of connections in use at once is bounded EXACTLY by the connections the pool ever
#   opened to the upstream (resilient_http.connection.acquired, reused=false: a connection is
#   never in use before it is opened). The open-connections gauge is only sampled once per
#   export interval (60 s by default) and misses bursts, so it is never the evidence.
# - The suggestion is twice that bound, never below the SPEC default (10), and the rule speaks
#   only when the suggestion at least halves the limit the SDK reported: 40 -> 16 is worth
#   doing, 30 -> 16 or the default 10 -> 8 are noise. So the default limit is never lowered.
# - Over at least 200 calls, with no queueing at all (pool wait p95 over all acquisitions known
#   and at most 1 ms).
OVERPROVISION_MIN_REQUESTS = 200
OVERPROVISION_HEADROOM = 2
OVERPROVISION_FLOOR = 10
OVERPROVISION_MAX_KEPT = 0.5
OVERPROVISION_WAIT_MAX_MS = 1.0


def per_host_starved(c: RuleContext) -> bool:
    """Requests queue at the per-host limit, which can still be raised (not throttling)."""
    return (
        _queueing(c)
        and not c.is_throttling  # never more concurrency for a throttling upstream
        and _per_host_binds(c)
        and _raised_per_host(c) > c.limit_per_host
    )


def per_host_advice(c: RuleContext) -> Recommendation:
    """Double ``LIMIT_PER_HOST`` (at most up to ``LIMIT``)."""
    return Recommendation(
        "pool-starved-per-host",
        PREFIX + "LIMIT_PER_HOST",
        str(_raised_per_host(c)),
        "requests queue for a pooled connection while the per-host limit is fully used",
        f"{_queue_text(c)}, peak active connections "
        f"{_peak_text(c.upstream.active_peak, c.limit_per_host)} of limit_per_host "
        f"{c.limit_per_host}; {_not_throttling_text(c)}",
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
    """More than ``THROTTLED_SHARE_HIGH`` of the attempts of a busy upstream throttled under
    load, with static concurrency (adaptive concurrency already sends fewer calls when it
    throttles: no further advice, so applying the advice converges)."""
    return (
        c.busy and c.throttled_share > THROTTLED_SHARE_HIGH and c.settings.concurrency == "static"
    )


def throttled_advice(c: RuleContext) -> Recommendation:
    """``CONCURRENCY=adaptive``: fewer calls in flight while the upstream throttles, as many as
    ``LIMIT_PER_HOST`` while it does not."""
    queue = ""
    if _queueing(c):
        queue = (
            f"; requests also queue for a connection, {_queue_text(c)}: that is the "
            "backpressure fewer calls in flight give, not a reason to raise the limit"
        )
    return Recommendation(
        "throttled",
        PREFIX + "CONCURRENCY",
        "adaptive",
        "the upstream throttles more the more calls it is sent at once: let the SDK send fewer "
        "concurrent calls while it throttles (adaptive concurrency lowers the calls in flight on "
        "429 and 503 with Retry-After, and raises them again up to LIMIT_PER_HOST while calls "
        "succeed); a lower LIMIT_PER_HOST would do the same, for good",
        f"{fmt(c.throttled_share * 100)} % of {fmt(c.upstream.attempts)} attempts throttled "
        f"under load (> {fmt(THROTTLED_SHARE_HIGH * 100)} %); {c.load_text()}; limit_per_host "
        f"{c.limit_per_host}{queue}",
        data={"throttled_share": c.throttled_share, "attempts": c.upstream.attempts},
        current=c.settings.concurrency,
        expect=Expect("throttled_share", "down"),
    )


def backpressure(c: RuleContext) -> bool:
    """Requests queue at a limit for an upstream that throttles, below the throttled rule's
    threshold (above it, that rule lowers the limit and says the queue is expected)."""
    return (
        _queueing(c)
        and c.is_throttling
        and not throttled(c)
        and (_per_host_binds(c) or _total_binds(c))
    )


def backpressure_advice(c: RuleContext) -> Recommendation:
    """Keep the binding limit as it is, saying the upstream throttles."""
    per_host = _per_host_binds(c)
    name, current = ("LIMIT_PER_HOST", c.limit_per_host) if per_host else ("LIMIT", c.limit)
    peak = c.upstream.active_peak if per_host else c.limits.active_total_peak
    return Recommendation(
        "pool-backpressure",
        PREFIX + name,
        str(current),
        "requests queue for a pooled connection, but the upstream throttles (429/503): the "
        "queue is the backpressure that keeps it within its rate; keep this limit rather than "
        "raise it (raising it brings the throttling back)",
        f"{_queue_text(c)}, peak active connections "
        f"{_peak_text(peak, current)} of {name.lower()} {current}; "
        f"{c.throttling_text()}",
        data={"pool_wait_p95_ms": c.pool_wait_p95, "throttled_attempts": c.throttled_attempts},
        current=str(current),
    )


def overprovisioned(c: RuleContext) -> bool:
    """The per-host limit could at least be halved, on an exact bound (see the constants)."""
    bound = _overprovision_bound(c)
    reported = c.limits.limit_per_host  # an assumed limit is no evidence
    return (
        (c.upstream.requests or 0.0) >= OVERPROVISION_MIN_REQUESTS
        and bound is not None
        and bound > 0
        and reported is not None
        and reported > 0
        and _overprovision_value(c) <= OVERPROVISION_MAX_KEPT * reported
        and c.upstream.pool_wait_ms.get("p95") is not None
        and c.pool_wait_p95 <= OVERPROVISION_WAIT_MAX_MS
    )


def overprovisioned_advice(c: RuleContext) -> Recommendation:
    """Twice the connections ever opened, never below the SPEC default."""
    bound = _overprovision_bound(c) or 0.0
    window = c.upstream.window_s
    over = "" if window is None else f" over {fmt(window)} s"
    return Recommendation(
        "pool-overprovisioned",
        PREFIX + "LIMIT_PER_HOST",
        str(_overprovision_value(c)),
        "the per-host limit is far above the connections ever in use; a lower one bounds the "
        "connections a burst can open to the upstream (optional: keep the limit if traffic "
        "bursts beyond what this telemetry covers)",
        f"the pool opened {fmt(bound)} connections in {fmt(c.upstream.requests)} calls{over}, "
        f"so at most {fmt(bound)} were in use at once (the sampled gauge peaked at "
        f"{_peak_text(c.upstream.active_peak)}), of limit_per_host {c.limit_per_host}; pool "
        f"wait p95 {fmt(c.pool_wait_p95)} ms over all acquisitions",
        data={"connections_opened": bound, "active_peak": c.upstream.active_peak},
        current=str(c.limit_per_host),
        expect=Expect("new_connections", "down"),
    )


# --- helpers -------------------------------------------------------------------------------------

POOL_WAIT_DOWN = Expect("pool_wait_ms.p95", "down")


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
    raised = c.limit_per_host * LIMIT_RAISE_FACTOR
    return min(raised, c.limit) if c.limit > 0 else raised


def _peak_text(peak: float | None, limit: int | None = None) -> str:
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


def _not_throttling_text(c: RuleContext) -> str:
    return f"no throttling under load ({c.load_text()})"


def _overprovision_bound(c: RuleContext) -> float | None:
    """Connections ever opened to the upstream: an exact bound on those in use at once."""
    return c.upstream.new_connections


def _overprovision_value(c: RuleContext) -> int:
    bound = _overprovision_bound(c) or 0.0
    return max(OVERPROVISION_HEADROOM * math.ceil(bound), OVERPROVISION_FLOOR)
