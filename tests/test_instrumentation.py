"""Zero code: ``ResilientHttpInstrumentor`` gives plain ``aiohttp.ClientSession``s the SDK's
connector and middleware, under ``opentelemetry-instrument`` (a real subprocess) and by hand.

The behaviour tests of both other entry points also run through this one
(``tests/telemetry/test_entry_points.py``); here: what the instrumentor adds, keeps and undoes.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

import resilient_http as rh
from resilient_http import pool
from resilient_http.instrumentation import INSTRUMENTS, ResilientHttpInstrumentor
from resilient_http.upstream import FaultPlan, FaultyUpstream, RetryAfter, Script, Throttle
from tests.helpers import clean_environ
from tests.otlp_receiver import OTLPReceiver, attributes_of
from tests.telemetry.conftest import Providers, providers, values_by

__all__ = ["providers"]  # the fixture, shared with tests/telemetry/
from tests.test_aiohttp_matrix import aiohttp_specifier

ROOT = Path(__file__).resolve().parent.parent
THROTTLED_ONCE = FaultPlan(throttle=Throttle(503, first=1, retry_after=RetryAfter("none")))
ORIGINAL_INIT = aiohttp.ClientSession.__dict__["__init__"]


@pytest.fixture(autouse=True)
def _uninstrumented() -> Iterator[None]:
    """Each test starts and ends with aiohttp as aiohttp ships it."""
    yield
    AioHttpClientInstrumentor().uninstrument()
    ResilientHttpInstrumentor().uninstrument()
    assert aiohttp.ClientSession.__dict__["__init__"] is ORIGINAL_INIT


@pytest.fixture(autouse=True)
def _no_waits() -> Iterator[None]:
    with rh.testing.set_testing(True):
        yield


def instrument(providers: Providers, **kwargs: Any) -> None:
    ResilientHttpInstrumentor().instrument(
        tracer_provider=providers.tracer_provider,
        meter_provider=providers.meter_provider,
        **kwargs,
    )


async def status_of_get(url: str, **session_kwargs: Any) -> int:
    """GET ``url`` through a plain ``aiohttp.ClientSession(**session_kwargs)``: the status."""
    async with aiohttp.ClientSession(**session_kwargs) as session, session.get(url) as resp:
        return resp.status


def scopes(spans: Iterable[ReadableSpan]) -> set[str | None]:
    """The instrumentation scopes ``spans`` come from."""
    return {s.instrumentation_scope.name if s.instrumentation_scope else None for s in spans}


# --- under opentelemetry-instrument ----------------------------------------------------------


async def run_zero_code_example(*command: str, env: dict[str, str]) -> list[str]:
    """``examples/zero_code.py`` under ``command`` (python, or opentelemetry-instrument python)
    in a child process: its output lines. It must exit 0 and write nothing to stderr."""
    process = await asyncio.create_subprocess_exec(
        *command,
        "-W",
        "error",
        # The OTLP/HTTP exporter (requests) leaves its keep-alive sockets to the collector at
        # exit; aiohttp's own leaks would still fail (their warnings name a transport).
        "-W",
        "ignore:unclosed <socket.socket:ResourceWarning",
        str(ROOT / "examples" / "zero_code.py"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):  # a safety net only
        out, err = await process.communicate()  # exit flushes the telemetry first
    assert process.returncode == 0, err.decode()
    assert err.decode() == ""
    return out.decode().splitlines()


async def test_the_zero_code_example_retries_and_reports_under_opentelemetry_instrument(
    receiver: OTLPReceiver,
) -> None:
    env = clean_environ(
        OTEL_SERVICE_NAME="zero-code",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_LOGS_EXPORTER="none",
    )
    plain = await run_zero_code_example(sys.executable, env=env)
    assert plain == ["GET 503  after 1 answers", "connector: TCPConnector"]
    assert receiver.traces == receiver.metrics == []

    instrument_command = str(Path(sys.executable).with_name("opentelemetry-instrument"))
    lines = await run_zero_code_example(instrument_command, sys.executable, env=env)
    assert lines == [
        'GET 200 {"items": [1, 2, 3]} after 2 answers',  # the 503 was retried
        "connector: _ObservedConnector",
    ]
    spans = [(scope, span) for _, scope, span in receiver.spans()]
    assert {scope for scope, _ in spans} == {"resilient_http"}  # the contrib's are removed
    (call,) = [span for _, span in spans if span.kind == Span.SPAN_KIND_INTERNAL]
    assert attributes_of(call)["resilient_http.attempts"] == 2
    assert [event.name for event in call.events] == ["resilient_http.retry"]
    attempts = [span for _, span in spans if span.kind == Span.SPAN_KIND_CLIENT]
    assert sorted(attributes_of(s)["http.response.status_code"] for s in attempts) == [200, 503]
    assert {s.parent_span_id for s in attempts} == {call.span_id}
    (retried,) = receiver.metric_points("resilient_http.retries")
    assert (retried[0]["resilient_http.retry.reason"], retried[1].as_int) == ("throttled", 1)
    # The pool is reported: its acquisitions, and the connection it closed at exit.
    acquired = receiver.metric_points("resilient_http.connection.acquired")
    assert sum(point.as_int for _, point in acquired) == 2
    assert receiver.metric_points("http.client.connection.duration")


def test_the_entry_point_names_the_instrumentor() -> None:
    (found,) = [
        e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "resilient_http"
    ]
    assert found.load() is ResilientHttpInstrumentor


def test_the_instrumented_aiohttp_versions_are_the_supported_ones() -> None:
    (requirement,) = INSTRUMENTS
    name, _, specifier = requirement.partition(" ")
    assert name == "aiohttp"
    assert set(specifier.replace(" ", "").split(",")) == {str(s) for s in aiohttp_specifier()}


# --- by hand -----------------------------------------------------------------------------------


async def test_a_plain_session_gets_the_pool_and_the_retries(providers: Providers) -> None:
    instrument(providers)
    async with FaultyUpstream(THROTTLED_ONCE) as upstream:
        async with aiohttp.ClientSession() as session:
            assert pool.is_observed(session.connector)  # type: ignore[arg-type]
            assert session._retry_connection is False  # the SDK resends, visibly
            async with session.get(f"{upstream.url}/x") as resp:
                assert resp.status == 200
        assert upstream.stats().requests == 2
    retries = providers.metrics()["resilient_http.retries"]
    assert values_by(retries, "resilient_http.retry.reason") == {"throttled": 1}


async def test_a_closed_connection_is_not_run_through_the_chain_again(
    providers: Providers,
) -> None:
    """Unlike a session given rh.middleware() by hand (the documented gap of the native path),
    the instrumented session's hidden resend is off: 3 attempts, one call."""
    instrument(providers)
    plan = FaultPlan(scripts=(Script(("close",) * 10, path="/x"),))
    async with FaultyUpstream(plan) as upstream, aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await session.get(f"{upstream.url}/x")
    assert upstream.stats().requests == 3
    assert len([s for s in providers.spans() if s.kind is SpanKind.INTERNAL]) == 1


