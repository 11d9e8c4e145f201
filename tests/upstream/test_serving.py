"""How the upstream serves and counts: echo and status routes, its exact counters, the
HTTP/1.1 wire (parser, malformed input, `Connection: close`), control routes and closing.

The counters are what the tests, the demo and the benchmarks judge clients by, so they must be
exact before any fault is added.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from resilient_http.upstream import FaultPlan, Latency
from resilient_http.upstream._http import HttpParseError, RequestParser
from tests.upstream.conftest import Factory, get_status

# -- healthy behaviour and counters ----------------------------------------------------------------


async def test_echo_and_exact_counters(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    upstream = await make_upstream()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"chunk-one,"
        yield b"chunk-two"

    async with session.get(upstream.make_url("/items?q=1")) as resp:
        echo = await resp.json()
        assert "Connection" not in resp.headers
    assert echo == {
        "status": 200,
        "method": "GET",
        "path": "/items",
        "body_length": 0,
        "request": 1,
        "connection": 1,
        "connection_request": 1,
    }
    async with session.post(upstream.make_url("/items"), data=b"x" * 1000) as resp:
        assert (await resp.json())["body_length"] == 1000
    async with session.post(upstream.make_url("/stream"), data=chunks()) as resp:
        assert (await resp.json())["body_length"] == len(b"chunk-one,chunk-two")
    async with session.put(upstream.make_url("/c"), data=b"abc", expect100=True) as resp:
        assert (await resp.json())["body_length"] == 3
    async with session.head(upstream.make_url("/items")) as resp:
        assert resp.status == 200
        assert await resp.read() == b""

    stats = upstream.stats()
    assert stats.requests == 5
    assert dict(stats.requests_by_route) == {
        "GET /items": 1,
        "POST /items": 1,
        "POST /stream": 1,
        "PUT /c": 1,
        "HEAD /items": 1,
    }
    assert dict(stats.responses_by_status) == {200: 5}
    assert stats.body_bytes == 1000 + 19 + 3
    assert stats.bodies_sha256 == tuple(
        hashlib.sha256(body).hexdigest() for body in (b"x" * 1000, b"chunk-one,chunk-two", b"abc")
    )
    assert (stats.connections_opened, stats.open_connections, stats.max_open_connections) == (
        1,
        1,
        1,
    )
    assert stats.requests_per_connection == (5,)
    assert [r.connection_request for r in stats.request_log] == [1, 2, 3, 4, 5]
    assert stats.request_log[0].target == "/items?q=1"


async def test_status_and_bytes_routes(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    upstream = await make_upstream(FaultPlan(echo=False))
    assert await get_status(session, upstream.make_url("/status/418")) == 418
    async with session.get(upstream.make_url("/bytes/5000")) as resp:
        assert await resp.read() == b"x" * 5000
    async with session.get(upstream.make_url("/plain")) as resp:
        assert await resp.json() == {"ok": True}
    assert dict(upstream.stats().responses_by_status) == {418: 1, 200: 2}


async def test_concurrent_connections_are_counted(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    gate = asyncio.Event()

    async def gated_sleep(delay: float) -> None:
        await gate.wait()

    upstream = await make_upstream(FaultPlan(latency=Latency.fixed(1.0)), sleep=gated_sleep)
    calls = [asyncio.create_task(get_status(session, upstream.make_url(f"/{i}"))) for i in range(5)]
    stats = await upstream.wait_for(lambda s: s.requests == 5)
    assert (stats.open_connections, stats.max_open_connections) == (5, 5)
    gate.set()
    assert await asyncio.gather(*calls) == [200] * 5
    stats = upstream.stats()
    assert stats.requests_per_connection == (1, 1, 1, 1, 1)
    assert stats.responses_by_status == {200: 5}


async def test_close_is_idempotent_and_leaves_nothing_open(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    upstream = await make_upstream(FaultPlan(latency=Latency.fixed(3600)))
    pending = asyncio.create_task(get_status(session, upstream.make_url("/slow")))
    await upstream.wait_for(lambda s: s.requests == 1)
    await upstream.close()
    await upstream.close()
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await pending
    stats = upstream.stats()
    assert (stats.open_connections, stats.connections_closed) == (0, stats.connections_opened)
    with pytest.raises(RuntimeError):
        await upstream.start()


# -- wire details ----------------------------------------------------------------------------------


async def test_malformed_request_gets_400(make_upstream: Factory) -> None:
    upstream = await make_upstream()
    reader, writer = await asyncio.open_connection(upstream.host, upstream.port)
    writer.write(b"NONSENSE\r\n\r\n")
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert response.startswith(b"HTTP/1.1 400 ")
    assert upstream.stats().requests == 0


async def test_connection_close_request_ends_the_connection(make_upstream: Factory) -> None:
    upstream = await make_upstream()
    reader, writer = await asyncio.open_connection(upstream.host, upstream.port)
    writer.write(b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
    response = await reader.read()  # EOF: the server closed after the first answer
    writer.close()
    await writer.wait_closed()
    assert response.count(b"HTTP/1.1 200 OK") == 1
    assert upstream.stats().requests_by_route == {"GET /a": 1}


async def test_close_does_not_wait_for_a_stalled_reader(make_upstream: Factory) -> None:
    upstream = await make_upstream()
    reader, writer = await asyncio.open_connection(upstream.host, upstream.port)
    writer.write(b"GET /bytes/16000000 HTTP/1.1\r\n\r\n")  # and never read the answer
    await upstream.wait_for(lambda s: s.responses == 1)
    async with asyncio.timeout(30):
        await upstream.close()
    assert upstream.stats().open_connections == 0
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    del reader


@pytest.mark.parametrize("split", range(1, 60, 7))
def test_parser_reassembles_split_chunked_requests(split: int) -> None:
    raw = (
        b"POST /p?x=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n5\r\ndefgh\r\n0\r\nTrailer: t\r\n\r\n"
        b"GET /next HTTP/1.0\r\n\r\n"
    )
    parser = RequestParser()
    requests = []
    for start in range(0, len(raw), split):
        parser.feed(raw[start : start + split])
        while (request := parser.next_request()) is not None:
            requests.append(request)
    assert [(r.method, r.path, r.body, r.keep_alive) for r in requests] == [
        ("POST", "/p", b"abcdefgh", True),
        ("GET", "/next", b"", False),
    ]
    assert parser.is_idle


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET / HTTP/1.1\r\nX" + b"a" * 70_000, 431),
        (b"GET / HTTP/1.1\r\n bad: header\r\n\r\n", 400),
    ],
)
def test_parser_rejects_malformed_input(raw: bytes, status: int) -> None:
    parser = RequestParser()
    parser.feed(raw)
    with pytest.raises(HttpParseError) as failure:
        parser.next_request()
    assert failure.value.status == status


async def test_control_routes_stay_out_of_the_counts(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    upstream = await make_upstream(FaultPlan(reset_probability=1.0))
    async with aiohttp.ClientSession() as control:
        async with control.get(upstream.make_url("/__stats__")) as resp:
            assert (await resp.json())["requests"] == 0
        with pytest.raises(aiohttp.ClientOSError):
            await get_status(session, upstream.make_url("/"))
        async with control.post(upstream.make_url("/__reset__")) as resp:
            assert resp.status == 200
    stats = upstream.stats()
    assert (stats.requests, stats.resets, stats.connections_opened) == (0, 0, 0)
