"""A real Prometheus for tests: Debian's ``prometheus`` binary on 127.0.0.1, in a temporary
folder, stopped at the end. ``make promtool`` installs the package where it can (as root with
apt-get); elsewhere the tests that need it skip and say why."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

__all__ = ["free_port", "prometheus_binary", "query", "run_promtool", "running_prometheus"]

# Generous: Prometheus replays its write-ahead log and loads blocks before it is ready.
READY_SAFETY_NET_S = 60.0
# Between two readiness probes: the probe is the wait, this only spaces the requests out.
_PROBE_INTERVAL_S = 0.05


def prometheus_binary() -> str:
    """The ``prometheus`` binary, or skip the test saying how to get it."""
    found = shutil.which("prometheus")
    if found is None:
        pytest.skip("Debian's prometheus package is not installed (make promtool installs it)")
    return found


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """``promtool ARGS`` (its output captured), or skip the test saying how to get it."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip(
            "promtool is not on PATH: `make promtool` installs Debian's prometheus package "
            "(as root, with apt-get)"
        )
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, check=False
    )


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def running_prometheus(
    config: str, folder: Path, *, data: Path | None = None, files: dict[str, str] | None = None
) -> AsyncIterator[str]:
    """Start Prometheus with ``config`` (YAML text; ``files`` are written beside it, e.g. rule
    files it names) and yield its URL once ``/-/ready`` says so."""
    binary = prometheus_binary()
    config_file, log_file = _prepare(folder, config, files or {})
    port = free_port()
    with log_file.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={data or folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=10y",  # backfilled blocks may be older than 15 days
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            await _until_ready(url, process, log_file)
            yield url
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    async with asyncio.timeout(30):
                        await process.wait()
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def query(url: str, promql: str) -> list[dict[str, object]]:
    """An instant query's result rows."""
    async with (
        aiohttp.ClientSession() as client,
        client.post(f"{url}/api/v1/query", data={"query": promql}) as resp,
    ):
        body = await resp.json()
    assert body["status"] == "success", body
    rows: list[dict[str, object]] = body["data"]["result"]
    return rows


def _prepare(folder: Path, config: str, files: dict[str, str]) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    config_file = folder / "prometheus.yml"
    config_file.write_text(config)
    return config_file, folder / "prometheus.log"


def _tail(log: Path) -> str:
    return log.read_text()[-2000:]


async def _until_ready(url: str, process: asyncio.subprocess.Process, log: Path) -> None:
    async with asyncio.timeout(READY_SAFETY_NET_S), aiohttp.ClientSession() as client:
        while True:
            if process.returncode is not None:
                raise AssertionError(f"prometheus exited: {_tail(log)}")
            try:
                async with client.get(f"{url}/-/ready") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass  # not listening yet
            await asyncio.sleep(_PROBE_INTERVAL_S)
