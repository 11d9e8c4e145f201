"""The circuit breaker against real upstreams on 127.0.0.1, with its clock injected.

A pipeline is assembled as the entry points assemble it, over a real ``aiohttp.ClientSession``;
only time is fake. What the server saw (requests, connections) is asserted beside what the
caller got, and decisions come through the public recorder.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

import resilient_http as rh
from resilient_http._assembly import assemble
from resilient_http._attempt import AttemptStage
from resilient_http._breaker import PROBES_PER_OPENING, is_failure
from resilient_http._listeners import SessionListeners
from resilient_http.retry import RetryPlan
from resilient_http.upstream import down_url
from tests.helpers import FakeClock, until
from tests.servers import serving


class Upstream:
    """Answers ``status`` (changeable), counts requests and connections, can hold answers."""

    def __init__(self, status: int = 500) -> None:
        self.status = status
        self.requests = 0
        self.held = 0
        self.gate: asyncio.Event | None = None
        self.app = web.Application()
        self.app.router.add_get("/", self._answer)

    async def _answer(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.gate is not None:
            self.held += 1
            await self.gate.wait()
            self.held -= 1
        return web.Response(status=self.status, text="x")


@asynccontextmanager
async def breaker_pipeline(
    clock: FakeClock, policy: rh.BreakerPolicy, *, retry: bool = False
) -> AsyncIterator[Callable[..., Any]]:
    """A call function over a pipeline assembled as the entry points assemble it."""
    config = rh.ClientConfig(breaker=policy)
    plan = RetryPlan(config.retry) if retry else None
    async with aiohttp.ClientSession() as session:
        pipeline = assemble(
            config=config,
            plan=plan,
            listeners=SessionListeners(None),
            send_attempt=AttemptStage(session, clock).send,
            clock=clock,
        )

        async def call(url: str) -> int:
            template = aiohttp.ClientTimeout(total=30, connect=5, sock_read=10)
            response = await pipeline.send("GET", url, url, {}, plan, None, 30.0, template)
            async with response:
                await response.read()
            return response.status

        yield call


POLICY = rh.BreakerPolicy(failure_ratio=0.5, min_calls=4, window=10, open_for=5)


@pytest.mark.parametrize(
    ("status", "error", "counted"),
    [
        (200, None, False),
        (404, None, False),
        (429, None, False),
        (501, None, False),
        (500, None, True),
        (503, None, True),
        (None, aiohttp.ClientConnectorError(None, OSError(111, "refused")), True),  # type: ignore[arg-type]
        (None, aiohttp.ConnectionTimeoutError(), True),
        (None, aiohttp.SocketTimeoutError(), True),
        (None, TimeoutError(), True),
        (
            None,
            aiohttp.ServerDisconnectedError(),
            None,
        ),  # a stale connection: not the upstream's health
        (None, aiohttp.InvalidURL("x"), None),
        (None, asyncio.CancelledError(), None),
    ],
)
def test_what_counts_against_an_upstream(
    status: int | None, error: BaseException | None, counted: bool | None
) -> None:
    assert is_failure(status, error) is counted


def test_a_503_asking_for_less_load_is_not_counted() -> None:
    assert is_failure(503, None, CIMultiDict({"Retry-After": "2"})) is None
    assert is_failure(503, None, CIMultiDict()) is True


def test_raise_for_status_errors_count_by_their_status() -> None:
    def raised(status: int, **headers: str) -> aiohttp.ClientResponseError:
        return aiohttp.ClientResponseError(
            None,  # type: ignore[arg-type]
            (),
            status=status,
            headers=CIMultiDict(headers),
        )

    assert is_failure(None, raised(502)) is True
    assert is_failure(None, raised(501)) is False
    assert is_failure(None, raised(429)) is False
    assert is_failure(None, raised(503, **{"Retry-After": "1"})) is None


async def test_opens_at_the_ratio_then_rejects_without_touching_the_upstream() -> None:
    clock, upstream = FakeClock(), Upstream(status=500)
    with rh.testing.record() as recorder:
        async with serving(upstream.app) as url, breaker_pipeline(clock, POLICY) as call:
            upstream.status = 200
            assert [await call(url) for _ in range(2)] == [200, 200]
            upstream.status = 500
            assert await call(url) == 500  # 1 of 3 failed, and 3 < min_calls
            assert recorder.breaker_changes == []
            assert await call(url) == 500  # 2 of 4: the ratio (0.5) is reached, opens
            seen = upstream.requests
            clock.now += 1.5
            with pytest.raises(rh.CircuitOpenError) as caught:
                await call(url)
            assert upstream.requests == seen  # no attempt reached the upstream
    assert isinstance(caught.value, aiohttp.ClientConnectionError)
    upstream_label = url.removeprefix("http://")
    assert caught.value.upstream == upstream_label
    assert caught.value.retry_in == pytest.approx(3.5)
    assert caught.value.__notes__ == [
        f"no attempt: GET {upstream_label} circuit breaker open (next probe in 3.500 s)"
    ]
    assert [(c.previous, c.state, c.failures, c.calls) for c in recorder.breaker_changes] == [
        ("closed", "open", 2, 4)
    ]
    assert [(r.upstream, r.retry_in) for r in recorder.rejections] == [(upstream_label, 3.5)]
    assert len(recorder.attempts) == 4  # the rejected call made none


async def test_half_open_lets_a_few_probes_through_and_a_success_closes_it() -> None:
    clock, upstream = FakeClock(), Upstream(status=500)
    async with serving(upstream.app) as url, breaker_pipeline(clock, POLICY) as call:
        for _ in range(4):
            await call(url)
        clock.now += 5  # open_for has passed: half-open
        upstream.status = 200
        upstream.gate = asyncio.Event()
        with rh.testing.record() as recorder:
            probes = [asyncio.create_task(call(url)) for _ in range(PROBES_PER_OPENING)]
            await until(lambda: upstream.held == PROBES_PER_OPENING)
            with pytest.raises(rh.CircuitOpenError) as caught:  # every probe place is taken
                await call(url)
            assert caught.value.retry_in == 0
            upstream.gate.set()
            assert await asyncio.gather(*probes) == [200] * PROBES_PER_OPENING
        upstream.gate = None
        assert await call(url) == 200  # closed again
    assert upstream.requests == 4 + PROBES_PER_OPENING + 1
    assert [(c.previous, c.state) for c in recorder.breaker_changes] == [
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert len(recorder.rejections) == 1


async def test_a_failed_probe_opens_it_again_for_another_period() -> None:
    clock, upstream = FakeClock(), Upstream(status=500)
    async with serving(upstream.app) as url, breaker_pipeline(clock, POLICY) as call:
        for _ in range(4):
            await call(url)
        clock.now += 5
        with rh.testing.record() as recorder:
            assert await call(url) == 500  # the probe fails
            clock.now += 4.9
            with pytest.raises(rh.CircuitOpenError) as caught:
                await call(url)
    assert caught.value.retry_in == pytest.approx(0.1)
    assert [(c.previous, c.state) for c in recorder.breaker_changes] == [
        ("open", "half_open"),
        ("half_open", "open"),
    ]
    assert upstream.requests == 5


async def test_throttling_and_client_errors_never_open_it() -> None:
    clock, upstream = FakeClock(), Upstream()
    with rh.testing.record() as recorder:
        async with serving(upstream.app) as url, breaker_pipeline(clock, POLICY) as call:
            for status in (429, 404, 501) * 4:
                upstream.status = status
                assert await call(url) == status
    assert recorder.breaker_changes == []
    assert upstream.requests == 12


async def test_old_failures_slide_out_of_the_window() -> None:
    clock, upstream = FakeClock(), Upstream(status=500)
    with rh.testing.record() as recorder:
        async with serving(upstream.app) as url, breaker_pipeline(clock, POLICY) as call:
            for _ in range(3):
                await call(url)
            clock.now += 10.5  # those three are older than the window now
            for _ in range(3):
                await call(url)
    assert recorder.breaker_changes == []  # never 4 calls in one window


async def test_connect_errors_open_it_and_an_open_breaker_is_neither_retried_nor_charged() -> None:
    clock = FakeClock()
    url = down_url()
    with rh.testing.set_testing(True), rh.testing.record() as recorder:
        async with breaker_pipeline(clock, POLICY, retry=True) as call:
            for _ in range(4):
                with pytest.raises(aiohttp.ClientConnectorError):
                    await call(url)
            retries = len(recorder.retries)
            for _ in range(3):
                with pytest.raises(rh.CircuitOpenError):
                    await call(url)
    assert retries == 8  # 3 attempts per call while closed
    assert len(recorder.retries) == retries  # rejections are not retried
    assert len(recorder.attempts) == 12
    assert len(recorder.rejections) == 3


async def test_off_means_every_call_is_sent() -> None:
    clock, upstream = FakeClock(), Upstream(status=500)
    async with (
        serving(upstream.app) as url,
        breaker_pipeline(clock, POLICY.replace(enabled=False)) as call,
    ):
        for _ in range(10):
            assert await call(url) == 500
    assert upstream.requests == 10


class HeldUpstream:
    """Answers 500 at once, or, while ``hold``, holds each request until the test releases it."""

    def __init__(self) -> None:
        self.hold = False
        self.held: list[asyncio.Event] = []
        self.app = web.Application()
        self.app.router.add_get("/", self._answer)

    async def _answer(self, request: web.Request) -> web.Response:
        if self.hold:
            released = asyncio.Event()
            self.held.append(released)
            await released.wait()
        return web.Response(status=500)

    def release_all(self) -> None:
        for released in self.held:
            released.set()


async def test_probes_of_an_earlier_period_give_back_no_place_of_the_current_one() -> None:
    """A probe cancelled after its period ended (the circuit opened again, then half-opened)
    frees no place: the new period still lets at most PROBES_PER_OPENING probes through."""
    clock, upstream = FakeClock(), HeldUpstream()
    async with serving(upstream.app) as url, breaker_pipeline(clock, POLICY) as call:
        for _ in range(4):
            assert await call(url) == 500  # opens it
        clock.now += 5
        upstream.hold = True
        first = [asyncio.create_task(call(url)) for _ in range(PROBES_PER_OPENING)]
        await until(lambda: len(upstream.held) == PROBES_PER_OPENING)
        upstream.held[0].set()  # one probe fails: open again, four probes still out
        assert await first[0] == 500
        clock.now += 5
        second = [asyncio.create_task(call(url))]  # the next period's first probe
        await until(lambda: len(upstream.held) == PROBES_PER_OPENING + 1)
        for stale in first[1:]:
            stale.cancel()
        await asyncio.gather(*first[1:], return_exceptions=True)
        second += [asyncio.create_task(call(url)) for _ in range(PROBES_PER_OPENING)]
        results = await asyncio.wait_for(
            asyncio.gather(*second[-1:], return_exceptions=True),
            timeout=10,  # a safety net
        )
        assert isinstance(results[0], rh.CircuitOpenError)  # the sixth of this period
        await until(lambda: len(upstream.held) == 2 * PROBES_PER_OPENING)
        upstream.release_all()
        assert await asyncio.gather(*second[:-1]) == [500] * PROBES_PER_OPENING
