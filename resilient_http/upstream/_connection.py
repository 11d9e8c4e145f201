"""One accepted connection: parse requests, carry out the engine's actions, keep the counters.

A raw `asyncio.Protocol` rather than a web framework, because the faults live at the
connection level (close on reuse, RST with SO_LINGER 0, headers then a cut body) and the
healthy path must stay cheap enough for the upstream to be a benchmark's loopback server:
a request answered at once is written from `data_received`, with no task per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, cast

from ._faults import RESPOND_OK, Action, FaultEngine
from ._http import HttpParseError, Request, RequestParser, response_head
from ._outage import OutageSwitch
from ._plan import FaultPlan
from ._stats import Counters, UpstreamStats

__all__ = ["CONTROL_PATHS", "ConnectionHost", "UpstreamConnection"]


class ConnectionHost(Protocol):
    """What a connection needs of the server that accepted it (``FaultyUpstream``): named here
    so that this module does not import the server's."""

    counters: Counters
    engine: FaultEngine
    outage: OutageSwitch
    in_flight: int
    """Requests being answered (a task producing their answer), over all connections."""
    sleep: Callable[[float], Awaitable[Any]]
    client_header: str
    fixed_body: bytes
    prebuilt_ok: bytes | None

    @property
    def plan(self) -> FaultPlan:
        """The plan in force."""
        ...

    def clock(self) -> float:
        """Monotonic seconds."""
        ...

    def stats(self) -> UpstreamStats:
        """A frozen snapshot of the counters."""
        ...

    def reset_stats(self) -> None:
        """Zero the counters."""
        ...

    def _connection_made(self, connection: UpstreamConnection) -> None: ...

    def _connection_lost(self, connection: UpstreamConnection) -> None: ...

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None: ...

    def _notify(self) -> None: ...


STATS_PATH, RESET_PATH = "/__stats__", "/__reset__"
CONTROL_PATHS = frozenset({STATS_PATH, RESET_PATH})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CONNECTION_CLOSE = b"Connection: close\r\n"
_LINGER_ZERO = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, not FIN
_MAX_BYTES_ROUTE = 16 * 1024 * 1024
_SHAPED_ROUTES = ("/status/", "/bytes/")


