"""Testing helpers for services that use the SDK: testing mode and an event recorder.

Testing mode: retries still happen and are counted, waits are 0.

>>> import resilient_http as rh
>>> with rh.testing.set_testing(True, attempts=2):
...     rh.testing.is_testing()
True
>>> rh.testing.is_testing()
False

The recorder sees the attempts, retries, suppressions and circuit breaker transitions and
rejections of every call made inside
``record()`` (in that task, and in tasks it starts), so a test asserts what the SDK decided
without reaching into its private state::

    with rh.testing.set_testing(True), rh.testing.record() as recorder:
        async with client.get(url) as resp:
            ...
    assert [r.reason for r in recorder.retries] == ["throttled"]
    assert [r.delay for r in recorder.retries] == [2.0]   # Retry-After, scheduled not slept
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

from ._events import (
    AttemptEvent,
    BreakerEvent,
    HedgeEvent,
    QueuedEvent,
    RejectionEvent,
    RetryEvent,
    SuppressionEvent,
)

__all__ = [
    "AttemptEvent",
    "BreakerEvent",
    "Event",
    "HedgeEvent",
    "QueuedEvent",
    "Recorder",
    "RejectionEvent",
    "RetryEvent",
    "SuppressionEvent",
    "TestingHandle",
    "active_recorders",
    "is_testing",
    "record",
    "set_testing",
    "testing_attempts",
]

Event = (
    AttemptEvent
    | RetryEvent
    | SuppressionEvent
    | BreakerEvent
    | RejectionEvent
    | QueuedEvent
    | HedgeEvent
)
"""Any event a ``Recorder`` records."""


@dataclass(frozen=True, slots=True)
class _TestingState:
    enabled: bool = False
    attempts: int | None = None


_lock = threading.Lock()
_state = _TestingState()


class TestingHandle:
    """Returned by ``set_testing``; as a context manager it restores the previous state."""

    __test__ = False  # not a pytest test class, whatever its name says

    def __init__(self, previous: _TestingState) -> None:
        self._previous = previous

    def __enter__(self) -> TestingHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _state
        with _lock:
            _state = self._previous


def set_testing(testing: bool, *, attempts: int | None = None) -> TestingHandle:
    """Turn testing mode on or off for the whole process.

    In testing mode every retry wait (backoff and ``Retry-After``) sleeps 0 seconds, while
    decisions, attempts, notes and telemetry stay as in production (events keep the wait that
    was scheduled). ``attempts`` caps the number of charged attempts per call (``None`` keeps
    each policy's ``max_attempts``).
    """
    global _state
    if attempts is not None and (isinstance(attempts, bool) or attempts < 1):
        from ._exceptions import ConfigError

        raise ConfigError(f"attempts={attempts!r}: expected a whole number >= 1 or None")
    with _lock:
        previous = _state
        _state = _TestingState(bool(testing), attempts if testing else None)
    return TestingHandle(previous)


def is_testing() -> bool:
    """Whether testing mode is on."""
    return _state.enabled


def testing_attempts() -> int | None:
    """The attempt cap of testing mode, or None."""
    return _state.attempts


class Recorder:
    """The events of the calls made inside ``record()``, in the order they happened.

    ``on_event``, if given, is called with each event as it is recorded (on the event loop),
    e.g. to set an ``asyncio.Event`` a test waits on.
    """

    __test__ = False

    def __init__(self, on_event: Callable[[Event], object] | None = None) -> None:
        self.events: list[Event] = []
        self._on_event = on_event

    @property
    def attempts(self) -> list[AttemptEvent]:
        """Every physical attempt that ended (with headers or an exception)."""
        return [event for event in self.events if isinstance(event, AttemptEvent)]

    @property
    def retries(self) -> list[RetryEvent]:
        """Every retry decided, with its reason and scheduled wait."""
        return [event for event in self.events if isinstance(event, RetryEvent)]

    @property
    def suppressions(self) -> list[SuppressionEvent]:
        """Every retryable failure that was not retried, with the reason."""
        return [event for event in self.events if isinstance(event, SuppressionEvent)]

    @property
    def breaker_changes(self) -> list[BreakerEvent]:
        """Every circuit breaker transition, at the call that caused it."""
        return [event for event in self.events if isinstance(event, BreakerEvent)]

    @property
    def rejections(self) -> list[RejectionEvent]:
        """Every call an open circuit breaker failed at once."""
        return [event for event in self.events if isinstance(event, RejectionEvent)]

    @property
    def hedges(self) -> list[HedgeEvent]:
        """Every hedge sent, with whether it won."""
        return [event for event in self.events if isinstance(event, HedgeEvent)]

    @property
    def queue_waits(self) -> list[QueuedEvent]:
        """Every wait under an upstream's adaptive concurrency limit."""
        return [event for event in self.events if isinstance(event, QueuedEvent)]

    def _add(self, event: Event) -> None:
        self.events.append(event)
        if self._on_event is not None:
            self._on_event(event)

    # The CallObserver protocol (``_events.py``): the recorder observes every call it sees.
    def attempt_started(
        self, number: int, kwargs: dict[str, Any], hedge: int = 0
    ) -> dict[str, Any]:
        """Part of the observer protocol: the arguments go on unchanged."""
        return kwargs

    def attempt_ended(self, event: AttemptEvent) -> None:
        """Part of the observer protocol: records the attempt."""
        self._add(event)

    def retried(self, event: RetryEvent) -> None:
        """Part of the observer protocol: records the retry."""
        self._add(event)

    def suppressed(self, event: SuppressionEvent) -> None:
        """Part of the observer protocol: records the suppression."""
        self._add(event)

    def breaker_changed(self, event: BreakerEvent) -> None:
        """Part of the observer protocol: records the transition."""
        self._add(event)

    def rejected(self, event: RejectionEvent) -> None:
        """Part of the observer protocol: records the rejection."""
        self._add(event)

    def queued(self, event: QueuedEvent) -> None:
        """Part of the observer protocol: records the wait."""
        self._add(event)

    def hedged(self, event: HedgeEvent) -> None:
        """Part of the observer protocol: records the hedge."""
        self._add(event)

    def finished(self, status: int | None, error: BaseException | None) -> None:
        """Part of the observer protocol: nothing to record."""


@contextlib.contextmanager
def record(on_event: Callable[[Event], object] | None = None) -> Iterator[Recorder]:
    """Record the events of the calls started inside this block (nested blocks each record)."""
    recorder = Recorder(on_event)
    token = _RECORDERS.set((*_RECORDERS.get(), recorder))
    try:
        yield recorder
    finally:
        _RECORDERS.reset(token)


_RECORDERS: Final[ContextVar[tuple[Recorder, ...]]] = ContextVar(
    "resilient_http_recorders", default=()
)
active_recorders: Final[Callable[[], tuple[Recorder, ...]]] = _RECORDERS.get
"""The recorders of the current context (the SDK's listeners ask at each call's start)."""
