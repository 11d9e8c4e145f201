"""Retry decisions for the attempt loop, as tenacity callbacks, and the state of one call.

``RetryDecisions`` holds the SDK's own tenacity predicates: ``is_retryable`` classifies an
outcome, ``delay`` picks the wait (none for a stale pooled connection, ``Retry-After`` when
throttled, else full-jitter backoff), ``should_stop`` applies the limits (attempts, method
safety, body replay, Retry-After cap, deadline, budget, in that order) and ``before_retry``
releases the failed response and reports the retry. They read the clock, random source,
budget and hooks from the runner at call time, so tests can replace any of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

import aiohttp
import tenacity

from . import testing
from .config import RetryPolicy
from .retry import (
    FailureKind,
    RetryReason,
    SuppressionReason,
    body_is_replayable,
    classify_failure,
    classify_status,
    full_jitter_backoff,
    is_idempotent,
    parse_retry_after,
)
from .telemetry.calls import NO_TRACE_IDS
from .telemetry.redact import redact_text, redact_url

if TYPE_CHECKING:
    from ._attempts import AttemptRunner
    from .telemetry.calls import CallTelemetry

__all__ = [
    "Call",
    "RetryDecisions",
    "RetryEvent",
    "RetryHooks",
    "RetryPlan",
    "SuppressionEvent",
    "add_note",
    "call_of",
    "classify",
    "describe",
    "format_note",
    "last_outcome",
]

log: Final = logging.getLogger("resilient_http")


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """A ``RetryPolicy`` plus what an ``aiohttp_retry`` option adds to it."""

    policy: RetryPolicy
    #: seconds to wait after failed attempt N (aiohttp_retry's own waits); None = full jitter
    backoff: Callable[[int], float] | None = None
    extra_exceptions: tuple[type[BaseException], ...] = ()
    #: methods that may be retried at all (aiohttp_retry's ``methods``); None = every method
    methods: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """One retry decided: fed to the telemetry hooks."""

    method: str
    upstream: str
    attempt: int
    reason: RetryReason
    delay: float
    error_type: str
    free: bool


@dataclass(frozen=True, slots=True)
class SuppressionEvent:
    """A retryable failure that was not retried, and why."""

    method: str
    upstream: str
    reason: SuppressionReason


class RetryHooks(Protocol):
    """Receives retry decisions (the telemetry layer implements it)."""

    def on_retry(self, event: RetryEvent) -> None:
        """A retry will follow after ``event.delay`` seconds."""

    def on_suppressed(self, event: SuppressionEvent) -> None:
        """A retryable failure was returned or raised as it was."""


class Call:
    """The state of one logical call across its attempts."""

    __slots__ = (
        "attempt",
        "body_replayable",
        "charged",
        "expires_at",
        "first_outcome",
        "free_next",
        "history",
        "idempotent",
        "kind",
        "kwargs",
        "method",
        "observed",
        "plan",
        "retry_after",
        "reused",
        "stale",
        "timeout",
        "upstream",
        "url",
    )

    def __init__(
        self,
        method: str,
        url: Any,
        kwargs: dict[str, Any],
        plan: RetryPlan,
        idempotent: bool | None,
        expires_at: float,
        timeout: aiohttp.ClientTimeout,
        upstream: str,
    ) -> None:
        self.method = method
        self.url = url
        self.kwargs = kwargs
        self.plan = plan
        self.idempotent = is_idempotent(method, kwargs.get("headers"), idempotent)
        self.body_replayable = body_is_replayable(kwargs)
        self.expires_at = expires_at
        self.timeout = timeout
        self.upstream = upstream
        self.attempt = 1  # physical attempts made
        self.charged = 1  # attempts counted against max_attempts
        self.free_next = False
        self.first_outcome: Any = None
        self.history: list[tuple[int, object, str]] = []
        self.kind: FailureKind | None = None
        self.reused: bool | None = None
        self.stale = False
        self.retry_after: float | None = None
        self.observed: CallTelemetry | None = None


class RetryDecisions:
    """The tenacity callbacks of one runner; the call they decide for is in the retry state."""

    def __init__(self, runner: AttemptRunner) -> None:
        self.runner = runner

    def is_retryable(self, call: Call, state: tenacity.RetryCallState) -> bool:
        outcome = state.outcome
        assert outcome is not None
        call.retry_after = None
        if outcome.failed:
            call.kind = classify(exception_of(outcome), call.plan)
        else:
            reason = classify_status(outcome.result().status, call.plan.policy.statuses)
            call.kind = FailureKind(reason, request_sent=True) if reason else None
        kind = call.kind
        # A reused connection that turns out closed is the pool's fault, not the upstream's.
        call.stale = (
            kind is not None and kind.reason is RetryReason.CONNECTION_CLOSED and bool(call.reused)
        )
        if kind is None:
            self.note(call, state, "not retryable")
        return kind is not None

    def delay(self, call: Call, state: tenacity.RetryCallState) -> float:
        # tenacity asks for the wait before the stop decision: an exhausted call waits for
        # nothing (and must not ask aiohttp_retry's ListRetry for a wait past its list).
        if call.stale or call.charged >= max_attempts_of(call.plan.policy):
            return 0.0
        outcome = state.outcome
        assert outcome is not None
        if call.kind is not None and call.kind.reason is RetryReason.THROTTLED:
            headers = (
                outcome.result().headers
                if not outcome.failed
                else getattr(outcome.exception(), "headers", None)
            )
            if headers is not None:
                call.retry_after = parse_retry_after(
                    headers.get("Retry-After"), self.runner.wall_clock()
                )
                if call.retry_after is not None:
                    return call.retry_after
        policy = call.plan.policy
        if call.plan.backoff is not None:
            return max(0.0, float(call.plan.backoff(call.charged)))
        return full_jitter_backoff(
            call.charged, policy.backoff_initial, policy.backoff_max, self.runner.rng
        )

    def should_stop(self, call: Call, state: tenacity.RetryCallState) -> bool:
        kind = call.kind
        assert kind is not None
        policy = call.plan.policy
        max_attempts = max_attempts_of(policy)
        suppression: SuppressionReason | None = None
        if not call.stale and call.charged >= max_attempts:
            self.note(
                call, state, f"no retry: attempts exhausted ({call.charged} of {max_attempts})"
            )
            return True
        if kind.request_sent and not call.idempotent:
            suppression = SuppressionReason.NOT_IDEMPOTENT
        elif kind.request_sent and not call.body_replayable:
            suppression = SuppressionReason.BODY_NOT_REPLAYABLE
        elif call.retry_after is not None and call.retry_after > policy.retry_after_max:
            suppression = SuppressionReason.RETRY_AFTER_TOO_LONG
        elif self.runner.clock() + state.upcoming_sleep >= call.expires_at:
            suppression = SuppressionReason.DEADLINE
        elif not call.stale and not self.runner.budget.budget_allows_retry(call.upstream):
            suppression = SuppressionReason.BUDGET
        if suppression is None:
            return False
        self.note(call, state, f"no retry: {suppression.value.replace('_', ' ')}")
        if call.observed is not None:
            call.observed.suppressed(suppression.value)
        if self.runner.hooks is not None:
            self.runner.hooks.on_suppressed(
                SuppressionEvent(call.method, call.upstream, suppression)
            )
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "retry suppressed: %s %s (%s) %s",
                call.method,
                call.upstream,
                suppression.value,
                _log_ids(call),
            )
        return True

    def before_retry(self, call: Call, state: tenacity.RetryCallState) -> None:
        outcome = state.outcome
        assert outcome is not None
        assert call.kind is not None
        if not outcome.failed:  # release the failed attempt's connection before the next one
            outcome.result().release()
        delay = state.upcoming_sleep
        reason = call.kind.reason
        if call.stale:
            what = f"retried at once on a new connection ({reason.value}: stale pooled connection)"
        else:
            source = "Retry-After" if call.retry_after is not None else "backoff"
            what = f"retrying in {delay:.3f} s ({reason.value}, {source})"
        self.note(call, state, what)
        call.free_next = call.stale
        if call.observed is not None:
            call.observed.retry(reason.value, delay, error_type_of(state))
        if self.runner.hooks is not None:
            event = RetryEvent(
                call.method,
                call.upstream,
                call.attempt,
                reason,
                delay,
                error_type_of(state),
                call.stale,
            )
            self.runner.hooks.on_retry(event)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "retry: %s %s attempt %d %s, waiting %.3f s %s",
                call.method,
                redact_url(call.url),
                call.attempt,
                reason.value,
                delay,
                _log_ids(call),
            )

    def note(self, call: Call, state: tenacity.RetryCallState, decision: str) -> None:
        # Kept raw: notes are written only if the call ends in an exception, most succeed.
        outcome = state.outcome
        assert outcome is not None
        result = outcome.exception() if outcome.failed else outcome.result().status
        call.history.append((call.attempt, result, decision))


def _log_ids(call: Call) -> str:
    """The call's trace and span ids for a DEBUG line (its INTERNAL span, parent of attempts)."""
    return call.observed.log_ids() if call.observed is not None else NO_TRACE_IDS


