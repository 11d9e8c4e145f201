"""The upstream in a child process, and the "down" upstream (a port nobody listens on)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from ._cli import plan_to_args
from ._http import http_url
from ._plan import FaultPlan
from ._stats import UpstreamStats

__all__ = ["UpstreamProcess", "down_url", "unused_port"]

_LISTENING = "listening "
# Between control connects that a planned outage refused.
_REFUSED_RETRY_S = 0.05


def unused_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago: connecting to it is refused (until someone binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def down_url(path: str = "/", host: str = "127.0.0.1") -> str:
    """A URL on `unused_port()`: the connect-refused upstream."""
    return http_url(host, unused_port(host), path)


class UpstreamProcess:
    """`python -m resilient_http.upstream` as a child process (benchmarks: the server gets its
    own CPU, so the client is what is measured).

    `start()` waits for the child's `listening HOST:PORT` line (bounded by `startup_timeout`, a
    safety net); `close()` sends SIGTERM and returns the exit status (0 when all went well).

    The child is in a process group of its own: a Ctrl-C in a terminal (SIGINT to the foreground
    group) is the parent's to handle, e.g. the demo cuts its calls short and reads the child's
    counters before stopping it; an upstream that stopped too would fail those calls as upstream
    errors. The child stops when its stdin (a pipe only the parent holds) closes, so it never
    outlives its parent.
    """

    def __init__(
        self,
        plan: FaultPlan | None = None,
        *,
        host: str = "127.0.0.1",
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        self.plan = plan or FaultPlan()
        self.host = host
        self.port = 0
        self._extra_args = list(extra_args)
        self._startup_timeout = startup_timeout
        self._process: asyncio.subprocess.Process | None = None
        self.returncode: int | None = None

    async def start(self) -> Self:
        """Spawn the child and wait until it listens."""
        args = [
            "--host",
            self.host,
            "--port",
            "0",
            "--stop-at-stdin-eof",
            *plan_to_args(self.plan),
            *self._extra_args,
        ]
        self._process = process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "resilient_http.upstream",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            process_group=0,
        )
        assert process.stdout is not None
        try:
            async with asyncio.timeout(self._startup_timeout):
                line = (await process.stdout.readline()).decode()
            if not line.startswith(_LISTENING):
                raise RuntimeError(f"upstream process did not start: {line!r}")
            self.port = int(line.rsplit(":", 1)[1])
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> int | None:
        """SIGTERM the child and wait for it (SIGKILL after 10 s); idempotent."""
        process = self._process
        if process is None or self.returncode is not None:
            return self.returncode
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                await process.communicate()  # drains stdout so no pipe transport is left open
        except TimeoutError:
            process.kill()
            await process.communicate()
        self.returncode = process.returncode
        return self.returncode

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """`http://HOST:PORT` (no trailing slash)."""
        return http_url(self.host, self.port)

    def make_url(self, path: str = "/") -> str:
        """An absolute URL for `path` on this upstream."""
        return http_url(self.host, self.port, path)

    async def stats(self, *, log: bool = False) -> UpstreamStats:
        """The child's counters (`GET /__stats__`); `log=True` includes the request log."""
        body = await self._control("GET", "/__stats__?log=1" if log else "/__stats__")
        return UpstreamStats.from_dict(json.loads(body))

    async def reset_stats(self) -> None:
        """Zero the child's counters (`POST /__reset__`)."""
        await self._control("POST", "/__reset__")

    async def _control(self, method: str, target: str) -> bytes:
        # A bare one-shot HTTP/1.0-style exchange: no client library, no pool to clean up.
        reader, writer = await self._connect()
        try:
            writer.write(
                f"{method} {target} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: 0\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            response = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        head, _, body = response.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"upstream control request failed: {head[:80]!r}")
        return body

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A control connection; while a `refuse` outage lasts, tried again until it ends."""
        outage = self.plan.outage
        patience = outage.after + outage.duration + 1 if outage and outage.mode == "refuse" else 0
        deadline = asyncio.get_running_loop().time() + patience
        while True:
            try:
                return await asyncio.open_connection(self.host, self.port)
            except ConnectionRefusedError:
                if asyncio.get_running_loop().time() >= deadline:
                    raise
            await asyncio.sleep(_REFUSED_RETRY_S)  # the outage's end is the child's timer
