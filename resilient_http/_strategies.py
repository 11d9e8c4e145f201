"""The retry decision as small tenacity strategies, each reading frozen facts.

A retry decision is a wait and a stop, composed from independent strategies::

    wait = wait_stale() | wait_retry_after() | wait_backoff(rng)        # the first that applies
    stop = (stop_after_charged() | stop_unsafe() | stop_body_not_replayable()
            | stop_retry_after_too_long() | stop_past_deadline(clock) | stop_budget(budget))

Each strategy is a tenacity ``wait_base`` / ``stop_base`` (so tenacity's own operators and
callers accept it) that reads only ``RetryFacts``, the call's frozen facts and the history of
its classified attempts (``retry.Tried``, urllib3-style), carried in the ``RetryCallState``, and
``upcoming_sleep`` (the wait already chosen). No strategy writes anything another one reads:
the budget is only asked, and the loop in ``_retrying.py`` charges it once it decides to retry.
Clock, random source and budget are injected, so tests call strategies on made-up facts.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Final, NamedTuple

import tenacity

from . import testing
from ._budget import RetryBudget
from .retry import RetryPlan, SuppressionReason, Tried, full_jitter_backoff

__all__ = [
    "RetryFacts",
    "Stop",
    "StopReason",
    "Wait",
    "facts_of",
    "max_attempts_of",
    "stop_after_charged",
    "stop_body_not_replayable",
    "stop_budget",
    "stop_past_deadline",
    "stop_retry_after_too_long",
    "stop_unsafe",
    "wait_backoff",
    "wait_retry_after",
    "wait_stale",
]

FACTS: Final = "facts"
"""The key of ``RetryFacts`` in the ``RetryCallState``'s ``kwargs``."""


class RetryFacts(NamedTuple):
    """What a retry decision may read: the call's facts and its attempts so far."""

    method: str
    upstream: str
    plan: RetryPlan
    is_idempotent: bool
    body_is_replayable: bool
    expires_at: float
    """The call's deadline on the loop's clock."""
    history: tuple[Tried, ...]
    """Every attempt so far, the one being decided on last."""

    @property
    def last(self) -> Tried:
        """The attempt being decided on."""
        return self.history[-1]


def facts_of(state: tenacity.RetryCallState) -> RetryFacts:
    """The ``RetryFacts`` a ``RetryCallState`` carries."""
    facts: RetryFacts = state.kwargs[FACTS]
    return facts


def max_attempts_of(plan: RetryPlan) -> int:
    """The plan's ``max_attempts``, capped by testing mode's ``attempts``."""
    cap = testing.testing_attempts()
    attempts = plan.policy.max_attempts
    return attempts if cap is None else min(attempts, cap)


# --- waits -----------------------------------------------------------------------------------


class Wait(tenacity.wait.wait_base):
    """A wait that applies to some outcomes (``wait_for`` returns None for the others).

    ``a | b`` is ``a`` where it applies, else ``b``; tenacity calls it as any wait.
    """

    def wait_for(self, facts: RetryFacts) -> float | None:
        """Seconds to wait before the next attempt, or None when this wait does not apply."""
        raise NotImplementedError

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        found = self.wait_for(facts_of(retry_state))
        return 0.0 if found is None else found

    def __or__(self, other: Wait) -> Wait:
        return _FirstWait(*_members(self), *_members(other))


class _FirstWait(Wait):
    def __init__(self, *waits: Wait) -> None:
        self.waits = waits

    def wait_for(self, facts: RetryFacts) -> float | None:
        for wait in self.waits:
            found = wait.wait_for(facts)
            if found is not None:
                return found
        return None


class wait_stale(Wait):
    """A stale pooled connection is retried at once, on a new connection."""

    def wait_for(self, facts: RetryFacts) -> float | None:
        return 0.0 if facts.last.stale else None


class wait_retry_after(Wait):
    """A throttled answer's ``Retry-After`` (already parsed, not yet capped)."""

    def wait_for(self, facts: RetryFacts) -> float | None:
        return facts.last.retry_after


class wait_backoff(Wait):
    """Exponential backoff with full jitter, or an ``aiohttp_retry`` option's own waits."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def wait_for(self, facts: RetryFacts) -> float | None:
        plan, charged = facts.plan, facts.last.charged
        if plan.backoff is not None:
            # aiohttp_retry's ListRetry has no wait past its list: ask only while one follows.
            if charged >= max_attempts_of(plan):
                return 0.0
            return max(0.0, float(plan.backoff(charged)))
        policy = plan.policy
        return full_jitter_backoff(charged, policy.backoff_initial, policy.backoff_max, self.rng)


# --- stops -----------------------------------------------------------------------------------


class StopReason(NamedTuple):
    """Why no retry follows: the note's words, and the suppression counted, if any."""

    why: str
    suppression: SuppressionReason | None = None


