"""Pool state shared by the pool adapter and the attempt loop, with no aiohttp in it.

``PoolStats`` snapshots, the plain per-upstream ``HostCounters`` the connector keeps (read by
gauges on the exporter's thread), and the two pieces of per-task state that tell the
connector what an attempt needs (``fresh_connection``) and the attempt loop what the
connector did (``AttemptRecord``). ``pool.py`` builds on these; it is the only module that
touches aiohttp's internals.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = [
    "AttemptRecord",
    "HostCounters",
    "HostPoolStats",
    "PoolStats",
    "attempt_record",
    "fresh_connection",
    "fresh_connection_wanted",
    "last_connection",
    "recorded_attempt",
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
        # what last_connection() reports, built once rather than on every acquisition
        self.new_tag = (self.label, False)
        self.reused_tag = (self.label, True)


@contextlib.contextmanager
def fresh_connection() -> Iterator[None]:
    """Within this block, requests open a new connection instead of reusing an idle one."""
    token = _FRESH.set(True)
    try:
        yield
    finally:
        _FRESH.reset(token)


class AttemptRecord:
    """Where the connector notes the connection the current attempt got, for the attempt loop.

    One per task, made on the task's first request and reused: setting a context variable per
    attempt allocated a token and a new context each time, and the garbage collector's extra
    passes over them were a visible share of a request. Ownership is by task id (not a
    reference, which would make a task -> context -> record -> task cycle), so a task that
    inherited its creator's record makes its own instead of sharing it.
    """

    __slots__ = ("acquired", "owner")

    def __init__(self, owner: int) -> None:
        self.owner = owner
        #: (``host:port``, reused from the pool) of the latest acquisition, or None
        self.acquired: tuple[str, bool] | None = None


def attempt_record(task: asyncio.Task[object] | None = None) -> AttemptRecord:
    """This task's record, emptied: a failure before any connection is acquired reads None.

    ``task`` is the current task, when the caller has it already (default: looked up).
    """
    record = _RECORD.get()
    owner = id(task if task is not None else asyncio.current_task())
    if record is None or record.owner != owner:
        record = AttemptRecord(owner)
        _RECORD.set(record)
    else:
        record.acquired = None
    return record


def last_connection() -> tuple[str, bool] | None:
    """The upstream ``host:port`` of the latest connection acquired by this task's current
    attempt, and whether it was reused from the pool; None when none was acquired since
    ``attempt_record()`` emptied the record.
    """
    record = _RECORD.get()
    return record.acquired if record is not None else None


_FRESH: Final[ContextVar[bool]] = ContextVar("resilient_http_fresh_connection", default=False)
_RECORD: Final[ContextVar[AttemptRecord | None]] = ContextVar(
    "resilient_http_attempt_record", default=None
)


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


# The connector asks these on every acquisition: bound getters, not functions around them.
fresh_connection_wanted: Final[Callable[[], bool]] = _FRESH.get
"""Whether the current request asked for a newly opened connection."""
recorded_attempt: Final[Callable[[], AttemptRecord | None]] = _RECORD.get
"""This context's record, if the attempt loop made one (the connector writes into it)."""
