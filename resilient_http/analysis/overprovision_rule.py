"""The over-provisioned per-host limit rule: an idle pool may lower ``LIMIT_PER_HOST``.

Optional advice on an exact bound (the connections the pool ever opened), so that a burst cannot
open more connections to the upstream than it ever needed; it never lowers the SPEC default and
never speaks while requests queue, so it cannot undo a raise of the pool-starvation rule
(``limit_rules.py``). The table that runs it is ``rules.py``.
"""

from __future__ import annotations

import math

from resilient_http.analysis.advice import Expect, Recommendation, RuleContext
from resilient_http.analysis.limit_rules import peak_text
from resilient_http.analysis.settings import PREFIX, fmt

__all__ = ["overprovisioned", "overprovisioned_advice"]

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
        f"{peak_text(c.upstream.active_peak)}), of limit_per_host {c.limit_per_host}; pool "
        f"wait p95 {fmt(c.pool_wait_p95)} ms over all acquisitions",
        data={"connections_opened": bound, "active_peak": c.upstream.active_peak},
        current=str(c.limit_per_host),
        expect=Expect("new_connections", "down"),
    )


def _overprovision_bound(c: RuleContext) -> float | None:
    """Connections ever opened to the upstream: an exact bound on those in use at once."""
    return c.upstream.new_connections


def _overprovision_value(c: RuleContext) -> int:
    bound = _overprovision_bound(c) or 0.0
    return max(OVERPROVISION_HEADROOM * math.ceil(bound), OVERPROVISION_FLOOR)
