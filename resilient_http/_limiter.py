"""Adaptive concurrency: an attempt strategy that bounds attempts in flight per upstream.

``RESILIENT_HTTP_CONCURRENCY=adaptive`` (shared/SPEC.md, "Resilience strategies beyond
retries"). Each upstream (``host:port``) gets a limit between 1 and the pool's per-host limit,
AIMD as in TCP congestion control, Netflix concurrency-limits' ``AIMDLimit`` and the AWS SDKs'
adaptive retry mode:

- **multiplicative decrease** of what was in flight (x ``FIRST_DECREASE`` the first time, when
  the limit is still a guess, then x ``DECREASE``) when an attempt is throttled (429, or 503 with
  ``Retry-After``) or when latency rises (the recent average of successful attempts above
  ``LATENCY_TOLERANCE`` x the long-run average). At most once per round trip: an attempt that
  started before the last decrease cannot lower the limit again, so a burst of throttled answers
  to one window of calls counts once (TCP's rule for one loss window).
- **additive increase** of about one per limit's worth of successful attempts (+1/limit each),
  only while the limit is in use (at least half of it in flight), so an idle upstream's limit
  does not drift up unearned; past the limit that was last too many (the plateau) growth slows to
  ``PLATEAU_STEP`` of that, as CUBIC creeps near its last maximum, since each probe past it costs
  throttled attempts.

Why AIMD rather than Vegas or Gradient2: throttling is the signal the SPEC names first, and AIMD
reacts to it directly and predictably; the latency rule adds Gradient2's one useful idea (a short
average against a long one) without its queue-size guess, which needs a stable no-load RTT that
a shared upstream rarely gives. The AWS SDK's CUBIC-based limiter rates requests per second
rather than bounding concurrency, which is the pool's own unit here.

An attempt over the limit waits in FIFO order; the wait is reported as pool wait. The limit starts
at the ceiling, so a healthy upstream sees the static behaviour.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import Final

import aiohttp

from ._events import QueuedEvent
from ._per_upstream import PerUpstream
from ._pipeline import AttemptHandler, AttemptOutcome, AttemptSpec, Call
from .config import THROTTLING_STATUSES
from .retry import asks_for_less_load

__all__ = [
    "DECREASE",
    "FIRST_DECREASE",
    "LATENCY_TOLERANCE",
    "PLATEAU_STEP",
    "AdaptiveLimiter",
    "UpstreamLimit",
]

DECREASE: Final = 0.9
#: The first decrease: nothing is known of the upstream's capacity yet.
FIRST_DECREASE: Final = 0.5
#: Growth near the plateau, as a share of the usual +1 per window.
PLATEAU_STEP: Final = 0.1
LATENCY_TOLERANCE: Final = 2.0
# A machine's own hiccups (a busy core, a GC pause) raise a few attempts' latency at once: the
# recent average spans about 20 attempts so that only a sustained rise counts.
_SHORT_WEIGHT: Final = 0.05  # the recent average: about the last 20 attempts
_LONG_WEIGHT: Final = 0.002  # the long-run average: about the last 500 attempts
_WARMED_UP: Final = 100  # attempts before the latency rule may act


class UpstreamLimit:
    """One upstream's limit, its attempts in flight and the attempts queued for a place."""

    __slots__ = (
        "_limit",
        "_long",
        "_samples",
        "_short",
        "ceiling",
        "decreased_at",
        "host",
        "in_flight",
        "places",
        "plateau",
        "port",
        "waiters",
    )

    def __init__(self, ceiling: int, host: str, port: int | None) -> None:
        self.ceiling = ceiling
        self.host = host
        self.port = port
        self._limit = float(ceiling)
        #: attempts that may be in flight now: the limit, whole and at least 1 (kept beside it,
        #: as every attempt reads it)
        self.places = max(1, ceiling)
        self.in_flight = 0
        self.decreased_at = float("-inf")
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        #: the limit when it was last lowered (too many); growth slows down near it
        self.plateau = float("inf")
        self._short = 0.0
        self._long = 0.0
        self._samples = 0

    @property
    def limit(self) -> float:
        """The limit, between 1 and the ceiling (``places`` is its whole part)."""
        return self._limit

    @limit.setter
    def limit(self, limit: float) -> None:
        self._limit = limit
        self.places = max(1, int(limit))

    def release(self) -> None:
        """An attempt left: wake the next queued one while there is room."""
        self.in_flight -= 1
        while self.waiters and self.in_flight < self.places:
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.in_flight += 1  # the place is handed over, not raced for
                waiter.set_result(None)

    def adjust(self, throttled: bool, succeeded: bool, started: float, now: float) -> None:
        """Apply one attempt's outcome (``started``/``now``: when it began and ended)."""
        if throttled:
            self._decrease(started, now)
            return
        if not succeeded:
            return  # errors and other statuses say nothing about load here
        latency = now - started
        if self._samples == 0:
            self._short = self._long = latency
        else:
            self._short += _SHORT_WEIGHT * (latency - self._short)
            self._long += _LONG_WEIGHT * (latency - self._long)
        self._samples += 1
        if self._samples >= _WARMED_UP and self._short > LATENCY_TOLERANCE * self._long:
            self._decrease(started, now)
        elif self._limit < self.ceiling and self.in_flight + 1 >= self._limit / 2:
            # in use: earn one more place per window; near the limit that was last too many,
            # creep (as CUBIC does near its last maximum): each probe past it costs throttled
            # attempts
            step = PLATEAU_STEP if self._limit >= self.plateau else 1.0
            self.limit = min(float(self.ceiling), self._limit + step / self._limit)

    def _decrease(self, started: float, now: float) -> None:
        if started < self.decreased_at:
            return  # sent before the last decrease: the same congestion, already answered
        # from what was in flight (this attempt included), not from an unused limit: a limit
        # far above the calls made would take many round trips to come down (TCP halves its
        # flight size, not its window)
        first = self.plateau == float("inf")
        self.plateau = min(self.limit, float(self.in_flight + 1))
        # the first time, the limit is a guess (the ceiling): halve it, as TCP leaves slow
        # start; after that the plateau is known and gentle cuts keep goodput up
        self.limit = max(1.0, self.plateau * (FIRST_DECREASE if first else DECREASE))
        self.decreased_at = now


