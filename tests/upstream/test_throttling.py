"""Status-level faults: throttling (first k, every n-th, by probability, with or without
repeat), Retry-After in all its forms (good and deliberately bad), scripted answers per path
or client, and the per-client token-bucket rate limit.

A retrying client is judged by how it handles these answers, so the tests pin exactly which
request gets which status.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from resilient_http.upstream import FaultPlan, RateLimit, RetryAfter, Script, Throttle
from tests.upstream.conftest import Factory, get_status

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