class Stop(tenacity.stop.stop_base):
    """A stop that gives its reason; ``a | b`` stops when either does (the first reason)."""

    def reason(self, facts: RetryFacts, upcoming_sleep: float) -> StopReason | None:
        """Why the call must stop here, or None."""
        raise NotImplementedError

    def why(self, retry_state: tenacity.RetryCallState) -> StopReason | None:
        """``reason`` for a ``RetryCallState`` (its facts and ``upcoming_sleep``)."""
        return self.reason(facts_of(retry_state), retry_state.upcoming_sleep)

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.why(retry_state) is not None

    def __or__(self, other: tenacity.stop.stop_base) -> _AnyStop:
        return _AnyStop(*_members(self), *_members(other))


class _AnyStop(tenacity.stop.stop_any, Stop):
    """tenacity's ``stop_any`` that also says which member stopped."""

    def __init__(self, *stops: tenacity.stop.stop_base) -> None:
        super().__init__(*stops)
        self.members = tuple(stop for stop in stops if isinstance(stop, Stop))
        if len(self.members) != len(stops):
            raise TypeError("only resilient_http stops give reasons")

    def reason(self, facts: RetryFacts, upcoming_sleep: float) -> StopReason | None:
        for stop in self.members:
            found = stop.reason(facts, upcoming_sleep)
            if found is not None:
                return found
        return None

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.why(retry_state) is not None


def _members(strategy: Any) -> tuple[Any, ...]:
    """A composed strategy's members (``a | b | c`` is one flat list, not nested pairs)."""
    if isinstance(strategy, _FirstWait):
        return strategy.waits
    if isinstance(strategy, _AnyStop):
        return strategy.members
    return (strategy,)


def _suppressed(reason: SuppressionReason) -> StopReason:
    return StopReason(f"no retry: {reason.value.replace('_', ' ')}", reason)


class stop_after_charged(Stop):
    """``max_attempts`` charged attempts made (a free stale retry is not charged)."""

    def reason(self, facts: RetryFacts, upcoming_sleep: float) -> StopReason | None:
        last = facts.last
        limit = max_attempts_of(facts.plan)
        if last.stale or last.charged < limit:
            return None
        return StopReason(f"no retry: attempts exhausted ({last.charged} of {limit})")


class stop_unsafe(Stop):
    """The request may have reached the server and is not idempotent."""

    def reason(self, facts: RetryFacts, upcoming_sleep: float) -> StopReason | None:
        kind = facts.last.kind
        if kind is not None and kind.request_sent and not facts.is_idempotent:
            return _suppressed(SuppressionReason.NOT_IDEMPOTENT)
        return None


class stop_body_not_replayable(Stop):
    """The request may have consumed a body that cannot be sent again (a stream)."""

    def reason(self, facts: RetryFacts, upcoming_sleep: float) -> StopReason | None:
        kind = facts.last.kind
        if kind is not None and kind.request_sent and not facts.body_is_replayable:
            return _suppressed(SuppressionReason.BODY_NOT_REPLAYABLE)
        return None


class stop_retry_after_too_long(Stop):
    """The upstream asked for a wait past ``retry_after_max``: answer at once instead."""

    def reason(self, facts: RetryFacts, upcoming_sleep: float) -> StopReason | None:
        retry_after = facts.last.retry_after
        if retry_after is not None and retry_after > facts.plan.policy.retry_after_max:
            return _suppressed(SuppressionReason.RETRY_AFTER_TOO_LONG)
        return None


class stop_past_deadline(Stop):
    """The wait would end at or past the call's deadline."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock

    def reason(self, facts: RetryFacts, upcoming_sleep: float) -> StopReason | None:
        if self.clock() + upcoming_sleep >= facts.expires_at:
            return _suppressed(SuppressionReason.DEADLINE)
        return None


class stop_budget(Stop):
    """The upstream's retry budget is spent (stale retries are free and never stopped here)."""

    def __init__(self, budget: RetryBudget) -> None:
        self.budget = budget

    def reason(self, facts: RetryFacts, upcoming_sleep: float) -> StopReason | None:
        if facts.last.stale or self.budget.allows_retry(facts.upstream):
            return None
        return _suppressed(SuppressionReason.BUDGET)
