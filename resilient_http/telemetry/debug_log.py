"""DEBUG lines for logical calls: one per attempt, retry, suppression, breaker transition and
breaker rejection.

A ``CallObserver`` of the event channel (``_events.py``), started for a call only while the
``resilient_http`` logger is enabled for DEBUG. Each line carries the call's trace and span ids
when the call is traced, so a line can be found in its trace. URLs are redacted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from .._events import (
    AttemptEvent,
    BreakerEvent,
    HedgeEvent,
    QueuedEvent,
    RejectionEvent,
    RetryEvent,
    SuppressionEvent,
)
from .redact import redact_url

__all__ = ["CallLog", "log"]

log: Final = logging.getLogger("resilient_http")


class CallLog:
    """The DEBUG lines of one call; ``ids()`` gives its ``trace_id=... span_id=...``."""

    __slots__ = ("_ids", "_method", "_url")

    def __init__(self, method: str, url: Any, ids: Callable[[], str]) -> None:
        self._method = method
        self._url = redact_url(url)
        self._ids = ids

    def attempt_started(
        self, number: int, kwargs: dict[str, Any], hedge: int = 0
    ) -> dict[str, Any]:
        """Nothing to log before the outcome."""
        return kwargs

    def attempt_ended(self, event: AttemptEvent) -> None:
        """``attempt method=... url=... attempt=N outcome=... duration_ms=...``."""
        outcome = event.status if event.error is None else type(event.error).__qualname__
        log.debug(
            "attempt method=%s url=%s attempt=%d outcome=%s duration_ms=%.3f reused=%s %s",
            self._method,
            self._url,
            event.number,
            outcome,
            event.duration * 1000,
            event.reused,
            self._ids(),
        )

    def retried(self, event: RetryEvent) -> None:
        """``retry: METHOD URL attempt N REASON, waiting S s``."""
        log.debug(
            "retry: %s %s attempt %d %s, waiting %.3f s%s %s",
            self._method,
            self._url,
            event.attempt,
            event.reason,
            event.delay,
            " (free, new connection)" if event.free else "",
            self._ids(),
        )

    def suppressed(self, event: SuppressionEvent) -> None:
        """``retry suppressed: METHOD UPSTREAM (REASON)``."""
        log.debug(
            "retry suppressed: %s %s (%s) %s",
            self._method,
            event.upstream,
            event.reason,
            self._ids(),
        )

    def breaker_changed(self, event: BreakerEvent) -> None:
        """``circuit breaker UPSTREAM: PREVIOUS -> STATE``, with the window's counts on opening."""
        counts = f" ({event.failures} of {event.calls} calls failed)" if event.calls else ""
        log.debug(
            "circuit breaker %s: %s -> %s%s %s",
            event.upstream,
            event.previous,
            event.state,
            counts,
            self._ids(),
        )

    def rejected(self, event: RejectionEvent) -> None:
        """``circuit open: METHOD UPSTREAM rejected, next probe in S s``."""
        log.debug(
            "circuit open: %s %s rejected, next probe in %.3f s %s",
            self._method,
            event.upstream,
            event.retry_in,
            self._ids(),
        )

    def hedged(self, event: HedgeEvent) -> None:
        """``hedge: METHOD URL attempt N hedge K won|lost``."""
        log.debug(
            "hedge: %s %s attempt %d hedge %d %s %s",
            self._method,
            self._url,
            event.attempt,
            event.hedge,
            "won" if event.won else "lost",
            self._ids(),
        )

    def queued(self, event: QueuedEvent) -> None:
        """``concurrency wait upstream=... seconds=...``, as the pool's own waits are logged."""
        log.debug(
            "concurrency wait upstream=%s seconds=%.6f %s",
            event.upstream,
            event.seconds,
            self._ids(),
        )

    def finished(self, status: int | None, error: BaseException | None) -> None:
        """The call's end is the last attempt's line; nothing more."""
