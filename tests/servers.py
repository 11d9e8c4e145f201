"""Real aiohttp servers for tests, recording what they saw (never mocks of the HTTP layer)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web


class RecordingServer:
    """An aiohttp server on 127.0.0.1 that counts connections and in-flight requests.

    Requests to ``/held`` wait until ``release()``; ``/held-body`` sends its headers and part of
    its body, then waits likewise; ``/close`` answers with ``Connection: close``;
    ``/trickle?chunks=N&gap=S&stall=0|1`` sends N one-byte chunks S seconds apart (noting when
    it sent the last in ``last_chunk_at``), then with ``stall=1`` waits like ``/held``.
    Every request's peer (client host and port) identifies the TCP connection it arrived on.
    """

    def __init__(self) -> None:
        self.peers: list[tuple[str, int]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.last_chunk_at = 0.0
        self._gate = asyncio.Event()
        self._changed = asyncio.Condition()
        app = web.Application()
        app.router.add_route("*", "/held", self._held)
        app.router.add_route("*", "/close", self._close_after)
        app.router.add_route("*", "/held-body", self._held_body)
        app.router.add_get("/trickle", self._trickle)
        app.router.add_route("*", "/{tail:.*}", self._echo)
        self._runner = web.AppRunner(app, access_log=None)
        self.port = 0

    @property
    def connections(self) -> int:
        """How many distinct TCP connections have sent requests."""
        return len(set(self.peers))

    def url(self, path: str = "/") -> str:
        """The absolute URL of ``path`` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        """Bind to a free port on 127.0.0.1."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        """Release held requests and stop the server."""
        self._gate.set()
        await self._runner.cleanup()

    def release(self) -> None:
        """Let every held request (and later ones) answer."""
        self._gate.set()

    async def wait_for(self, predicate: Callable[[RecordingServer], bool]) -> None:
        """Wait until ``predicate(self)`` holds; re-checked whenever a request arrives or ends."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    async def _record(self, request: web.Request, delta: int) -> None:
        if delta > 0:
            peer = request.transport.get_extra_info("peername") if request.transport else None
            self.peers.append((peer[0], peer[1]) if peer else ("?", 0))
        self.in_flight += delta
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        async with self._changed:
            self._changed.notify_all()

    async def _echo(self, request: web.Request) -> web.Response:
        await self._record(request, +1)
        body = await request.read()
        await self._record(request, -1)
        return web.json_response(
            {"method": request.method, "path": request.path, "body": body.decode("latin-1")}
        )

    async def _held(self, request: web.Request) -> web.Response:
        await self._record(request, +1)
        try:
            await self._gate.wait()
        finally:
            await self._record(request, -1)
        return web.json_response({"held": True})

    async def _close_after(self, request: web.Request) -> web.Response:
        await self._record(request, +1)
        await self._record(request, -1)
        response = web.json_response({"closing": True})
        response.force_close()
        return response

    async def _held_body(self, request: web.Request) -> web.StreamResponse:
        await self._record(request, +1)
        response = web.StreamResponse(headers={"Content-Length": "10"})
        await response.prepare(request)
        await response.write(b"12345")
        try:
            await self._gate.wait()
            await response.write(b"67890")
        finally:
            await self._record(request, -1)
        return response

    async def _trickle(self, request: web.Request) -> web.StreamResponse:
        chunks = int(request.query["chunks"])
        gap = float(request.query["gap"])
        stall = request.query.get("stall") == "1"
        response = web.StreamResponse(headers={"Content-Length": str(chunks + int(stall))})
        await response.prepare(request)
        for _ in range(chunks):
            await response.write(b"x")
            self.last_chunk_at = time.monotonic()
            await asyncio.sleep(gap)  # the pacing a read timeout is tested against
        if stall:
            await self._gate.wait()
            await response.write(b"x")
        return response


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """``app`` served on 127.0.0.1 (a free port) for the block: its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