class UpstreamConnection(asyncio.Protocol):
    """The server side of one TCP connection."""

    def __init__(self, server: ConnectionHost) -> None:
        self._server = server
        self._parser = RequestParser()
        self._transport: asyncio.Transport | None = None
        self._peer = "unknown"
        self._idle_timer: asyncio.TimerHandle | None = None
        self._busy = False  # an answer is being produced by a task; later requests wait
        self._hung = False
        self.id = 0
        self.budget: int | None = None
        self.requests = 0
        self.is_control = False
        self.closed = False
        self._idle_since: float | None = None  # when the last answer was written
        self._stopping = False  # drop() was called; connection_lost has not run yet

    # -- asyncio callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if peer else "unknown"
        self._server._connection_made(self)
        self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        if self._stopping or self.closed or self._hung:
            return
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._parser.feed(data)
        if not self._busy:
            self._serve()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._server._connection_lost(self)

    # -- serving --------------------------------------------------------------------------------

    def _serve(self) -> None:
        """Answer every complete buffered request that can be answered synchronously."""
        while not self._is_finished:
            try:
                request = self._parser.next_request()
            except HttpParseError as exc:
                self._write(response_head(exc.status, 0, b"Connection: close\r\n"))
                self.drop(reset=False)
                return
            if request is None:
                if self._parser.continue_needed:
                    self._parser.continue_needed = False
                    self._write(_CONTINUE)
                self._arm_idle_timer()
                return
            if request.path in CONTROL_PATHS:
                self._answer_control(request)
            elif not self._answer(request):
                return

    def _answer(self, request: Request) -> bool:
        """Carry out one request's fate; True when the next request may be read at once."""
        server, counters = self._server, self._server.counters
        self.requests += 1
        client = request.headers.get(server.client_header) or self._peer
        server.outage.request_arrived()
        if server.outage.is_down:
            return self._meet_outage(request, client)
        if self._is_stale(server.clock()):
            reset = server.plan.stale_mode == "reset"
            counters.stale_closes += 1
            self._count(request, client, "stale_reset" if reset else "stale_close")
            self.drop(reset=reset)
            return False
        action = server.engine.decide(
            request.path,
            client,
            method=request.method,
            target=request.target,
            in_flight=server.in_flight + 1,
        )
        seq = self._count(request, client, action.outcome)
        if action.is_rate_limited:
            counters.rate_limited += 1
        if action.is_over_capacity:
            counters.over_capacity += 1
        kind = action.kind
        if kind == "respond" and not (action.delay or action.slow_chunks):
            self._respond(request, action, seq)
            return not self._is_finished
        if kind == "hang":
            counters.hangs += 1
            self._hung = True
        elif kind == "close":
            counters.disconnects += 1
            self.drop(reset=False)
        elif kind == "reset":
            counters.resets += 1
            self.drop(reset=True)
        else:
            self._busy = True
            server.in_flight += 1
            server._spawn(self._answer_later(request, action, seq))
        server._notify()
        return False

    def _meet_outage(self, request: Request, client: str) -> bool:
        """A request while the upstream is down: closed unanswered (`refuse`), or never
        answered (`hang`)."""
        server, counters = self._server, self._server.counters
        if server.plan.outage is not None and server.plan.outage.mode == "hang":
            counters.hangs += 1
            self._count(request, client, "hang")
            self._hung = True
        else:
            counters.outage_closes += 1
            self._count(request, client, "outage_close")
            self.drop(reset=False)
        server._notify()
        return False

    def _count(self, request: Request, client: str, outcome: str) -> int:
        return self._server.counters.request(
            request.method,
            request.target,
            request.path,
            client,
            self.id,
            self.requests,
            request.body,
            outcome,
        )

    def _respond(self, request: Request, action: Action, seq: int) -> None:
        server = self._server
        if (
            action is RESPOND_OK
            and server.prebuilt_ok is not None
            and not self._announces_close
            and request.method != "HEAD"
            and not request.path.startswith(_SHAPED_ROUTES)
        ):
            self._write(server.prebuilt_ok)
            status = 200
        else:
            status, body = self._status_and_body(request, action, seq)
            headers = action.headers + (_CONNECTION_CLOSE if self._announces_close else b"")
            head = response_head(status, len(body), headers)
            self._write(head if request.method == "HEAD" else head + body)
        server.counters.by_status[status] += 1
        self._idle_since = server.clock()
        if self._announces_close:
            server.counters.announced_closes += 1
            self.drop(reset=False)
        elif not request.keep_alive:
            self.drop(reset=False)
        server._notify()

    async def _answer_later(self, request: Request, action: Action, seq: int) -> None:
        """Answers that wait (latency, a slow body, a body cut by a reset); then read on."""
        try:
            await self._deliver_later(request, action, seq)
        finally:
            self._server.in_flight -= 1
            self._busy = False
            self._server._notify()
        if not self._is_finished:
            self._serve()

    async def _deliver_later(self, request: Request, action: Action, seq: int) -> None:
        sleep = self._server.sleep
        counters = self._server.counters
        if action.delay:
            await sleep(action.delay)
        if self._is_finished:
            return
        if action.kind == "respond" and not action.slow_chunks:
            self._respond(request, action, seq)
            return
        status, body = self._status_and_body(request, action, seq)
        counters.by_status[status] += 1
        head = response_head(status, len(body), action.headers)
        if action.kind == "reset_mid_body":
            counters.mid_body_resets += 1
            self._write(head + body[: len(body) // 2])
            self.drop(reset=True)
            return
        self._write(head)
        if request.method != "HEAD":
            size = -(-len(body) // action.slow_chunks)
            for start in range(0, len(body), size):
                await sleep(action.slow_delay)
                if self._is_finished:
                    return
                self._write(body[start : start + size])
        if not request.keep_alive:
            self.drop(reset=False)

    def _status_and_body(self, request: Request, action: Action, seq: int) -> tuple[int, bytes]:
        """The body for a status; `/status/N` and `/bytes/N` shape healthy answers."""
        status, path = action.status, request.path
        if status == 200 and path.startswith("/bytes/") and path[7:].isdigit():
            return 200, b"x" * min(int(path[7:]), _MAX_BYTES_ROUTE)
        if status == 200 and path.startswith("/status/") and path[8:].isdigit():
            status = min(max(int(path[8:]), 200), 599)
        if status != 200 or self._server.plan.echo:
            return status, (
                b'{"status":%d,"method":%s,"path":%s,"body_length":%d,"request":%d,'
                b'"connection":%d,"connection_request":%d}'
                % (
                    status,
                    json.dumps(request.method).encode(),
                    json.dumps(path).encode(),
                    len(request.body),
                    seq,
                    self.id,
                    self.requests,
                )
            )
        return status, self._server.fixed_body

    def _answer_control(self, request: Request) -> None:
        """`GET /__stats__[?log=1]` and `POST /__reset__`, outside every count and fault."""
        server = self._server
        if self.requests == 0 and not self.is_control:
            self.is_control = True
            server.counters.forget_connection(self.id)
        if request.path == RESET_PATH and request.method == "POST":
            server.reset_stats()
            status, body = 200, b"{}"
        elif request.path == STATS_PATH and request.method in ("GET", "HEAD"):
            data = server.stats().to_dict()
            if "log=1" not in request.target.partition("?")[2].split("&"):
                data["request_log"] = []
            status, body = 200, json.dumps(data).encode()
        else:
            status, body = 405, b'{"error":"method not allowed"}'
        head = response_head(status, len(body))
        self._write(head if request.method == "HEAD" else head + body)
        if not request.keep_alive:
            self.drop(reset=False)

    # -- connection control -----------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def drop(self, *, reset: bool) -> None:
        """Close the connection: FIN after pending writes, or with `reset` an RST at once."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._stopping = True
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
            transport.abort()
        else:
            transport.close()

    def abort(self) -> None:
        """Close at once, discarding unsent data (server shutdown: never wait on a slow reader)."""
        if self._transport is not None and not self.closed:
            self._transport.abort()

    def _is_stale(self, now: float) -> bool:
        """This request meets a dead connection: past the unannounced request cap, or after
        an idle time that the upstream's idle timeout cut short (`stale_idle`)."""
        if self.budget is not None and self.requests > self.budget:
            return True
        stale_idle = self._server.plan.stale_idle
        idle_since = self._idle_since
        return stale_idle is not None and idle_since is not None and now - idle_since >= stale_idle

    @property
    def _announces_close(self) -> bool:
        """This answer is the last of an announced request cap (`close_after`)."""
        cap = self._server.plan.close_after
        return cap is not None and self.requests >= cap

    @property
    def _is_finished(self) -> bool:
        return self.closed or self._stopping

    @property
    def is_hung(self) -> bool:
        """A request on it is never to be answered (a hang)."""
        return self._hung and not self._is_finished

    @property
    def is_idle(self) -> bool:
        """Open, between requests, and not hung."""
        return not (self._is_finished or self._busy or self._hung) and self._parser.is_idle

    def _arm_idle_timer(self) -> None:
        timeout = self._server.plan.idle_timeout
        if timeout is None or not self.is_idle:
            return
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._idle_timer = asyncio.get_running_loop().call_later(timeout, self._idle_expired)

    def _idle_expired(self) -> None:
        self._idle_timer = None
        if self.is_idle:
            self._server.counters.idle_closes += 1
            self.drop(reset=False)
