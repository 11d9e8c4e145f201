"""The attempts of one logical call: the first outside any retry machinery, the rest on tenacity.

``AttemptRunner.send`` makes the first attempt inline, so a call that succeeds pays for no
retry object at all (tenacity copies itself and builds call state on every use). Only a
retryable failure enters ``tenacity.AsyncRetrying``, driven by the SDK's own predicates:
``retry`` classifies the outcome, ``wait`` picks the delay (none for a stale pooled connection,
``Retry-After`` when throttled, else full-jitter backoff), ``stop`` applies the limits (attempts,
method safety, body replay, Retry-After cap, deadline, budget, in that order). The clock, the
sleep and the random source are injected so that tests can see every decision.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final, Protocol

import aiohttp
import tenacity
from yarl import URL

from . import pool, testing
from ._budget import RetryBudget
from .config import RetryPolicy
from .pool import upstream_label
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
from .telemetry.calls import CallTelemetry, SessionTelemetry
from .telemetry.redact import redact_text, redact_url

__all__ = ["AttemptRunner", "RetryEvent", "RetryHooks", "RetryPlan", "SuppressionEvent"]

log: Final = logging.getLogger("resilient_http")
# Bound once: these run on every request.
_attempt_record: Final = pool.attempt_record
_LOG_ONLY: Final = SessionTelemetry.logging_only()
Sleep = Callable[[float], Awaitable[None]]


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


class _Call:
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


class AttemptRunner:
    """Sends logical calls for one session: attempts, retries, budget, notes."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        budget: RetryBudget,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        hooks: RetryHooks | None = None,
        telemetry: SessionTelemetry | None = None,
    ) -> None:
        self.session = session
        self._request = pool.request_coroutine_function(session)
        self.budget = budget
        self.clock = clock
        self.wall_clock = wall_clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.hooks = hooks
        self.telemetry = telemetry  # None: nothing is exported (DEBUG lines may still be)
        # The SDK's own predicates; the call they decide for travels in the retry state.
        self._retrying = tenacity.Retrying(
            retry=lambda state: self._is_retryable(_call_of(state), state),
            wait=lambda state: self._delay(_call_of(state), state),
            stop=lambda state: self._should_stop(_call_of(state), state),
            before_sleep=lambda state: self._before_retry(_call_of(state), state),
            retry_error_callback=_last_outcome,
        )
        self._first_timeouts: tuple[Any, float, aiohttp.ClientTimeout] = (None, 0.0, _NO_TIMEOUT)

    def send(
        self,
        method: str,
        url: Any,
        kwargs: dict[str, Any],
        plan: RetryPlan | None,
        idempotent: bool | None,
        deadline: float,
        timeout: aiohttp.ClientTimeout,
        absolute: Callable[[Any], Any],
    ) -> Coroutine[Any, Any, aiohttp.ClientResponse]:
        """The call as a coroutine: its response, or its last failure (one note per attempt).

        ``absolute(url)`` gives the absolute URL; it is asked for only when telemetry or a
        failure needs it. A plain function, so a call without telemetry is one coroutine.
        """
        if self.telemetry is None and not log.isEnabledFor(logging.DEBUG):
            return self._send(method, url, kwargs, plan, idempotent, deadline, timeout, absolute)
        return self._send_observed(
            method, url, kwargs, plan, idempotent, deadline, timeout, absolute
        )

    async def _send_observed(
        self,
        method: str,
        url: Any,
        kwargs: dict[str, Any],
        plan: RetryPlan | None,
        idempotent: bool | None,
        deadline: float,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (a template for each attempt)
        absolute: Callable[[Any], Any],
    ) -> aiohttp.ClientResponse:
        observed = (self.telemetry or _LOG_ONLY).start_call(method, absolute(url))
        try:
            resp = await self._send(
                method, url, kwargs, plan, idempotent, deadline, timeout, absolute, observed
            )
        except BaseException as exc:
            observed.finish(None, exc)
            raise
        observed.finish(resp, None)
        return resp

    async def _send(
        self,
        method: str,
        url: Any,
        kwargs: dict[str, Any],
        plan: RetryPlan | None,
        idempotent: bool | None,
        deadline: float,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (a template for each attempt)
        absolute: Callable[[Any], Any],
        observed: CallTelemetry | None = None,
    ) -> aiohttp.ClientResponse:
        expires_at = self.clock() + deadline
        record = _attempt_record()
        attempt_kwargs = kwargs if observed is None else observed.begin_attempt(kwargs)
        try:
            resp = await self._request(
                method, url, timeout=self._first_timeout(timeout, deadline), **attempt_kwargs
            )
        except Exception as exc:
            if observed is not None:
                observed.end_attempt(None, exc)
            acquired = record.acquired
            upstream = acquired[0] if acquired else _upstream_of(absolute(url))
            if plan is not None:
                self.budget.record_call(upstream)
            if plan is None or self._classify(exc, plan) is None:
                _add_note(exc, f"attempt 1: {method} {redact_url(url)} -> {_describe(exc)}")
                raise
            call = _Call(method, url, kwargs, plan, idempotent, expires_at, timeout, upstream)
            call.reused, call.first_outcome = acquired[1] if acquired else None, exc
            call.observed = observed
            return await self._retry(call)
        if observed is not None:
            observed.end_attempt(resp, None)
        if plan is None:
            return resp
        acquired = record.acquired
        upstream = acquired[0] if acquired else _upstream_of(absolute(url))
        self.budget.record_call(upstream)
        if resp.status not in plan.policy.statuses:
            return resp
        call = _Call(method, url, kwargs, plan, idempotent, expires_at, timeout, upstream)
        call.reused, call.first_outcome = acquired[1] if acquired else None, resp
        call.observed = observed
        return await self._retry(call)

    def _first_timeout(
        self, template: aiohttp.ClientTimeout, deadline: float
    ) -> aiohttp.ClientTimeout:
        """The first attempt's timeout: the same for every call with the same settings."""
        cached = self._first_timeouts
        if cached[0] is not template or cached[1] != deadline:
            cached = self._first_timeouts = (template, deadline, _trimmed(template, deadline))
        return cached[2]

    def _classify(self, exc: BaseException, plan: RetryPlan) -> FailureKind | None:
        kind = classify_failure(exc, frozenset(plan.policy.statuses))
        if kind is None and plan.extra_exceptions and isinstance(exc, plan.extra_exceptions):
            kind = FailureKind(RetryReason.SERVER_ERROR, request_sent=True)
        return kind

    async def _retry(self, call: _Call) -> aiohttp.ClientResponse:
        # tenacity's own loop (what AsyncRetrying.__call__ does), over the synchronous
        # Retrying made once per runner: AsyncRetrying is built per call and wraps and inspects
        # every callback on every step, which cost more than the retried request itself.
        retrying = self._retrying
        retrying.begin()  # resets tenacity's statistics (shared, unused by us, but must exist)
        state = tenacity.RetryCallState(retrying, fn=None, args=(), kwargs={"call": call})
        try:
            while True:
                action = retrying.iter(state)
                if isinstance(action, tenacity.DoAttempt):
                    try:
                        result = await self._attempt(call)
                    except BaseException:
                        state.set_exception(sys.exc_info())  # type: ignore[arg-type]
                    else:
                        state.set_result(result)
                elif isinstance(action, tenacity.DoSleep):
                    state.prepare_for_next_attempt()
                    await self._sleep(float(action))
                else:
                    resp: aiohttp.ClientResponse = action
                    return resp
        except Exception as exc:
            for attempt, outcome, decision in call.history:
                _add_note(exc, _format_note(call, attempt, outcome, decision))
            raise

    async def _sleep(self, seconds: float) -> None:
        await self.sleep(0.0 if testing.is_testing() else seconds)

    async def _attempt(self, call: _Call) -> aiohttp.ClientResponse:
        first, call.first_outcome = call.first_outcome, None
        if first is not None:  # tenacity's first attempt replays the one already made
            if isinstance(first, BaseException):
                raise first
            return first  # type: ignore[no-any-return]
        call.attempt += 1
        if not call.free_next:
            call.charged += 1
        record = _attempt_record()
        timeout = _trimmed(call.timeout, call.expires_at - self.clock())
        observed = call.observed
        kwargs = call.kwargs if observed is None else observed.begin_attempt(call.kwargs)
        try:
            if call.free_next:
                with pool.fresh_connection():
                    resp = await self._request(call.method, call.url, timeout=timeout, **kwargs)
            else:
                resp = await self._request(call.method, call.url, timeout=timeout, **kwargs)
        except Exception as exc:
            if observed is not None:
                observed.end_attempt(None, exc)
            raise
        finally:
            acquired = record.acquired
            call.reused = acquired[1] if acquired else None
        if observed is not None:
            observed.end_attempt(resp, None)
        return resp

    def _is_retryable(self, call: _Call, state: tenacity.RetryCallState) -> bool:
        outcome = state.outcome
        assert outcome is not None
        call.retry_after = None
        if outcome.failed:
            call.kind = self._classify(_exception(outcome), call.plan)
        else:
            reason = classify_status(outcome.result().status, call.plan.policy.statuses)
            call.kind = FailureKind(reason, request_sent=True) if reason else None
        kind = call.kind
        # A reused connection that turns out closed is the pool's fault, not the upstream's.
        call.stale = (
            kind is not None and kind.reason is RetryReason.CONNECTION_CLOSED and bool(call.reused)
        )
        if kind is None:
            self._note(call, state, "not retryable")
        return kind is not None

    def _delay(self, call: _Call, state: tenacity.RetryCallState) -> float:
        # tenacity asks for the wait before the stop decision: an exhausted call waits for
        # nothing (and must not ask aiohttp_retry's ListRetry for a wait past its list).
        if call.stale or call.charged >= _max_attempts(call.plan.policy):
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
                call.retry_after = parse_retry_after(headers.get("Retry-After"), self.wall_clock())
                if call.retry_after is not None:
                    return call.retry_after
        policy = call.plan.policy
        if call.plan.backoff is not None:
            return max(0.0, float(call.plan.backoff(call.charged)))
        return full_jitter_backoff(
            call.charged, policy.backoff_initial, policy.backoff_max, self.rng
        )

    def _should_stop(self, call: _Call, state: tenacity.RetryCallState) -> bool:
        kind = call.kind
        assert kind is not None
        policy = call.plan.policy
        max_attempts = _max_attempts(policy)
        suppression: SuppressionReason | None = None
        if not call.stale and call.charged >= max_attempts:
            self._note(
                call, state, f"no retry: attempts exhausted ({call.charged} of {max_attempts})"
            )
            return True
        if kind.request_sent and not call.idempotent:
            suppression = SuppressionReason.NOT_IDEMPOTENT
        elif kind.request_sent and not call.body_replayable:
            suppression = SuppressionReason.BODY_NOT_REPLAYABLE
        elif call.retry_after is not None and call.retry_after > policy.retry_after_max:
            suppression = SuppressionReason.RETRY_AFTER_TOO_LONG
        elif self.clock() + state.upcoming_sleep >= call.expires_at:
            suppression = SuppressionReason.DEADLINE
        elif not call.stale and not self.budget.budget_allows_retry(call.upstream):
            suppression = SuppressionReason.BUDGET
        if suppression is None:
            return False
        self._note(call, state, f"no retry: {suppression.value.replace('_', ' ')}")
        if call.observed is not None:
            call.observed.suppressed(suppression.value)
        if self.hooks is not None:
            self.hooks.on_suppressed(SuppressionEvent(call.method, call.upstream, suppression))
        log.debug("retry suppressed: %s %s (%s)", call.method, call.upstream, suppression.value)
        return True

    def _before_retry(self, call: _Call, state: tenacity.RetryCallState) -> None:
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
        self._note(call, state, what)
        call.free_next = call.stale
        if call.observed is not None:
            call.observed.retry(reason.value, delay, _error_type(state))
        if self.hooks is not None:
            event = RetryEvent(
                call.method,
                call.upstream,
                call.attempt,
                reason,
                delay,
                _error_type(state),
                call.stale,
            )
            self.hooks.on_retry(event)
        log.debug(
            "retry: %s %s attempt %d %s, waiting %.3f s",
            call.method,
            redact_url(call.url),
            call.attempt,
            reason.value,
            delay,
        )

    def _note(self, call: _Call, state: tenacity.RetryCallState, decision: str) -> None:
        # Kept raw: notes are written only if the call ends in an exception, most succeed.
        outcome = state.outcome
        assert outcome is not None
        result = outcome.exception() if outcome.failed else outcome.result().status
        call.history.append((call.attempt, result, decision))


