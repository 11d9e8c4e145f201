"""ResilientSession against real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

import resilient_http as rh
from tests.helpers import until
from tests.servers import RecordingServer


async def test_async_with_and_await_forms(recording_server: RecordingServer) -> None:
    async with rh.ResilientSession(config=rh.ClientConfig()) as client:
        async with client.get(recording_server.url("/items"), params={"q": 1}) as resp:
            assert isinstance(resp, aiohttp.ClientResponse)
            assert resp.status == 200
            assert (await resp.json())["path"] == "/items"
            assert resp.url.query["q"] == "1"
        resp = await client.post(recording_server.url("/items"), json={"a": 1})
        assert (await resp.json()) == {"method": "POST", "path": "/items", "body": '{"a": 1}'}
        resp.release()
        assert client.pool_stats().idle == 1


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_every_method_helper(recording_server: RecordingServer, method: str) -> None:
    async with rh.ResilientSession() as client:
        helper = getattr(client, method.lower())
        async with helper(recording_server.url("/m"), data=b"x") as resp:
            assert (await resp.json())["method"] == method
        async with client.request(method, recording_server.url("/m")) as resp:
            assert (await resp.json())["method"] == method


async def test_head(recording_server: RecordingServer) -> None:
    async with rh.ResilientSession() as client, client.head(recording_server.url()) as resp:
        assert resp.status == 200
        assert resp.method == "HEAD"


async def test_base_url_and_session_kwargs(recording_server: RecordingServer) -> None:
    async with rh.ResilientSession(
        base_url=recording_server.url("/api/"), headers={"X-Team": "core"}
    ) as client:
        async with client.get("items") as resp:
            assert (await resp.json())["path"] == "/api/items"
            assert resp.request_info.headers["X-Team"] == "core"
        assert isinstance(client.session, aiohttp.ClientSession)
        assert client.session.headers["X-Team"] == "core"


async def test_sequential_requests_reuse_one_connection(recording_server: RecordingServer) -> None:
    async with rh.ResilientSession() as client:
        for _ in range(50):
            async with client.get(recording_server.url()) as resp:
                await resp.read()
        stats = client.pool_stats()
        assert (stats.open, stats.idle, stats.active, stats.waiting) == (1, 1, 0, 0)
    assert len(recording_server.peers) == 50
    assert recording_server.connections == 1


async def test_limit_per_host_from_env_bounds_server_side_connections(
    recording_server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESILIENT_HTTP_LIMIT_PER_HOST", "10")
    async with rh.ResilientSession() as client:
        assert client.config.limit_per_host == 10

        async def one() -> int:
            async with client.get(recording_server.url("/held")) as resp:
                await resp.read()
                return resp.status

        tasks = [asyncio.create_task(one()) for _ in range(100)]
        await recording_server.wait_for(lambda s: s.in_flight == 10)
        await until(lambda: client.pool_stats().waiting == 90)
        assert (client.pool_stats().active, recording_server.connections) == (10, 10)
        recording_server.release()
        assert await asyncio.gather(*tasks) == [200] * 100
        assert client.pool_stats().active == 0
        assert client.pool_stats().idle == 10
    assert recording_server.max_in_flight == 10
    assert recording_server.connections == 10
    assert client.pool_stats().open == 0


async def test_closing_releases_everything_and_closed_session_raises(
    recording_server: RecordingServer,
) -> None:
    client = rh.ResilientSession()
    connector = client.session.connector
    assert connector is not None
    resp = await client.get(recording_server.url())
    await client.close()
    assert client.closed
    assert connector.closed
    assert resp.connection is None or resp.closed
    with pytest.raises(RuntimeError, match="Session is closed"):
        await client.get(recording_server.url())
    await client.close()  # idempotent


async def test_connector_owner_false_leaves_the_connector_open(
    recording_server: RecordingServer,
) -> None:
    connector = aiohttp.TCPConnector(limit=5, limit_per_host=2)
    try:
        async with rh.ResilientSession(connector=connector, connector_owner=False) as client:
            async with client.get(recording_server.url()) as resp:
                await resp.read()
            stats = client.pool_stats()
            assert (stats.limit, stats.limit_per_host, stats.idle) == (5, 2, 1)
        assert not connector.closed
    finally:
        await connector.close()


async def test_given_connector_is_owned_by_default(recording_server: RecordingServer) -> None:
    connector = aiohttp.TCPConnector()
    async with rh.ResilientSession(connector=connector) as client:
        await (await client.get(recording_server.url())).read()
    assert connector.closed


async def test_deadline_raises_timeout_error(recording_server: RecordingServer) -> None:
    async with rh.ResilientSession() as client:
        async with asyncio.timeout(10):  # a safety net only
            with pytest.raises(asyncio.TimeoutError):
                await client.get(recording_server.url("/held"), deadline=0.05)
        assert recording_server.in_flight == 1
        await until(lambda: client.pool_stats().active == 0)


async def test_deadline_counts_from_when_the_call_runs(recording_server: RecordingServer) -> None:
    """As aiohttp's timeout: a call made now and awaited later (behind a semaphore, say) has its
    whole deadline once it runs, however long it waited to start."""
    async with rh.ResilientSession() as client:
        waiting = client.get(recording_server.url(), deadline=0.2)
        with pytest.raises(asyncio.TimeoutError):  # the same deadline passes meanwhile
            await client.get(recording_server.url("/held"), deadline=0.2)
        async with asyncio.timeout(10), waiting as resp:  # a safety net only
            assert resp.status == 200


async def test_deadline_bounds_reading_the_body(recording_server: RecordingServer) -> None:
    async with (
        rh.ResilientSession() as client,
        client.get(recording_server.url("/held-body"), deadline=0.2) as resp,
    ):
        assert resp.status == 200
        with pytest.raises(asyncio.TimeoutError):
            await resp.read()


async def test_total_timeout_from_config_is_the_default_deadline(
    recording_server: RecordingServer,
) -> None:
    config = rh.ClientConfig(timeout=rh.TimeoutConfig(total=0.05))
    async with rh.ResilientSession(config=config) as client:
        with pytest.raises(asyncio.TimeoutError):
            await client.get(recording_server.url("/held"))


async def test_per_call_timeout_replaces_attempt_settings(
    recording_server: RecordingServer,
) -> None:
    async with rh.ResilientSession() as client:
        with pytest.raises(aiohttp.SocketTimeoutError):
            await client.get(
                recording_server.url("/held"), timeout=aiohttp.ClientTimeout(sock_read=0.05)
            )


@pytest.mark.parametrize("deadline", [0, -1, float("nan"), float("inf"), "5", True])
async def test_bad_deadline_is_a_config_error_before_sending(
    recording_server: RecordingServer, deadline: object
) -> None:
    async with rh.ResilientSession() as client:
        with pytest.raises(rh.ConfigError, match=r"deadline=.*: expected a number of seconds > 0"):
            await client.get(recording_server.url(), deadline=deadline)
    assert recording_server.peers == []


async def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(rh.ConfigError, match=r"config=.*expected a ClientConfig"):
        rh.ResilientSession(config={"limit": 3})  # type: ignore[arg-type]
    with pytest.raises(rh.ConfigError, match=r"timeout=5: expected an aiohttp\.ClientTimeout"):
        rh.ResilientSession(timeout=5)


async def test_bad_environment_fails_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESILIENT_HTTP_LIMIT", "many")
    with pytest.raises(rh.ConfigError, match="RESILIENT_HTTP_LIMIT='many'"):
        rh.ResilientSession()


async def test_hidden_resend_is_off_on_the_owned_session() -> None:
    async with rh.ResilientSession() as client:
        assert client.session._retry_connection is False


async def test_ws_connect_passes_through(recording_server: RecordingServer) -> None:
    async with rh.ResilientSession() as client:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await client.session.ws_connect(recording_server.url("/ws"))
