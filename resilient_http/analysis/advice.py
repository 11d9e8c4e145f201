"""What a tuning rule sees and what it says: ``RuleContext`` in, ``Recommendation`` out.

The rules themselves, their thresholds and the table that runs them are ``rules.py``; this
module holds the vocabulary they share, including the one judgement several rules depend on:
whether an upstream throttles at all (``RuleContext.is_throttling``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from resilient_http.analysis.model import PoolLimits, UpstreamReport
from resilient_http.analysis.settings import Settings, fmt

__all__ = [
    "MIN_REQUESTS",
    "THROTTLING_FLOOR_ATTEMPTS",
    "THROTTLING_FLOOR_SHARE",
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


@dataclass(frozen=True)
class Recommendation:
    """One piece of advice: set ``variable`` to ``value``, because ``reason`` (``evidence``).

    ``current`` is the value in force when it is known (equal to ``value``: keep it as it is).
    """

    rule: str
    variable: str
    value: str
    reason: str
    evidence: str
    upstreams: tuple[str, ...] = ()
    data: dict[str, float | None] = field(default_factory=dict)
    current: str | None = None


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
    def throttled_attempts(self) -> float:
        """Attempts answered 429/503, retried or final (0 when unknown)."""
        return self.upstream.throttled_attempts or 0.0

    @property
    def is_throttling(self) -> bool:
        """The upstream throttles at all (above the floor above)."""
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
        """``the upstream is throttling: 7 of 307 attempts (2.28 %) answered 429/503, 7
        retried``: evidence for any advice that depends on it."""
        attempts = self.upstream.attempts or 0.0
        share = self.throttled_attempts / attempts if attempts else 0.0
        return (
            f"the upstream is throttling: {fmt(self.throttled_attempts)} of {fmt(attempts)} "
            f"attempts ({fmt(share * 100)} %) answered 429/503, "
            f"{fmt(self.retries('throttled'))} retried"
        )


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
