"""What the upstream saw: live counters, and the frozen snapshot that tests assert on.

`Counters` is mutated by the event loop only (plain ints and dicts, no locks); `snapshot()`
copies it into an immutable `UpstreamStats`, which also travels as JSON (`/__stats__`).
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from types import MappingProxyType
from typing import Any

__all__ = ["Counters", "RequestRecord", "UpstreamStats"]

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as received, with what the upstream did about it.

    `outcome` is the status answered (`"200"`, `"503"`, ...) or the fault: `stale_close`,
    `stale_reset`, `close`, `reset`, `reset_mid_body`, `hang`, `outage_close`.
    """

    seq: int
    """1-based position among requests since the last `reset_stats()`."""
    method: str
    target: str
    path: str
    client: str
    connection: int
    """Connection id (1-based, in accept order)."""
    connection_request: int
    """1-based position of this request on its connection."""
    body_length: int
    body_sha256: str
    outcome: str


@dataclass(frozen=True, slots=True)
class UpstreamStats:
    """A frozen snapshot of the upstream's counters (see `FaultyUpstream.stats`).

    Control requests (`/__stats__`, `/__reset__`) and connections that start with one are left
    out of every count.
    """

    requests: int
    requests_by_route: Mapping[str, int]
    """Keyed `"METHOD /path"` (no query)."""
    responses_by_status: Mapping[int, int]
    """Responses whose head was sent, mid-body resets included."""
    body_bytes: int
    connections_opened: int
    connections_closed: int
    open_connections: int
    max_open_connections: int
    requests_per_connection: tuple[int, ...]
    """Requests on each connection (stale-closed ones included), in accept order."""
    stale_closes: int
    """Connections closed (or reset, `stale_mode="reset"`) when a request arrived on reuse."""
    idle_closes: int
    resets: int
    """Connections reset before any answer (random and scripted)."""
    mid_body_resets: int
    disconnects: int
    """Scripted `close` steps: FIN without an answer."""
    hangs: int
    rate_limited: int
    over_capacity: int
    """503s answered because more than `capacity` requests were being answered."""
    announced_closes: int
    """Connections closed after an answer that said `Connection: close` (`close_after`)."""
    outage_closes: int
    """Requests closed unanswered because they arrived during a `refuse` outage."""
    outages_begun: int
    outages_ended: int
    """A planned `Outage` began / ended (the upstream is down while they differ)."""
    request_log: tuple[RequestRecord, ...]
    """The most recent requests in arrival order (bounded by `record_limit`)."""

    @property
    def responses(self) -> int:
        """Responses whose head was sent."""
        return sum(self.responses_by_status.values())

    @property
    def bodies_sha256(self) -> tuple[str, ...]:
        """SHA-256 of each non-empty request body in the log, in arrival order."""
        return tuple(r.body_sha256 for r in self.request_log if r.body_length)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (status keys become strings)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["requests_by_route"] = dict(self.requests_by_route)
        data["responses_by_status"] = {str(k): v for k, v in self.responses_by_status.items()}
        data["requests_per_connection"] = list(self.requests_per_connection)
        data["request_log"] = [asdict(record) for record in self.request_log]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UpstreamStats:
        """Inverse of `to_dict` (e.g. for `/__stats__` JSON)."""
        values = dict(data)
        values["requests_by_route"] = MappingProxyType(dict(values["requests_by_route"]))
        values["responses_by_status"] = MappingProxyType(
            {int(k): v for k, v in values["responses_by_status"].items()}
        )
        values["requests_per_connection"] = tuple(values["requests_per_connection"])
        values["request_log"] = tuple(RequestRecord(**r) for r in values["request_log"])
        return cls(**values)


class Counters:
    """The live, mutable counters behind `UpstreamStats`."""

    def __init__(self, record_limit: int) -> None:
        self.record_limit = record_limit
        self.reset()

    def reset(self) -> None:
        """Zero everything except the currently open connections."""
        self.requests = 0
        self.by_route: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.body_bytes = 0
        self.connections_opened = 0
        self.connections_closed = 0
        self.max_open_connections = getattr(self, "open_connections", 0)
        self.open_connections = self.max_open_connections
        self.per_connection: dict[int, int] = {}
        self.stale_closes = 0
        self.idle_closes = 0
        self.resets = 0
        self.mid_body_resets = 0
        self.disconnects = 0
        self.hangs = 0
        self.rate_limited = 0
        self.over_capacity = 0
        self.announced_closes = 0
        self.outage_closes = 0
        self.outages_begun = 0
        self.outages_ended = 0
        self.log: deque[RequestRecord] = deque(maxlen=self.record_limit)

    def connection_opened(self, connection_id: int) -> None:
        """Count an accepted connection."""
        self.connections_opened += 1
        self.open_connections += 1
        self.max_open_connections = max(self.max_open_connections, self.open_connections)
        self.per_connection[connection_id] = 0

    def connection_closed(self) -> None:
        """Count a closed connection."""
        self.open_connections -= 1
        self.connections_closed += 1

    def forget_connection(self, connection_id: int) -> None:
        """Take back an open connection that turned out to carry control requests only."""
        self.open_connections -= 1
        if self.per_connection.pop(connection_id, None) is not None:
            self.connections_opened -= 1

    def request(
        self,
        method: str,
        target: str,
        path: str,
        client: str,
        connection_id: int,
        connection_request: int,
        body: bytes,
        outcome: str,
    ) -> int:
        """Count a received request and log it (hashing only non-empty bodies); return its seq."""
        self.requests += 1
        seq = self.requests
        self.by_route[f"{method} {path}"] += 1
        self.body_bytes += len(body)
        if connection_id in self.per_connection:
            self.per_connection[connection_id] += 1
        if self.record_limit:
            digest = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
            self.log.append(
                RequestRecord(
                    seq,
                    method,
                    target,
                    path,
                    client,
                    connection_id,
                    connection_request,
                    len(body),
                    digest,
                    outcome,
                )
            )
        return seq

    def snapshot(self) -> UpstreamStats:
        """Copy the counters into an immutable `UpstreamStats`."""
        return UpstreamStats(
            requests=self.requests,
            requests_by_route=MappingProxyType(dict(self.by_route)),
            responses_by_status=MappingProxyType(dict(self.by_status)),
            body_bytes=self.body_bytes,
            connections_opened=self.connections_opened,
            connections_closed=self.connections_closed,
            open_connections=self.open_connections,
            max_open_connections=self.max_open_connections,
            requests_per_connection=tuple(self.per_connection.values()),
            stale_closes=self.stale_closes,
            idle_closes=self.idle_closes,
            resets=self.resets,
            mid_body_resets=self.mid_body_resets,
            disconnects=self.disconnects,
            hangs=self.hangs,
            rate_limited=self.rate_limited,
            over_capacity=self.over_capacity,
            announced_closes=self.announced_closes,
            outage_closes=self.outage_closes,
            outages_begun=self.outages_begun,
            outages_ended=self.outages_ended,
            request_log=tuple(self.log),
        )
