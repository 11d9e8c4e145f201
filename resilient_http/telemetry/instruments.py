"""The SDK's metric instruments, made once per ``MeterProvider``, and the pool gauges behind them.

Histograms and counters are recorded on the event loop as things happen. Everything that is a
level or a running count (open and active connections, in-flight requests, acquisitions, the
configured limits) is read at collection time by observable callbacks from ``HostCounters``:
plain integers the connector keeps, so a request pays nothing for them and the exporter's thread
never touches aiohttp's own structures. Instruments are shared by every session on a provider
(the OpenTelemetry API cannot unregister callbacks), so sessions register their pools in a
``PoolRegistry`` and leave it, their running totals kept, when they close.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

import aiohttp
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation

from .. import pool
from .._breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from .._limiter import AdaptiveLimiter
from . import names

__all__ = [
    "CONNECTION_BUCKETS",
    "DURATION_BUCKETS",
    "Instruments",
    "PoolRegistry",
    "Watched",
    "instruments_for",
]

_T = TypeVar("_T")

#: Semantic-convention advisory boundaries for HTTP durations (seconds); the SDK's own defaults
#: suit milliseconds and would put every request in the first bucket.
DURATION_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1,
    2.5,
    5,
    7.5,
    10,
)
#: Semantic-convention advisory boundaries for ``http.client.connection.duration``.
CONNECTION_BUCKETS: Final = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


@dataclass
class _PoolEntry:
    hosts: Mapping[str, pool.HostCounters]  # the connector's live counters, kept after it closes
    limit: int
    limit_per_host: int
    pool_id: int
    limits_reported: bool = False

    def counters(self) -> list[pool.HostCounters]:
        return list(self.hosts.values())


class PoolRegistry:
    """The pools whose counters the gauges report; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: dict[int, _PoolEntry] = {}
        self._pool_ids = itertools.count(1)
        # Acquisitions of pools that are gone: counters must not go backwards when one closes.
        self._retired: dict[tuple[str, int | None], list[int]] = {}
        # Pools that closed before any collection reported their limits (a short script's
        # session, closed before its telemetry is flushed): reported once more, so the analysis
        # knows the limits its calls ran under.
        self._closed_unreported: list[_PoolEntry] = []

    def register(self, connector: aiohttp.BaseConnector) -> Callable[[], None]:
        """Report ``connector``'s pool until the returned function is called or it is freed."""
        key = id(connector)
        with self._lock:
            entry = _PoolEntry(
                pool.live_host_counters(connector),
                connector.limit,
                connector.limit_per_host,
                next(self._pool_ids),
            )
            self._pools[key] = entry
        return weakref.finalize(connector, self._retire, key)

    def _retire(self, key: int) -> None:
        with self._lock:
            entry = self._pools.pop(key, None)
            if entry is not None and not entry.limits_reported:
                self._closed_unreported.append(entry)
            for host in entry.counters() if entry else ():
                totals = self._retired.setdefault((host.host, host.port), [0, 0])
                totals[0] += host.acquired_new
                totals[1] += host.acquired_reused

    def entries(self) -> list[_PoolEntry]:
        with self._lock:
            return list(self._pools.values())

    def observe_open(self, options: CallbackOptions) -> Iterable[Observation]:
        """``http.client.open_connections`` by state, per upstream."""
        sums: dict[tuple[str, int | None, str], int] = {}
        for entry in self.entries():
            for h in entry.counters():
                active, idle = h.active, max(h.open - h.active, 0)
                for state, value in (("active", active), ("idle", idle)):
                    key = (h.host, h.port, state)
                    sums[key] = sums.get(key, 0) + value
        return [
            Observation(value, {**server_attributes(host, port), names.CONNECTION_STATE: state})
            for (host, port, state), value in sums.items()
        ]

    def observe_active_requests(self, options: CallbackOptions) -> Iterable[Observation]:
        """``http.client.active_requests``: requests holding or queued for a connection."""
        sums: dict[tuple[str, int | None], int] = {}
        for entry in self.entries():
            for h in entry.counters():
                sums[(h.host, h.port)] = sums.get((h.host, h.port), 0) + h.active + h.waiting
        return [Observation(value, server_attributes(*key)) for key, value in sums.items()]

    def observe_acquired(self, options: CallbackOptions) -> Iterable[Observation]:
        """``resilient_http.connection.acquired``: cumulative, by reused or newly opened."""
        with self._lock:
            sums = {key: list(totals) for key, totals in self._retired.items()}
        for entry in self.entries():
            for h in entry.counters():
                totals = sums.setdefault((h.host, h.port), [0, 0])
                totals[0] += h.acquired_new
                totals[1] += h.acquired_reused
        observations = []
        for (host, port), (new, reused) in sums.items():
            observations.append(
                Observation(new, {**server_attributes(host, port), names.REUSED: False})
            )
            observations.append(
                Observation(reused, {**server_attributes(host, port), names.REUSED: True})
            )
        return observations

    def observe_limits(self, options: CallbackOptions) -> Iterable[Observation]:
        """``resilient_http.pool.limit`` (0 = unlimited), per pool (``resilient_http.pool.id``):
        the total limit, and the per-host limit for each upstream the pool has called (or once,
        without an upstream, before its first call). Pools are never folded into one value:
        a larger limit would hide an unlimited pool (0), and the analysis needs to know which
        limit an upstream's calls queued at."""
        with self._lock:
            entries = [*self._pools.values(), *self._closed_unreported]
            self._closed_unreported.clear()
            for entry in entries:
                entry.limits_reported = True
        observations = []
        for entry in entries:
            pool_id: dict[str, str | int] = {names.POOL_ID: entry.pool_id}
            observations.append(Observation(entry.limit, {names.LIMIT_SCOPE: "total", **pool_id}))
            per_host: dict[str, str | int] = {names.LIMIT_SCOPE: "per_host", **pool_id}
            hosts = entry.counters()
            for h in hosts:
                attributes = {**per_host, **server_attributes(h.host, h.port)}
                observations.append(Observation(entry.limit_per_host, attributes))
            if not hosts:
                observations.append(Observation(entry.limit_per_host, per_host))
        return observations


