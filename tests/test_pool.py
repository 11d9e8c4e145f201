"""The pool adapter, against the installed aiohttp: counters, fresh connections, hidden resends."""

from __future__ import annotations

import asyncio
import time
import warnings

import aiohttp
import pytest

import resilient_http as rh
from resilient_http import pool
from resilient_http._pool_state import ATTEMPT_RECORD, AttemptRecord
from tests.helpers import until
from tests.servers import RecordingServer


class RecordingObserver:
    def __init__(self) -> None:
        self.waits: list[tuple[str, float]] = []
        self.closed: list[tuple[str, float]] = []

    def pool_waited(self, host: pool.HostCounters, seconds: float) -> None:
        self.waits.append((host.label, seconds))

    def connection_closed(self, host: pool.HostCounters, lifetime: float) -> None:
        self.closed.append((host.label, lifetime))


def acquisitions(connector: aiohttp.BaseConnector) -> list[tuple[str, int, int]]:
    hosts = pool.live_host_counters(connector).values()
    return [(h.label, h.acquired_new, h.acquired_reused) for h in hosts]


async def test_connector_is_built_from_config() -> None:
    config = rh.ClientConfig(limit=30, keepalive_timeout=2.0, ttl_dns_cache=60)
    connector = pool.create_connector(config)
    try:
        assert (connector.limit, connector.limit_per_host) == (30, 10)
        # the adapter's own test may read aiohttp internals, as the adapter does
        assert connector._keepalive_timeout == 2.0
        assert connector._cached_hosts._ttl == 60
        assert connector._cleanup_closed_disabled is not pool.cleanup_closed_needed()
    finally:
        await connector.close()


async def test_cleanup_closed_true_where_not_needed_warns_once_without_aiohttp_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pool, "cleanup_closed_needed", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        connector = pool.create_connector(rh.ClientConfig(enable_cleanup_closed=True))
    await connector.close()
    assert [w.category for w in caught] == [rh.ConfigWarning]
    assert "ENABLE_CLEANUP_CLOSED=true is ignored" in str(caught[0].message)
    assert connector._cleanup_closed_disabled


async def test_cleanup_closed_false_disables_it() -> None:
    connector = pool.create_connector(rh.ClientConfig(enable_cleanup_closed=False))
    await connector.close()
    assert connector._cleanup_closed_disabled


def test_cleanup_closed_needed_agrees_with_aiohttp() -> None:
    from aiohttp import connector as aiohttp_connector

    assert pool.cleanup_closed_needed() is aiohttp_connector.NEEDS_CLEANUP_CLOSED


@pytest.mark.parametrize(
    ("host", "port", "label"), [("svc", 80, "svc:80"), ("::1", 8080, "[::1]:8080")]
)
def test_upstream_label(host: str, port: int, label: str) -> None:
    assert pool.upstream_label(host, port) == label


async def test_observer_sees_new_reused_and_closed(recording_server: RecordingServer) -> None:
    observer = RecordingObserver()
    connector = pool.create_connector(rh.ClientConfig(), observer)
    label = f"127.0.0.1:{recording_server.port}"
    with rh.testing.record() as recorder:
        async with rh.ResilientSession(connector=connector) as client:
            for _ in range(3):
                async with client.get(recording_server.url("/a")) as resp:
                    await resp.read()
            assert acquisitions(connector) == [(label, 1, 2)]
            async with client.get(recording_server.url("/close")) as resp:
                await resp.read()
            await until(lambda: len(observer.closed) == 1)
            assert observer.closed[0][0] == label
            assert observer.closed[0][1] > 0
            assert pool.pool_stats(connector).open == 0
    assert [(a.upstream, a.reused) for a in recorder.attempts] == [
        (label, False),
        (label, True),
        (label, True),
        (label, True),
    ]
    assert recording_server.connections == 1


async def test_fresh_connection_skips_idle_ones(recording_server: RecordingServer) -> None:
    """The adapter's side of a stale connection's free retry (``AttemptRecord.fresh``)."""
    connector = pool.create_connector(rh.ClientConfig())
    async with aiohttp.ClientSession(connector=connector) as session:

        async def get(fresh: bool) -> tuple[str, bool | None] | None:
            record = AttemptRecord(fresh)
            token = ATTEMPT_RECORD.set(record)
            try:
                async with session.get(recording_server.url()) as resp:
                    await resp.read()
            finally:
                ATTEMPT_RECORD.reset(token)
            return record.acquired

        label = f"127.0.0.1:{recording_server.port}"
        assert await get(fresh=False) == (label, False)
        assert await get(fresh=True) == (label, False)  # not the idle connection: a new one
        assert await get(fresh=False) == (label, True)
        stats = pool.pool_stats(connector)
        # the new connection replaced the idle one, which was closed: the pool did not grow
        assert (stats.open, stats.idle, stats.active) == (1, 1, 0)
    assert recording_server.connections == 2


