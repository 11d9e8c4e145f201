"""The path of one logical call, as a pipeline of independent strategies.

Outermost first (shared/SPEC.md, "Resilience strategies beyond retries")::

    deadline -> circuit breaker -> retries (budget) -> hedging -> concurrency limiter
             -> pool -> attempt timeout

- **deadline**: ``Pipeline.send`` fixes the call's ``expires_at`` (from the moment the caller
  makes the call) and starts its observer; every stage below reads the deadline from the
  frozen ``Call``.
- **call strategies** (the circuit breaker) see whole calls: ``CallHandler`` in, ``CallHandler``
  out; they return the response or raise.
- **retries** (``_retrying.RetryLoop``) turn one call into attempts.
- **attempt strategies** (hedging, the concurrency limiter) see attempts: ``AttemptHandler``
  in, ``AttemptHandler`` out; an attempt ends as an ``AttemptOutcome`` (a response or an
  exception as a value), so a strategy can look at it without catching anything.
- **pool and attempt timeout** (``_attempt.AttemptStage``) send one physical attempt through
  aiohttp with the attempt's own ``ClientTimeout``.

A strategy plugs in by being listed in ``build_pipeline``; none calls another except through
the handler it was bound to, and all report through the call's observer (``_events.py``).
``docs/architecture.md`` draws this.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Final, NamedTuple, Protocol

import aiohttp

from ._events import CallObserver
from .retry import RetryPlan

__all__ = [
    "FIRST_ATTEMPT",
    "AttemptHandler",
    "AttemptOutcome",
    "AttemptSpec",
    "AttemptStrategy",
    "Call",
    "CallHandler",
    "CallStrategy",
    "Listeners",
    "Pipeline",
    "build_pipeline",
]


class Call(NamedTuple):
    """The frozen facts of one logical call, as every stage sees them."""

    method: str
    url: Any
    """The URL as given (aiohttp joins it to ``base_url``)."""
    target: Any
    """The absolute URL (``base_url`` joined), for telemetry and upstream labels."""
    kwargs: dict[str, Any]
    """aiohttp's request arguments (the SDK's own removed)."""
    plan: RetryPlan | None
    """The retry plan; None = no retries at all."""
    idempotent: bool | None
    """The caller's ``idempotent=``; None = by method and ``Idempotency-Key``."""
    expires_at: float
    """The deadline, on the pipeline's clock."""
    timeout: aiohttp.ClientTimeout
    """The per-attempt template; each attempt's ``total`` is cut to the time left."""
    observer: CallObserver | None
    """Who listens to this call; None = nobody (nothing is reported)."""
    exchange: Any = None
    """What the entry point hands its own attempt stage (the middleware: aiohttp's request and
    the handler that sends it); None for ``ResilientSession``."""


class AttemptSpec(NamedTuple):
    """What the retry loop asks of one physical attempt."""

    number: int
    """Physical attempt number, from 1."""
    charged: int
    """Attempts charged against ``max_attempts`` once this one is made."""
    fresh: bool = False
    """Send it on a newly opened connection, not an idle pooled one."""
    hedge: int = 0
    """0 for the attempt the retries asked for; k for its k-th hedge (sent beside it)."""


FIRST_ATTEMPT: Final = AttemptSpec(1, 1)


class AttemptOutcome(NamedTuple):
    """How one physical attempt ended: a response (headers received) or an exception."""

    response: aiohttp.ClientResponse | None
    error: Exception | None
    upstream: str
    """``host:port`` of the connection used (of the URL when none was acquired)."""
    reused: bool | None
    """Whether the connection came from the pool; None = no connection was acquired."""


CallHandler = Callable[[Call], Coroutine[Any, Any, aiohttp.ClientResponse]]
AttemptHandler = Callable[[Call, AttemptSpec], Awaitable[AttemptOutcome]]


class CallStrategy(Protocol):
    """A strategy around whole calls (between the deadline and the retries)."""

    def bind(self, proceed: CallHandler) -> CallHandler:
        """The handler that runs this strategy around ``proceed``."""
        ...


class AttemptStrategy(Protocol):
    """A strategy around each attempt (between the retries and the pool)."""

    def bind(self, send: AttemptHandler) -> AttemptHandler:
        """The handler that runs this strategy around ``send``."""
        ...


class RetryStage(Protocol):
    """The stage that turns a call into attempts."""

    def bind(self, send: AttemptHandler) -> CallHandler:
        """The call handler that sends attempts through ``send``."""
        ...


class Listeners(Protocol):
    """Makes the observer of each call (telemetry, DEBUG log, test recorders)."""

    def may_listen(self) -> bool:
        """Whether a call started now might have a listener (cheap; False means none)."""
        ...

    def start_call(self, method: str, target: Any) -> CallObserver | None:
        """The observer of a call about to start, or None when nobody listens."""
        ...


def build_pipeline(
    *,
    call_strategies: Sequence[CallStrategy],
    retries: RetryStage,
    attempt_strategies: Sequence[AttemptStrategy],
    send_attempt: AttemptHandler,
) -> CallHandler:
    """Compose the stages, outermost first in each list, around ``send_attempt``."""
    send = send_attempt
    for attempt_strategy in reversed(attempt_strategies):
        send = attempt_strategy.bind(send)
    proceed = retries.bind(send)
    for call_strategy in reversed(call_strategies):
        proceed = call_strategy.bind(proceed)
    return proceed


class Pipeline:
    """The deadline stage and entry point: one per session."""

    __slots__ = ("_clock", "_listeners", "_proceed")

    def __init__(
        self,
        proceed: CallHandler,
        listeners: Listeners,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._proceed = proceed
        self._listeners = listeners
        self._clock = clock

    async def send(
        self,
        method: str,
        url: Any,
        target: Any,
        kwargs: dict[str, Any],
        plan: RetryPlan | None,
        idempotent: bool | None,
        deadline: float,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - the attempts' template, not a wait
    ) -> aiohttp.ClientResponse:
        """One logical call; its deadline counts from when the coroutine starts running, as
        aiohttp's timeout does (a call made now and awaited later, e.g. behind a semaphore, has
        its whole deadline once it runs)."""
        expires_at = self._clock() + deadline
        call = Call(method, url, target, kwargs, plan, idempotent, expires_at, timeout, None)
        return await self.run(call)

    def run(self, call: Call) -> Coroutine[Any, Any, aiohttp.ClientResponse]:
        """Run a call whose facts the entry point made (its deadline fixed already)."""
        if not self._listeners.may_listen():
            return self._proceed(call)  # nothing to report: no coroutine of ours around it
        return self._observed(call)

    async def _observed(self, unobserved: Call) -> aiohttp.ClientResponse:
        # Started here, not in send(): a coroutine that is never awaited leaves no open span.
        observer = self._listeners.start_call(unobserved.method, unobserved.target)
        if observer is None:
            return await self._proceed(unobserved)
        call = unobserved._replace(observer=observer)
        try:
            response = await self._proceed(call)
        except BaseException as error:
            observer.finished(None, error)
            raise
        observer.finished(response.status, None)
        return response
