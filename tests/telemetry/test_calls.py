"""Spans and metrics of calls and attempts, with injected in-memory providers."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from opentelemetry.instrumentation._semconv import _StabilityMode
from opentelemetry.instrumentation.aiohttp_client import (
    AioHttpClientInstrumentor,
    create_trace_config,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import resilient_http as rh
from resilient_http.telemetry import names
from resilient_http.telemetry.redact import redact_url
from resilient_http.upstream import FaultPlan, FaultyUpstream, Script, down_url
from tests.helpers import until
from tests.servers import RecordingServer
from tests.telemetry.conftest import Providers, values_by


@pytest.fixture(autouse=True)
def _no_waits() -> Iterator[None]:
    """Testing mode: retries happen, their waits are 0."""
    with rh.testing.set_testing(True):
        yield


def session(providers: Providers, **kwargs: Any) -> rh.ResilientSession:
    return rh.ResilientSession(
        tracer_provider=providers.tracer_provider,
        meter_provider=providers.meter_provider,
        **kwargs,
    )


def without_connection_use(span: ReadableSpan) -> dict[str, Any]:
    """A CLIENT span's attributes less the SDK's connection evidence (the contrib
    instrumentation has none)."""
    return {
        key: value
        for key, value in (span.attributes or {}).items()
        if not key.startswith("resilient_http.connection.")
    }


def by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in spans if s.kind is kind]


async def test_one_call_one_internal_and_one_client_span(
    providers: Providers, recording_server: RecordingServer
) -> None:
    async with session(providers) as client, client.get(recording_server.url("/a?q=1")) as resp:
        assert resp.status == 200
        sent_traceparent = resp.request_info.headers["traceparent"]
    (internal,) = by_kind(providers.spans(), SpanKind.INTERNAL)
    (attempt,) = by_kind(providers.spans(), SpanKind.CLIENT)
    port = recording_server.port
    assert internal.name == "GET 127.0.0.1"
    assert attempt.name == "GET"
    assert attempt.parent is not None
    assert attempt.parent.span_id == internal.context.span_id
    assert attempt.context.trace_id == internal.context.trace_id
    version, trace_id, span_id, flags = sent_traceparent.split("-")
    assert (version, trace_id, span_id) == (
        "00",
        f"{attempt.context.trace_id:032x}",
        f"{attempt.context.span_id:016x}",
    )
    assert int(flags, 16) & 1  # sampled
    assert dict(attempt.attributes or {}) == {
        "http.request.method": "GET",
        "url.full": f"http://127.0.0.1:{port}/a?q=1",
        "server.address": "127.0.0.1",
        "server.port": port,
        "http.response.status_code": 200,
        "resilient_http.connection.in_use": 1,
    }
    assert dict(internal.attributes or {}) == {
        "http.request.method": "GET",
        "url.full": f"http://127.0.0.1:{port}/a?q=1",
        "server.address": "127.0.0.1",
        "server.port": port,
        "http.response.status_code": 200,
        "resilient_http.attempts": 1,
    }
    assert internal.instrumentation_scope is not None
    assert internal.instrumentation_scope.name == "resilient_http"
    assert internal.instrumentation_scope.version == rh.__version__


async def test_retries_are_attempt_spans_with_resend_count_and_events(
    providers: Providers,
) -> None:
    plan = FaultPlan(scripts=(Script(("close", "close"), path="/flaky"),))
    async with (
        FaultyUpstream(plan) as upstream,
        session(providers) as client,
        client.get(f"{upstream.url}/flaky") as resp,
    ):
        assert resp.status == 200
    spans = providers.spans()
    (internal,) = by_kind(spans, SpanKind.INTERNAL)
    attempts = sorted(by_kind(spans, SpanKind.CLIENT), key=lambda s: s.start_time or 0)
    assert len(attempts) == 3
    assert {s.context.trace_id for s in spans} == {internal.context.trace_id}
    assert [(s.attributes or {}).get("http.request.resend_count") for s in attempts] == [None, 1, 2]
    assert [(s.attributes or {}).get("error.type") for s in attempts] == [
        "ServerDisconnectedError",
        "ServerDisconnectedError",
        None,
    ]
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert [e.name for e in attempts[0].events] == ["exception"]
    assert (internal.attributes or {})["resilient_http.attempts"] == 3
    events = [(e.name, dict(e.attributes or {})) for e in internal.events]
    assert [name for name, _ in events] == ["resilient_http.retry", "resilient_http.retry"]
    assert events[0][1]["resilient_http.retry.reason"] == "connection_closed"
    assert events[0][1]["error.type"] == "ServerDisconnectedError"
    assert isinstance(events[0][1]["resilient_http.retry.delay"], float)
    retries = providers.metrics()["resilient_http.retries"]
    assert [(a["resilient_http.retry.reason"], p.value) for a, p in retries] == [
        ("connection_closed", 2)
    ]


async def test_metrics_and_pool_gauges_agree_with_pool_stats(
    providers: Providers, recording_server: RecordingServer
) -> None:
    async with session(providers, config=rh.ClientConfig(limit=2)) as client:

        async def one() -> None:
            async with client.get(recording_server.url("/held")) as resp:
                await resp.read()

        tasks = [asyncio.create_task(one()) for _ in range(3)]
        await recording_server.wait_for(lambda s: s.in_flight == 2)
        await until(lambda: client.pool_stats().waiting == 1)
        gauges = providers.metrics()
        open_by_state = values_by(gauges["http.client.open_connections"], "http.connection.state")
        stats = client.pool_stats()
        assert open_by_state == {"active": stats.active, "idle": stats.idle}
        assert open_by_state == {"active": 2, "idle": 0}
        (active_requests,) = gauges["http.client.active_requests"]
        assert active_requests[1].value == 3
        limits = values_by(gauges["resilient_http.pool.limit"], "resilient_http.pool.limit.scope")
        assert limits == {"total": 2, "per_host": 2}
        recording_server.release()
        await asyncio.gather(*tasks)
        after = providers.metrics()
    acquired = values_by(
        after["resilient_http.connection.acquired"], "resilient_http.connection.reused"
    )
    assert acquired == {False: 2, True: 1}
    waits = after["resilient_http.pool.wait.duration"]
    assert [p.count for _, p in waits] == [1]
    attempt_durations = after["http.client.request.duration"]
    assert [(a["http.response.status_code"], p.count) for a, p in attempt_durations] == [(200, 3)]
    calls = after["resilient_http.request.duration"]
    assert sum(p.count for _, p in calls) == 3
    assert set(after) <= names.SDK_METRICS  # nothing beyond the documented instruments
    for attributes, _ in attempt_durations + calls + waits:
        assert "url.full" not in attributes  # bounded cardinality: no URLs on metrics
        assert attributes["server.address"] == "127.0.0.1"


async def test_a_pool_closed_before_any_collection_reports_its_limits_once(
    providers: Providers, recording_server: RecordingServer
) -> None:
    config = rh.ClientConfig(limit=9, limit_per_host=4)
    async with (
        session(providers, config=config) as client,
        client.get(recording_server.url("/")) as resp,
    ):
        await resp.read()
    gc.collect()  # the pool is gone from the registry whether or not a reference lingered
    first = providers.metrics()["resilient_http.pool.limit"]
    assert values_by(first, "resilient_http.pool.limit.scope") == {"total": 9, "per_host": 4}
    assert "resilient_http.pool.limit" not in providers.metrics()  # once, not forever


async def test_connection_lifetime_is_recorded_when_closed(
    providers: Providers, recording_server: RecordingServer
) -> None:
    async with session(providers) as client:
        async with client.get(recording_server.url("/close")) as resp:
            await resp.read()
        await until(lambda: client.pool_stats().open == 0)
        lifetimes = providers.metrics()["http.client.connection.duration"]
    assert [p.count for _, p in lifetimes] == [1]


async def test_suppressed_retries_are_counted(providers: Providers) -> None:
    plan = FaultPlan(scripts=(Script(("close",), path="/pay"),))
    async with FaultyUpstream(plan) as upstream, session(providers) as client:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await client.post(f"{upstream.url}/pay", data=b"x")
    suppressed = providers.metrics()["resilient_http.retries.suppressed"]
    assert values_by(suppressed, "resilient_http.suppression.reason") == {"not_idempotent": 1}
    assert suppressed[0][0]["http.request.method"] == "POST"
    (internal,) = by_kind(providers.spans(), SpanKind.INTERNAL)
    assert (internal.attributes or {})["error.type"] == "ServerDisconnectedError"
    assert internal.status.status_code is StatusCode.ERROR


async def test_no_providers_means_no_telemetry_work(recording_server: RecordingServer) -> None:
    async with rh.ResilientSession() as client, client.get(recording_server.url()) as resp:
        assert resp.status == 200
        assert "traceparent" not in resp.request_info.headers  # no tracer asked for a context


async def test_disabled_sdk_providers_mean_no_telemetry_work(
    monkeypatch: pytest.MonkeyPatch, recording_server: RecordingServer
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    tracer_provider, meter_provider = TracerProvider(), MeterProvider()
    try:
        async with (
            rh.ResilientSession(
                tracer_provider=tracer_provider, meter_provider=meter_provider
            ) as client,
            client.get(recording_server.url()) as resp,
        ):
            assert resp.status == 200
            assert "traceparent" not in resp.request_info.headers
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()


@pytest.mark.parametrize("path", ["/a?x=1", "/missing-status/404"])
async def test_attempt_spans_match_the_contrib_instrumentation(
    providers: Providers, recording_server: RecordingServer, path: str
) -> None:
    """Parity: the contrib instrumentation in stable semconv mode, given our redactor."""
    url = recording_server.url(path)
    config = create_trace_config(
        url_filter=redact_url,
        tracer_provider=providers.tracer_provider,
        sem_conv_opt_in_mode=_StabilityMode.HTTP,
    )
    async with aiohttp.ClientSession(trace_configs=[config]) as plain, plain.get(url) as resp:
        await resp.read()
    (contrib,) = providers.spans()
    providers.spans_exporter.clear()
    async with session(providers) as client, client.get(url) as resp:
        await resp.read()
    (ours,) = by_kind(providers.spans(), SpanKind.CLIENT)
    assert (ours.name, ours.kind, ours.status.status_code) == (
        contrib.name,
        contrib.kind,
        contrib.status.status_code,
    )
    assert without_connection_use(ours) == dict(contrib.attributes or {})


async def test_attempt_span_of_a_failure_matches_the_contrib_instrumentation(
    providers: Providers,
) -> None:
    url = down_url("/x")
    config = create_trace_config(
        url_filter=redact_url,
        tracer_provider=providers.tracer_provider,
        sem_conv_opt_in_mode=_StabilityMode.HTTP,
    )
    async with aiohttp.ClientSession(trace_configs=[config]) as plain:
        with pytest.raises(aiohttp.ClientConnectorError):
            await plain.get(url)
    (contrib,) = providers.spans()
    providers.spans_exporter.clear()
    async with session(providers, retry=False) as client:
        with pytest.raises(aiohttp.ClientConnectorError):
            await client.get(url)
    (ours,) = by_kind(providers.spans(), SpanKind.CLIENT)
    assert (ours.name, ours.status.status_code, ours.status.description) == (
        contrib.name,
        contrib.status.status_code,
        contrib.status.description,
    )
    assert without_connection_use(ours) == dict(contrib.attributes or {})


async def test_no_double_spans_with_the_contrib_instrumentor(
    providers: Providers, recording_server: RecordingServer
) -> None:
    instrumentor = AioHttpClientInstrumentor()
    instrumentor.instrument(tracer_provider=providers.tracer_provider)
    try:
        async with session(providers) as client, client.get(recording_server.url()) as resp:
            assert resp.status == 200
    finally:
        instrumentor.uninstrument()
    spans = providers.spans()
    assert len(by_kind(spans, SpanKind.CLIENT)) == 1
    assert {s.instrumentation_scope.name for s in spans if s.instrumentation_scope} == {
        "resilient_http"
    }


async def test_planted_secrets_are_never_exported(
    providers: Providers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="resilient_http")
    secrets = ("s3cr3t-token", "hunter2-pw", "Bearer-abc123", "cookie-xyz789")
    url = down_url(f"/x?token={secrets[0]}&page=1")
    notes: list[str] = []
    async with session(providers) as client:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await client.get(url.replace("http://", f"http://me:{secrets[1]}@"))
        notes += caught.value.__notes__
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await client.get(
                url, headers={"Authorization": secrets[2], "Cookie": f"sid={secrets[3]}"}
            )
        notes += caught.value.__notes__
    exported = repr([s.to_json() for s in providers.spans()]) + repr(providers.metrics())
    exported += "\n".join(notes) + caplog.text
    assert "token=REDACTED" in exported
    for secret in secrets:
        assert secret not in exported


async def test_retry_debug_lines_carry_the_calls_trace_ids(
    providers: Providers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="resilient_http")
    plan = FaultPlan(scripts=(Script(("close",), path="/flaky"), Script(("close",), path="/pay")))
    async with FaultyUpstream(plan) as upstream, session(providers) as client:
        async with client.get(f"{upstream.url}/flaky") as resp:
            assert resp.status == 200
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await client.post(f"{upstream.url}/pay", data=b"x")
    get_call, post_call = sorted(
        by_kind(providers.spans(), SpanKind.INTERNAL), key=lambda s: s.start_time or 0
    )
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retry")]
    assert len(lines) == 2
    for line, span in zip(lines, (get_call, post_call), strict=True):
        ids = f"trace_id={span.context.trace_id:032x} span_id={span.context.span_id:016x}"
        assert line.endswith(ids), line
    assert lines[0].startswith("retry: GET")
    assert lines[1].startswith("retry suppressed: POST")


async def test_retry_debug_lines_without_tracing_say_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="resilient_http")
    plan = FaultPlan(scripts=(Script(("close",), path="/flaky"),))
    async with (
        FaultyUpstream(plan) as upstream,
        rh.ResilientSession() as client,
        client.get(f"{upstream.url}/flaky") as resp,
    ):
        assert resp.status == 200
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retry")]
    assert line.endswith("trace_id=- span_id=-")


async def test_a_method_outside_http_is_named_as_semconv_says(
    providers: Providers, recording_server: RecordingServer
) -> None:
    async with session(providers) as client:
        for _ in range(2):  # the second call takes the cached name and attributes
            async with client.request("PURGE", recording_server.url("/x")) as resp:
                assert resp.status == 200
    internal = by_kind(providers.spans(), SpanKind.INTERNAL)
    attempts = by_kind(providers.spans(), SpanKind.CLIENT)
    assert [s.name for s in internal] == ["HTTP 127.0.0.1"] * 2
    assert [s.name for s in attempts] == ["HTTP"] * 2
    for span in internal + attempts:
        attributes = dict(span.attributes or {})
        assert attributes["http.request.method"] == "_OTHER"
        assert attributes["http.request.method_original"] == "PURGE"
    durations = providers.metrics()["http.client.request.duration"]
    assert [(a["http.request.method"], p.count) for a, p in durations] == [("_OTHER", 2)]


async def test_attempt_spans_carry_the_connections_idle_time_and_request_count(
    providers: Providers, recording_server: RecordingServer
) -> None:
    """Reuses carry the idle time before reuse and the requests served before; a new
    connection carries neither; every attempt carries the connections in use."""
    url = recording_server.url("/a")
    async with session(providers) as client:
        for _ in range(3):
            # aiohttp may release the connection as soon as the answer is in (a small body
            # arrives with the headers), before get() returns: the idle time starts after this
            asked = time.monotonic()
            async with client.get(url) as resp:
                await resp.read()
        async with client.get(url) as resp:
            await resp.read()
            idle_at_most = time.monotonic() - asked
    attempts = sorted(by_kind(providers.spans(), SpanKind.CLIENT), key=lambda s: s.start_time or 0)
    evidence = [
        (
            (s.attributes or {}).get(names.CONNECTION_REQUESTS),
            (s.attributes or {}).get(names.CONNECTION_IN_USE),
        )
        for s in attempts
    ]
    assert evidence == [(None, 1), (1, 1), (2, 1), (3, 1)]
    assert names.CONNECTION_IDLE_TIME not in (attempts[0].attributes or {})
    idle = (attempts[-1].attributes or {})[names.CONNECTION_IDLE_TIME]
    assert isinstance(idle, float)
    assert 0.0 <= idle <= idle_at_most


async def test_a_stale_reuse_carries_the_idle_time_it_failed_after(providers: Providers) -> None:
    """The upstream's idle timeout closes a reuse after an idle time: the failed attempt says
    how long its connection had been idle, the free retry is on a new connection."""
    async with FaultyUpstream(FaultPlan(stale_idle=0.05)) as upstream, session(providers) as client:
        async with client.get(f"{upstream.url}/a") as resp:
            await resp.read()
        idle_from = time.monotonic()
        await asyncio.sleep(0.06)  # the idle gap itself, not a wait for a server
        async with client.get(f"{upstream.url}/a") as resp:
            assert resp.status == 200
    attempts = sorted(by_kind(providers.spans(), SpanKind.CLIENT), key=lambda s: s.start_time or 0)
    failed = dict(attempts[1].attributes or {})
    assert failed["error.type"] == "ServerDisconnectedError"
    assert failed[names.CONNECTION_REQUESTS] == 1
    idle = failed[names.CONNECTION_IDLE_TIME]
    assert isinstance(idle, float)
    assert 0.05 <= idle <= time.monotonic() - idle_from
    assert names.CONNECTION_IDLE_TIME not in (attempts[2].attributes or {})
