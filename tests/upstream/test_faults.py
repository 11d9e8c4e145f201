"""Connection-level faults: stale keep-alive closes, idle timeouts, resets (before and mid
body), hangs, refused connections, injected latency and slow bodies.

These are the failures a client sees as transport errors or delays rather than as a status;
random ones must follow the plan's seed so that a failing run can be replayed.
"""

from __future__ import annotations

import asyncio
import errno

import aiohttp
import pytest

from resilient_http.upstream import FaultPlan, Latency, Outage, RetryAfter, SlowBody, down_url
from tests.upstream.conftest import Factory, get_status


class FakeSleep:
    """Records requested delays and returns at once (after one loop turn)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


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


async def test_stale_idle_closes_a_reuse_after_the_idle_boundary(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    # The injected clock says how long the connection was idle; nothing waits.
    now = [100.0]
    upstream = await make_upstream(FaultPlan(stale_idle=1.0), clock=lambda: now[0])
    url = upstream.make_url("/")
    assert await get_status(session, url) == 200
    now[0] += 0.9  # below the boundary: reused and answered
    assert await get_status(session, url) == 200
    now[0] += 1.0  # at the boundary: closed unanswered when the reuse arrives
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await get_status(session, url)
    assert await get_status(session, url) == 200  # a new connection is fine
    stats = upstream.stats()
    assert (stats.stale_closes, stats.idle_closes, stats.responses) == (1, 0, 3)
    assert stats.requests_per_connection == (3, 1)


async def test_close_after_announces_the_request_cap(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    upstream = await make_upstream(FaultPlan(close_after=2))
    headers = []
    for _ in range(5):
        async with session.get(upstream.make_url("/")) as resp:
            await resp.read()
            headers.append(resp.headers.get("Connection"))
    # Announced: no request ever meets a dead connection.
    assert headers == [None, "close", None, "close", None]
    stats = upstream.stats()
    assert (stats.announced_closes, stats.stale_closes, stats.responses) == (2, 0, 5)
    assert stats.requests_per_connection == (2, 2, 1)


async def test_capacity_answers_503_beyond_k_in_flight(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    release = asyncio.Event()

    async def held(seconds: float) -> None:
        await release.wait()

    plan = FaultPlan(
        latency=Latency.fixed(1.0), capacity=2, capacity_retry_after=RetryAfter("seconds", 3)
    )
    upstream = await make_upstream(plan, sleep=held)
    url = upstream.make_url("/")
    first = [asyncio.create_task(get_status(session, url)) for _ in range(2)]
    await upstream.wait_for(lambda s: s.requests == 2)
    async with session.get(url) as resp:  # the third in flight
        assert (resp.status, resp.headers["Retry-After"]) == (503, "3")
    release.set()
    assert await asyncio.gather(*first) == [200, 200]
    assert await get_status(session, url) == 200  # load gone: answered again
    assert upstream.stats().over_capacity == 1


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


async def test_a_long_tail_delays_its_share_of_answers(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    sleep = FakeSleep()
    upstream = await make_upstream(
        FaultPlan(latency=Latency.tail(0.001, 1.0, 0.1), seed=3), sleep=sleep
    )
    for _ in range(200):
        await get_status(session, upstream.make_url("/"))
    assert set(sleep.delays) == {0.001, 1.0}
    assert 10 <= sleep.delays.count(1.0) <= 30  # 10 % of 200, seeded


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


# -- outages ---------------------------------------------------------------------------------------


async def test_refuse_outage_closes_then_refuses_then_recovers_at_the_same_address(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    upstream = await make_upstream(FaultPlan(outage=Outage("refuse", after=0.0, duration=0.2)))
    url = upstream.make_url("/")
    # The first request starts the outage at once: it is closed unanswered, and counted.
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await get_status(session, url)
    with pytest.raises(aiohttp.ClientConnectorError) as refused:
        await get_status(session, url)
    assert isinstance(refused.value.os_error, ConnectionRefusedError)
    stats = upstream.stats()
    assert (stats.outages_begun, stats.outages_ended) == (1, 0)
    assert (stats.outage_closes, stats.requests, stats.responses) == (1, 1, 0)
    assert [r.outcome for r in stats.request_log] == ["outage_close"]
    await upstream.wait_for(lambda s: s.outages_ended == 1)
    assert await get_status(session, url) == 200
    assert upstream.stats().connections_opened == 2  # the refused connect never got through


async def test_refuse_outage_closes_idle_keep_alive_connections(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    upstream = await make_upstream(FaultPlan(outage=Outage("refuse", after=0.05, duration=5)))
    assert await get_status(session, upstream.make_url("/")) == 200
    stats = await upstream.wait_for(lambda s: s.outages_begun == 1 and s.open_connections == 0)
    assert (stats.connections_closed, stats.outage_closes, stats.requests) == (1, 0, 1)


async def test_hang_outage_never_answers_and_closes_the_hung_connections_at_recovery(
    make_upstream: Factory, session: aiohttp.ClientSession
) -> None:
    upstream = await make_upstream(FaultPlan(outage=Outage("hang", after=0.0, duration=0.2)))
    pending = asyncio.create_task(get_status(session, upstream.make_url("/")))
    await upstream.wait_for(lambda s: s.hangs == 1)
    assert not pending.done()
    await upstream.wait_for(lambda s: s.outages_ended == 1)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await pending
    assert await get_status(session, upstream.make_url("/")) == 200
    stats = upstream.stats()
    assert [r.outcome for r in stats.request_log] == ["hang", "200"]


def test_outage_text_form_round_trips() -> None:
    outage = Outage.parse("hang:1.5:6")
    assert outage == Outage("hang", 1.5, 6.0)
    assert Outage.parse(str(outage)) == outage
    for text in ("down:1:2", "refuse:1", "refuse:-1:2"):
        with pytest.raises(ValueError, match="outage"):
            Outage.parse(text)
