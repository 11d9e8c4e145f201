"""The retry stage: the one loop that turns a logical call into attempts.

Every attempt, the first included, takes the same path: it is sent through the stages below
(``AttemptHandler``), its outcome is classified (``retry.classify_attempt``) and appended to the
call's history, and the composed tenacity strategies of ``_strategies.py`` decide from those
frozen facts: the wait, then whether to stop. The loop alone acts on a decision: it charges the
budget, releases the failed response, reports the retry or the suppression through the call's
observer, sleeps, and asks for the next attempt (on a new connection after a stale one).

A response whose status is not retried ends the call at once, before any retry machinery is
built, so the common successful call pays for one status check. A call that ends in an
exception gets one PEP 678 note per physical attempt.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Final

import aiohttp
import tenacity

from . import testing
from ._budget import RetryBudget
from ._events import RetryEvent, SuppressionEvent
from ._pipeline import (
    FIRST_ATTEMPT,
    AttemptHandler,
    AttemptOutcome,
    AttemptSpec,
    Call,
    CallHandler,
)
from ._strategies import (
    FACTS,
    RetryFacts,
    StopReason,
    stop_after_charged,
    stop_body_not_replayable,
    stop_budget,
    stop_past_deadline,
    stop_retry_after_too_long,
    stop_unsafe,
    wait_backoff,
    wait_retry_after,
    wait_stale,
)
from .retry import RetryPlan, Tried, body_is_replayable, classify_attempt, describe, is_idempotent
from .telemetry.redact import redact_url

__all__ = ["RetryLoop", "Sleep"]

Sleep = Callable[[float], Awaitable[None]]
_NOT_RETRYABLE: Final = "not retryable"
_SESSION_CLOSED: Final = "no retry: the session was closed"


class RetryLoop:
    """The retry stage of one session: its budget, its strategies, its clocks.

    ``clock`` is the pipeline's (monotonic) clock, ``wall_clock`` the Unix time that
    ``Retry-After`` dates are read against; ``sleep`` and ``rng`` are injected for tests.
    ``closing`` is set when the session closes: a call waiting to retry then ends at once with
    its last failure, as aiohttp would refuse the attempt on a closed session.
    """

    def __init__(
        self,
        budget: RetryBudget,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        closing: asyncio.Event | None = None,
    ) -> None:
        self.budget = budget
        self._closing = closing
        self._wall_clock = wall_clock
        self._sleep = sleep
        self.wait = wait_stale() | wait_retry_after() | wait_backoff(rng or random.Random())
        self.stop = (
            stop_after_charged()
            | stop_unsafe()
            | stop_body_not_replayable()
            | stop_retry_after_too_long()
            | stop_past_deadline(clock)
            | stop_budget(budget)
        )
        # The object tenacity's RetryCallState belongs to; the loop below is ours, so that
        # every attempt (the first included) runs without tenacity's per-call set-up.
        self._retrying = tenacity.AsyncRetrying(stop=self.stop, wait=self.wait, sleep=sleep)
        self._send: AttemptHandler | None = None

    def bind(self, send: AttemptHandler) -> CallHandler:
        """The call handler that sends attempts through ``send``."""
        self._send = send
        return self.run

    async def run(self, call: Call) -> aiohttp.ClientResponse:
        """Make the call's attempts; its response, or its last failure with notes."""
        send = self._send
        assert send is not None, "bind() first"
        plan = call.plan
        if plan is None:  # retry=False: one attempt, no free retry either
            return _ended(call, await send(call, FIRST_ATTEMPT), (), (), "")
        attempt = FIRST_ATTEMPT
        history: tuple[Tried, ...] = ()
        waits: tuple[float, ...] = ()  # the wait after each retried attempt, for the notes
        facts: RetryFacts | None = None
        state: tenacity.RetryCallState | None = None
        while True:
            outcome = await send(call, attempt)
            if attempt.number == 1:
                self.budget.record_call(outcome.upstream)
            response = outcome.response
            if response is not None and response.status not in plan.policy.statuses:
                return response  # success, or a status that is not retried
            tried = classify_attempt(
                plan,
                attempt.number,
                attempt.charged,
                response if response is not None else _error(outcome),
                outcome.reused,
                self._wall_clock(),
            )
            history += (tried,)
            if tried.kind is None:
                return _ended(call, outcome, history, waits, _NOT_RETRYABLE)
            if facts is None:
                facts = _facts(call, plan, outcome.upstream, history)
            else:
                facts = facts._replace(history=history)
            state = self._state(state, facts)
            wait = self.wait(state)
            state.upcoming_sleep = wait
            stop = self.stop.why(state)
            if stop is not None:
                self._report_stop(call, facts, stop)
                return _ended(call, outcome, history, waits, stop.why)
            if self._is_closing():
                return _ended(call, _refused(outcome), history, waits, _SESSION_CLOSED)
            self._charge_and_report_retry(call, facts, wait)
            if response is not None:  # the failed attempt's connection goes back first
                response.release()
            if wait > 0:  # a stale connection's retry goes at once, without a loop turn
                await self._pause(0.0 if testing.is_testing() else wait)
                if self._is_closing():
                    return _ended(call, _refused(outcome), history, waits, _SESSION_CLOSED)
            waits += (wait,)
            attempt = AttemptSpec(
                attempt.number + 1,
                attempt.charged if tried.stale else attempt.charged + 1,
                fresh=tried.stale,
            )

    def _is_closing(self) -> bool:
        return self._closing is not None and self._closing.is_set()

    async def _pause(self, seconds: float) -> None:
        """The wait before a retry, cut short when the session closes."""
        closing = self._closing
        if closing is None:
            await self._sleep(seconds)
            return
        # Two tasks, on the retry path only: the injected sleep and the session's closing.
        sleeping = asyncio.ensure_future(self._sleep(seconds))
        closed = asyncio.ensure_future(closing.wait())
        try:
            await asyncio.wait((sleeping, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            closed.cancel()
        if sleeping.done() and not sleeping.cancelled():
            sleeping.result()  # a sleep that failed fails the call, as when awaited directly

    def _state(
        self, state: tenacity.RetryCallState | None, facts: RetryFacts
    ) -> tenacity.RetryCallState:
        """tenacity's per-call state, carrying the facts. Its ``outcome`` is left unset: the
        strategies read the classified history instead (and tenacity's outcome is a
        ``concurrent.futures.Future``, a lock and a condition per decision)."""
        if state is None:
            state = tenacity.RetryCallState(self._retrying, fn=None, args=(), kwargs={})
        state.attempt_number = facts.last.number
        state.kwargs[FACTS] = facts
        return state

    def _charge_and_report_retry(self, call: Call, facts: RetryFacts, wait: float) -> None:
        last = facts.last
        if not last.stale:
            self.budget.charge_retry(facts.upstream)
        if call.observer is not None:
            assert last.kind is not None
            call.observer.retried(
                RetryEvent(
                    method=call.method,
                    upstream=facts.upstream,
                    attempt=last.number,
                    reason=last.kind.reason.value,
                    delay=wait,
                    error_type=last.error_type,
                    free=last.stale,
                )
            )

    def _report_stop(self, call: Call, facts: RetryFacts, stop: StopReason) -> None:
        if stop.suppression is not None and call.observer is not None:
            call.observer.suppressed(
                SuppressionEvent(
                    method=call.method,
                    upstream=facts.upstream,
                    attempt=facts.last.number,
                    reason=stop.suppression.value,
                )
            )


def _facts(call: Call, plan: RetryPlan, upstream: str, history: tuple[Tried, ...]) -> RetryFacts:
    return RetryFacts(
        method=call.method,
        upstream=upstream,
        plan=plan,
        is_idempotent=is_idempotent(call.method, call.kwargs.get("headers"), call.idempotent),
        body_is_replayable=body_is_replayable(call.kwargs),
        expires_at=call.expires_at,
        history=history,
    )


def _retry_decision(tried: Tried, wait: float) -> str:
    """What a note says of a retried attempt."""
    assert tried.kind is not None
    reason = tried.kind.reason.value
    if tried.stale:
        return f"retried at once on a new connection ({reason}: stale pooled connection)"
    source = "Retry-After" if tried.retry_after is not None else "backoff"
    return f"retrying in {wait:.3f} s ({reason}, {source})"


def _refused(outcome: AttemptOutcome) -> AttemptOutcome:
    """The outcome a call ends with when its session closed before the retry: the attempt's
    error, or, for a response (released before the wait), aiohttp's error for a closed
    connection, so that ``except aiohttp.ClientError`` still catches it."""
    if outcome.error is not None:
        return outcome
    return outcome._replace(response=None, error=aiohttp.ClientConnectionError("Session is closed"))


def _error(outcome: AttemptOutcome) -> Exception:
    assert outcome.error is not None
    return outcome.error


def _ended(
    call: Call,
    outcome: AttemptOutcome,
    history: tuple[Tried, ...],
    waits: tuple[float, ...],
    last_decision: str,
) -> aiohttp.ClientResponse:
    """The call's result: the last response, or its exception with one note per attempt
    (written only now: most calls that retried still succeed)."""
    if outcome.response is not None:
        return outcome.response
    error = _error(outcome)
    url = redact_url(call.target)
    if not history:  # no retry plan: the one attempt, as it went
        error.add_note(f"attempt 1: {call.method} {url} -> {describe(error)}")
        raise error
    decisions = [_retry_decision(t, w) for t, w in zip(history, waits, strict=False)]
    decisions.append(last_decision)
    for tried, decision in zip(history, decisions, strict=True):
        error.add_note(
            f"attempt {tried.number}: {call.method} {url} -> {describe(tried.outcome)}; {decision}"
        )
    raise error
