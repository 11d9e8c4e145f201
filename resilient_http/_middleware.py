"""The aiohttp-native entry point: ``rh.middleware()`` for a ``ClientSession`` of one's own.

The same pipeline as ``ResilientSession`` (deadline, retries with budget, the same strategies,
telemetry and recorders through the same event channel), with a different innermost stage:
an attempt is a call of aiohttp's middleware ``handler``, not a ``ClientSession.request``.
Used with ``rh.create_connector()``, the pool's counters and the fresh connection of a stale
connection's retry work as in ``ResilientSession``.

What aiohttp's public middleware API cannot carry (the README names each):

- every attempt runs under the one ``ClientTimeout`` of the request (aiohttp arms it once per
  ``ClientSession.request``), so the deadline bounds the waits between attempts, and the
  session's own ``timeout`` bounds the attempts;
- aiohttp resends an idempotent request once when a closed connection escapes the middleware
  chain (after the SDK's own attempts), by running the whole chain again: the SDK sees, counts
  and reports that as a second logical call;
- aiohttp's request trace signals fire once per request, not per attempt.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Final

import aiohttp
from opentelemetry import metrics, trace

from . import pool
from ._assembly import assemble
from ._attempt import UpstreamLabels, await_attempt
from ._listeners import SessionListeners
from ._pipeline import AttemptOutcome, AttemptSpec, Call
from .config import ClientConfig, RetryPolicy
from .retry import RetryPlan, resolve_plan
from .telemetry.calls import SessionTelemetry

__all__ = [
    "create_connector",
    "is_sdk_middleware",
    "makes_spans",
    "middleware",
    "session_middleware",
]

Handler = Callable[[aiohttp.ClientRequest], Awaitable[aiohttp.ClientResponse]]
Middleware = Callable[[aiohttp.ClientRequest, Handler], Awaitable[aiohttp.ClientResponse]]
#: A timeout no attempt of the middleware reads (aiohttp's request has its own), for ``Call``.
_UNUSED_TIMEOUT: Final = aiohttp.ClientTimeout()
#: Every middleware the SDK built and that is still alive, and whether it makes spans: how the
#: zero-code instrumentation tells a session that already has one (no second pipeline around
#: the first, and no contrib spans beside its spans).
_BUILT: Final[weakref.WeakKeyDictionary[Middleware, bool]] = weakref.WeakKeyDictionary()


def create_connector(
    config: ClientConfig | None = None,
    *,
    meter_provider: metrics.MeterProvider | None = None,
) -> aiohttp.TCPConnector:
    """An ``aiohttp.TCPConnector`` tuned by ``config`` (default ``ClientConfig.from_env()``),
    whose pool the SDK observes: ``rh.pool_stats(connector)``, and the pool's metrics (open
    connections, acquisitions, pool wait, connection lifetimes) on ``meter_provider`` (default:
    the global one as it is now; none set = no metrics), as a ``ResilientSession`` reports them.

    Must be called with an event loop running, as aiohttp's own constructor requires::

        connector = rh.create_connector()
        async with aiohttp.ClientSession(
            connector=connector, middlewares=(rh.middleware(),)
        ) as session:
            ...
            print(rh.pool_stats(connector).active)
    """
    connector = pool.create_connector(config if config is not None else ClientConfig.from_env())
    SessionTelemetry(trace.NoOpTracerProvider(), meter_provider).report_pool(connector)
    return connector


def middleware(
    config: ClientConfig | None = None,
    *,
    retry: RetryPolicy | Any | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> Middleware:
    """An aiohttp client middleware with the SDK's retries, deadline, spans and metrics.

    ``config`` defaults to ``ClientConfig.from_env()``; ``retry`` is as ``ResilientSession``'s
    (a ``RetryPolicy``, ``False`` or an ``aiohttp_retry`` option). One middleware keeps one
    retry budget: give each session its own. Example::

        connector = rh.create_connector()
        async with aiohttp.ClientSession(
            connector=connector, middlewares=(rh.middleware(),)
        ) as session:
            async with session.get(url) as resp:
                ...
    """
    config = config if config is not None else ClientConfig.from_env()
    return session_middleware(
        config,
        resolve_plan(retry, RetryPlan(config.retry)),
        SessionTelemetry(tracer_provider, meter_provider),
    )


def session_middleware(
    config: ClientConfig, plan: RetryPlan | None, telemetry: SessionTelemetry
) -> Middleware:
    """``middleware()`` reporting to ``telemetry``, which the caller may share with the pool."""
    pipeline = assemble(
        config=config,
        plan=plan,
        listeners=SessionListeners(telemetry),
        send_attempt=_HandlerStage().send,
        can_hedge=False,  # one ClientRequest, one handler chain: an attempt cannot be copied
    )
    deadline = config.timeout.total

    async def resilient_http(
        request: aiohttp.ClientRequest, handler: Handler
    ) -> aiohttp.ClientResponse:
        method = request.method
        call = Call(
            method=method,
            url=request.url,
            target=request.url,
            kwargs={"headers": request.headers, "data": request.body},
            plan=plan if plan is not None and plan.covers(method) else None,
            idempotent=None,
            expires_at=time.monotonic() + deadline,
            timeout=_UNUSED_TIMEOUT,
            observer=None,
            exchange=(request, handler),
        )
        return await pipeline.run(call)

    _BUILT[resilient_http] = telemetry.tracer is not None
    return resilient_http


def is_sdk_middleware(candidate: object) -> bool:
    """Whether ``candidate`` is a middleware that ``middleware()`` built."""
    return _built(candidate) is not None


def makes_spans(candidate: object) -> bool:
    """Whether ``candidate`` is a middleware that ``middleware()`` built and that makes spans."""
    return _built(candidate) is True


def _built(candidate: object) -> bool | None:
    """Whether the middleware ``candidate`` makes spans; None when ``middleware()`` did not
    build it."""
    try:
        spans: bool | None = _BUILT.get(candidate)  # type: ignore[call-overload]
    except TypeError:  # unhashable, or not weakly referenceable: not ours
        return None
    return spans


class _HandlerStage:
    """One attempt: aiohttp's handler, sending the request down the rest of the chain."""

    def __init__(self) -> None:
        self._upstreams = UpstreamLabels()

    def send(self, call: Call, attempt: AttemptSpec) -> Awaitable[AttemptOutcome]:
        request, handler = call.exchange
        observer = call.observer
        started = 0.0
        if observer is not None:
            traced = observer.attempt_started(attempt.number, {"headers": request.headers})
            headers = traced["headers"]
            # The attempt's trace context, when a listener put it in headers of its own (the
            # recorder and the debug log hand the request's back: nothing to copy)
            if headers is not request.headers:
                for name, value in headers.items():
                    request.headers[name] = value
            started = time.perf_counter()
        return await_attempt(call, attempt, partial(handler, request), self._upstreams, started)
