"""The connection pool: connector factory and the one adapter over aiohttp internals.

aiohttp exposes no public view of its pool, no hook for "a connection was reused" that costs
nothing when unused (trace configs cost ~15 % of throughput even with no handlers), no way to ask
for a newly opened connection, and it silently resends idempotent requests once when a reused
connection turns out dead. Every use of aiohttp internals needed for those lives in this module
and nowhere else; ``tests/test_pool.py`` exercises each against the installed aiohttp, and where
one is missing the adapter degrades with one warning instead of crashing:

- ``TCPConnector.connect`` / ``_release_acquired`` / ``_wait_for_available_connection`` (and
  ``Connection._key``, the key aiohttp already computed) are
  wrapped by a subclass to keep plain per-upstream counters (active, open, waiting) that pool
  gauges can read from the exporter's thread without touching aiohttp's structures;
- ``TCPConnector._factory`` builds our protocol subclass, so closes are seen where they happen;
- ``ResponseHandler._reschedule_timeout`` and ``_drop_timeout`` (with ``_read_timeout``,
  ``_read_timeout_handle``, ``_on_read_timeout``) are overridden by that subclass so that
  ``sock_read`` deadlines share one timer per time slot (``_deadlines.py``) instead of a
  timer per response, cancelled and replaced for every chunk received;
- ``TCPConnector._get`` (take an idle connection) is skipped by requests inside
  ``fresh_connection()``: the retry of a stale pooled connection must not take another idle
  connection that is likely dead too;
- ``ClientSession._request`` is awaited directly (without ``request()``'s wrapper object);
- ``ClientSession._retry_connection`` is switched off (as aiohttp's own test client does) so
  that every physical attempt is one the SDK sees, counts and can budget;
- ``pool_stats()`` of a connector the application built itself reads ``_conns``, ``_acquired``,
  ``_acquired_per_host`` and ``_waiters`` on the event loop thread.
"""

from __future__ import annotations

import functools
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol, cast

import aiohttp
from aiohttp import connector as _aiohttp_connector
from aiohttp.client_proto import ResponseHandler

from ._deadlines import Slot, SlotDeadlines
from ._exceptions import ConfigWarning
from ._pool_state import (
    AttemptRecord,
    HostCounters,
    HostPoolStats,
    PoolStats,
    attempt_record,
    fresh_connection,
    fresh_connection_wanted,
    last_connection,
    recorded_attempt,
    total_stats,
    upstream_label,
)
from .config import ClientConfig

__all__ = [
    "AttemptRecord",
    "HostCounters",
    "HostPoolStats",
    "PoolObserver",
    "PoolStats",
    "attempt_record",
    "cleanup_closed_needed",
    "create_connector",
    "disable_hidden_resend",
    "fresh_connection",
    "host_counters",
    "last_connection",
    "live_host_counters",
    "observe_pool",
    "pool_stats",
    "request_coroutine_function",
    "upstream_label",
]


class PoolObserver(Protocol):
    """Receives pool events on the event loop; the telemetry layer implements it.

    Acquisitions are not events: they are counted in ``HostCounters`` (read by gauges), so a
    request pays for two integer increments and no call.
    """

    def pool_waited(self, host: HostCounters, seconds: float) -> None:
        """A request waited ``seconds`` in the queue for a free slot under the limits."""

    def connection_closed(self, host: HostCounters, lifetime: float) -> None:
        """A connection the pool had opened was closed after ``lifetime`` seconds."""


def cleanup_closed_needed() -> bool:
    """Whether the running Python leaks closed SSL transports that aiohttp must clean up."""
    needed = getattr(_aiohttp_connector, "NEEDS_CLEANUP_CLOSED", None)
    if isinstance(needed, bool):
        return needed
    # aiohttp releases before 3.10.6 had no such flag; this is the condition they fixed.
    version = sys.version_info
    return (3, 13, 0) <= version < (3, 13, 1) or version < (3, 12, 8)


