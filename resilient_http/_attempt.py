"""The innermost stages: pool and attempt timeout. One physical attempt through aiohttp.

Each attempt is one public ``ClientSession.request`` call (so aiohttp's trace signals and its
client middlewares see every attempt), with aiohttp's own ``ClientTimeout``: the template's
``connect`` and ``sock_read`` as they are, and ``total`` cut to the time left before the call's
deadline, so the deadline also bounds reading the final response's body (aiohttp keeps the total
timer running until the body is read). Timeouts fire when aiohttp says they do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Final

import aiohttp
from yarl import URL

from ._events import AttemptEvent
from ._pipeline import AttemptOutcome, AttemptSpec, Call
from ._pool_state import ATTEMPT_RECORD, AttemptRecord, upstream_label

__all__ = ["AttemptStage", "UpstreamLabels", "attempt_timeout", "await_attempt", "upstream_of"]

#: An attempt made with the deadline already (nearly) past still gets this long, so that it
#: fails as aiohttp's own timeout does rather than with an error of ours.
_SHORTEST: Final = 0.001
#: A template whose total is within this of the time left is used as it is (no new timeout
#: object per call when the total equals the deadline, the default): an attempt may then end
#: this much past the deadline. aiohttp itself rounds totals of 5 s and more up to the second.
_TOLERANCE: Final = 0.001
_UPSTREAM_CACHE_SIZE: Final = 1024


def attempt_timeout(template: aiohttp.ClientTimeout, left: float) -> aiohttp.ClientTimeout:
    """``template`` with its ``total`` cut to the ``left`` seconds before the deadline."""
    total = template.total
    if total is not None and 0 < total <= left + _TOLERANCE:
        return template
    return aiohttp.ClientTimeout(
        total=max(left, _SHORTEST),
        connect=template.connect,
        sock_read=template.sock_read,
        sock_connect=template.sock_connect,
        ceil_threshold=template.ceil_threshold,
    )


class AttemptStage:
    """Sends physical attempts through one ``aiohttp.ClientSession``."""

    __slots__ = ("_clock", "_session", "_upstreams")

    def __init__(
        self, session: aiohttp.ClientSession, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._session = session
        self._clock = clock
        self._upstreams = UpstreamLabels()

    def send(self, call: Call, attempt: AttemptSpec) -> Awaitable[AttemptOutcome]:
        """Make the attempt; a failure is returned as a value (cancellation propagates).

        A plain function returning ``await_attempt``'s coroutine: every attempt passes here,
        and a coroutine of its own would only add a frame to every resumption."""
        observer = call.observer
        kwargs = call.kwargs
        started = 0.0
        if observer is not None:
            kwargs = observer.attempt_started(attempt.number, kwargs, attempt.hedge)
            started = time.perf_counter()
        timeout = attempt_timeout(call.timeout, call.expires_at - self._clock())
        # Bound now, called in await_attempt: a request coroutine made here would be left
        # unawaited when the attempt is cancelled before it starts (a hedge, at once outrun).
        sending = partial(self._session.request, call.method, call.url, timeout=timeout, **kwargs)
        return await_attempt(call, attempt, sending, self._upstreams, started)


async def await_attempt(
    call: Call,
    attempt: AttemptSpec,
    sending: Callable[[], Awaitable[aiohttp.ClientResponse]],
    upstreams: UpstreamLabels,
    started: float,
) -> AttemptOutcome:
    """Send attempt ``attempt`` of ``call`` with ``sending()`` (called here, so that even an
    error raised at once is the attempt's outcome): the connector learns whether it wants a
    fresh connection and notes the one it gave, and the outcome (``started``: the
    ``perf_counter`` it began at) goes to the call's observer."""
    record = AttemptRecord(attempt.fresh)
    token = ATTEMPT_RECORD.set(record)
    received: aiohttp.ClientResponse | None = None
    failure: Exception | None = None
    try:
        received = await sending()
    except Exception as error:
        failure = error
    except asyncio.CancelledError as cancelled:
        # the call was cancelled, or a hedge answered first: the attempt did go out, and ends
        # here (its span and duration say so) before the cancellation goes on
        _report(call, attempt, record, upstreams, None, cancelled, started)
        raise
    finally:
        ATTEMPT_RECORD.reset(token)
    return _report(call, attempt, record, upstreams, received, failure, started)


def _report(
    call: Call,
    attempt: AttemptSpec,
    record: AttemptRecord,
    upstreams: UpstreamLabels,
    received: aiohttp.ClientResponse | None,
    failure: BaseException | None,
    started: float,
) -> AttemptOutcome:
    """The attempt's outcome, told to the call's observer."""
    upstream, reused = record.acquired or (upstreams.of(call.target), record.reused)
    observer = call.observer
    if observer is not None:
        observer.attempt_ended(
            AttemptEvent(
                method=call.method,
                upstream=upstream,
                number=attempt.number,
                status=received.status if received is not None else None,
                error=failure,
                reused=reused,
                fresh=attempt.fresh,
                duration=time.perf_counter() - started,
                hedge=attempt.hedge,
                connection=record.connection,
            )
        )
    error = failure if isinstance(failure, Exception) else None
    return AttemptOutcome(received, error, upstream, reused)


class UpstreamLabels:
    """``host:port`` of absolute URLs, for failures before any connection was acquired
    (cached: services call few distinct URLs)."""

    __slots__ = ("_labels",)

    def __init__(self) -> None:
        self._labels: dict[str, str] = {}

    def of(self, url: Any) -> str:
        """The label of ``url``."""
        key = str(url)
        found = self._labels.get(key)
        if found is None:
            found = upstream_of(url)
            if len(self._labels) >= _UPSTREAM_CACHE_SIZE:
                self._labels.clear()
            self._labels[key] = found
        return found


def upstream_of(url: Any) -> str:
    """``host:port`` of ``url`` (``unknown:0`` when it has none)."""
    try:
        parsed = url if isinstance(url, URL) else URL(str(url))
    except (ValueError, TypeError):
        return "unknown:0"
    return upstream_label(parsed.host or "unknown", parsed.port)
