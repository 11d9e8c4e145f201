"""The connection pool: connector factory, pool statistics, and the one adapter over aiohttp.

aiohttp has no public view of its pool, no way to ask for a newly opened connection, and it
silently resends idempotent requests once when a reused connection turns out dead. The
behaviours of shared/SPEC.md that need more than aiohttp's public API use these internals, all
here and nowhere else. Each is checked for its shape (signature, type) before use, pinned by
``tests/test_pool_adapter.py`` on every aiohttp minor the dependency range admits, and where one
is missing or changed the adapter warns once (``RuntimeWarning``) and keeps working without the
behaviour it bought:

======================================================  ==========================================
internal                                                what it buys (and what is lost without it)
======================================================  ==========================================
``ClientSession._retry_connection`` (bool), set False   every physical attempt is one the SDK
                                                        sees, counts and budgets (else aiohttp
                                                        may resend a request unseen)
``BaseConnector._get(key, traces)``, wrapped            the free retry of a stale connection goes
                                                        out on a newly opened connection, not on
                                                        the next idle one (likely dead too)
``BaseConnector._release_acquired(key, proto)``,        ``PoolStats.active`` / ``idle`` and the
wrapped                                                 ``active`` / ``idle`` gauges
``BaseConnector._wait_for_available_connection(key,     ``PoolStats.waiting`` and
traces)``, wrapped                                      ``resilient_http.pool.wait.duration``
``BaseConnector._factory`` (a ``functools.partial`` of  connection closes are seen where they
``client_proto.ResponseHandler``), replaced by a        happen: ``open`` counts, reuse detection
subclass's factory                                      (stale retries), and
                                                        ``http.client.connection.duration``
``_conns``, ``_acquired``, ``_acquired_per_host``,      ``pool_stats()`` of a connector the
``_waiters`` (read, event loop thread only)             application built itself
``aiohttp.connector.NEEDS_CLEANUP_CLOSED`` (bool)       ``ENABLE_CLEANUP_CLOSED=auto`` follows
                                                        aiohttp's own judgement of the Python
======================================================  ==========================================

Public aiohttp API is used for the rest: ``BaseConnector.connect`` (overridden),
``ClientRequest.host`` / ``.port``, ``Connection.protocol`` and ``Connection.close()``; the
``ConnectionKey`` aiohttp hands to the wrapped methods is read by its ``host`` and ``port``.
Wrapping an instance's method (rather than overriding it in the subclass) means that a changed
internal is simply left alone: aiohttp keeps calling its own code, and only the SDK's extra is
lost.
"""

from __future__ import annotations

import functools
import inspect
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol, cast

import aiohttp
from aiohttp import connector as _aiohttp_connector
from aiohttp.client_proto import ResponseHandler

from ._exceptions import ConfigWarning
from ._pool_state import (
    ConnectionUse,
    HostCounters,
    HostPoolStats,
    PoolStats,
    current_attempt,
    total_stats,
    upstream_label,
)
from .config import ClientConfig

