"""Pool state shared by the pool adapter and the attempt loop, with no aiohttp in it.

``PoolStats`` snapshots, the plain per-upstream ``HostCounters`` the connector keeps (read by
gauges on the exporter's thread), and the ``AttemptRecord`` that tells the connector what an
attempt needs (a fresh connection) and the attempt stage what the connector did. ``pool.py``
builds on these; it is the only module that touches aiohttp's internals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, NamedTuple

__all__ = [
    "ATTEMPT_RECORD",
    "AttemptRecord",
    "ConnectionUse",
    "HostCounters",
    "HostPoolStats",
    "PoolStats",
    "current_attempt",
    "total_stats",
    "upstream_label",
]


@dataclass(frozen=True, slots=True)
class HostPoolStats:
    """Connection counts for one upstream ``host:port``."""

    open: int
    idle: int
    active: int
    waiting: int


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of the pool.

    ``open`` = ``idle`` + ``active``; ``active`` connections are in use by a request, ``idle``
    ones wait in the pool for reuse, ``waiting`` counts requests queued for a connection.
    ``limit`` and ``limit_per_host`` are the configured bounds (0 = unlimited); ``per_host``
    maps ``"host:port"`` to the same counts for that upstream.
    """

    limit: int
    limit_per_host: int
    open: int
    idle: int
    active: int
    waiting: int
    per_host: Mapping[str, HostPoolStats]


def upstream_label(host: str, port: int | None) -> str:
    """``"host:port"`` as used in ``PoolStats.per_host`` (IPv6 hosts in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class HostCounters:
    """Plain ints per upstream, kept by the event loop and read by gauge callbacks on the
    exporter's thread (reading an int is safe there; iterating aiohttp's structures is not).
    """

    __slots__ = (
        "acquired_new",
        "acquired_reused",
        "active",
        "host",
        "label",
        "new_tag",
        "open",
        "port",
        "reused_tag",
        "waiting",
    )

    def __init__(self, host: str, port: int | None) -> None:
        self.host = host
        self.port = port
        self.label = upstream_label(host, port)
        self.open = 0
        self.active = 0
        self.waiting = 0
        self.acquired_new = 0
        self.acquired_reused = 0
        # what an AttemptRecord is given, built once rather than on every acquisition
        self.new_tag: tuple[str, bool | None] = (self.label, False)
        self.reused_tag: tuple[str, bool | None] = (self.label, True)


class ConnectionUse(NamedTuple):
    """The connection an attempt got, as the pool saw it at acquisition: the evidence that
    tells an upstream's idle timeout (closes after an idle time) from a per-connection request
    cap (closes after a request count), and throttling that grows with load from the rest."""

    in_use: int
    """Connections to the upstream in use once this one was acquired, itself included (0:
    unknown, where aiohttp's release could not be observed)."""
    idle_time: float | None
    """Seconds the connection lay idle in the pool before this reuse (None: newly opened)."""
    requests: int
    """Requests the connection had served before this one (0: newly opened)."""


class AttemptRecord:
    """What the attempt stage asks of the connector for one attempt, and what the connector
    did: the one channel between them, through a context variable of the attempt's task."""

    __slots__ = ("acquired", "connection", "fresh", "reused")

    def __init__(self, fresh: bool) -> None:
        #: the attempt wants a newly opened connection, not an idle pooled one
        self.fresh = fresh
        #: (``host:port``, reused from the pool: None if unknown) of the connection acquired
        self.acquired: tuple[str, bool | None] | None = None
        #: whether the connection was reused, as aiohttp's trace signals tell it (for a
        #: connector the SDK did not build: no ``acquired`` then)
        self.reused: bool | None = None
        #: the acquired connection's idle time, request count and the upstream's connections in
        #: use (a connector the SDK did not build: None)
        self.connection: ConnectionUse | None = None


ATTEMPT_RECORD: Final[ContextVar[AttemptRecord | None]] = ContextVar(
    "resilient_http_attempt_record", default=None
)
current_attempt: Final[Callable[[], AttemptRecord | None]] = ATTEMPT_RECORD.get
"""The record of the attempt the current task is making, if the attempt stage made one."""


def total_stats(limit: int, limit_per_host: int, per_host: dict[str, HostPoolStats]) -> PoolStats:
    hosts = per_host.values()
    return PoolStats(
        limit=limit,
        limit_per_host=limit_per_host,
        open=sum(h.open for h in hosts),
        idle=sum(h.idle for h in hosts),
        active=sum(h.active for h in hosts),
        waiting=sum(h.waiting for h in hosts),
        per_host=MappingProxyType(per_host),
    )
