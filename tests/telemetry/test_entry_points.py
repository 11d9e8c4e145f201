"""The same behaviour through every entry point: ``ResilientSession``; an
``aiohttp.ClientSession`` of one's own with ``rh.create_connector()`` and ``rh.middleware()``;
and a plain ``aiohttp.ClientSession()`` under the zero-code instrumentation, which adds the two.

All run the one pipeline (deadline, retries with budget, telemetry, recorders); only the
innermost stage differs (a ``ClientSession.request`` per attempt, or the middleware handler).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.trace import SpanKind

import resilient_http as rh
from resilient_http.instrumentation import ResilientHttpInstrumentor
from resilient_http.upstream import (
    FaultPlan,
    FaultyUpstream,
    RetryAfter,
    Script,
    Throttle,
    down_url,
)
from tests.servers import serving
from tests.telemetry.conftest import Providers, values_by

Client = Any  # a ResilientSession or an aiohttp.ClientSession: both offer get/post
ClientFactory = Callable[..., Any]


@asynccontextmanager
async def resilient_session(providers: Providers, **kwargs: Any) -> AsyncIterator[Client]:
    async with rh.ResilientSession(
        tracer_provider=providers.tracer_provider,
        meter_provider=providers.meter_provider,
        **kwargs,
    ) as client:
        yield client


@asynccontextmanager
async def native_session(providers: Providers, **kwargs: Any) -> AsyncIterator[Client]:
    config = kwargs.pop("config", None)
    middleware = rh.middleware(
        config,
        tracer_provider=providers.tracer_provider,
        meter_provider=providers.meter_provider,
        **kwargs,
    )
    async with aiohttp.ClientSession(
        connector=rh.create_connector(config, meter_provider=providers.meter_provider),
        middlewares=(middleware,),
    ) as client:
        yield client


@asynccontextmanager
async def zero_code_session(providers: Providers, **kwargs: Any) -> AsyncIterator[Client]:
    instrumentor = ResilientHttpInstrumentor()
    instrumentor.instrument(
        tracer_provider=providers.tracer_provider,
        meter_provider=providers.meter_provider,
        **kwargs,
    )
    try:
        async with aiohttp.ClientSession() as client:  # as the application wrote it
            yield client
    finally:
        instrumentor.uninstrument()


@pytest.fixture(
    params=[resilient_session, native_session, zero_code_session],
    ids=["ResilientSession", "native", "zero-code"],
)
def entry(request: pytest.FixtureRequest) -> ClientFactory:
    factory: ClientFactory = request.param
    return factory


@pytest.fixture(autouse=True)
def _no_waits() -> Iterator[None]:
    with rh.testing.set_testing(True):
        yield


async def test_throttling_is_retried_with_retry_after(
    entry: ClientFactory, providers: Providers
) -> None:
    plan = FaultPlan(throttle=Throttle(503, first=2, retry_after=RetryAfter("seconds", 2)))
    with rh.testing.record() as recorder:
        async with (
            FaultyUpstream(plan) as upstream,
            entry(providers) as client,
            client.get(f"{upstream.url}/x") as resp,
        ):
            assert resp.status == 200
    assert [(r.reason, r.delay) for r in recorder.retries] == [("throttled", 2.0)] * 2
    assert upstream.stats().responses_by_status == {503: 2, 200: 1}
    spans = providers.spans()
    (internal,) = [s for s in spans if s.kind is SpanKind.INTERNAL]
    attempts = sorted(
        (s for s in spans if s.kind is SpanKind.CLIENT), key=lambda s: s.start_time or 0
    )
    assert [(s.attributes or {}).get("http.response.status_code") for s in attempts] == [
        503,
        503,
        200,
    ]
    assert [(s.attributes or {}).get("http.request.resend_count") for s in attempts] == [
        None,
        1,
        2,
    ]
    assert {s.parent.span_id for s in attempts if s.parent} == {internal.context.span_id}
    assert [e.name for e in internal.events] == ["resilient_http.retry"] * 2
    retries = providers.metrics()["resilient_http.retries"]
    assert values_by(retries, "resilient_http.retry.reason") == {"throttled": 2}


async def test_each_attempt_carries_its_own_trace_context(
    entry: ClientFactory, providers: Providers
) -> None:
    plan = FaultPlan(throttle=Throttle(503, first=1, retry_after=RetryAfter("none")))
    async with (
        FaultyUpstream(plan) as upstream,
        entry(providers) as client,
        client.get(f"{upstream.url}/x") as resp,
    ):
        assert resp.status == 200
        sent = resp.request_info.headers["traceparent"]
    attempts = sorted(
        (s for s in providers.spans() if s.kind is SpanKind.CLIENT),
        key=lambda s: s.start_time or 0,
    )
    assert sent.split("-")[2] == f"{attempts[-1].context.span_id:016x}"


async def test_a_post_that_may_have_arrived_is_not_resent(
    entry: ClientFactory, providers: Providers
) -> None:
    plan = FaultPlan(scripts=(Script(("close",), path="/pay"),))
    with rh.testing.record() as recorder:
        async with FaultyUpstream(plan) as upstream, entry(providers) as client:
            with pytest.raises(aiohttp.ServerDisconnectedError) as caught:
                await client.post(f"{upstream.url}/pay", data=b"x")
    assert upstream.stats().requests_by_route == {"POST /pay": 1}
    assert [s.reason for s in recorder.suppressions] == ["not_idempotent"]
    assert caught.value.__notes__[-1].endswith("no retry: not idempotent")


async def test_a_refused_connection_is_retried_then_raised_with_notes(
    entry: ClientFactory, providers: Providers
) -> None:
    with rh.testing.record() as recorder:
        async with entry(providers) as client:
            with pytest.raises(aiohttp.ClientConnectorError) as caught:
                await client.get(down_url("/x?token=s3cret"))
    notes = caught.value.__notes__
    assert [note.split(":")[0] for note in notes] == ["attempt 1", "attempt 2", "attempt 3"]
    assert not any("s3cret" in note for note in notes)
    assert [r.reason for r in recorder.retries] == ["connect_error"] * 2


async def test_the_pool_is_reported(entry: ClientFactory, providers: Providers) -> None:
    config = rh.ClientConfig(limit_per_host=1)
    async with FaultyUpstream(FaultPlan()) as upstream, entry(providers, config=config) as client:

        async def get() -> None:
            async with client.get(f"{upstream.url}/x") as resp:
                await resp.read()

        await asyncio.gather(get(), get())  # one connection: the second call waits for it
        metrics = providers.metrics()
    acquired = values_by(
        metrics["resilient_http.connection.acquired"], "resilient_http.connection.reused"
    )
    assert acquired == {False: 1, True: 1}
    opened = values_by(metrics["http.client.open_connections"], "http.connection.state")
    assert opened == {"active": 0, "idle": 1}
    waits = metrics["resilient_http.pool.wait.duration"]
    assert sum(point.count for _, point in waits) == 1


async def test_retry_false_sends_once(entry: ClientFactory, providers: Providers) -> None:
    plan = FaultPlan(throttle=Throttle(503, first=1, retry_after=RetryAfter("none")))
    async with (
        FaultyUpstream(plan) as upstream,
        entry(providers, retry=False) as client,
        client.get(f"{upstream.url}/x") as resp,
    ):
        assert resp.status == 503
    assert upstream.stats().requests == 1


async def test_an_open_breaker_fails_calls_at_once_and_says_so(
    entry: ClientFactory, providers: Providers
) -> None:
    requests = 0

    async def failing(request: web.Request) -> web.Response:
        nonlocal requests
        requests += 1
        return web.Response(status=502)

    app = web.Application()
    app.router.add_get("/x", failing)
    config = rh.ClientConfig(breaker=rh.BreakerPolicy(min_calls=2, open_for=60))
    async with serving(app) as url, entry(providers, config=config, retry=False) as client:
        for _ in range(2):
            async with client.get(f"{url}/x") as resp:
                assert resp.status == 502
        with pytest.raises(rh.CircuitOpenError) as caught:
            await client.get(f"{url}/x")
        metrics = providers.metrics()
    assert requests == 2
    assert "circuit breaker open" in caught.value.__notes__[0]
    calls = [s for s in providers.spans() if s.kind is SpanKind.INTERNAL]
    attempts = [s for s in providers.spans() if s.kind is SpanKind.CLIENT]
    assert len(calls) == 3
    assert len(attempts) == 2  # the rejected call has none
    rejected = calls[-1]
    assert rejected.attributes is not None
    assert rejected.attributes["error.type"] == "CircuitOpenError"
    assert not [s for s in attempts if s.parent and s.parent.span_id == rejected.context.span_id]
    opened = [e for e in calls[1].events if e.name == "resilient_http.breaker"]
    assert [dict(e.attributes or {}) for e in opened] == [
        {"resilient_http.breaker.state": "open", "resilient_http.breaker.previous_state": "closed"}
    ]
    states = values_by(metrics["resilient_http.breaker.state"], "resilient_http.breaker.state")
    assert states == {"closed": 0, "half_open": 0, "open": 1}
    assert [point.value for _, point in metrics["resilient_http.breaker.rejected"]] == [1]


async def test_the_native_path_resends_a_stale_connection_itself(providers: Providers) -> None:
    """The middleware sees a dead reused connection first, and resends it for free on a newly
    opened one, as ResilientSession does."""
    with rh.testing.record() as recorder:
        async with (
            FaultyUpstream(FaultPlan(stale_after=1)) as upstream,
            native_session(providers) as client,
        ):
            for _ in range(2):
                async with client.get(f"{upstream.url}/x") as resp:
                    assert resp.status == 200
    assert upstream.stats().stale_closes == 1
    assert [(r.reason, r.free) for r in recorder.retries] == [("connection_closed", True)]
    assert [(a.reused, a.fresh) for a in recorder.attempts] == [
        (False, False),
        (True, False),
        (False, True),
    ]


async def test_aiohttp_resends_the_whole_middleware_chain_once(providers: Providers) -> None:
    """The documented gap: a closed connection that escapes the middleware (here after its
    3 attempts) makes aiohttp run the chain once more, which the SDK sees as a second call."""
    plan = FaultPlan(scripts=(Script(("close",) * 10, path="/x"),))
    async with FaultyUpstream(plan) as upstream, native_session(providers) as client:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await client.get(f"{upstream.url}/x")
    assert upstream.stats().requests == 6
    calls = [s for s in providers.spans() if s.kind is SpanKind.INTERNAL]
    assert len(calls) == 2


async def test_each_redirect_hop_is_a_call_of_its_own_on_the_native_path(
    providers: Providers,
) -> None:
    """The documented gap: aiohttp runs the middleware chain once per redirect hop, so each
    hop is a logical call of its own (its span, its retries, its deadline), where
    ResilientSession makes the whole redirect chain one attempt."""
    hits: list[str] = []

    async def moved(request: web.Request) -> web.Response:
        hits.append(request.path)
        raise web.HTTPFound("/there")

    async def there(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(status=503 if hits.count("/there") == 1 else 200)

    app = web.Application()
    app.router.add_get("/here", moved)
    app.router.add_get("/there", there)
    async with (
        serving(app) as url,
        native_session(providers) as client,
        client.get(f"{url}/here") as resp,
    ):
        assert resp.status == 200
    assert hits == ["/here", "/there", "/there"]  # the 503 retried within the second hop
    calls = [
        (s.attributes or {})["http.response.status_code"]
        for s in providers.spans()
        if s.kind is SpanKind.INTERNAL
    ]
    assert sorted(calls, key=str) == [200, 302]


async def test_raise_for_status_errors_carry_no_notes_on_the_native_path(
    providers: Providers,
) -> None:
    """The documented gap: aiohttp raises for the status after the middleware chain returned,
    so the error has no attempt notes; the attempts are still spans and retries."""
    always = FaultPlan(throttle=Throttle(503, first=100, retry_after=RetryAfter("none")))
    async with FaultyUpstream(always) as upstream:
        config = rh.ClientConfig(retry=rh.RetryPolicy(max_attempts=2))
        middleware = rh.middleware(config, tracer_provider=providers.tracer_provider)
        async with aiohttp.ClientSession(
            connector=rh.create_connector(config), middlewares=(middleware,), raise_for_status=True
        ) as client:
            with pytest.raises(aiohttp.ClientResponseError) as raised:
                await client.get(f"{upstream.url}/x")
        assert upstream.stats().requests == 2
    assert raised.value.status == 503
    assert getattr(raised.value, "__notes__", []) == []
    assert [s.kind for s in providers.spans()].count(SpanKind.CLIENT) == 2


@pytest.mark.parametrize("listener", ["recorder", "debug log"])
async def test_the_native_path_works_with_only_a_recorder_or_the_debug_log_listening(
    listener: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Listeners that leave the request's headers as they are (no telemetry exporting): the
    middleware once iterated those headers while writing them back, and failed every call."""
    if listener == "debug log":
        caplog.set_level(logging.DEBUG, logger="resilient_http")
    throttled_once = FaultPlan(throttle=Throttle(503, first=1, retry_after=RetryAfter("none")))
    async with FaultyUpstream(throttled_once) as upstream:
        with rh.testing.record() as recorder:
            async with (
                aiohttp.ClientSession(
                    connector=rh.create_connector(), middlewares=(rh.middleware(),)
                ) as client,
                client.get(f"{upstream.url}/x") as resp,
            ):
                assert resp.status == 200
    assert [r.reason for r in recorder.retries] == ["throttled"]
    if listener == "debug log":
        assert any("attempt=2 outcome=200" in line for line in caplog.messages), caplog.messages