def _call_of(state: tenacity.RetryCallState) -> _Call:
    call: _Call = state.kwargs["call"]
    return call


def _format_note(call: _Call, attempt: int, outcome: object, decision: str) -> str:
    result = _describe(outcome) if isinstance(outcome, BaseException) else str(outcome)
    return f"attempt {attempt}: {call.method} {redact_url(call.url)} -> {result}; {decision}"


def _upstream_of(url: Any) -> str:
    """``host:port`` of an absolute URL, for failures before any connection was acquired."""
    try:
        parsed = url if isinstance(url, URL) else URL(str(url))
    except (ValueError, TypeError):
        return "unknown:0"
    return upstream_label(parsed.host or "unknown", parsed.port)


def _max_attempts(policy: RetryPolicy) -> int:
    cap = testing.testing_attempts()
    return policy.max_attempts if cap is None else min(policy.max_attempts, cap)


def _exception(outcome: Any) -> BaseException:
    exc: BaseException = outcome.exception()
    return exc


def _last_outcome(state: tenacity.RetryCallState) -> Any:
    outcome = state.outcome
    assert outcome is not None
    return outcome.result()


def _error_type(state: tenacity.RetryCallState) -> str:
    outcome = state.outcome
    assert outcome is not None
    if outcome.failed:
        return type(outcome.exception()).__name__
    return str(outcome.result().status)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no error"
    text = redact_text(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _add_note(exc: BaseException, note: str) -> None:
    exc.add_note(note)


_NO_TIMEOUT: Final = aiohttp.ClientTimeout()
_CEIL_OFF: Final = float("inf")  # exact deadlines: aiohttp would round timeouts >= 5 s up


def _trimmed(template: aiohttp.ClientTimeout, left: float) -> aiohttp.ClientTimeout:
    """``template`` with ``total`` cut to the time left before the deadline."""
    total = left if template.total is None else min(template.total, left)
    return aiohttp.ClientTimeout(
        total=max(total, 0.001),
        connect=template.connect,
        sock_read=template.sock_read,
        sock_connect=template.sock_connect,
        ceil_threshold=_CEIL_OFF,
    )
