"""The benchmark's upstream: ``python -m resilient_http.upstream`` in a separate process.

It owns the child process, its CPU clock (``/proc/PID/stat``) and its counters (``GET
/__stats__``, ``POST /__reset__``). The server gets its own process, and so its own core on
this 2-core machine: the client is what is measured, and the server's CPU share per run shows
that (a server near 100 % of a core would mean the numbers measure the server instead).

Control requests go through ``urllib`` between runs, never during a timed run, and the upstream
leaves them out of its counters.

With ``hosts`` > 1 (the scaling table's many-host rows) the child is ``python -m
benchmarks.multi_upstream``: that many upstreams on as many ports of one process, whose
counters this class adds up (and whose single CPU clock it reads).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = ["ServerCounters", "UpstreamServer"]

_LISTENING = "listening "
# Clock ticks per second of the utime/stime fields in /proc/PID/stat.
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_CONTROL_TIMEOUT = 10.0
# `python -m benchmarks.multi_upstream` must find this package: run it from the checkout.
_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class ServerCounters:
    """What the upstream saw during one run (its counters since the last reset)."""

    requests: int
    connections_opened: int
    stale_closes: int
    responses_by_status: dict[str, int]


class UpstreamServer:
    """The fault-injecting upstream as a child process; a context manager.

    ``fault_args`` are the upstream's own flags (``--stale-after 1-3``, ``--throttle ...``);
    ``--no-echo`` is always passed, so a 200 is one pre-built body and the server does little.
    ``hosts`` upstreams listen on as many ports of 127.0.0.1 (one child process either way).
    ``port`` (one host) listens on that port, so that an upstream can be stopped and started
    again at the same address (the outage scenario); 0 picks a free one.
    """

    def __init__(
        self, fault_args: Sequence[str] = (), *, seed: int = 1, hosts: int = 1, port: int = 0
    ) -> None:
        self.fault_args = list(fault_args)
        self._port = port
        self._seed = seed
        self._hosts = hosts
        self._process: subprocess.Popen[str] | None = None
        self._pid: int | None = None
        self.host = "127.0.0.1"
        self.ports: list[int] = []

    def __enter__(self) -> Self:
        module = ["resilient_http.upstream", "--port", str(self._port)]
        if self._hosts > 1:
            module = ["benchmarks.multi_upstream", "--hosts", str(self._hosts)]
        command = [
            sys.executable,
            "-m",
            *module,
            "--no-echo",
            "--seed",
            str(self._seed),
            # The request log is not needed here; keep it small so the server stays cheap.
            "--record-limit",
            "1",
            *self.fault_args,
        ]
        self._process = process = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, cwd=_ROOT
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith(_LISTENING):
            self.close()
            raise RuntimeError(f"upstream did not start ({command}): {line!r}")
        # One line: "listening HOST:PORT" (or several HOST:PORT, space-separated).
        addresses = [item.rpartition(":") for item in line.removeprefix(_LISTENING).split()]
        self.host = addresses[0][0]
        self.ports = [int(port) for _, _, port in addresses]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Terminate the child (SIGTERM, then SIGKILL after 10 s); idempotent."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()

    @classmethod
    def attach(cls, host: str, ports: Sequence[int], pid: int) -> UpstreamServer:
        """A handle on a server that another process started (the subprocess workers use it to
        read the server's CPU and counters around their own runs); it never stops the server."""
        server = cls(hosts=len(ports))
        server.host, server.ports, server._pid = host, list(ports), pid
        return server

    @property
    def pid(self) -> int:
        """The child's process id."""
        if self._process is not None:
            return self._process.pid
        assert self._pid is not None, "not started"
        return self._pid

    @property
    def port(self) -> int:
        """The first (with one host, the only) port."""
        return self.ports[0]

    def url(self, path: str = "/", port: int | None = None) -> str:
        """An absolute URL on this upstream (on its first port unless ``port`` says which)."""
        return f"http://{self.host}:{self.port if port is None else port}{path}"

    def urls(self, path: str = "/") -> list[str]:
        """The URL of ``path`` on every host (port), in port order."""
        return [self.url(path, port) for port in self.ports]

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server has used so far (``/proc/PID/stat``)."""
        with open(f"/proc/{self.pid}/stat") as stat:
            text = stat.read()
        # Field 2 (comm) may contain spaces; everything after its closing ')' splits cleanly.
        # utime and stime are fields 14 and 15, i.e. 11 and 12 after the state field (3).
        fields = text.rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def reset(self) -> None:
        """Zero the server's counters (``POST /__reset__`` on every port)."""
        for port in self.ports:
            self._control("POST", "/__reset__", port)

    def counters(self) -> ServerCounters:
        """The server's counters since the last reset (``GET /__stats__``), summed over ports."""
        requests = connections = stale = 0
        by_status: dict[str, int] = {}
        for port in self.ports:
            stats: dict[str, Any] = json.loads(self._control("GET", "/__stats__", port))
            requests += int(stats["requests"])
            connections += int(stats["connections_opened"])
            stale += int(stats["stale_closes"])
            for status, count in stats["responses_by_status"].items():
                by_status[str(status)] = by_status.get(str(status), 0) + int(count)
        return ServerCounters(requests, connections, stale, by_status)

    def _control(self, method: str, path: str, port: int) -> bytes:
        request = urllib.request.Request(self.url(path, port), method=method, data=b"")
        with urllib.request.urlopen(request, timeout=_CONTROL_TIMEOUT) as response:
            body: bytes = response.read()
            return body
