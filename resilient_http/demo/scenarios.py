"""The demo's scenarios: what the upstream does wrong, and how much load meets it.

Each scenario is a seeded ``FaultPlan`` for the bundled upstream plus default load (calls,
concurrency and idle gaps), chosen so that the tuning report's advice is right for it, and
applying it moves the figure it names (``expect``) the promised way:

- ``healthy``: fast answers, concurrency below the per-host limit: no recommendation;
- ``pool-starved``: a slow upstream and far more concurrent calls than ``LIMIT_PER_HOST``:
  calls queue for a pooled connection, so the report raises ``LIMIT_PER_HOST``;
- ``stale-keepalive``: the upstream's idle timeout (0.5 s) crosses reuses: the load pauses
  0.25 s and 0.7 s in turn, and a reuse after the long pause is closed unanswered; the report
  lowers ``KEEPALIVE_TIMEOUT`` below the idle time the closes start at;
- ``max-requests``: the upstream closes every connection after 20 requests, unannounced (a
  per-connection request cap): the report says so and changes no keep-alive;
- ``overloaded``: the upstream answers 503 (``Retry-After``) while more than 4 requests are being
  answered, 10 calls at a time: throttling that grows with load -> adaptive concurrency;
- ``flaky``: 5 % random 503s (no ``Retry-After``) whatever the load: server errors, retried; no
  pool or concurrency advice;
- ``throttled``: a rate limit (429, ``Retry-After`` in seconds) and random 503s (``Retry-After``
  as an HTTP-date): the 429s are throttling -> adaptive concurrency;
- ``mixed``: a bit of everything at a concurrency above the per-host limit; its 503s are random,
  so the queue for connections is judged on its own -> a higher ``LIMIT_PER_HOST``;
- ``outage``: the upstream refuses connections for 5 s, then is back at the same address; calls
  paced at about 100 a second: the circuit breaker opens, fails calls at once, probes after
  ``BREAKER_OPEN_FOR`` and closes;
- ``long-tail``: a little over 1 % of answers take 1 s, the rest 20 ms -> ``HEDGE_AFTER=auto``
  (with it set, the report counts the hedges won and lost).

Only faults the upstream counts exactly are used, so the report can be checked against the
upstream's own counters.
"""

from __future__ import annotations

from dataclasses import dataclass

from resilient_http.upstream import FaultPlan, Latency, Outage, RateLimit, RetryAfter, Throttle

__all__ = ["DEFAULT_SCENARIO", "LONG_TAIL", "SCENARIOS", "IdleGaps", "Scenario"]

# One seed for every scenario: the upstream's draws (latency, faults) repeat run after run.
SEED = 7
LONG_TAIL = Latency.tail(0.02, 1.0, 0.015)
"""1.5 % of answers take 1 s, the rest 20 ms: a little over 1 %, so that the unhedged p99 lands
in the tail rather than on its edge (the demo's and the benchmark's long tail). 20 ms, not a
loopback's 2: a busy machine's own jitter of a few ms would otherwise be most of the p95 that
the advice is checked against."""


@dataclass(frozen=True)
class IdleGaps:
    """Pauses in the load: each worker, after every ``every`` calls, pauses for the next of
    ``seconds`` (in turn), so that pooled connections lie idle as between a service's bursts."""

    every: int
    seconds: tuple[float, ...]

    def pause_after(self, calls_done: int) -> float:
        """Seconds to pause after a worker's ``calls_done``-th call (0: none)."""
        if calls_done % self.every:
            return 0.0
        return self.seconds[(calls_done // self.every - 1) % len(self.seconds)]


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
    gaps: IdleGaps | None = None
    """Pauses in each worker's calls (None: back to back)."""
    pace: float | None = None
    """Calls started per second, whatever the answers, ``concurrency`` at most in flight (None:
    each of ``concurrency`` workers starts its next call when the last one ends)."""


_SCENARIOS = (
    Scenario(
        "mixed",
        "lognormal latency (median 20 ms), keep-alive connections dropped after 3-12 "
        "requests, 0.5 % resets, 3 % 503 with Retry-After (HTTP-date)",
        "several retry reasons; random 503s are no throttling, so 30 concurrent calls queuing "
        "for 10 per-host connections -> a higher LIMIT_PER_HOST",
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
        "an idle timeout of 0.5 s that crosses reuses: a request on a connection idle that long "
        "is closed unanswered; the load pauses 0.25 s and 0.7 s in turn every 10 calls",
        "stale closes only after the long pauses -> KEEPALIVE_TIMEOUT below the idle time they "
        "start at",
        FaultPlan(seed=SEED, latency=Latency.lognormal(0.02, 0.3), stale_idle=0.5),
        requests=400,
        concurrency=8,
        gaps=IdleGaps(every=10, seconds=(0.25, 0.7)),
    ),
    Scenario(
        "max-requests",
        "every connection is closed, unannounced, when request 21 arrives on it (a "
        "per-connection request cap)",
        "stale closes at one request count -> a request cap: no keep-alive change",
        FaultPlan(seed=SEED, latency=Latency.lognormal(0.005, 0.3), stale_after=20),
        requests=400,
        concurrency=8,
    ),
    Scenario(
        "overloaded",
        "503 at once (Retry-After: 1 s) while more than 4 requests are being answered; "
        "answers take 20 ms; 20 calls at a time",
        "throttling that grows with the calls in flight -> LIMIT_PER_HOST at the calls in flight "
        "it stayed calm at",
        FaultPlan(
            seed=SEED,
            latency=Latency.lognormal(0.02, 0.3),
            capacity=4,
            capacity_retry_after=RetryAfter("seconds", 1),
        ),
        requests=300,
        concurrency=20,
    ),
    Scenario(
        "flaky",
        "5 % random 503s without Retry-After, whatever the load; answers take 10 ms",
        "server errors, retried: no pool or concurrency advice",
        FaultPlan(
            seed=SEED,
            latency=Latency.lognormal(0.01, 0.3),
            throttle=Throttle(503, probability=0.05, retry_after=RetryAfter("none")),
        ),
        requests=300,
        concurrency=8,
    ),
    Scenario(
        "throttled",
        "a 200/s rate limit answering 429 (Retry-After: seconds) and 2 % 503 "
        "(Retry-After: HTTP-date); answers take 10 ms",
        "429s, a rate limit: throttling that grows with load -> adaptive concurrency",
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
    Scenario(
        "outage",
        "fast answers (median 5 ms), then, 0.3 s into the load, connections refused for 5 s "
        "(requests on open connections closed unanswered), then back at the same address; "
        "calls start at 100/s whatever the answers",
        "the circuit breaker opens and fails calls at once while the upstream is down, probes "
        "after BREAKER_OPEN_FOR (5 s) and closes once it is back",
        FaultPlan(
            seed=SEED, latency=Latency.lognormal(0.005, 0.3), outage=Outage("refuse", 0.3, 5.0)
        ),
        requests=700,
        concurrency=200,
        pace=100.0,
    ),
    Scenario(
        "long-tail",
        "1.5 % of answers take 1 s, the rest 20 ms; calls start at 150/s whatever the answers",
        "a long tail on an otherwise fast upstream -> HEDGE_AFTER=auto; with it set, hedges "
        "won and lost",
        FaultPlan(seed=SEED, latency=LONG_TAIL),
        requests=600,
        concurrency=200,
        pace=150.0,
    ),
)

SCENARIOS: dict[str, Scenario] = {scenario.name: scenario for scenario in _SCENARIOS}
DEFAULT_SCENARIO = "mixed"
