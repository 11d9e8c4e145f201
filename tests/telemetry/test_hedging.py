"""Hedging against a real upstream on 127.0.0.1 that holds its first answer: what the server saw
(requests, connections, the abandoned request cut off), what the caller got, and the spans and
metrics reported."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.trace import SpanKind

import resilient_http as rh
from resilient_http._budget import RetryBudget
from resilient_http._hedging import (
    AUTO_MIN_SAMPLES,
    MEDIAN_FACTOR,
    Hedging,
    LatencySketch,
    _Deadlines,
)
from tests.helpers import until
from tests.servers import serving
from tests.telemetry.conftest import Providers, values_by

#: How long a negative check lets a hedge have its chance: many times the hedge delay.
CHANCE_SECONDS = 0.3


class Upstream:
    """Holds the first request until the test ends; answers the others at once. Records each
    request's connection, and keeps the held one's transport (closed when the client cuts it
    off: aiohttp does not cancel a handler whose client went away)."""

    def __init__(self, hold: int = 1) -> None:
        self.hold = hold
        self.peers: list[object] = []
        self.held_transport: asyncio.BaseTransport | None = None
        self.held = asyncio.Event()
        self.gate = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_route("*", "/", self._answer)

    async def _answer(self, request: web.Request) -> web.Response:
        transport = request.transport
        assert transport is not None
        self.peers.append(transport.get_extra_info("peername"))
        if len(self.peers) <= self.hold:
            self.held_transport = transport
            self.held.set()
            await self.gate.wait()
        return web.Response(text=f"answer {len(self.peers)}")


async def test_a_slow_attempt_is_hedged_and_the_loser_is_cut_off(providers: Providers) -> None:
    upstream = Upstream()
    config = rh.ClientConfig(hedge_after=0.02)
    with rh.testing.record() as recorder:
        async with (
            serving(upstream.app) as url,
            rh.ResilientSession(
                config,
                tracer_provider=providers.tracer_provider,
                meter_provider=providers.meter_provider,
            ) as client,
        ):
            async with client.get(url) as resp:
                assert await resp.text() == "answer 2"
            held = upstream.held_transport
            assert held is not None
            await until(held.is_closing)  # the abandoned request's connection was closed
            await until(lambda: client.pool_stats().open == 1)  # the loser's was closed
            metrics = providers.metrics()
            upstream.gate.set()
    assert len(upstream.peers) == 2
    assert upstream.peers[0] != upstream.peers[1]  # another connection
    assert [(h.attempt, h.hedge, h.won) for h in recorder.hedges] == [(1, 1, True)]
    # the hedge answered; the first attempt was cancelled then, and says so
    assert [(a.number, a.hedge, a.status) for a in recorder.attempts] == [(1, 1, 200), (1, 0, None)]
    assert isinstance(recorder.attempts[1].error, asyncio.CancelledError)
    assert recorder.retries == []
    clients = [s for s in providers.spans() if s.kind is SpanKind.CLIENT]
    hedged = [s for s in clients if s.attributes and s.attributes.get("resilient_http.hedge")]
    assert len(clients) == 2
    assert len(hedged) == 1
    (abandoned,) = [s for s in clients if s not in hedged]
    assert abandoned.attributes is not None
    assert abandoned.attributes["error.type"] == "CancelledError"
    counted = values_by(metrics["resilient_http.hedges"], "resilient_http.hedge.outcome")
    assert counted == {"won": 1}


async def test_up_to_hedge_max_hedges_each_on_a_connection_of_its_own() -> None:
    upstream = Upstream(hold=2)  # the first attempt and the first hedge never answer
    config = rh.ClientConfig(hedge_after=0.02, hedge_max=2)
    with rh.testing.record() as recorder:
        async with serving(upstream.app) as url, rh.ResilientSession(config) as client:
            async with asyncio.timeout(10), client.get(url) as resp:  # a safety net only
                assert await resp.text() == "answer 3"
            upstream.gate.set()
    assert len(set(upstream.peers)) == 3  # each on a connection of its own
    assert [(h.hedge, h.won) for h in recorder.hedges] == [(1, False), (2, True)]


async def test_a_post_is_not_hedged() -> None:
    upstream = Upstream()
    with rh.testing.record() as recorder:
        async with (
            serving(upstream.app) as url,
            rh.ResilientSession(rh.ClientConfig(hedge_after=0.01)) as client,
        ):
            call = asyncio.create_task(client.post(url, data=b"x"))
            await upstream.held.wait()
            await asyncio.sleep(CHANCE_SECONDS)  # a hedge would have gone long ago
            assert len(upstream.peers) == 1
            upstream.gate.set()
            async with await call as resp:
                assert await resp.text() == "answer 1"
    assert recorder.hedges == []


async def test_an_idempotency_key_makes_a_post_hedgeable() -> None:
    upstream = Upstream()
    async with (
        serving(upstream.app) as url,
        rh.ResilientSession(rh.ClientConfig(hedge_after=0.01)) as client,
        client.post(url, data=b"x", headers={"Idempotency-Key": "k1"}) as resp,
    ):
        assert await resp.text() == "answer 2"
        upstream.gate.set()


async def test_no_hedge_once_the_retry_budget_is_spent() -> None:
    upstream = Upstream()
    spent = rh.RetryPolicy(budget_ratio=0, budget_min_per_second=0)
    with rh.testing.record() as recorder:
        async with (
            serving(upstream.app) as url,
            rh.ResilientSession(rh.ClientConfig(hedge_after=0.01, retry=spent)) as client,
        ):
            call = asyncio.create_task(client.get(url))
            await upstream.held.wait()
            await asyncio.sleep(CHANCE_SECONDS)
            assert len(upstream.peers) == 1
            upstream.gate.set()
            async with await call as resp:
                assert resp.status == 200
    assert recorder.hedges == []


def test_the_running_p95_needs_enough_answers_then_follows_them() -> None:
    sketch = LatencySketch()
    for n in range(1, 101):
        sketch.add(n / 1000)  # 1 ms .. 100 ms
    assert sketch.quantile(0.95) == pytest.approx(0.095, rel=0.03)
    tight, spread = LatencySketch(), LatencySketch()
    for _ in range(AUTO_MIN_SAMPLES - 1):
        tight.add(0.010)
    assert tight.hedge_after is None  # not enough answers yet
    tight.add(0.010)
    # a tight distribution: twice the median (10 ms), not its p95 (also 10 ms)
    assert tight.hedge_after == pytest.approx(2 * 0.010, rel=0.03)
    for n in range(1, 97):  # the quantiles are read again every 16 answers
        spread.add(n / 1000)
    assert spread.hedge_after == pytest.approx(max(0.091, MEDIAN_FACTOR * 0.048), rel=0.03)
    hedging = Hedging("auto", 1, RetryBudget(0.2, 10))
    assert hedging.delay("http://h:1/") is None  # an upstream it has no answers from


class _Pending:
    def __init__(self, name: str) -> None:
        self.name = name
        self.settled = False


class _CountingLoop:
    """The running loop, counting the timers asked of it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.timers = 0

    def time(self) -> float:
        return self._loop.time()

    def call_at(self, when: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        self.timers += 1
        return self._loop.call_at(when, callback, *args)


async def test_the_deadline_queue_launches_each_unsettled_race_at_its_deadline_on_one_timer() -> (
    None
):
    loop = asyncio.get_running_loop()
    counting = _CountingLoop(loop)
    launched: list[tuple[str, float]] = []
    done = asyncio.Event()

    def launch(race: _Pending) -> None:
        launched.append((race.name, loop.time()))
        if len(launched) == 3:
            done.set()

    deadlines: _Deadlines[_Pending] = _Deadlines(launch)
    start = loop.time()
    at = {"late": start + 0.06, "early": start + 0.02, "middle": start + 0.04}
    races = {name: _Pending(name) for name in ("late", "early", "middle", "answered")}
    plain = cast(asyncio.AbstractEventLoop, counting)
    deadlines.add(plain, at["late"], races["late"])  # the timer
    deadlines.add(plain, at["early"], races["early"])  # earlier: the timer moves
    deadlines.add(plain, at["middle"], races["middle"])  # later than the timer: no new timer
    deadlines.add(plain, start + 0.05, races["answered"])  # answers before its deadline
    races["answered"].settled = True
    await asyncio.wait_for(done.wait(), timeout=10)
    assert [name for name, _ in launched] == ["early", "middle", "late"]
    for name, when in launched:
        assert when >= at[name] - time.get_clock_info("monotonic").resolution
    # set for the late race, moved for the early one, then at each launch for the next
    # race still out (the answered one is skipped): 4 timers for 4 calls, not 4 plus cancels
    assert counting.timers == 4


async def test_a_call_cancelled_while_its_losers_are_cut_off_leaves_no_connection() -> None:
    """The first attempt answers once its hedge has reached the upstream; the caller is
    cancelled just then (while the hedge is being cancelled): the answer it will never read
    is closed, not left holding its pooled connection."""
    hedge_arrived, test_over = asyncio.Event(), asyncio.Event()
    seen = 0

    async def answer(request: web.Request) -> web.StreamResponse:
        nonlocal seen
        seen += 1
        response = web.StreamResponse()
        if seen == 1:
            await hedge_arrived.wait()
            await response.prepare(request)  # headers: the first attempt has its answer
        hedge_arrived.set()
        await test_over.wait()  # the body never ends, and the hedge never answers (while
        return response  # the test lasts: aiohttp keeps a handler its client left running)

    app = web.Application()
    app.router.add_get("/", answer)
    caller: asyncio.Task[Any] | None = None
    tracing = aiohttp.TraceConfig()

    async def on_request_end(*_: object) -> None:
        assert caller is not None
        asyncio.get_running_loop().call_soon(caller.cancel)

    tracing.on_request_end.append(on_request_end)
    config = rh.ClientConfig(hedge_after=0.01, hedge_max=1)
    async with (
        serving(app) as url,
        rh.ResilientSession(config, trace_configs=[tracing]) as client,
    ):
        caller = asyncio.ensure_future(client.get(url))
        with pytest.raises(asyncio.CancelledError):
            await caller
        await until(lambda: client.pool_stats().active == 0)
        test_over.set()
    assert seen == 2


async def test_a_winning_hedge_answers_though_the_caller_had_swallowed_a_cancellation() -> None:
    """The hedge's own cancellation of the first attempt is told apart from the caller's as
    asyncio.timeout() tells them apart: a cancellation pending from before (caught and not
    uncancelled by the application) does not turn the hedge's answer into a CancelledError."""
    upstream = Upstream()
    config = rh.ClientConfig(hedge_after=0.02)
    task = asyncio.current_task()
    assert task is not None
    async with serving(upstream.app) as url, rh.ResilientSession(config) as client:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(1)  # the application swallows it: cancelling() stays 1
        assert task.cancelling() == 1
        async with client.get(url) as resp:
            assert await resp.text() == "answer 2"
        upstream.gate.set()
    task.uncancel()


async def test_each_hedge_runs_in_its_own_calls_context() -> None:
    """Hedges are sent from the one timer of the session: each still sees its own call's
    context variables (a request id in a trace config, a logging context)."""
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    upstream = Upstream(hold=2)
    sent: list[tuple[str, str]] = []
    tracing = aiohttp.TraceConfig()

    async def on_request_start(
        _: object, __: object, params: aiohttp.TraceRequestStartParams
    ) -> None:
        sent.append((params.url.query["call"], request_id.get()))

    tracing.on_request_start.append(on_request_start)
    config = rh.ClientConfig(hedge_after=0.02)

    async def call(client: rh.ResilientSession, url: str, name: str) -> str:
        request_id.set(name)
        async with client.get(url, params={"call": name}) as resp:
            return await resp.text()

    async with (
        serving(upstream.app) as url,
        rh.ResilientSession(config, trace_configs=[tracing]) as client,
    ):
        answers = await asyncio.gather(call(client, url, "a"), call(client, url, "b"))
        upstream.gate.set()
    assert sorted(answers) == ["answer 3", "answer 4"]
    assert len(sent) == 4  # two first attempts, two hedges
    assert all(call == seen for call, seen in sent), sent