def create_connector(
    config: ClientConfig, observer: PoolObserver | None = None
) -> aiohttp.TCPConnector:
    """An ``aiohttp.TCPConnector`` tuned by ``config`` and observed by the SDK's pool counters.

    Must be called with an event loop running, as aiohttp's own constructor requires.
    """
    cleanup = config.enable_cleanup_closed
    needed = cleanup_closed_needed()
    if cleanup is True and not needed:
        warnings.warn(
            f"RESILIENT_HTTP_ENABLE_CLEANUP_CLOSED=true is ignored: Python "
            f"{sys.version.split()[0]} no longer leaks closed SSL transports",
            ConfigWarning,
            stacklevel=3,
        )
    return _ObservedConnector(
        observer,
        limit=config.limit,
        limit_per_host=config.limit_per_host,
        keepalive_timeout=config.keepalive_timeout,
        ttl_dns_cache=int(config.ttl_dns_cache) if config.ttl_dns_cache else None,
        enable_cleanup_closed=needed if cleanup == "auto" else bool(cleanup) and needed,
    )


def host_counters(connector: aiohttp.BaseConnector) -> list[HostCounters]:
    """The counters of a connector built by ``create_connector`` (else none); any thread."""
    return list(live_host_counters(connector).values())


def live_host_counters(connector: aiohttp.BaseConnector) -> Mapping[str, HostCounters]:
    """The live mapping behind ``host_counters``; it outlives the connector if kept."""
    if isinstance(connector, _ObservedConnector):
        return connector.hosts
    return {}


def observe_pool(connector: aiohttp.BaseConnector, observer: PoolObserver) -> None:
    """Send ``connector``'s pool events (waits, closes) to ``observer``."""
    if isinstance(connector, _ObservedConnector):
        connector.observer = observer


def pool_stats(connector: aiohttp.BaseConnector) -> PoolStats:
    """A snapshot of ``connector``'s pool; call it on the event loop thread."""
    if isinstance(connector, _ObservedConnector):
        return connector.snapshot()
    return _stats_from_internals(connector)


def request_coroutine_function(
    session: aiohttp.ClientSession,
) -> Callable[..., Awaitable[aiohttp.ClientResponse]]:
    """``session.request`` without its context-manager wrapper, for the attempt loop.

    ``ClientSession.request`` wraps the ``_request`` coroutine in an object whose ``__await__``
    every suspension of the request passes through; the attempt loop awaits at once and
    releases responses itself, so it calls the coroutine directly (~2 us per request).
    """
    direct = cast(
        "Callable[..., Awaitable[aiohttp.ClientResponse]] | None",
        getattr(session, "_request", None),
    )
    if direct is None:
        _warn_once("ClientSession._request", "requests pay for aiohttp's wrapper")
        return cast("Callable[..., Awaitable[aiohttp.ClientResponse]]", session.request)
    return direct


def disable_hidden_resend(session: aiohttp.ClientSession) -> None:
    """Stop aiohttp from silently resending on a dead reused connection: the SDK retries instead."""
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False
    else:
        _warn_once("ClientSession._retry_connection", "attempts may be resent without telemetry")


# --- the adapter -------------------------------------------------------------------------------

_REQUIRED_INTERNALS: Final = ("_get", "_release_acquired", "_wait_for_available_connection")
_warned: set[str] = set()


def _warn_once(internal: str, consequence: str) -> None:
    if internal not in _warned:
        _warned.add(internal)
        warnings.warn(
            f"aiohttp {aiohttp.__version__} has no {internal}: {consequence}",
            RuntimeWarning,
            stacklevel=3,
        )


