"""What a tuning rule sees and what it says: ``RuleContext`` in, ``Recommendation`` out.

The rules themselves, their thresholds and the table that runs them are ``rules.py``; this
module holds the vocabulary they share, including the one judgement several rules depend on:
whether an upstream throttles under load (``RuleContext.is_throttling``): 429 answers (a rate
limit, by their meaning), or 503 answers shown to be more frequent with more connections in use
(``evidence.py``). 503s at the same rate whatever the load are server errors: no rule lowers
concurrency for them, and queueing is judged on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from resilient_http.analysis.evidence import LoadSplit
from resilient_http.analysis.model import PoolLimits, UpstreamReport
from resilient_http.analysis.settings import Settings, fmt

__all__ = [
    "MIN_REQUESTS",
    "THROTTLED_SHARE_HIGH",
    "THROTTLING_FLOOR_ATTEMPTS",
    "THROTTLING_FLOOR_SHARE",
    "Expect",
    "Recommendation",
    "Rule",
    "RuleContext",
    "retry_after_max_advised",
]

# Below this many logical calls a share (2 of 10 throttled...) is noise: share rules stay quiet.
MIN_REQUESTS = 20
# "The upstream throttles at all": at least 1 % of attempts answered 429/503 (retried or final),
# and at least 3 of them, so that one stray 503 in a long run is not throttling. Above this
# floor, requests queueing for a connection are the backpressure that keeps the upstream within
# its rate: no rule raises a pool limit for it (a 250/s rate limit with 20 ms answers throttles
# 6.8 % of attempts at 10 connections and 2.3 % at 5, where calls queue: raising the limit
# again would undo the throttled advice).
THROTTLING_FLOOR_SHARE = 0.01
THROTTLING_FLOOR_ATTEMPTS = 3
# Throttling to act on: more than 5 % of attempts throttled under load (429s, and 503s shown to
# grow with load): the throttled rule lowers the calls in flight (limit_rules.py), and the most
# connections in use with at most this share throttled bound a raised limit (limit_ceiling.py).
THROTTLED_SHARE_HIGH = 0.05


@dataclass(frozen=True)
class Expect:
    """What applying a recommendation should change: ``figure`` (a path in the ``--json``
    upstream object, e.g. ``pool_wait_ms.p95``) moves ``direction``; ``resilient-http compare``
    checks it."""

    figure: str
    direction: Literal["down", "up"]


@dataclass(frozen=True)
class Recommendation:
    """One piece of advice: set ``variable`` to ``value``, because ``reason`` (``evidence``).

    ``current`` is the value in force when it is known (equal to ``value``: keep it as it is).
    ``expect`` is the figure it should move (None for a keep, which changes nothing).
    """

    rule: str
    variable: str
    value: str
    reason: str
    evidence: str
    upstreams: tuple[str, ...] = ()
    data: dict[str, float | None] = field(default_factory=dict)
    current: str | None = None
    expect: Expect | None = None


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
        """Pool wait p95 in ms over all acquisitions (0 when unknown)."""
        return self.upstream.pool_wait_ms.get("p95") or 0.0

    @property
    def busy(self) -> bool:
        """Enough calls for shares to mean something."""
        return (self.upstream.requests or 0.0) >= MIN_REQUESTS

    @property
    def answered_429_503(self) -> float:
        """Attempts answered 429/503, retried or final (0 when unknown)."""
        return self.upstream.throttled_attempts or 0.0

    @property
    def load_split(self) -> LoadSplit | None:
        """429/503 shares with fewer and with more connections in use (None: not known)."""
        evidence = self.upstream.connections
        return None if evidence is None else evidence.load_split()

    @property
    def throttled_attempts(self) -> float:
        """Attempts throttled under load: the 429s, and the 503s too when they grow with load
        (0 when unknown)."""
        split = self.load_split
        if split is not None and split.grows:
            return self.answered_429_503
        return min(self.upstream.rate_limited or 0.0, self.answered_429_503)

    @property
    def throttled_share(self) -> float:
        """``throttled_attempts`` per attempt."""
        attempts = self.upstream.attempts or 0.0
        return self.throttled_attempts / attempts if attempts else 0.0

    @property
    def is_throttling(self) -> bool:
        """The upstream throttles under load at all (above the floor above)."""
        attempts = self.upstream.attempts or 0.0
        throttled = self.throttled_attempts
        return (
            attempts > 0
            and throttled >= THROTTLING_FLOOR_ATTEMPTS
            and throttled >= THROTTLING_FLOOR_SHARE * attempts
        )

    def retries(self, reason: str) -> float:
        """Retries of one reason."""
        return self.upstream.retries.get(reason, 0.0)

    def suppressed(self, reason: str) -> float:
        """Retries not made, for one reason."""
        return self.upstream.suppressed.get(reason, 0.0)

    def throttling_text(self) -> str:
        """``the upstream is throttling: 7 of 307 attempts (2.28 %) throttled under load, 7
        retried; ...``: evidence for any advice that depends on it."""
        attempts = self.upstream.attempts or 0.0
        return (
            f"the upstream is throttling: {fmt(self.throttled_attempts)} of {fmt(attempts)} "
            f"attempts ({fmt(self.throttled_share * 100)} %) throttled under load, "
            f"{fmt(self.retries('throttled'))} retried; {self.load_text()}"
        )

    def load_text(self) -> str:
        """How the 429/503 answers relate to load, for evidence text."""
        limited = self.upstream.rate_limited
        answered = self.answered_429_503
        split = self.load_split
        parts = [f"{fmt(answered)} attempts answered 429/503"]
        if limited is not None:
            parts.append(f"{fmt(limited)} of them 429 (a rate limit)")
        if split is None:
            parts.append("whether the 503s grow with load is unknown (no varying load seen)")
        else:
            grows = "grow with load" if split.grows else "do not grow with load"
            parts.append(
                f"429/503 {grows}: {fmt(split.low_share * 100)} % of attempts with at most "
                f"{split.in_use} connections in use, {fmt(split.high_share * 100)} % with more"
            )
        return ", ".join(parts)


@dataclass(frozen=True)
class Rule:
    """A named rule: ``applies`` decides, ``recommend`` words the advice with its evidence."""

    name: str
    applies: Callable[[RuleContext], bool]
    recommend: Callable[[RuleContext], Recommendation]


def retry_after_max_advised(c: RuleContext) -> float | None:
    """The ``RETRY_AFTER_MAX`` to advise when Retry-After waits were refused as too long (twice
    the current one: the SDK does not record how long the upstream asked to wait when it
    refuses), else None. Shared by the retry-after rule and the throttled rule's reason."""
    if c.suppressed("retry_after_too_long") <= 0:
        return None
    return c.settings.retry_after_max * 2
