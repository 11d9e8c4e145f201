"""Testing mode for services that use the SDK: retries still happen and are counted, waits are 0.

>>> import resilient_http as rh
>>> with rh.testing.set_testing(True, attempts=2):
...     rh.testing.is_testing()
True
>>> rh.testing.is_testing()
False
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import TracebackType

__all__ = ["TestingHandle", "is_testing", "set_testing", "testing_attempts"]


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
    decisions, attempts, notes and telemetry stay as in production. ``attempts`` caps the number
    of charged attempts per call (``None`` keeps each policy's ``max_attempts``).
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