async def test_uninstrument_restores_aiohttp(providers: Providers) -> None:
    instrument(providers)
    assert aiohttp.ClientSession.__dict__["__init__"] is not ORIGINAL_INIT
    ResilientHttpInstrumentor().uninstrument()
    assert aiohttp.ClientSession.__dict__["__init__"] is ORIGINAL_INIT
    async with FaultyUpstream(THROTTLED_ONCE) as upstream, aiohttp.ClientSession() as session:
        assert not pool.is_observed(session.connector)  # type: ignore[arg-type]
        async with session.get(f"{upstream.url}/x") as resp:
            assert resp.status == 503
    assert providers.spans() == ()


async def test_the_applications_connector_and_middlewares_are_kept(
    providers: Providers,
) -> None:
    seen: list[str] = []

    async def tag(
        request: aiohttp.ClientRequest,
        handler: Callable[[aiohttp.ClientRequest], Awaitable[aiohttp.ClientResponse]],
    ) -> aiohttp.ClientResponse:
        seen.append(request.url.path)
        return await handler(request)

    instrument(providers, config=rh.ClientConfig(retry=rh.RetryPolicy(max_attempts=1)))
    connector = aiohttp.TCPConnector(limit=1)
    async with FaultyUpstream(FaultPlan(stale_after=1)) as upstream:
        with rh.testing.record() as recorder:
            async with aiohttp.ClientSession(connector=connector, middlewares=(tag,)) as session:
                assert session.connector is connector
                for _ in range(2):
                    async with session.get(f"{upstream.url}/x") as resp:
                        assert resp.status == 200
        assert upstream.stats().stale_closes == 1
    # Retries off, a connector of the application's: the stale connection is still resent
    # for free (the SDK's connection signals), and every attempt passed the app's middleware.
    assert [(r.reason, r.free) for r in recorder.retries] == [("connection_closed", True)]
    assert seen == ["/x"] * 3


