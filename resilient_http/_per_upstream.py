"""One state object per upstream (``host:port``), for the strategies that keep one.

The circuit breaker, the adaptive limiter and hedging each keep their state per upstream and
look it up on every call. ``PerUpstream.by_target`` maps the URL as the caller gave it straight
to that state, so the common case is one dict lookup; ``add`` handles a URL seen for the first
time (its label parsed once, the state made once per upstream).

Bounded as ``_bounded.py`` says: ``forgettable`` tells a state as good as new (nothing in
flight, nothing learned that a new state would not learn again).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

from yarl import URL

from ._attempt import UpstreamLabels
from ._bounded import PRUNE_FROM, pruned

__all__ = ["PerUpstream"]

_T = TypeVar("_T")
_TARGET_CACHE_SIZE: Final = 1024


def _never(state: object) -> bool:
    return False


class PerUpstream(Generic[_T]):
    """``make(label, host, port)`` once per upstream; found again by URL."""

    __slots__ = ("_by_label", "_forgettable", "_labels", "_make", "_prune_at", "by_target")

    def __init__(
        self,
        make: Callable[[str, str, int | None], _T],
        forgettable: Callable[[_T], bool] = _never,
    ) -> None:
        self._make = make
        self._forgettable = forgettable
        self._prune_at = PRUNE_FROM
        self._labels = UpstreamLabels()
        self._by_label: dict[str, _T] = {}
        #: the URL as the caller gave it -> its upstream's state (bounded: services call few URLs)
        self.by_target: dict[Any, _T] = {}

    def add(self, target: Any) -> _T:
        """The state of ``target``'s upstream, made if it is the first URL of it."""
        label = self._labels.of(target)
        state = self._by_label.get(label)
        if state is None:
            try:
                url = target if isinstance(target, URL) else URL(str(target))
                host, port = url.host or "", url.port
            except (TypeError, ValueError):
                host, port = label.rpartition(":")[0], None
            if len(self._by_label) >= self._prune_at:
                self._by_label, self._prune_at = pruned(self._by_label, self._forgettable)
                self.by_target.clear()  # it may lead to a state let go
            state = self._by_label[label] = self._make(label, host, port)
        if len(self.by_target) >= _TARGET_CACHE_SIZE:
            self.by_target.clear()
        self.by_target[target] = state
        return state

    def of(self, target: Any) -> _T:
        """The state of ``target``'s upstream."""
        return self.by_target.get(target) or self.add(target)

    def values(self) -> list[_T]:
        """Every upstream's state (a copy: telemetry reads it from its own thread)."""
        return list(self._by_label.values())