__all__ = [
    "HostCounters",
    "HostPoolStats",
    "PoolObserver",
    "PoolStats",
    "cleanup_closed_needed",
    "create_connector",
    "disable_hidden_resend",
    "is_observed",
    "live_host_counters",
    "observe_pool",
    "pool_stats",
    "reuse_trace_config",
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
    _warn_once(
        "aiohttp.connector.NEEDS_CLEANUP_CLOSED",
        "ENABLE_CLEANUP_CLOSED=auto follows the SDK's own list of affected Pythons",
    )
    # The condition aiohttp 3.10.6 to 3.14 use, for a release that dropped the flag.
    version = sys.version_info
    return (3, 13, 0) <= version < (3, 13, 1) or version < (3, 12, 8)


def create_connector(
    config: ClientConfig | None = None, observer: PoolObserver | None = None
) -> aiohttp.TCPConnector:
    """An ``aiohttp.TCPConnector`` tuned by ``config`` (default ``ClientConfig.from_env()``)
    and observed by the SDK's pool counters, reporting to ``observer``. The entry points build
    theirs here (``rh.create_connector()`` adds the pool's metrics)."""
    if config is None:
        config = ClientConfig.from_env()
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


def live_host_counters(connector: aiohttp.BaseConnector) -> Mapping[str, HostCounters]:
    """The per-upstream counters of a connector built by ``create_connector`` (else none);
    read from any thread. The mapping is live and outlives the connector if kept."""
    if isinstance(connector, _ObservedConnector):
        return connector.hosts
    return {}


def observe_pool(connector: aiohttp.BaseConnector, observer: PoolObserver) -> None:
    """Send ``connector``'s pool events (waits, closes) to ``observer``."""
    if isinstance(connector, _ObservedConnector):
        connector.observer = observer


def pool_stats(connector: aiohttp.BaseConnector) -> PoolStats:
    """A snapshot of ``connector``'s pool (``create_connector``'s, or any aiohttp connector);
    call it on the event loop thread."""
    if isinstance(connector, _ObservedConnector):
        return connector.snapshot()
    return _stats_from_internals(connector)


def reuse_trace_config() -> aiohttp.TraceConfig:
    """aiohttp's public connection signals, telling the attempt in flight whether its
    connection was reused: how a connector the application built (not ``create_connector``'s,
    which keeps its own counters) still lets a stale connection's retry be told apart."""
    config = aiohttp.TraceConfig()
    config.on_connection_reuseconn.append(_note_reused)
    config.on_connection_create_end.append(_note_new)
    return config


async def _note_reused(session: object, context: object, params: object) -> None:
    record = current_attempt()
    if record is not None:
        record.reused = True


async def _note_new(session: object, context: object, params: object) -> None:
    record = current_attempt()
    if record is not None:
        record.reused = False


def is_observed(connector: aiohttp.BaseConnector) -> bool:
    """Whether ``connector`` was built by ``create_connector`` (it keeps the SDK's counters)."""
    return isinstance(connector, _ObservedConnector)


def disable_hidden_resend(session: aiohttp.ClientSession) -> None:
    """Stop aiohttp from silently resending on a dead reused connection: the SDK retries
    instead, as an attempt it sees, counts and budgets."""
    if isinstance(getattr(session, "_retry_connection", None), bool):
        session._retry_connection = False
    else:
        _warn_once("ClientSession._retry_connection", "attempts may be resent without telemetry")


# --- shapes of the internals -------------------------------------------------------------------

_warned: set[str] = set()


def _warn_once(internal: str, consequence: str) -> None:
    if internal not in _warned:
        _warned.add(internal)
        warnings.warn(
            f"aiohttp {aiohttp.__version__}: {internal} is missing or changed; {consequence}",
            RuntimeWarning,
            stacklevel=3,
        )


@functools.cache
def method_has_shape(owner: type, name: str, parameters: tuple[str, ...], is_async: bool) -> bool:
    """Whether ``owner.name`` is a function with exactly these parameters (after ``self``)."""
    function = inspect.getattr_static(owner, name, None)
    if not inspect.isfunction(function):
        return False
    if inspect.iscoroutinefunction(function) != is_async:
        return False
    try:
        names = tuple(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return False
    return names == ("self", *parameters)


#: (name, parameters after self, is a coroutine function, what is lost without it)
WRAPPED_METHODS: Final = (
    ("_get", ("key", "traces"), True, "a stale connection's retry may reuse another idle one"),
    ("_release_acquired", ("key", "proto"), False, "active and idle connections are not counted"),
    (
        "_wait_for_available_connection",
        ("key", "traces"),
        True,
        "requests queued for a connection are not counted or timed",
    ),
)


def _factory_has_shape(connector: aiohttp.BaseConnector) -> bool:
    factory = getattr(connector, "_factory", None)
    return (
        isinstance(factory, functools.partial)
        and factory.func is ResponseHandler
        and not factory.args
        and set(factory.keywords) == {"loop"}
        and method_has_shape(ResponseHandler, "__init__", ("loop",), False)
        and method_has_shape(ResponseHandler, "connection_lost", ("exc",), False)
    )


# --- the adapter -------------------------------------------------------------------------------


class _TrackedProtocol(ResponseHandler):
    """aiohttp's protocol, reporting its own close to the connector that opened it."""

    def __init__(self, loop: Any, connector: _ObservedConnector) -> None:
        super().__init__(loop)
        self.rh_connector = connector
        self.rh_host: HostCounters | None = None  # set when a request first receives it
        self.rh_opened_at = 0.0
        # when it last went back to the pool (0: never), and the requests it has been given
        self.rh_released_at = 0.0
        self.rh_requests = 0

    def connection_lost(self, exc: BaseException | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            self.rh_connector.protocol_closed(self)


class _ObservedConnector(aiohttp.TCPConnector):
    """``TCPConnector`` that keeps per-upstream counters and can skip idle connections."""

    def __init__(self, observer: PoolObserver | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.observer = observer
        self.hosts: dict[str, HostCounters] = {}
        self._host_by_key: dict[tuple[str, int | None], HostCounters] = {}
        self._active: dict[Any, HostCounters] = {}  # protocol -> its upstream, while in use
        self._counts_active = False
        for name, parameters, is_async, lost in WRAPPED_METHODS:
            if method_has_shape(aiohttp.BaseConnector, name, parameters, is_async):
                setattr(self, name, getattr(self, f"_rh_wrap{name}")(getattr(self, name)))
                self._counts_active |= name == "_release_acquired"
            else:
                _warn_once(f"BaseConnector.{name}", lost)
        self._tracks_protocols = _factory_has_shape(self)
        if self._tracks_protocols:
            self._factory = cast(
                "functools.partial[ResponseHandler]",
                functools.partial(_TrackedProtocol, self._loop, self),
            )
        else:
            _warn_once(
                "BaseConnector._factory", "open connections, reuse and closes are not observed"
            )

    def _counters(self, hostname: str, port: int | None) -> HostCounters:
        key = (hostname, port)
        host = self._host_by_key.get(key)
        if host is None:
            host = self._host_by_key[key] = HostCounters(hostname, port)
            self.hosts[host.label] = host
        return host

    # aiohttp passes these by keyword: the names must stay as aiohttp spells them.
    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:  # noqa: ASYNC109
        connection = await super().connect(req, traces, timeout)
        proto = connection.protocol
        record = current_attempt()
        idle_time = None
        served = -1  # requests the connection served before (-1: not tracked)
        if isinstance(proto, _TrackedProtocol):
            host = proto.rh_host
            if host is not None:  # a pooled connection a request had before: the common case
                host.acquired_reused += 1
                acquired = host.reused_tag
                released_at = proto.rh_released_at  # 0 when _release_acquired was not wrapped
                idle_time = time.monotonic() - released_at if released_at else None
            else:
                host = proto.rh_host = self._counters(req.host, req.port)
                host.acquired_new += 1
                proto.rh_opened_at = time.monotonic()
                host.open += 1
                acquired = host.new_tag
            served = proto.rh_requests
            proto.rh_requests = served + 1
        else:  # degraded (aiohttp's own protocol): reuse is unknown
            host = self._counters(req.host, req.port)
            host.acquired_new += 1
            acquired = (host.label, None)
        if self._counts_active:
            self._active[proto] = host
            host.active += 1
        if record is not None:
            record.acquired = acquired
            if served >= 0:
                record.connection = ConnectionUse(host.active, idle_time, served)
        return connection

    def _rh_wrap_get(
        self, original: Callable[[Any, Any], Awaitable[Any]]
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        def _get(key: Any, traces: Any) -> Awaitable[Any]:
            record = current_attempt()
            if record is None or not record.fresh:
                return original(key, traces)  # aiohttp awaits it: no frame of ours in between
            return self._get_fresh(original(key, traces))

        return _get

    async def _get_fresh(self, getting: Awaitable[Any]) -> None:
        """What ``_get`` gives a request that wants a newly opened connection: nothing."""
        connection = await getting
        if connection is not None:
            # aiohttp hands out the longest-idle connection first and has no "open a new one"
            # call: retire the one it chose (likely dead too), so that connect() opens a new
            # connection in its place and the pool never grows past its limits.
            connection.close()

    def _rh_wrap_release_acquired(
        self, original: Callable[[Any, Any], None]
    ) -> Callable[[Any, Any], None]:
        def _release_acquired(key: Any, proto: Any) -> None:
            host = self._active.pop(proto, None)
            if host is not None:
                host.active -= 1
            if isinstance(proto, _TrackedProtocol):
                # the start of its idle time, if it goes back to the pool (else it is closing)
                proto.rh_released_at = time.monotonic()
            original(key, proto)

        return _release_acquired

    def _rh_wrap_wait_for_available_connection(
        self, original: Callable[[Any, Any], Awaitable[None]]
    ) -> Callable[[Any, Any], Awaitable[None]]:
        async def _wait_for_available_connection(key: Any, traces: Any) -> None:
            host = self._counters(key.host, key.port)
            host.waiting += 1
            started = time.monotonic()
            try:
                await original(key, traces)
            finally:
                host.waiting -= 1
                if self.observer is not None:
                    self.observer.pool_waited(host, time.monotonic() - started)

        return _wait_for_available_connection

    def protocol_closed(self, proto: _TrackedProtocol) -> None:
        host = proto.rh_host
        if host is None:  # closed before any request received it: never counted as open
            return
        host.open -= 1
        if self._active.pop(proto, None) is not None:  # closed while in use
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


# --- connectors the application built ----------------------------------------------------------


def internals_have_shape(connector: aiohttp.BaseConnector) -> bool:
    """Whether the pool structures ``pool_stats`` reads are what it expects."""
    conns = getattr(connector, "_conns", None)
    acquired = getattr(connector, "_acquired", None)
    per_host = getattr(connector, "_acquired_per_host", None)
    waiters = getattr(connector, "_waiters", None)
    if not (
        isinstance(conns, dict)
        and isinstance(acquired, set)
        and isinstance(per_host, dict)
        and isinstance(waiters, dict)
    ):
        return False
    return all(
        hasattr(key, "host") and hasattr(key, "port") for key in (*conns, *per_host, *waiters)
    ) and all(
        isinstance(entry, tuple) and len(entry) == 2 for idle in conns.values() for entry in idle
    )


def _stats_from_internals(connector: aiohttp.BaseConnector) -> PoolStats:
    """Counts read from aiohttp's own structures, for connectors the application built."""
    limit, limit_per_host = connector.limit, connector.limit_per_host
    if connector.closed:
        return total_stats(limit, limit_per_host, {})
    if not internals_have_shape(connector):
        _warn_once("BaseConnector._conns/_acquired/_waiters", "pool_stats() reports no counts")
        return total_stats(limit, limit_per_host, {})
    counts: dict[str, list[int]] = {}

    def add(key: Any, idle: int = 0, active: int = 0, waiting: int = 0) -> None:
        row = counts.setdefault(upstream_label(key.host, key.port), [0, 0, 0])
        row[0] += idle
        row[1] += active
        row[2] += waiting

    internals: Any = connector
    for key, idle in internals._conns.items():
        add(key, idle=sum(1 for proto, _ in idle if proto.is_connected()))
    for key, acquired in internals._acquired_per_host.items():
        add(key, active=len(acquired))
    for key, waiters in internals._waiters.items():
        add(key, waiting=len(waiters))
    per_host = {
        label: HostPoolStats(open=idle + active, idle=idle, active=active, waiting=waiting)
        for label, (idle, active, waiting) in counts.items()
    }
    stats = total_stats(limit, limit_per_host, per_host)
    # Without a per-host limit aiohttp keeps no per-host record of active connections.
    active = len(internals._acquired)
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