def call_label(upstream: UpstreamLimit) -> str:
    """``host:port`` of ``upstream``."""
    return f"{upstream.host}:{upstream.port}" if upstream.port is not None else upstream.host


class AdaptiveLimiter:
    """The adaptive limits of one session, one ``UpstreamLimit`` per upstream."""

    def __init__(self, ceiling: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ceiling = ceiling
        self._clock = clock
        self._limits = PerUpstream(
            lambda label, host, port: UpstreamLimit(ceiling, host, port),
            # nothing in flight or queued, and a limit that has not been lowered
            lambda limit: not limit.in_flight and not limit.waiters and limit.limit >= ceiling,
        )
        self._send: AttemptHandler | None = None

    def limits(self) -> list[UpstreamLimit]:
        """Every upstream's limit (a copy of the list: telemetry reads it from its thread)."""
        return self._limits.values()

    def bind(self, send: AttemptHandler) -> AttemptHandler:
        """The attempt handler that holds each attempt to its upstream's limit."""
        self._send = send
        return self.send

    async def send(self, call: Call, attempt: AttemptSpec) -> AttemptOutcome:
        """Wait for a place under the upstream's limit, make the attempt, adjust the limit."""
        send = self._send
        assert send is not None, "bind() first"
        limits = self._limits
        upstream = limits.by_target.get(call.target) or limits.add(call.target)
        if upstream.in_flight < upstream.places and not upstream.waiters:
            upstream.in_flight += 1
        else:
            timed_out = await self._queue(call, upstream)
            if timed_out is not None:  # never sent: an outcome the retries read as such
                return AttemptOutcome(None, timed_out, call_label(upstream), None)
        started = self._clock()
        try:
            outcome = await send(call, attempt)
        finally:
            upstream.release()
        response = outcome.response
        if response is None:
            upstream.adjust(False, False, started, self._clock())
        else:
            status = response.status
            upstream.adjust(
                # a request for less load (the statuses that cannot be one ruled out first)
                status in THROTTLING_STATUSES and asks_for_less_load(status, response.headers),
                status < 500,
                started,
                self._clock(),
            )
        return outcome

    async def _queue(self, call: Call, upstream: UpstreamLimit) -> Exception | None:
        """Wait for a place: None once given one, else the error the attempt ends with.

        The wait is bounded as aiohttp bounds a wait for a pooled connection (this queue is
        one): by the attempt's ``connect`` and ``total`` timeouts, and by the call's deadline.
        The error is aiohttp's for that wait, ``ConnectionTimeoutError`` (an
        ``asyncio.TimeoutError``): the request was never sent."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        upstream.waiters.append(waiter)
        queued_at = time.perf_counter()
        timeouts = call.timeout
        bounds = (call.expires_at - self._clock(), timeouts.connect, timeouts.total)
        try:
            async with asyncio.timeout(min(b for b in bounds if b is not None)):
                await waiter
        except BaseException as stopped:
            if waiter.done() and not waiter.cancelled():
                upstream.release()  # given a place just as it stopped waiting: pass it on
            if not isinstance(stopped, TimeoutError):  # cancelled: the call ends
                raise
            return aiohttp.ConnectionTimeoutError(
                f"Connection timeout to host {call_label(upstream)} (queued under its "
                "adaptive concurrency limit)"
            )
        finally:
            if call.observer is not None:
                waited = time.perf_counter() - queued_at
                call.observer.queued(QueuedEvent(call.method, call_label(upstream), waited))
        return None
