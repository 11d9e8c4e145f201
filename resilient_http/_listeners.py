"""Who listens to a session's calls: the observer each call reports its events to.

Telemetry (when the session's providers export anything), the DEBUG log (while the
``resilient_http`` logger is enabled for DEBUG) and the recorders of ``rh.testing.record()``
active in the calling context. A call nobody listens to gets no observer, and so reports
nothing and pays for nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import testing
from ._breaker import CircuitBreaker
from ._events import CallObserver, observe_all
from ._limiter import AdaptiveLimiter
from .telemetry.calls import NO_TRACE_IDS, SessionTelemetry
from .telemetry.debug_log import CallLog, log

__all__ = ["SessionListeners"]


class SessionListeners:
    """The ``Listeners`` of one session (``_pipeline.py``)."""

    __slots__ = ("_stop_watching", "_telemetry")

    def __init__(self, telemetry: SessionTelemetry | None) -> None:
        self._telemetry = telemetry if telemetry is not None and telemetry.exports else None
        self._stop_watching: list[Callable[[], object]] = []

    def watch_breaker(self, breaker: CircuitBreaker) -> None:
        """Report ``breaker``'s states (the breaker gauge) until ``close()``."""
        telemetry = self._telemetry
        if telemetry is not None and telemetry.instruments is not None:
            self._stop_watching.append(telemetry.instruments.breakers.register(breaker))

    def watch_limiter(self, limiter: AdaptiveLimiter) -> None:
        """Report ``limiter``'s limits (the concurrency gauge) until ``close()``."""
        telemetry = self._telemetry
        if telemetry is not None and telemetry.instruments is not None:
            self._stop_watching.append(telemetry.instruments.limiters.register(limiter))

    def close(self) -> None:
        """Stop reporting what ``watch_breaker`` and ``watch_limiter`` started (the session
        closed)."""
        while self._stop_watching:
            self._stop_watching.pop()()

    @property
    def exports(self) -> bool:
        """Whether the session's calls produce spans or metrics."""
        return self._telemetry is not None

    def may_listen(self) -> bool:
        """Whether a call started now might have a listener (False: certainly none)."""
        return (
            self._telemetry is not None
            or bool(testing.active_recorders())
            or log.isEnabledFor(logging.DEBUG)
        )

    def start_call(self, method: str, target: Any) -> CallObserver | None:
        """The observer of a call about to start, or None when nobody listens."""
        telemetry = self._telemetry
        recorders = testing.active_recorders()
        logging_on = log.isEnabledFor(logging.DEBUG)
        if telemetry is None and not recorders and not logging_on:
            return None
        observers: list[CallObserver] = []
        ids = _no_ids
        if telemetry is not None:
            call = telemetry.start_call(method, target)
            observers.append(call)
            ids = call.log_ids
        if logging_on:
            observers.append(CallLog(method, target, ids))
        observers.extend(recorders)
        return observe_all(observers)


def _no_ids() -> str:
    return NO_TRACE_IDS
