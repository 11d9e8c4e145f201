"""The fault-injecting upstream's fixtures: upstreams on 127.0.0.1 and plain aiohttp clients.

Nothing in these tests sleeps to wait: sleeps and clocks are injected, and tests wait on the
upstream's own counters (`wait_for`). Wall-clock bounds only appear as generous safety nets.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from resilient_http.upstream import FaultPlan, FaultyUpstream

Factory = Callable[..., Awaitable[FaultyUpstream]]


@pytest.fixture(autouse=True)
def _no_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The upstream must not make asyncio (or itself) log warnings or errors."""
    caplog.set_level(logging.WARNING)
    yield
    noisy = [r for r in caplog.records if r.name.startswith(("asyncio", "resilient_http"))]
    assert not noisy, [r.getMessage() for r in noisy]


@pytest.fixture
async def make_upstream() -> AsyncIterator[Factory]:
    """Start upstreams with the given plan and options; all are closed after the test."""
    started: list[FaultyUpstream] = []

    async def factory(plan: FaultPlan | None = None, **options: Any) -> FaultyUpstream:
        upstream = await FaultyUpstream(plan, **options).start()
        started.append(upstream)
        return upstream

    yield factory
    for upstream in started:
        await upstream.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client without aiohttp's hidden resend on a dead reused connection (as its TestClient)."""
    async with aiohttp.ClientSession() as client:
        client._retry_connection = False
        yield client


async def get_status(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> int:
    async with session.get(url, **kwargs) as resp:
        await resp.read()
        return resp.status