async def _hold_requests(
    server: RecordingServer, session: aiohttp.ClientSession, count: int
) -> list[asyncio.Task[int]]:
    async def one() -> int:
        async with session.get(server.url("/held")) as resp:
            await resp.read()
            return resp.status

    return [asyncio.create_task(one()) for _ in range(count)]


@pytest.mark.parametrize("observed", [True, False], ids=["sdk-connector", "foreign-connector"])
async def test_pool_stats_mid_load_and_after(
    recording_server: RecordingServer, observed: bool
) -> None:
    if observed:
        connector = pool.create_connector(rh.ClientConfig(limit_per_host=10))
    else:
        connector = aiohttp.TCPConnector(limit=100, limit_per_host=10)
    label = f"127.0.0.1:{recording_server.port}"
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = await _hold_requests(recording_server, session, 100)
        await recording_server.wait_for(lambda s: s.in_flight == 10)
        await until(lambda: pool.pool_stats(connector).waiting == 90)
        stats = pool.pool_stats(connector)
        assert (stats.limit, stats.limit_per_host) == (100, 10)
        assert (stats.open, stats.idle, stats.active, stats.waiting) == (10, 0, 10, 90)
        assert stats.per_host == {label: rh.HostPoolStats(open=10, idle=0, active=10, waiting=90)}
        assert recording_server.connections == 10
        recording_server.release()
        assert await asyncio.gather(*tasks) == [200] * 100
        stats = pool.pool_stats(connector)
        assert (stats.open, stats.idle, stats.active, stats.waiting) == (10, 10, 0, 0)
    assert recording_server.max_in_flight == 10
    assert recording_server.connections == 10
    assert pool.pool_stats(connector).open == 0  # closed connector: nothing is open


async def test_total_limit_bounds_connections_across_upstreams() -> None:
    servers = [RecordingServer(), RecordingServer()]
    for server in servers:
        await server.start()
    connector = pool.create_connector(rh.ClientConfig(limit=6, limit_per_host=0))
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            tasks = [t for s in servers for t in await _hold_requests(s, session, 20)]
            await until(lambda: sum(s.in_flight for s in servers) == 6)
            await until(lambda: pool.pool_stats(connector).waiting == 34)
            stats = pool.pool_stats(connector)
            assert sum(s.in_flight for s in servers) == 6  # the total limit held every other one
            assert (stats.active, stats.open) == (6, 6)
            assert sum(h.waiting for h in stats.per_host.values()) == 34
            assert len(stats.per_host) == 2
            for server in servers:
                server.release()
            assert len(await asyncio.gather(*tasks)) == 40
    finally:
        for server in servers:
            await server.close()


async def test_pool_wait_is_reported(recording_server: RecordingServer) -> None:
    observer = RecordingObserver()
    connector = pool.create_connector(rh.ClientConfig(limit=1), observer)
    async with aiohttp.ClientSession(connector=connector) as session:
        before = time.monotonic()
        tasks = await _hold_requests(recording_server, session, 2)
        await until(lambda: pool.pool_stats(connector).waiting == 1)
        # The second request queues from before `held_from` until after `held_until`: the first
        # one keeps the only connection until the server answers it, after release().
        held_from = time.monotonic()
        await asyncio.sleep(0.02)  # so that a reported wait of 0 (or too short) fails
        held_until = time.monotonic()
        recording_server.release()
        await asyncio.gather(*tasks)
        after = time.monotonic()
    ((label, waited),) = observer.waits
    assert label == f"127.0.0.1:{recording_server.port}"
    assert held_until - held_from <= waited <= after - before  # the pool's clock is monotonic too
    assert acquisitions(connector) == [(f"127.0.0.1:{recording_server.port}", 1, 1)]


async def test_the_public_connector_serves_a_client_session_of_ones_own(
    recording_server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESILIENT_HTTP_LIMIT_PER_HOST", "3")
    connector = rh.create_connector()  # settings from the environment
    async with aiohttp.ClientSession(connector=connector) as session:
        assert isinstance(session, aiohttp.ClientSession)
        tasks = await _hold_requests(recording_server, session, 5)
        await recording_server.wait_for(lambda s: s.in_flight == 3)
        await until(lambda: rh.pool_stats(connector).waiting == 2)
        stats = rh.pool_stats(connector)
        assert (stats.limit_per_host, stats.active, stats.open) == (3, 3, 3)
        recording_server.release()
        assert await asyncio.gather(*tasks) == [200] * 5