def classify(exc: BaseException, plan: RetryPlan) -> FailureKind | None:
    """The retryable failure ``exc`` is under ``plan`` (its extra exception types included)."""
    kind = classify_failure(exc, frozenset(plan.policy.statuses))
    if kind is None and plan.extra_exceptions and isinstance(exc, plan.extra_exceptions):
        kind = FailureKind(RetryReason.SERVER_ERROR, request_sent=True)
    return kind


def call_of(state: tenacity.RetryCallState) -> Call:
    call: Call = state.kwargs["call"]
    return call


def format_note(call: Call, attempt: int, outcome: object, decision: str) -> str:
    result = describe(outcome) if isinstance(outcome, BaseException) else str(outcome)
    return f"attempt {attempt}: {call.method} {redact_url(call.url)} -> {result}; {decision}"


def max_attempts_of(policy: RetryPolicy) -> int:
    cap = testing.testing_attempts()
    return policy.max_attempts if cap is None else min(policy.max_attempts, cap)


def exception_of(outcome: Any) -> BaseException:
    exc: BaseException = outcome.exception()
    return exc


def last_outcome(state: tenacity.RetryCallState) -> Any:
    outcome = state.outcome
    assert outcome is not None
    return outcome.result()


def error_type_of(state: tenacity.RetryCallState) -> str:
    outcome = state.outcome
    assert outcome is not None
    if outcome.failed:
        return type(outcome.exception()).__name__
    return str(outcome.result().status)


def describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no error"
    text = redact_text(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def add_note(exc: BaseException, note: str) -> None:
    exc.add_note(note)
