"""Metric streams grouped the way the report needs them: by report row and by host.

A report row is ``(server.address, server.port, http.request.method)`` (the method only when
rows are split by method and the stream has one); pool metrics are per host
``(server.address, server.port)``. ``model.py`` turns the groups into figures.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from resilient_http.analysis import names
from resilient_http.analysis.metrics import MetricStore, Stream
from resilient_http.analysis.spans import UpstreamKey
from resilient_http.analysis.stats import BucketHistogram

__all__ = ["HostKey", "MetricView", "Resilience", "port_number"]

HostKey = tuple[str, int | None]


#: Time slices the adaptive limit over time is told in (a short series, not every export).
LIMIT_SLICES = 8

RESILIENCE_METRICS = (
    names.BREAKER_REJECTED,
    names.BREAKER_STATE,
    names.HEDGES,
    names.CONCURRENCY_LIMIT,
)


class Resilience:
    """What the circuit breaker, adaptive concurrency and hedging did for one host."""

    __slots__ = (
        "breaker_opened",
        "breaker_rejected",
        "hedges",
        "limit_last",
        "limit_low",
        "limit_points",
    )

    def __init__(self) -> None:
        self.breaker_rejected: float | None = None
        #: whether any export saw the breaker open (the gauge is sampled: a short opening
        #: between two exports shows in the rejections only)
        self.breaker_opened: bool | None = None
        self.hedges: dict[str, float] = {}
        self.limit_low: float | None = None
        self.limit_last: float | None = None
        #: (Unix ns, limit) of every export of the concurrency limit gauge
        self.limit_points: list[tuple[int, float]] = []

    def add(self, stream: Stream) -> None:
        """Fold one stream of the resilience metrics in."""
        name, attributes = stream.name, stream.attributes
        if name == names.BREAKER_REJECTED:
            self.breaker_rejected = (self.breaker_rejected or 0.0) + stream.value
        elif name == names.BREAKER_STATE:
            if attributes.get(names.BREAKER_STATE) == "open":
                self.breaker_opened = bool(self.breaker_opened) or stream.peak >= 1
        elif name == names.HEDGES:
            outcome = str(attributes.get(names.HEDGE_OUTCOME, "unknown"))
            self.hedges[outcome] = self.hedges.get(outcome, 0.0) + stream.value
        elif name == names.CONCURRENCY_LIMIT:
            low = stream.low if self.limit_low is None else min(self.limit_low, stream.low)
            self.limit_low, self.limit_last = low, stream.value
            self.limit_points.extend(stream.series or ())

    def limit_over_time(self, slices: int = LIMIT_SLICES) -> list[tuple[float, float]]:
        """The concurrency limit over the time its gauge was exported, in at most ``slices``
        equal time slices: (seconds since the first export, the limit at the end of the
        slice), after the first export's, with repeats of one value dropped; empty without a
        series."""
        points = sorted(self.limit_points)
        if not points:
            return []
        first, last = points[0][0], points[-1][0]
        width = (last - first) / slices or 1
        ends: dict[int, tuple[int, float]] = {}
        for time, limit in points:
            ends[min(int((time - first) / width), slices - 1)] = (time, limit)
        over_time = [(0.0, points[0][1])]  # where it started
        for time, limit in (ends[index] for index in sorted(ends)):
            if over_time[-1][1] != limit:
                over_time.append(((time - first) / 1e9, limit))
        return over_time


class MetricView:
    """Metric streams grouped by report row (address, port, method) and by host."""

    def __init__(self, store: MetricStore, split_method: bool) -> None:
        self.split_method = split_method
        self.calls = self._hists(store.by_name(names.CALL_DURATION))
        self.attempts = self._hists(store.by_name(names.ATTEMPT_DURATION))
        self.retries: dict[UpstreamKey, dict[str, float]] = {}
        for stream in store.by_name(names.RETRIES):
            key = self.row_key(stream.attributes)
            if key is not None:
                reason = str(stream.attributes.get(names.RETRY_REASON, "unknown"))
                counts = self.retries.setdefault(key, {})
                counts[reason] = counts.get(reason, 0.0) + stream.value
        self.call_hosts = {(k[0], k[1]) for k in self.calls}
        self.attempt_hosts = {(k[0], k[1]) for k in self.attempts}
        self.request_hosts = {(k[0], k[1]) for k in self.retries} | self.call_hosts
        self.request_hosts |= self.attempt_hosts
        # Hosts whose request metrics carry no method: spans of those hosts are not split either.
        self.unsplit_hosts = {
            host
            for host in self.request_hosts
            if not any(
                k[2] is not None and (k[0], k[1]) == host for k in (*self.calls, *self.attempts)
            )
        }
        self.suppressed: dict[HostKey | None, dict[str, float]] = {}
        for stream in store.by_name(names.RETRIES_SUPPRESSED):
            host = self.host_key(stream.attributes)
            reason = str(stream.attributes.get(names.SUPPRESSION_REASON, "unknown"))
            counts = self.suppressed.setdefault(host, {})
            counts[reason] = counts.get(reason, 0.0) + stream.value
        self.pool_wait: dict[HostKey, BucketHistogram] = {}
        for stream in store.by_name(names.POOL_WAIT):
            host = self.host_key(stream.attributes)
            if host is not None and stream.hist is not None:
                self.pool_wait.setdefault(host, BucketHistogram()).merge(stream.hist)
        self.acquired: dict[HostKey, list[Stream]] = {}
        for stream in store.by_name(names.CONNECTIONS_ACQUIRED):
            host = self.host_key(stream.attributes)
            if host is not None:
                self.acquired.setdefault(host, []).append(stream)
        self.open_peaks: dict[tuple[HostKey, str], float] = {}
        for stream in store.by_name(names.OPEN_CONNECTIONS):
            host = self.host_key(stream.attributes)
            state = str(stream.attributes.get(names.CONNECTION_STATE, ""))
            if host is not None:
                peak = max(self.open_peaks.get((host, state), 0.0), stream.peak)
                self.open_peaks[(host, state)] = peak
        self.resilience: dict[HostKey, Resilience] = {}
        for name in RESILIENCE_METRICS:
            for stream in store.by_name(name):
                host = self.host_key(stream.attributes)
                if host is not None:
                    self.resilience.setdefault(host, Resilience()).add(stream)
        pool_hosts = set(self.pool_wait) | set(self.acquired) | {h for h, _ in self.open_peaks}
        self.rows: set[UpstreamKey] = set(self.calls) | set(self.attempts)
        # Retries make a row of their own only for a host without duration metrics (retries
        # recorded without a method cannot be split over the method rows of their host).
        duration_hosts = {(k[0], k[1]) for k in self.rows}
        self.rows |= {k for k in self.retries if (k[0], k[1]) not in duration_hosts}
        self.rows |= {(h[0], h[1], None) for h in pool_hosts - self.request_hosts}

    def host_key(self, attributes: dict[str, Any]) -> HostKey | None:
        """``(address, port)`` of a stream; None without ``server.address``."""
        address = attributes.get(names.ADDRESS)
        if address is None:
            return None
        return (str(address), port_number(attributes.get(names.PORT)))

    def row_key(self, attributes: dict[str, Any]) -> UpstreamKey | None:
        """The report row of a stream (the method only when rows are split by method)."""
        host = self.host_key(attributes)
        if host is None:
            return None
        method = attributes.get(names.METHOD) if self.split_method else None
        return (host[0], host[1], None if method is None else str(method))

    def _hists(self, streams: Iterable[Stream]) -> dict[UpstreamKey, list[Stream]]:
        grouped: dict[UpstreamKey, list[Stream]] = {}
        for stream in streams:
            key = self.row_key(stream.attributes)
            if key is not None and stream.hist is not None:
                grouped.setdefault(key, []).append(stream)
        return grouped


def port_number(value: Any) -> int | None:
    """A port attribute as an int (None when absent or not a number)."""
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
