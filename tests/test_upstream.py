"""The fault-injecting upstream, exercised by real aiohttp clients on 127.0.0.1.

Nothing here sleeps to wait: sleeps and clocks are injected, and tests wait on the upstream's
own counters (`wait_for`). Wall-clock bounds only appear as generous safety nets.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import hashlib
import itertools
import json
import logging
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from resilient_http.upstream import (
    FaultPlan,
    FaultyUpstream,
    Latency,
    RateLimit,
    RetryAfter,
    Script,
    SlowBody,
    Throttle,
    UpstreamProcess,
    UpstreamStats,
    down_url,
    parse_plan_args,
    plan_to_args,
)
from resilient_http.upstream._http import HttpParseError, RequestParser

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


class FakeSleep:
    """Records requested delays and returns at once (after one loop turn)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


async def get_status(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> int:
    async with session.get(url, **kwargs) as resp:
        await resp.read()
        return resp.status


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


# -- stale keep-alive ------------------------------------------------------------------------------


async def test_stale_close_fails_the_reused_connection(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    upstream = await make_upstream(FaultPlan(stale_after=1))
    async with session.get(upstream.make_url("/a")) as resp:
        await resp.read()
        assert "Connection" not in resp.headers
        assert "Keep-Alive" not in resp.headers
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await get_status(session, upstream.make_url("/a"))
    stats = upstream.stats()
    assert (stats.stale_closes, stats.requests, stats.responses) == (1, 2, 1)
    assert [r.outcome for r in stats.request_log] == ["200", "stale_close"]
    assert stats.requests_per_connection == (2,)


async def test_stale_reset_variant(make_upstream: Factory, session: aiohttp.ClientSession) -> None:
    upstream = await make_upstream(FaultPlan(stale_after=2, stale_mode="reset"))
    for _ in range(2):
        assert await get_status(session, upstream.make_url("/")) == 200
    with pytest.raises(aiohttp.ClientOSError) as failure:
        await get_status(session, upstream.make_url("/"))
    assert failure.value.errno == errno.ECONNRESET
    assert upstream.stats().stale_closes == 1


async def test_aiohttp_silent_resend_matches_stale_closes(make_upstream: Factory) -> None:
    """With aiohttp's default hidden resend, every stale close costs one invisible retry."""
    upstream = await make_upstream(FaultPlan(stale_after=(1, 3), seed=7))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as client:
        for _ in range(20):
            assert await get_status(client, upstream.make_url("/")) == 200
    stats = upstream.stats()
    assert stats.responses == 20
    assert stats.requests == 20 + stats.stale_closes
    assert stats.connections_opened == stats.stale_closes + 1
    assert all(2 <= n <= 4 for n in stats.requests_per_connection[:-1])

    again = await make_upstream(FaultPlan(stale_after=(1, 3), seed=7))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as client:
        for _ in range(20):
            await get_status(client, again.make_url("/"))
    assert again.stats().requests_per_connection == stats.requests_per_connection


async def test_idle_timeout_closes_idle_connections(make_upstream: Factory) -> None:
    upstream = await make_upstream(FaultPlan(idle_timeout=0.05))
    async with aiohttp.ClientSession() as client:
        assert await get_status(client, upstream.make_url("/")) == 200
        await upstream.wait_for(lambda s: s.idle_closes == 1)
        assert await get_status(client, upstream.make_url("/")) == 200
    stats = upstream.stats()
    assert (stats.requests, stats.connections_opened, stats.stale_closes) == (2, 2, 0)


# -- resets, hangs, refused ------------------------------------------------------------------------


async def test_reset_before_response(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    upstream = await make_upstream(FaultPlan(reset_probability=1.0))
    with pytest.raises(aiohttp.ClientOSError) as failure:
        await get_status(session, upstream.make_url("/"))
    assert failure.value.errno == errno.ECONNRESET
    stats = upstream.stats()
    assert (stats.resets, stats.requests, stats.responses) == (1, 1, 0)


async def test_random_resets_follow_the_seed(make_upstream: Factory) -> None:
    async def failures(seed: int) -> list[int]:
        upstream = await make_upstream(FaultPlan(reset_probability=0.3, seed=seed))
        failed = []
        async with aiohttp.ClientSession() as client:
            client._retry_connection = False
            for number in range(40):
                try:
                    await get_status(client, upstream.make_url("/"))
                except aiohttp.ClientOSError:
                    failed.append(number)
        assert upstream.stats().resets == len(failed)
        return failed

    first = await failures(3)
    assert 0 < len(first) < 40
    assert await failures(3) == first
    assert await failures(4) != first


async def test_reset_mid_body(make_upstream: Factory, session: aiohttp.ClientSession) -> None:
    upstream = await make_upstream(FaultPlan(reset_mid_body_probability=1.0))
    async with session.get(upstream.make_url("/")) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    stats = upstream.stats()
    assert (stats.mid_body_resets, dict(stats.responses_by_status)) == (1, {200: 1})


async def test_hang_never_answers(make_upstream: Factory, session: aiohttp.ClientSession) -> None:
    upstream = await make_upstream(FaultPlan(hang_probability=1.0))
    pending = asyncio.create_task(get_status(session, upstream.make_url("/")))
    await upstream.wait_for(lambda s: s.hangs == 1)
    assert not pending.done()
    await upstream.close()
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await pending
    assert upstream.stats().responses == 0


async def test_down_url_refuses_connections(session: aiohttp.ClientSession) -> None:
    with pytest.raises(aiohttp.ClientConnectorError):
        await get_status(session, down_url("/x"))


# -- throttling ------------------------------------------------------------------------------------


async def test_throttle_first_k_with_delta_seconds(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    upstream = await make_upstream(
        FaultPlan(throttle=Throttle(status=503, first=2, retry_after=RetryAfter("seconds", 3)))
    )
    answers = []
    for _ in range(3):
        async with session.get(upstream.make_url("/")) as resp:
            answers.append((resp.status, resp.headers.get("Retry-After")))
    assert answers == [(503, "3"), (503, "3"), (200, None)]


async def test_throttle_every_nth(make_upstream: Factory, session: aiohttp.ClientSession) -> None:
    upstream = await make_upstream(FaultPlan(throttle=Throttle(status=429, every=3)))
    statuses = [await get_status(session, upstream.make_url("/")) for _ in range(7)]
    assert statuses == [200, 200, 429, 200, 200, 429, 200]


async def test_retry_after_http_date_uses_the_wall_clock(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    now = 1_700_000_000.0
    plan = FaultPlan(throttle=Throttle(status=429, first=1, retry_after=RetryAfter("http-date", 5)))
    upstream = await make_upstream(plan, wall_clock=lambda: now)
    async with session.get(upstream.make_url("/")) as resp:
        value = resp.headers["Retry-After"]
    assert email.utils.parsedate_to_datetime(value).timestamp() == now + 5


@pytest.mark.parametrize(
    ("form", "check"),
    [
        ("garbage", lambda v: not v.isdigit()),
        ("negative", lambda v: int(v) < 0),
        ("absurd", lambda v: int(v) > 10**9),
    ],
)
async def test_bad_retry_after_values(
    make_upstream: Factory,
    session: aiohttp.ClientSession,
    form: Any,
    check: Callable[[str], bool],
) -> None:
    plan = FaultPlan(throttle=Throttle(first=5, retry_after=RetryAfter(form)))
    upstream = await make_upstream(plan)
    for _ in range(5):
        async with session.get(upstream.make_url("/")) as resp:
            assert resp.status == 503
            assert check(resp.headers["Retry-After"])


async def test_retry_after_none(make_upstream: Factory, session: aiohttp.ClientSession) -> None:
    upstream = await make_upstream(
        FaultPlan(throttle=Throttle(first=1, retry_after=RetryAfter("none")))
    )
    async with session.get(upstream.make_url("/")) as resp:
        assert (resp.status, "Retry-After" in resp.headers) == (503, False)


async def test_throttle_probability_follows_the_seed(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    async def statuses(seed: int) -> list[int]:
        upstream = await make_upstream(FaultPlan(seed=seed, throttle=Throttle(probability=0.5)))
        return [await get_status(session, upstream.make_url("/")) for _ in range(30)]

    first = await statuses(1)
    assert set(first) == {200, 503}
    assert await statuses(1) == first


async def test_throttle_without_repeat_lets_the_retry_through(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    upstream = await make_upstream(FaultPlan(throttle=Throttle(every=1, repeat=False)))

    async def status(path: str, client: str | None = None) -> int:
        headers = {"X-Client-Id": client} if client else {}
        return await get_status(session, upstream.make_url(path), headers=headers)

    # Every request is drawn; the same request (method, target, client) never twice in a row.
    assert [await status("/a") for _ in range(4)] == [503, 200, 503, 200]
    interleaved = [503, 503, 200, 200]
    assert [await status(p) for p in ("/b?x=1", "/b?x=2", "/b?x=1", "/b?x=2")] == interleaved
    assert [await status("/c", c) for c in ("alice", "bob", "alice", "bob")] == interleaved
    async with session.post(upstream.make_url("/a")) as resp:
        assert resp.status == 503  # another method: another request
    stats = upstream.stats()
    assert stats.requests == 13
    assert stats.responses_by_status == {503: 7, 200: 6}


async def test_throttle_without_repeat_draws_as_with_repeat(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    async def statuses(seed: int, *, repeat: bool) -> list[int]:
        throttle = Throttle(probability=0.5, repeat=repeat)
        upstream = await make_upstream(FaultPlan(seed=seed, throttle=throttle))
        return [await get_status(session, upstream.make_url("/")) for _ in range(40)]

    drawn = await statuses(3, repeat=True)
    once = await statuses(3, repeat=False)
    assert await statuses(3, repeat=False) == once  # deterministic with the seed
    # Same draws; a drawn request passes exactly when the one before it was throttled.
    expected = [
        503 if d == 503 and (i == 0 or once[i - 1] != 503) else 200 for i, d in enumerate(drawn)
    ]
    assert once == expected
    assert 503 in once
    assert all(not (a == b == 503) for a, b in itertools.pairwise(once))
    assert any(a == b == 503 for a, b in itertools.pairwise(drawn))  # repeat=True does


async def test_throttle_once_per_call_under_concurrency(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    plan = FaultPlan(seed=7, throttle=Throttle(probability=0.3, repeat=False))
    upstream = await make_upstream(plan)

    async def call(number: int) -> list[int]:
        """One logical call with its own target, retried once on 503."""
        url = upstream.make_url(f"/items?call={number}")
        first = await get_status(session, url)
        return [first] if first != 503 else [first, await get_status(session, url)]

    attempts = await asyncio.gather(*(call(number) for number in range(200)))
    assert all(statuses[-1] == 200 for statuses in attempts)
    throttled = sum(len(statuses) - 1 for statuses in attempts)
    assert 30 < throttled < 90
    stats = upstream.stats()
    assert stats.requests == 200 + throttled
    assert stats.responses_by_status == {200: 200, 503: throttled}


async def test_throttle_forgets_the_oldest_unclaimed_passes(
    make_upstream: Factory, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("resilient_http.upstream._faults._MAX_OWED_PASSES", 2)
    upstream = await make_upstream(FaultPlan(throttle=Throttle(every=1, repeat=False)))
    paths = ("/a", "/b", "/c", "/a", "/c")
    got = [await get_status(session, upstream.make_url(path)) for path in paths]
    assert got == [503, 503, 503, 503, 200]  # /a's pass was dropped when /c's was added


async def test_scripts_per_path_and_fault_steps(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    plan = FaultPlan(scripts=(Script((503, 503), path="/a"), Script(("reset", 502), path="/b")))
    upstream = await make_upstream(plan)
    assert [await get_status(session, upstream.make_url("/a")) for _ in range(3)] == [503, 503, 200]
    with pytest.raises(aiohttp.ClientOSError):
        await get_status(session, upstream.make_url("/b"))
    assert [await get_status(session, upstream.make_url("/b")) for _ in range(2)] == [502, 200]
    assert await get_status(session, upstream.make_url("/c")) == 200
    assert upstream.stats().resets == 1


async def test_scripts_per_client(make_upstream: Factory, session: aiohttp.ClientSession) -> None:
    upstream = await make_upstream(FaultPlan(scripts=(Script((429,), per_client=True),)))
    url = upstream.make_url("/")
    for client in ("alice", "bob"):
        got = [await get_status(session, url, headers={"X-Client-Id": client}) for _ in range(2)]
        assert got == [429, 200]
    assert await get_status(session, url) == 429  # no header: keyed by the peer address


async def test_rate_limit_token_bucket(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    now = [100.0]
    upstream = await make_upstream(
        FaultPlan(rate_limit=RateLimit(rate=0.5, burst=2)), clock=lambda: now[0]
    )
    url, alice = upstream.make_url("/"), {"X-Client-Id": "alice"}
    assert [await get_status(session, url, headers=alice) for _ in range(2)] == [200, 200]
    async with session.get(url, headers=alice) as resp:
        assert (resp.status, resp.headers["Retry-After"]) == (429, "2")
    assert await get_status(session, url, headers={"X-Client-Id": "bob"}) == 200
    now[0] += 2.0
    assert await get_status(session, url, headers=alice) == 200
    assert upstream.stats().rate_limited == 1


# -- latency and slow bodies -----------------------------------------------------------------------


async def test_latency_uses_injected_sleep(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    sleep = FakeSleep()
    upstream = await make_upstream(FaultPlan(latency=Latency.fixed(0.25)), sleep=sleep)
    assert [await get_status(session, upstream.make_url("/")) for _ in range(3)] == [200] * 3
    assert sleep.delays == [0.25, 0.25, 0.25]


@pytest.mark.parametrize("latency", [Latency.uniform(0.01, 0.02), Latency.lognormal(0.05, 0.5)])
async def test_latency_distributions_follow_the_seed(
    make_upstream: Factory, session: aiohttp.ClientSession, latency: Latency
) -> None:
    runs = []
    for _ in range(2):
        sleep = FakeSleep()
        upstream = await make_upstream(FaultPlan(latency=latency, seed=9), sleep=sleep)
        for _ in range(20):
            await get_status(session, upstream.make_url("/"))
        runs.append(sleep.delays)
    assert runs[0] == runs[1]
    assert len(set(runs[0])) == 20
    if latency.kind == "uniform":
        assert all(0.01 <= d <= 0.02 for d in runs[0])


async def test_slow_body_arrives_in_chunks(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    sleep = FakeSleep()
    upstream = await make_upstream(FaultPlan(slow_body=SlowBody(chunks=3, delay=0.1)), sleep=sleep)
    async with session.post(upstream.make_url("/slow"), data=b"abc") as resp:
        assert (await resp.json())["body_length"] == 3
    assert sleep.delays == [0.1, 0.1, 0.1]
    assert await get_status(session, upstream.make_url("/next")) == 200
    assert upstream.stats().requests_per_connection == (2,)


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


# -- plans and the subprocess ----------------------------------------------------------------------


def test_plan_survives_the_command_line() -> None:
    plan = FaultPlan(
        seed=5,
        latency=Latency.lognormal(0.01, 0.7),
        stale_after=(1, 3),
        stale_mode="reset",
        idle_timeout=2.5,
        reset_probability=0.01,
        reset_mid_body_probability=0.02,
        hang_probability=0.001,
        throttle=Throttle(status=429, probability=0.1, first=2, every=10, repeat=False),
        scripts=(Script((503, "reset", 200), path="/a", per_client=True), Script(("hang",))),
        rate_limit=RateLimit(rate=50, burst=5, retry_after="http-date"),
        slow_body=SlowBody(chunks=2, delay=0.01, probability=0.5),
        client_id_header="X-Tenant",
        echo=False,
    )
    assert parse_plan_args(plan_to_args(plan))[3] == plan
    assert parse_plan_args([])[3] == FaultPlan()


def test_throttle_repeat_text_form() -> None:
    throttle = Throttle.parse("probability=0.05,retry_after=none,repeat=false")
    assert throttle == Throttle(probability=0.05, retry_after=RetryAfter("none"), repeat=False)
    assert str(throttle).endswith(",repeat=false")
    assert Throttle.parse(str(throttle)) == throttle
    assert Throttle.parse("repeat=TRUE") == Throttle.parse("") == Throttle()
    with pytest.raises(ValueError, match="repeat must be true or false"):
        Throttle.parse("repeat=no")
    with pytest.raises(SystemExit) as exited:
        parse_plan_args(["--throttle", "first=1,repeat=maybe"])
    assert exited.value.code == 2


@pytest.mark.parametrize(
    "changes",
    [
        {"reset_probability": 1.5},
        {"stale_after": 0},
        {"stale_after": (3, 1)},
        {"idle_timeout": 0},
        {"stale_mode": "explode"},
        {"client_id_header": ""},
    ],
)
def test_plan_validation(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        FaultPlan().replace(**changes)


async def test_subprocess_serves_and_reports_stats() -> None:
    async with asyncio.timeout(60):
        process = UpstreamProcess(FaultPlan(stale_after=1))
        async with process, aiohttp.ClientSession() as client:
            for _ in range(3):
                assert await get_status(client, process.make_url("/p")) == 200
            stats = await process.stats(log=True)
            assert isinstance(stats, UpstreamStats)
            assert (stats.requests, stats.responses, stats.stale_closes) == (5, 3, 2)
            assert stats.requests_by_route == {"GET /p": 5}
            assert len(stats.request_log) == 5
            await process.reset_stats()
            assert (await process.stats()).requests == 0
        assert process.returncode == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_cli_prints_the_port_and_exits_cleanly(signum: signal.Signals) -> None:
    async with asyncio.timeout(60):
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "resilient_http.upstream",
            "--port",
            "0",
            "--throttle",
            "first=1",
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None
        line = (await child.stdout.readline()).decode()
        match = re.fullmatch(r"listening 127\.0\.0\.1:(\d+)\n", line)
        assert match, line
        async with aiohttp.ClientSession() as client:
            url = f"http://127.0.0.1:{match[1]}/"
            assert [await get_status(client, url) for _ in range(2)] == [503, 200]
            async with client.get(url + "__stats__") as resp:
                assert json.loads(await resp.read())["responses_by_status"] == {"503": 1, "200": 1}
        child.send_signal(signum)
        out, _ = await child.communicate()
        assert (child.returncode, out) == (0, b"")