async def test_a_session_with_the_sdks_middleware_is_not_wrapped_twice(
    providers: Providers,
) -> None:
    instrument(providers)
    always = FaultPlan(throttle=Throttle(503, first=100, retry_after=RetryAfter("none")))
    own = rh.middleware(rh.ClientConfig(retry=rh.RetryPolicy(max_attempts=2)))
    async with FaultyUpstream(always) as upstream:
        assert await status_of_get(f"{upstream.url}/x", middlewares=(own,)) == 503
        assert upstream.stats().requests == 2  # not 2 x 3
        async with (
            rh.ResilientSession(retry=rh.RetryPolicy(max_attempts=2)) as client,
            client.get(f"{upstream.url}/x") as resp,
        ):
            assert resp.status == 503
        assert upstream.stats().requests == 4  # ResilientSession's own session is left alone
    assert [s for s in providers.spans() if s.kind is SpanKind.INTERNAL] == []


@pytest.mark.parametrize("contrib_first", [True, False], ids=["contrib-first", "contrib-last"])
async def test_with_the_contrib_instrumentation_no_span_is_doubled_and_both_undo(
    providers: Providers, contrib_first: bool
) -> None:
    contrib = AioHttpClientInstrumentor()
    if contrib_first:
        contrib.instrument(tracer_provider=providers.tracer_provider)
    instrument(providers)
    if not contrib_first:
        contrib.instrument(tracer_provider=providers.tracer_provider)
    async with FaultyUpstream(THROTTLED_ONCE) as upstream:
        assert await status_of_get(f"{upstream.url}/x") == 200
    kinds = sorted(s.kind.name for s in providers.spans())
    assert kinds == ["CLIENT", "CLIENT", "INTERNAL"]
    assert scopes(providers.spans()) == {"resilient_http"}
    # The SDK's undone first, whether its layer is on top or under the contrib's.
    ResilientHttpInstrumentor().uninstrument()
    async with FaultyUpstream(THROTTLED_ONCE) as upstream:
        assert await status_of_get(f"{upstream.url}/x") == 503
    assert scopes(providers.spans()[3:]) == {"opentelemetry.instrumentation.aiohttp_client"}
    contrib.uninstrument()  # the fixture checks that ClientSession.__init__ is aiohttp's again


async def test_a_session_with_the_sdks_middleware_gets_no_contrib_spans_either(
    providers: Providers,
) -> None:
    """Under opentelemetry-instrument with the contrib instrumentation too, an application's
    own rh.middleware() makes the spans: the contrib ones are dropped, as for a plain session."""
    contrib = AioHttpClientInstrumentor()
    contrib.instrument(tracer_provider=providers.tracer_provider)
    instrument(providers)
    own = rh.middleware(
        tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider
    )
    try:
        async with FaultyUpstream(THROTTLED_ONCE) as upstream:
            assert await status_of_get(f"{upstream.url}/x", middlewares=(own,)) == 200
    finally:
        ResilientHttpInstrumentor().uninstrument()
        contrib.uninstrument()
    assert sorted(s.kind.name for s in providers.spans()) == ["CLIENT", "CLIENT", "INTERNAL"]
    assert scopes(providers.spans()) == {"resilient_http"}


async def test_invalid_settings_leave_aiohttp_uninstrumented(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RESILIENT_HTTP_LIMIT", "many")
    with caplog.at_level(logging.ERROR, logger="resilient_http"):
        ResilientHttpInstrumentor().instrument()
    assert "aiohttp left uninstrumented" in caplog.text
    assert "RESILIENT_HTTP_LIMIT='many'" in caplog.text
    assert aiohttp.ClientSession.__dict__["__init__"] is ORIGINAL_INIT
