"""The one event channel of a logical call: what happened, for whoever listens.

Every strategy of the pipeline reports here and nowhere else: attempts (by the attempt stage),
retries and suppressions (by the retry loop), breaker transitions and rejections (by the
circuit breaker), and later hedges. The
listeners implement ``CallObserver``: telemetry (spans and metrics, ``telemetry/calls.py``),
the DEBUG log (``telemetry/debug_log.py``) and the public test recorder (``rh.testing``).
A call with no listener gets no observer at all, so it pays for nothing here.

Events are frozen: a listener may keep them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ._pool_state import ConnectionUse

__all__ = [
    "AttemptEvent",
    "BreakerEvent",
    "CallObserver",
    "HedgeEvent",
    "QueuedEvent",
    "RejectionEvent",
    "RetryEvent",
    "SuppressionEvent",
    "observe_all",
]


@dataclass(frozen=True, slots=True)
class AttemptEvent:
    """One physical attempt ended: with a response's headers, or with an exception."""

    method: str
    upstream: str
    """``host:port`` of the connection it used (of the URL when none was acquired)."""
    number: int
    """Physical attempt number, from 1."""
    status: int | None
    """The response's status code; None when the attempt raised."""
    error: BaseException | None
    """What the attempt raised; None when a response arrived."""
    reused: bool | None
    """Whether its connection came from the pool (None: no connection was acquired)."""
    fresh: bool
    """Sent on a newly opened connection on purpose (the free retry of a stale one)."""
    duration: float
    """Seconds from sending to the response's headers (or the failure)."""
    hedge: int = 0
    """0, or k for the k-th hedge of attempt ``number`` (sent beside it)."""
    connection: ConnectionUse | None = None
    """The connection's idle time, request count and the upstream's connections in use, as
    the pool saw them when it handed the connection out (None: not known)."""

    @property
    def error_type(self) -> str | None:
        """``error.type`` as semconv spells it: the exception class or a status >= 400."""
        if self.error is not None:
            return type(self.error).__qualname__
        if self.status is not None and self.status >= 400:
            return str(self.status)
        return None


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """A retry was decided: the next attempt follows after ``delay`` seconds."""

    method: str
    upstream: str
    attempt: int
    """The physical attempt that failed."""
    reason: str
    """``resilient_http.retry.reason``: connection_closed, connect_error, timeout, ..."""
    delay: float
    """Seconds the retry waits (scheduled; testing mode sleeps 0 instead)."""
    error_type: str
    """The failed attempt's exception class name, or its status code."""
    free: bool
    """A stale pooled connection's retry: charged to neither the budget nor ``max_attempts``."""


@dataclass(frozen=True, slots=True)
class SuppressionEvent:
    """A retryable failure was returned or raised as it was, and why."""

    method: str
    upstream: str
    attempt: int
    reason: str
    """``resilient_http.suppression.reason``: budget, deadline, not_idempotent, ..."""


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    """An upstream's circuit breaker changed state, at this call (which it let through or
    rejected)."""

    method: str
    upstream: str
    previous: str
    """``closed``, ``open`` or ``half_open``."""
    state: str
    """The state it is in now."""
    failures: int
    """Failed calls in the window when it opened (0 for other transitions)."""
    calls: int
    """Calls in the window when it opened (0 for other transitions)."""


@dataclass(frozen=True, slots=True)
class RejectionEvent:
    """An open circuit breaker failed the call at once with ``CircuitOpenError``."""

    method: str
    upstream: str
    retry_in: float
    """Seconds until the breaker lets a probe through (0: probes are in flight)."""


@dataclass(frozen=True, slots=True)
class HedgeEvent:
    """A hedge was sent beside an attempt that had no answer yet; reported when they ended."""

    method: str
    upstream: str
    attempt: int
    """The physical attempt it was sent beside."""
    hedge: int
    """Which hedge of that attempt (1 = the first)."""
    won: bool
    """Its answer was the one used; the others were cancelled."""


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """An attempt waited for a place under its upstream's adaptive concurrency limit."""

    method: str
    upstream: str
    seconds: float
    """How long it waited (reported as pool wait)."""


class CallObserver(Protocol):
    """Listens to one logical call. Called on the event loop, in the call's task."""

    def attempt_started(
        self, number: int, kwargs: dict[str, Any], hedge: int = 0
    ) -> dict[str, Any]:
        """Attempt ``number`` (its ``hedge``-th hedge when > 0) is about to be sent with
        ``kwargs`` (aiohttp's request arguments); returns them, possibly with headers added
        (trace context)."""
        ...

    def attempt_ended(self, event: AttemptEvent) -> None:
        """The attempt ended: headers received, or it raised."""
        ...

    def retried(self, event: RetryEvent) -> None:
        """A retry follows."""
        ...

    def suppressed(self, event: SuppressionEvent) -> None:
        """A retryable failure was not retried."""
        ...

    def breaker_changed(self, event: BreakerEvent) -> None:
        """The upstream's circuit breaker changed state at this call."""
        ...

    def rejected(self, event: RejectionEvent) -> None:
        """The call was failed at once by an open circuit breaker."""
        ...

    def queued(self, event: QueuedEvent) -> None:
        """An attempt waited under the upstream's adaptive concurrency limit."""
        ...

    def hedged(self, event: HedgeEvent) -> None:
        """A hedge of one of the call's attempts ended, as the winner or not."""
        ...

    def finished(self, status: int | None, error: BaseException | None) -> None:
        """The logical call ended, with the response's status or the exception raised."""
        ...


def observe_all(observers: Sequence[CallObserver]) -> CallObserver | None:
    """One observer for all of ``observers`` (None when there are none)."""
    if not observers:
        return None
    if len(observers) == 1:
        return observers[0]
    return _FanOut(tuple(observers))


class _FanOut:
    """Several observers as one, called in order."""

    __slots__ = ("_observers",)

    def __init__(self, observers: tuple[CallObserver, ...]) -> None:
        self._observers = observers

    def attempt_started(
        self, number: int, kwargs: dict[str, Any], hedge: int = 0
    ) -> dict[str, Any]:
        for observer in self._observers:
            kwargs = observer.attempt_started(number, kwargs, hedge)
        return kwargs

    def attempt_ended(self, event: AttemptEvent) -> None:
        for observer in self._observers:
            observer.attempt_ended(event)

    def retried(self, event: RetryEvent) -> None:
        for observer in self._observers:
            observer.retried(event)

    def suppressed(self, event: SuppressionEvent) -> None:
        for observer in self._observers:
            observer.suppressed(event)

    def breaker_changed(self, event: BreakerEvent) -> None:
        for observer in self._observers:
            observer.breaker_changed(event)

    def rejected(self, event: RejectionEvent) -> None:
        for observer in self._observers:
            observer.rejected(event)

    def queued(self, event: QueuedEvent) -> None:
        for observer in self._observers:
            observer.queued(event)

    def hedged(self, event: HedgeEvent) -> None:
        for observer in self._observers:
            observer.hedged(event)

    def finished(self, status: int | None, error: BaseException | None) -> None:
        for observer in self._observers:
            observer.finished(status, error)
