"""The retry budget: how many retries an upstream may receive, so that retries cannot storm.

Per ``ResilientSession`` and upstream ``host:port``, over a sliding 10-second window:
retries allowed = ``budget_ratio`` x logical calls in the window + ``budget_min_per_second`` x 10.
The window is ten one-second buckets, so recording a call is O(1) and memory is fixed per
upstream; the windows of upstreams not called within the last window are let go once many are
kept (``_bounded.py``). Free retries of stale pooled connections are never charged here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from ._bounded import PRUNE_FROM, pruned

__all__ = ["WINDOW_SECONDS", "RetryBudget"]

WINDOW_SECONDS: Final = 10


class _Window:
    """Calls and retries per one-second bucket over the last ``WINDOW_SECONDS`` seconds."""

    __slots__ = ("calls", "retries", "second")

    def __init__(self, second: int) -> None:
        self.second = second
        self.calls = [0] * WINDOW_SECONDS
        self.retries = [0] * WINDOW_SECONDS

    def advance(self, second: int) -> None:
        """Move to ``second``, emptying the buckets of the seconds that left the window."""
        if second <= self.second:
            return
        stale = min(second - self.second, WINDOW_SECONDS)
        for step in range(1, stale + 1):
            slot = (self.second + step) % WINDOW_SECONDS
            self.calls[slot] = 0
            self.retries[slot] = 0
        self.second = second


class RetryBudget:
    """Counts calls and retries per upstream and says whether one more retry is allowed."""

    def __init__(
        self,
        ratio: float,
        min_per_second: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ratio = ratio
        self.min_per_second = min_per_second
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._prune_at = PRUNE_FROM

    def _window(self, upstream: str, second: int) -> _Window:
        window = self._windows.get(upstream)
        if window is None:
            if len(self._windows) >= self._prune_at:  # those that have emptied go
                self._windows, self._prune_at = pruned(
                    self._windows, lambda old: old.second <= second - WINDOW_SECONDS
                )
            window = self._windows[upstream] = _Window(second)
        elif window.second != second:  # every call passes here: most are in the same second
            window.advance(second)
        return window

    def record_call(self, upstream: str) -> None:
        """Count one logical call to ``upstream``."""
        second = int(self._clock())
        window = self._windows.get(upstream)  # every call passes here: _window() inlined
        if window is None or window.second != second:
            window = self._window(upstream, second)
        window.calls[second % WINDOW_SECONDS] += 1

    def allows_retry(self, upstream: str) -> bool:
        """Whether ``upstream`` may get one more retry now (nothing is charged)."""
        second = int(self._clock())
        window = self._window(upstream, second)
        allowed = self.ratio * sum(window.calls) + self.min_per_second * WINDOW_SECONDS
        return sum(window.retries) + 1 <= allowed

    def charge_retry(self, upstream: str) -> None:
        """Count one retry to ``upstream`` (after ``allows_retry`` said yes)."""
        second = int(self._clock())
        self._window(upstream, second).retries[second % WINDOW_SECONDS] += 1
