"""The demo's scenarios: what the upstream does wrong, and how much load meets it.

Each scenario is a seeded ``FaultPlan`` for the bundled upstream plus default load (calls and
concurrency), chosen so that the tuning report's advice moves the way an operator would expect:

- ``healthy``: fast answers, concurrency below the per-host limit: no recommendation;
- ``pool-starved``: a slow upstream and far more concurrent calls than ``LIMIT_PER_HOST``:
  calls queue for a pooled connection, so the report raises ``LIMIT_PER_HOST``;
- ``stale-keepalive``: the upstream drops every keep-alive connection after one answer without
  saying so (no ``Connection: close``), so every reuse meets a dead connection, as when a pool
  keeps connections longer than the upstream's idle timeout: the report lowers
  ``KEEPALIVE_TIMEOUT``;
- ``throttled``: a rate limit (429, ``Retry-After`` in seconds) and random 503s (``Retry-After``
  as an HTTP-date): the report lowers the per-host concurrency and says to keep
  ``RETRY_AFTER_MAX`` long enough to honour ``Retry-After``;
- ``mixed``: a bit of everything at a concurrency above the per-host limit.

The stale close happens when request N+1 arrives on a connection (``stale_after``), not after
an idle time: on loopback a client notices an idle close before reusing the connection, so the
race that bites in production (reuse just as the upstream closes) is reproduced by the upstream
closing on reuse, deterministically. Only faults the upstream counts exactly are used, so the
report can be checked against the upstream's own counters.
"""

from __future__ import annotations

from dataclasses import dataclass

from resilient_http.upstream import FaultPlan, Latency, RateLimit, RetryAfter, Throttle

__all__ = ["DEFAULT_SCENARIO", "SCENARIOS", "Scenario"]

# One seed for every scenario: the upstream's draws (latency, faults) repeat run after run.
SEED = 7


@dataclass(frozen=True)
class Scenario:
    """A named upstream behaviour and the load that shows it."""

    name: str
    summary: str
    """What the upstream does, in one line."""
    expect: str
    """What the tuning report should say about it, in one line."""
    plan: FaultPlan
    requests: int
    concurrency: int


_SCENARIOS = (
    Scenario(
        "mixed",
        "lognormal latency (median 20 ms), keep-alive connections dropped after 3-12 "
        "requests, 0.5 % resets, 3 % 503 with Retry-After (HTTP-date)",
        "several retry reasons; 30 concurrent calls queue for 10 per-host connections",
        FaultPlan(
            seed=SEED,
            latency=Latency.lognormal(0.02, 0.5),
            stale_after=(3, 12),
            reset_probability=0.005,
            throttle=Throttle(503, probability=0.03, retry_after=RetryAfter("http-date", 1)),
        ),
        requests=600,
        concurrency=30,
    ),
    Scenario(
        "healthy",
        "fast answers (median 5 ms), no faults",
        "no change needed",
        FaultPlan(seed=SEED, latency=Latency.lognormal(0.005, 0.3)),
        requests=400,
        concurrency=8,
    ),
    Scenario(
        "stale-keepalive",
        "every keep-alive connection is dropped, unannounced, when it is reused",
        "connection_closed retries and a low reuse ratio -> lower KEEPALIVE_TIMEOUT",
        FaultPlan(seed=SEED, latency=Latency.lognormal(0.005, 0.3), stale_after=1),
        requests=400,
        concurrency=8,
    ),
    Scenario(
        "throttled",
        "a 200/s rate limit answering 429 (Retry-After: seconds) and 2 % 503 "
        "(Retry-After: HTTP-date); answers take 10 ms",
        "a high throttled share -> fewer concurrent calls (LIMIT_PER_HOST) and Retry-After "
        "honoured (RETRY_AFTER_MAX)",
        FaultPlan(
            seed=SEED,
            latency=Latency.lognormal(0.01, 0.3),
            rate_limit=RateLimit(rate=200, burst=20),
            throttle=Throttle(503, probability=0.02, retry_after=RetryAfter("http-date", 1)),
        ),
        requests=300,
        concurrency=20,
    ),
    Scenario(
        "pool-starved",
        "a slow upstream (median 50 ms) and 50 concurrent calls",
        "calls queue for the 10 per-host connections -> raise LIMIT_PER_HOST",
        FaultPlan(seed=SEED, latency=Latency.lognormal(0.05, 0.25)),
        requests=300,
        concurrency=50,
    ),
)

SCENARIOS: dict[str, Scenario] = {scenario.name: scenario for scenario in _SCENARIOS}
DEFAULT_SCENARIO = "mixed"