class _TrackedProtocol(ResponseHandler):
    """aiohttp's protocol, reporting its own close to the connector that opened it."""

    def __init__(self, loop: Any, connector: _ObservedConnector) -> None:
        super().__init__(loop)
        self.rh_connector = connector
        self.rh_host: HostCounters | None = None  # set when a request first receives it
        self.rh_opened_at = 0.0
        self.rh_active = False  # held by a request (counted in rh_host.active)

    def connection_lost(self, exc: BaseException | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            self.rh_connector.protocol_closed(self)


class _SharedReadTimerProtocol(_TrackedProtocol):
    """``_TrackedProtocol`` whose ``sock_read`` timeouts share the connector's slot timers.

    aiohttp arms a timer per response and replaces it for every chunk received; here the
    response joins its deadline's slot in ``SlotDeadlines`` and a chunk only moves the
    deadline (see ``_deadlines.py`` for the precision). Used only where aiohttp has the
    internals it overrides.
    """

    def __init__(self, loop: Any, connector: _ObservedConnector) -> None:
        super().__init__(loop, connector)
        self.rh_deadline = 0.0
        self.rh_slot: Slot | None = None
        self.rh_read_timers = connector.read_deadlines

    def _reschedule_timeout(self) -> None:
        timeout = self._read_timeout
        if timeout:
            self.rh_read_timers.watch(self, timeout)
        else:
            self._drop_timeout()

    def _drop_timeout(self) -> None:
        if self.rh_slot is not None:
            self.rh_read_timers.unwatch(self)
        if self._read_timeout_handle is not None:  # never armed by us; aiohttp's own, if any
            super()._drop_timeout()

    def rh_timeout(self) -> float | None:
        return self._read_timeout

    def rh_timed_out(self) -> None:
        self._on_read_timeout()


def _protocol_class() -> type[_TrackedProtocol]:
    """Shared read timers where this aiohttp has what they override, else aiohttp's own."""
    methods = ("_reschedule_timeout", "_drop_timeout", "_on_read_timeout")
    if all(callable(getattr(ResponseHandler, name, None)) for name in methods):
        return _SharedReadTimerProtocol
    _warn_once("ResponseHandler._reschedule_timeout", "sock_read timers cost aiohttp's price")
    return _TrackedProtocol


class _ObservedConnector(aiohttp.TCPConnector):
    """``TCPConnector`` that keeps per-upstream counters and can skip idle connections."""

    def __init__(self, observer: PoolObserver | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.observer = observer
        self.hosts: dict[str, HostCounters] = {}
        self._host_by_key: dict[Any, HostCounters] = {}
        self._fresh_pending = 0
        self._can_skip_idle = True
        self.read_deadlines = SlotDeadlines(self._loop)
        for internal in _REQUIRED_INTERNALS:
            if not hasattr(self, internal):
                _warn_once(f"TCPConnector.{internal}", "pool statistics may be incomplete")
                self._can_skip_idle = False
        if hasattr(self, "_factory"):
            self._factory = cast(
                "functools.partial[ResponseHandler]",
                functools.partial(_protocol_class(), self._loop, self),
            )
        else:
            _warn_once("TCPConnector._factory", "connection closes are not observed")

    def _counters(self, key: Any) -> HostCounters:
        host = self._host_by_key.get(key)
        if host is None:
            label = upstream_label(key.host, key.port)
            host = self.hosts.get(label)
            if host is None:
                host = self.hosts[label] = HostCounters(key.host, key.port)
            self._host_by_key[key] = host
        return host

    # aiohttp passes these by keyword: the names must stay as aiohttp spells them.
    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:  # noqa: ASYNC109
        if fresh_connection_wanted() and self._can_skip_idle:
            connection = await self._connect_fresh(req, traces, timeout)
        else:
            connection = await super().connect(req, traces, timeout)
        proto = connection.protocol
        host = getattr(proto, "rh_host", None)
        if host is not None:  # a pooled connection a request had before: the common case
            host.acquired_reused += 1
            record = recorded_attempt()
            if record is not None:
                record.acquired = host.reused_tag
        else:
            host = self._counters(getattr(connection, "_key", None) or req.connection_key)
            host.acquired_new += 1
            record = recorded_attempt()
            if record is not None:
                record.acquired = host.new_tag
            if not isinstance(proto, _TrackedProtocol):
                return connection  # degraded (no _factory): only acquisitions are counted
            proto.rh_host = host
            proto.rh_opened_at = time.monotonic()
            host.open += 1
        host.active += 1
        proto.rh_active = True
        return connection

    async def _connect_fresh(self, req: Any, traces: Any, timeout: Any) -> Any:  # noqa: ASYNC109
        # aiohttp hands out the longest-idle connection first and has no "open a new one" call.
        # While a fresh connection is being opened, an instance attribute shadows ``_get`` so
        # that this request (and only it: the flag is in its context) skips the idle ones;
        # the other requests keep them, and no request pays for the shadow otherwise.
        self._fresh_pending += 1
        self._get = self._get_unless_fresh  # type: ignore[method-assign]
        try:
            return await super().connect(req, traces, timeout)
        finally:
            self._fresh_pending -= 1
            if not self._fresh_pending:
                del self._get

    async def _get_unless_fresh(self, key: Any, traces: Any) -> Any:
        if fresh_connection_wanted():
            self._retire_longest_idle(key)
            return None
        return await aiohttp.TCPConnector._get(self, key, traces)

    def _retire_longest_idle(self, key: Any) -> None:
        """Close the idle connection aiohttp would have handed out next (likely dead too).

        The new connection replaces it: skipping idle connections without closing one would
        let the pool grow past its limits, since aiohttp counts only connections in use and
        hands idle ones out without checking them.
        """
        idle = self._conns.get(key)
        if not idle:
            return
        proto, _ = idle.popleft()
        if not idle:
            del self._conns[key]
        transport = proto.transport
        proto.close()
        if key.is_ssl and not self._cleanup_closed_disabled:
            self._cleanup_closed_transports.append(transport)

    def _release_acquired(self, key: Any, proto: ResponseHandler) -> None:
        if getattr(proto, "rh_active", False):
            tracked = cast(_TrackedProtocol, proto)
            tracked.rh_active = False
            cast(HostCounters, tracked.rh_host).active -= 1
        super()._release_acquired(key, proto)

    async def _wait_for_available_connection(self, key: Any, traces: Any) -> None:
        host = self._counters(key)
        host.waiting += 1
        started = time.monotonic()
        try:
            await super()._wait_for_available_connection(key, traces)
        finally:
            host.waiting -= 1
            if self.observer is not None:
                self.observer.pool_waited(host, time.monotonic() - started)

    def protocol_closed(self, proto: _TrackedProtocol) -> None:
        host = proto.rh_host
        if host is None:  # closed before any request received it: never counted as open
            return
        host.open -= 1
        if proto.rh_active:  # closed while in use; aiohttp releases it later
            proto.rh_active = False
            host.active -= 1
        if self.observer is not None:
            self.observer.connection_closed(host, time.monotonic() - proto.rh_opened_at)

    def snapshot(self) -> PoolStats:
        closed = self.closed
        per_host = {
            label: HostPoolStats(
                open=host.open,
                idle=max(host.open - host.active, 0),
                active=host.active,
                waiting=host.waiting,
            )
            for label, host in list(self.hosts.items())
            if not closed and (host.open or host.active or host.waiting)
        }
        return total_stats(self.limit, self.limit_per_host, per_host)


def _stats_from_internals(connector: aiohttp.BaseConnector) -> PoolStats:
    """Counts read from aiohttp's own structures, for connectors the application built."""
    counts: dict[str, list[int]] = {}

    def add(key: Any, idle: int = 0, active: int = 0, waiting: int = 0) -> None:
        row = counts.setdefault(upstream_label(key.host, key.port), [0, 0, 0])
        row[0] += idle
        row[1] += active
        row[2] += waiting

    if not connector.closed:
        for key, idle in getattr(connector, "_conns", {}).items():
            add(key, idle=sum(1 for proto, _ in idle if proto.is_connected()))
        for key, acquired in getattr(connector, "_acquired_per_host", {}).items():
            add(key, active=len(acquired))
        for key, waiters in getattr(connector, "_waiters", {}).items():
            add(key, waiting=len(waiters))
    per_host = {
        label: HostPoolStats(open=idle + active, idle=idle, active=active, waiting=waiting)
        for label, (idle, active, waiting) in counts.items()
    }
    stats = total_stats(connector.limit, connector.limit_per_host, per_host)
    # Without a per-host limit aiohttp keeps no per-host record of active connections.
    active = 0 if connector.closed else len(getattr(connector, "_acquired", ()))
    if active != stats.active:
        stats = PoolStats(
            limit=stats.limit,
            limit_per_host=stats.limit_per_host,
            open=stats.idle + active,
            idle=stats.idle,
            active=active,
            waiting=stats.waiting,
            per_host=stats.per_host,
        )
    return stats