class Watched(Generic[_T]):
    """Strategies (circuit breakers, adaptive limiters) whose state the gauges report while they
    live; thread-safe. One leaves when the function ``register`` returned is called, or when it
    is freed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refs: dict[int, weakref.ref[_T]] = {}

    def register(self, member: _T) -> Callable[[], None]:
        """Report ``member`` until the returned function is called."""
        key = id(member)
        with self._lock:
            self._refs[key] = weakref.ref(member)
        return weakref.finalize(member, self._forget, key)

    def _forget(self, key: int) -> None:
        with self._lock:
            self._refs.pop(key, None)

    def members(self) -> list[_T]:
        """The members still alive."""
        with self._lock:
            refs = list(self._refs.values())
        return [member for member in (ref() for ref in refs) if member is not None]


_BREAKER_STATES: Final = (CLOSED, HALF_OPEN, OPEN)


def observe_breaker_states(breakers: Watched[CircuitBreaker]) -> list[Observation]:
    """``resilient_http.breaker.state``: per upstream, 1 for the state it is in, 0 for the
    others (summed over sessions calling the same upstream)."""
    sums: dict[tuple[str, int | None], dict[str, int]] = {}
    for breaker in breakers.members():
        for circuit in breaker.circuits():
            key = (circuit.host, circuit.port)
            counts = sums.setdefault(key, dict.fromkeys(_BREAKER_STATES, 0))
            counts[circuit.state] += 1  # a plain attribute the event loop sets: one read
    return [
        Observation(value, {**server_attributes(host, port), names.BREAKER_STATE: state})
        for (host, port), counts in sums.items()
        for state, value in counts.items()
    ]


def observe_concurrency_limits(
    limiters: Watched[AdaptiveLimiter], pools: PoolRegistry
) -> list[Observation]:
    """``resilient_http.concurrency.limit``: per upstream, the adaptive limit in force, else the
    per-host limit of the pools that reached it (0 = unlimited)."""
    limits: dict[tuple[str, int | None], int] = {}
    for entry in pools.entries():
        for host in entry.counters():
            key = (host.host, host.port)
            limits[key] = max(limits.get(key, 0), entry.limit_per_host)
    for limiter in limiters.members():
        for upstream in limiter.limits():
            limits[(upstream.host, upstream.port)] = upstream.places
    return [Observation(value, server_attributes(*key)) for key, value in limits.items()]


class Instruments:
    """Every instrument of the telemetry contract, on one meter."""

    def __init__(self, meter: Meter) -> None:
        def seconds(name: str, description: str, buckets: tuple[float, ...]) -> Histogram:
            return meter.create_histogram(
                name, unit="s", description=description, explicit_bucket_boundaries_advisory=buckets
            )

        self.attempt_duration = seconds(
            names.ATTEMPT_DURATION,
            "Duration of HTTP client requests (one per physical attempt).",
            DURATION_BUCKETS,
        )
        self.call_duration = seconds(
            names.CALL_DURATION,
            "Duration of logical calls, every attempt and retry wait included.",
            DURATION_BUCKETS,
        )
        self.pool_wait = seconds(
            names.POOL_WAIT, "Time a request was queued for a pooled connection.", DURATION_BUCKETS
        )
        self.connection_duration = seconds(
            names.CONNECTION_DURATION, "Lifetime of closed pooled connections.", CONNECTION_BUCKETS
        )
        self.retries = meter.create_counter(
            names.RETRIES, unit="{retry}", description="Retries, by reason (free ones included)."
        )
        self.suppressed = meter.create_counter(
            names.RETRIES_SUPPRESSED,
            unit="{retry}",
            description="Retryable failures that were not retried, by reason.",
        )
        self.hedges = meter.create_counter(
            names.HEDGES,
            unit="{attempt}",
            description="Hedged attempts, by whether their answer was the one used.",
        )
        self.breaker_rejected = meter.create_counter(
            names.BREAKER_REJECTED,
            unit="{call}",
            description="Calls failed at once by an open circuit breaker.",
        )
        self.breakers: Watched[CircuitBreaker] = Watched()
        meter.create_observable_gauge(
            names.BREAKER_STATE,
            callbacks=[lambda options: observe_breaker_states(self.breakers)],
            unit="1",
            description="Circuit breaker state per upstream: 1 for the current state, else 0.",
        )
        self.pools = PoolRegistry()
        self.limiters: Watched[AdaptiveLimiter] = Watched()
        meter.create_observable_gauge(
            names.CONCURRENCY_LIMIT,
            callbacks=[lambda options: observe_concurrency_limits(self.limiters, self.pools)],
            unit="{request}",
            description="Attempts in flight allowed per upstream (the adaptive limit in force).",
        )
        meter.create_observable_up_down_counter(
            names.OPEN_CONNECTIONS,
            callbacks=[self.pools.observe_open],
            unit="{connection}",
            description="Open pooled connections, by state.",
        )
        meter.create_observable_up_down_counter(
            names.ACTIVE_REQUESTS,
            callbacks=[self.pools.observe_active_requests],
            unit="{request}",
            description="Requests holding or queued for a pooled connection.",
        )
        meter.create_observable_counter(
            names.CONNECTIONS_ACQUIRED,
            callbacks=[self.pools.observe_acquired],
            unit="{connection}",
            description="Connections handed to requests: reused from the pool or newly opened.",
        )
        meter.create_observable_gauge(
            names.POOL_LIMIT,
            callbacks=[self.pools.observe_limits],
            unit="{connection}",
            description="Configured pool limits (0 = unlimited).",
        )


_lock: Final = threading.Lock()
_by_meter: weakref.WeakKeyDictionary[Meter, Instruments] = weakref.WeakKeyDictionary()


def instruments_for(meter: Meter) -> Instruments:
    """The instruments on ``meter``, made on first use (instrument names must be unique)."""
    with _lock:
        found = _by_meter.get(meter)
        if found is None:
            found = _by_meter[meter] = Instruments(meter)
        return found


def server_attributes(host: str, port: int | None) -> dict[str, str | int]:
    """``server.address`` and, when known, ``server.port``: the upstream part of attributes."""
    attributes: dict[str, str | int] = {names.ADDRESS: host}
    if port is not None:
        attributes[names.PORT] = port
    return attributes


def is_api_proxy(provider: object) -> bool:
    """Whether ``provider`` is the API's global stand-in, handed out until one is set.

    The meter's stand-in has no public class: it is the one ``MeterProvider`` the API package
    defines besides ``NoOpMeterProvider`` (``tests/telemetry/test_instruments.py`` pins that).
    """
    if isinstance(provider, trace.ProxyTracerProvider):
        return True
    return (
        isinstance(provider, metrics.MeterProvider)
        and not isinstance(provider, metrics.NoOpMeterProvider)
        and f"{type(provider).__module__}.".startswith(f"{metrics.__name__}.")
    )
