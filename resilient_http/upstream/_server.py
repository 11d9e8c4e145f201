"""`FaultyUpstream`: the in-process server's lifecycle, plan and counters."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Self

from ._connection import UpstreamConnection
from ._faults import FaultEngine
from ._http import http_url, response_head
from ._outage import Outage, OutageSwitch
from ._plan import FaultPlan
from ._stats import Counters, UpstreamStats

__all__ = ["FaultyUpstream"]

_log = logging.getLogger("resilient_http.upstream")
_FIXED_BODY = b'{"ok":true}'
_BACKLOG = 1024  # benchmarks open many connections at once; the default 100 can drop SYNs


class FaultyUpstream:
    """A fault-injecting HTTP/1.1 server on 127.0.0.1, for tests, the demo and benchmarks.

    Any path answers 200 with a JSON echo of what the server saw (see the package docstring
    for routes, fault order and counters). Randomness comes from `plan.seed`; `sleep`, `clock`
    (token buckets) and `wall_clock` (Retry-After dates) can be injected so tests never wait.

    Example::

        import asyncio, aiohttp
        from resilient_http.upstream import FaultPlan, FaultyUpstream

        async def main() -> None:
            plan = FaultPlan(stale_after=1)  # every connection dies when reused
            async with FaultyUpstream(plan) as upstream, aiohttp.ClientSession() as session:
                for _ in range(2):
                    async with session.get(upstream.make_url("/items")) as resp:
                        print(resp.status, await resp.json())
                print(upstream.stats().stale_closes)  # 1: aiohttp silently resent once

        asyncio.run(main())
    """

    def __init__(
        self,
        plan: FaultPlan | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        record_limit: int = 10_000,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.port = 0
        """The bound port, once started."""
        self.sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self.counters = Counters(record_limit)
        self.in_flight = 0
        """Requests being answered by a task (latency, slow bodies), over all connections."""
        self._server: asyncio.Server | None = None
        self._is_closed = False
        self._connections: set[UpstreamConnection] = set()
        self._next_connection_id = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiters: list[tuple[Callable[[UpstreamStats], bool], asyncio.Future[UpstreamStats]]]
        self._waiters = []
        self._all_closed: asyncio.Future[None] | None = None
        self.outage = OutageSwitch(None, self._go_down, self._come_back)
        self.set_plan(plan or FaultPlan())

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> Self:
        """Bind and listen; returns self (so `upstream = await FaultyUpstream().start()`)."""
        if self._server is not None or self._is_closed:
            raise RuntimeError("FaultyUpstream can be started once")
        self._server = await self._listen(self._requested_port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _listen(self, port: int) -> asyncio.Server:
        return await asyncio.get_running_loop().create_server(
            lambda: UpstreamConnection(self), self.host, port, backlog=_BACKLOG
        )

    async def close(self) -> None:
        """Stop listening, drop every connection, cancel pending answers; idempotent."""
        if self._is_closed:
            return
        self._is_closed = True
        self.outage.cancel()
        server = self._server
        if server is not None:
            server.close()
        for connection in list(self._connections):
            connection.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._connections:  # connection_lost runs on a later loop iteration
            self._all_closed = asyncio.get_running_loop().create_future()
            await self._all_closed
        if server is not None:
            await server.wait_closed()
        for _, future in self._waiters:
            future.cancel()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- addresses --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """`http://HOST:PORT` (no trailing slash)."""
        return http_url(self.host, self.port)

    def make_url(self, path: str = "/") -> str:
        """An absolute URL for `path` on this upstream."""
        return http_url(self.host, self.port, path)

    # -- plan and counters -----------------------------------------------------------------------

    @property
    def plan(self) -> FaultPlan:
        """The plan in force."""
        return self.engine.plan

    def clock(self) -> float:
        """Monotonic seconds (injectable): idle times of connections."""
        return self._clock()

    def set_plan(self, plan: FaultPlan) -> None:
        """Install `plan`, restarting its random streams, scripts, buckets and request numbers.

        Open connections keep the stale keep-alive budget they were given when accepted; an
        outage of the new plan starts at the next ordinary request.
        """
        self.outage.cancel()
        self.outage = OutageSwitch(plan.outage, self._go_down, self._come_back)
        self.engine = FaultEngine(plan, clock=self._clock, wall_clock=self._wall_clock)
        self.client_header = plan.client_id_header.lower()
        self.fixed_body = _FIXED_BODY
        # Healthy answers without echo are one pre-built byte string: the benchmark's path.
        self.prebuilt_ok = None if plan.echo else response_head(200, len(_FIXED_BODY)) + _FIXED_BODY

    def stats(self) -> UpstreamStats:
        """A frozen snapshot of the counters."""
        return self.counters.snapshot()

    def reset_stats(self) -> None:
        """Zero the counters and the request log (open connections stay counted as open)."""
        self.counters.reset()

    async def wait_for(
        self, predicate: Callable[[UpstreamStats], bool], *, give_up_after: float = 10.0
    ) -> UpstreamStats:
        """Wait until `predicate(stats)` holds (checked on every counted event); return them.

        `give_up_after` (seconds) is a safety net for broken tests: then `TimeoutError`.
        """
        stats = self.stats()
        if predicate(stats):
            return stats
        future: asyncio.Future[UpstreamStats] = asyncio.get_running_loop().create_future()
        waiter = (predicate, future)
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(give_up_after):
                return await future
        finally:
            self._waiters.remove(waiter)

    # -- outages ----------------------------------------------------------------------------------

    def _go_down(self, outage: Outage) -> None:
        """The outage starts: `refuse` stops listening and closes idle keep-alive connections,
        as a process going down does (a connection busy now closes the next request that
        arrives on it unanswered)."""
        _log.info("upstream down (%s) for %g s", outage.mode, outage.duration)
        self.counters.outages_begun += 1
        if outage.mode == "refuse":
            if self._server is not None:
                self._server.close()
            for connection in list(self._connections):
                if connection.is_idle and not connection.is_control:
                    connection.drop(reset=False)
        self._notify()

    def _come_back(self, outage: Outage) -> None:
        """The outage ends: listen again at the same port, or close the hung connections."""
        _log.info("upstream back after its outage")
        if self._is_closed:
            return
        if outage.mode == "refuse":
            self._spawn(self._listen_again())
            return  # counted once it listens
        for connection in list(self._connections):
            if connection.is_hung:
                connection.drop(reset=False)
        self.counters.outages_ended += 1
        self._notify()

    async def _listen_again(self) -> None:
        server = await self._listen(self.port)
        if self._is_closed:  # closed while binding
            server.close()
            return
        self._server = server
        self.counters.outages_ended += 1
        self._notify()

    # -- called by connections -------------------------------------------------------------------

    def _connection_made(self, connection: UpstreamConnection) -> None:
        self._next_connection_id += 1
        connection.id = self._next_connection_id
        connection.budget = self.engine.connection_budget()
        self._connections.add(connection)
        self.counters.connection_opened(connection.id)
        if self._is_closed:  # accepted in the instant before the listener closed
            connection.abort()
        self._notify()

    def _connection_lost(self, connection: UpstreamConnection) -> None:
        self._connections.discard(connection)
        if not connection.is_control:
            self.counters.connection_closed()
        all_closed = self._all_closed
        if not self._connections and all_closed is not None and not all_closed.done():
            all_closed.set_result(None)
        self._notify()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("upstream answer failed", exc_info=task.exception())

    def _notify(self) -> None:
        """Wake `wait_for` callers whose predicate now holds (free when nobody waits)."""
        if not self._waiters:
            return
        stats = self.stats()
        for predicate, future in self._waiters:
            if future.done():
                continue
            try:
                if predicate(stats):
                    future.set_result(stats)
            except Exception as exc:  # a broken predicate fails its own wait, not the server
                future.set_exception(exc)
