"""How far the evidence lets the pool-starvation rule raise ``LIMIT_PER_HOST``.

That rule (``limit_rules.per_host_starved``) raises the per-host limit to the connections the
calls wanted at once (Little's law): the calls' demand, not what the upstream takes. Where the
limit is what keeps an upstream from throttling, the queue for connections is the intended
effect of the limit, and raising it undoes the throttled advice (followed round after round, the
advice went 4 -> 20 -> 4 ... in the demo's ``overloaded`` scenario). ``raise_ceiling`` says how
far a raise may go, and why:

- 429/503 answers more frequent with more connections in use (``evidence.LoadSplit.grows``),
  even below the throttling floor (above it no limit is raised at all): no further than the
  most connections in use the upstream stayed calm at, read from the connections in use on the
  attempt spans (``ConnectionEvidence.calm_level``);
- ``CONCURRENCY=adaptive`` whose limiter held the calls in flight below the per-host limit: its
  waits are reported as pool wait, and they are the limiter's backpressure, which a higher
  ``LIMIT_PER_HOST`` does not shorten: no raise;
- a per-host limit lowered in the environment below the SDK's default, and no throttling at it:
  a run at that limit never sends the upstream more calls at once, so it cannot show whether
  the upstream throttles above it, and the throttled rule lowers the limit exactly so: no raise
  (the advice keeps it and names the raise to make if it was lowered for another reason).

The rules that use it are ``limit_rules.py``: the starvation rule raises no further than the
ceiling, and ``pool-backpressure`` keeps a limit the ceiling holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from resilient_http.analysis.advice import THROTTLED_SHARE_HIGH, RuleContext
from resilient_http.analysis.settings import PREFIX, fmt
from resilient_http.config import ClientConfig

__all__ = ["RaiseCeiling", "raise_ceiling"]


@dataclass(frozen=True)
class RaiseCeiling:
    """A raised per-host limit goes no further than ``in_use`` connections, because ``reason``
    (for the advice's reason) and ``evidence`` (the numbers)."""

    in_use: int
    reason: str
    evidence: str


def raise_ceiling(c: RuleContext) -> RaiseCeiling | None:
    """The most connections per host the evidence lets a raise reach (None: no bound)."""
    return _throttling_onset(c) or _adaptive_limiter(c) or _lowered_limit(c)


def _throttling_onset(c: RuleContext) -> RaiseCeiling | None:
    split, evidence = c.load_split, c.upstream.connections
    if split is None or not split.grows or evidence is None:
        return None
    calm = evidence.calm_level(THROTTLED_SHARE_HIGH)
    in_use = 0 if calm is None else calm.in_use
    calm_text = (
        "at no number of connections in use"
        if calm is None
        else f"with at most {calm.in_use} connections in use ({fmt(calm.share * 100)} % of "
        f"{fmt(calm.attempts)} attempts throttled)"
    )
    return RaiseCeiling(
        in_use,
        "the upstream throttles more the more calls it is sent at once: the queue is the "
        "backpressure that keeps it within its capacity; more connections than it stayed "
        "calm at bring the throttling back",
        f"{c.load_text()}; it stayed calm {calm_text}",
    )


def _adaptive_limiter(c: RuleContext) -> RaiseCeiling | None:
    low, last = c.upstream.concurrency_limit_low, c.upstream.concurrency_limit_last
    if c.settings.concurrency != "adaptive" or low is None or low >= c.limit_per_host:
        return None
    return RaiseCeiling(
        c.limit_per_host,
        "the calls wait under the adaptive concurrency limit (RESILIENT_HTTP_CONCURRENCY="
        "adaptive), which held them below the per-host limit: its waits are reported as "
        "pool wait, and a higher LIMIT_PER_HOST does not shorten them",
        f"adaptive concurrency limit down to {fmt(low)} (last {fmt(last)}) of limit_per_host "
        f"{c.limit_per_host}",
    )


def _lowered_limit(c: RuleContext) -> RaiseCeiling | None:
    default = ClientConfig().limit_per_host
    lowered = c.settings.source(PREFIX + "LIMIT_PER_HOST") == "environment"
    if not lowered or c.limit_per_host >= default:
        return None
    return RaiseCeiling(
        c.limit_per_host,
        "the per-host limit was lowered in the environment, and a run at that limit never "
        "sends the upstream more calls at once, so it cannot show whether the upstream "
        "throttles above it (the throttled advice lowers it so); keep it if it was lowered "
        "for throttling",
        f"limit_per_host {c.limit_per_host} (environment; the SDK's default {default}), no "
        f"throttling with up to {c.limit_per_host} connections in use ({c.load_text()})",
    )
