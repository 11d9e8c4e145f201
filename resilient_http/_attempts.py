"""The attempts of one logical call: the first outside any retry machinery, the rest on tenacity.

``AttemptRunner.send`` makes the first attempt inline, so a call that succeeds pays for no
retry object at all (tenacity copies itself and builds call state on every use). Only a
retryable failure enters tenacity's loop, driven by the SDK's own predicates
(``_decisions.RetryDecisions``). The clock, the sleep and the random source are injected so
that tests can see every decision.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final

import aiohttp
import tenacity
from yarl import URL

from . import pool, testing
from ._attempt_timeouts import AttemptTimeouts, total_seconds, untimed
from ._budget import RetryBudget
from ._decisions import (
    Call,
    RetryDecisions,
    RetryEvent,
    RetryHooks,
    RetryPlan,
    SuppressionEvent,
    add_note,
    call_of,
    classify,
    describe,
    format_note,
    last_outcome,
)
from .pool import upstream_label
from .telemetry.calls import CallTelemetry, SessionTelemetry
from .telemetry.redact import redact_url

__all__ = ["AttemptRunner", "RetryEvent", "RetryHooks", "RetryPlan", "SuppressionEvent"]

log: Final = logging.getLogger("resilient_http")
# Bound once: these run on every request.
_attempt_record: Final = pool.attempt_record
_LOG_ONLY: Final = SessionTelemetry.logging_only()
Sleep = Callable[[float], Awaitable[None]]


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
        decisions = RetryDecisions(self)
        self._retrying = tenacity.Retrying(
            retry=lambda state: decisions.is_retryable(call_of(state), state),
            wait=lambda state: decisions.delay(call_of(state), state),
            stop=lambda state: decisions.should_stop(call_of(state), state),
            before_sleep=lambda state: decisions.before_retry(call_of(state), state),
            retry_error_callback=last_outcome,
        )
        self._timeouts = AttemptTimeouts(asyncio.get_running_loop())
        # The first attempt's timeouts are the same for every call with the same settings: the
        # last ones worked out are kept with the template and deadline they came from.
        self._first_timeouts: tuple[Any, float, aiohttp.ClientTimeout, float] = (
            None,
            0.0,
            _NO_TIMEOUT,
            0.0,
        )

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
        attempt_kwargs = kwargs if observed is None else observed.begin_attempt(kwargs)
        cached = self._first_timeouts
        if cached[0] is not timeout or cached[1] != deadline:
            cached = self._first_timeouts = (
                timeout,
                deadline,
                untimed(timeout),
                total_seconds(timeout, deadline),
            )
        expiry = self._timeouts.start(cached[3])
        record = _attempt_record(expiry.task)
        try:
            resp = await self._request(method, url, timeout=cached[2], **attempt_kwargs)
        except BaseException as raised:
            exc = self._timeouts.failed(expiry, raised)
            if not isinstance(exc, Exception):
                raise  # cancelled from elsewhere
            if observed is not None:
                observed.end_attempt(None, exc)
            if plan is not None:
                acquired = record.acquired
                upstream = acquired[0] if acquired else _upstream_of(absolute(url))
                self.budget.record_call(upstream)
                if classify(exc, plan) is not None:
                    call = Call(
                        method, url, kwargs, plan, idempotent, expires_at, timeout, upstream
                    )
                    call.reused, call.first_outcome = acquired[1] if acquired else None, exc
                    call.observed = observed
                    return await self._retry(call)
            add_note(exc, f"attempt 1: {method} {redact_url(url)} -> {describe(exc)}")
            if exc is raised:
                raise
            raise exc from raised  # the TimeoutError the deadline made of a cancellation
        self._timeouts.returned(expiry, resp)
        if observed is not None:
            observed.end_attempt(resp, None)
        if plan is None:
            return resp
        acquired = record.acquired
        upstream = acquired[0] if acquired else _upstream_of(absolute(url))
        self.budget.record_call(upstream)
        if resp.status not in plan.policy.statuses:
            return resp
        call = Call(method, url, kwargs, plan, idempotent, expires_at, timeout, upstream)
        call.reused, call.first_outcome = acquired[1] if acquired else None, resp
        call.observed = observed
        return await self._retry(call)

    async def _retry(self, call: Call) -> aiohttp.ClientResponse:
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
                add_note(exc, format_note(call, attempt, outcome, decision))
            raise

    async def _sleep(self, seconds: float) -> None:
        await self.sleep(0.0 if testing.is_testing() else seconds)

    async def _attempt(self, call: Call) -> aiohttp.ClientResponse:
        first, call.first_outcome = call.first_outcome, None
        if first is not None:  # tenacity's first attempt replays the one already made
            if isinstance(first, BaseException):
                raise first
            return first  # type: ignore[no-any-return]
        call.attempt += 1
        if not call.free_next:
            call.charged += 1
        timeout = untimed(call.timeout)
        observed = call.observed
        kwargs = call.kwargs if observed is None else observed.begin_attempt(call.kwargs)
        expiry = self._timeouts.start(total_seconds(call.timeout, call.expires_at - self.clock()))
        record = _attempt_record(expiry.task)
        try:
            if call.free_next:
                with pool.fresh_connection():
                    resp = await self._request(call.method, call.url, timeout=timeout, **kwargs)
            else:
                resp = await self._request(call.method, call.url, timeout=timeout, **kwargs)
        except BaseException as raised:
            exc = self._timeouts.failed(expiry, raised)
            if observed is not None and isinstance(exc, Exception):
                observed.end_attempt(None, exc)
            if exc is raised:
                raise
            raise exc from raised  # the TimeoutError the deadline made of a cancellation
        finally:
            acquired = record.acquired
            call.reused = acquired[1] if acquired else None
        self._timeouts.returned(expiry, resp)
        if observed is not None:
            observed.end_attempt(resp, None)
        return resp


def _upstream_of(url: Any) -> str:
    """``host:port`` of an absolute URL, for failures before any connection was acquired."""
    try:
        parsed = url if isinstance(url, URL) else URL(str(url))
    except (ValueError, TypeError):
        return "unknown:0"
    return upstream_label(parsed.host or "unknown", parsed.port)


_NO_TIMEOUT: Final = aiohttp.ClientTimeout()
