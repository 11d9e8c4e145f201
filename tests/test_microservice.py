"""examples/microservice.py run as it is: two upstreams, a real OTLP receiver, one trace.

The service runs in a subprocess configured only by its environment; the test calls it with a
W3C ``traceparent`` and checks that the receiver got one trace: the caller's span -> the
service's SERVER span -> one INTERNAL span per upstream -> a CLIENT span per attempt.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from resilient_http.upstream import FaultPlan, FaultyUpstream, Script, down_url
from tests.otlp_receiver import OTLPReceiver, attributes_of

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "microservice.py"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"


async def call_service(
    upstream_a: str, upstream_b: str, receiver: OTLPReceiver
) -> tuple[int, dict[str, Any]]:
    """Start the example, GET /fanout once with a traceparent, stop it; (status, body)."""
    env = {
        **os.environ,  # RESILIENT_HTTP_* and OTEL_* already removed by the autouse fixture
        "UPSTREAM_A_URL": upstream_a,
        "UPSTREAM_B_URL": upstream_b,
        "SERVICE_PORT": "0",
        "OTEL_SERVICE_NAME": "fanout",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        str(EXAMPLE),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):  # a safety net only
            line = (await process.stdout.readline()).decode()
            assert line.startswith("listening http://127.0.0.1:"), line
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    line.split()[1] + "/fanout",
                    headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"},
                ) as resp,
            ):
                status, body = resp.status, await resp.json()
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, err = await process.communicate()  # shutdown flushes the telemetry first
    assert process.returncode == 0, err.decode()
    assert err == b""
    return status, body


def spans_of_the_trace(receiver: OTLPReceiver) -> list[tuple[str, Any]]:
    found = [(scope, span) for _, scope, span in receiver.spans()]
    assert {span.trace_id.hex() for _, span in found} == {TRACE_ID}
    return found


async def test_one_trace_from_the_server_span_to_every_attempt(receiver: OTLPReceiver) -> None:
    # A's first request meets a connection closed unanswered: one retry, a second CLIENT span.
    plan_a = FaultPlan(scripts=(Script(("close",), path="/a"),))
    async with FaultyUpstream(plan_a) as upstream_a, FaultyUpstream() as upstream_b:
        status, body = await call_service(upstream_a.url, upstream_b.url, receiver)
        assert upstream_a.stats().requests == 2
        assert upstream_b.stats().requests == 1
    assert status == 200
    assert (body["a"]["status"], body["a"]["body"]["path"]) == (200, "/a")
    assert (body["b"]["status"], body["b"]["body"]["path"]) == (200, "/b")
    assert {resource["service.name"] for resource, _, _ in receiver.spans()} == {"fanout"}

    spans = spans_of_the_trace(receiver)
    (server,) = [span for _, span in spans if span.kind == Span.SPAN_KIND_SERVER]
    assert server.parent_span_id.hex() == CALLER_SPAN_ID
    assert server.name == "GET /fanout"
    server_attributes = attributes_of(server)
    assert server_attributes["http.route"] == "/fanout"
    assert server_attributes["http.response.status_code"] == 200

    logical = {
        attributes_of(span)["server.port"]: span
        for scope, span in spans
        if span.kind == Span.SPAN_KIND_INTERNAL and scope == "resilient_http"
    }
    assert set(logical) == {upstream_a.port, upstream_b.port}
    assert {span.parent_span_id for span in logical.values()} == {server.span_id}
    assert attributes_of(logical[upstream_a.port])["resilient_http.attempts"] == 2

    attempts = [span for _, span in spans if span.kind == Span.SPAN_KIND_CLIENT]
    by_parent: dict[bytes, list[Any]] = {}
    for span in sorted(attempts, key=lambda s: s.start_time_unix_nano):
        by_parent.setdefault(span.parent_span_id, []).append(span)
    chain_a = by_parent[logical[upstream_a.port].span_id]
    chain_b = by_parent[logical[upstream_b.port].span_id]
    assert [attributes_of(s).get("http.request.resend_count") for s in chain_a] == [None, 1]
    assert [attributes_of(s)["http.response.status_code"] for s in chain_b] == [200]
    assert len(spans) == 1 + 2 + 3


async def test_a_failed_upstream_is_a_502_in_the_same_trace(receiver: OTLPReceiver) -> None:
    async with FaultyUpstream() as upstream_a:
        status, body = await call_service(upstream_a.url, down_url(), receiver)
    assert status == 502
    assert body["a"]["status"] == 200
    assert body["b"] == {"status": None, "error": "ClientConnectorError"}
    spans = spans_of_the_trace(receiver)
    (server,) = [span for _, span in spans if span.kind == Span.SPAN_KIND_SERVER]
    assert attributes_of(server)["error.type"] == "502"
    failed = [
        span
        for _, span in spans
        if span.kind == Span.SPAN_KIND_CLIENT and "error.type" in attributes_of(span)
    ]
    assert len(failed) == 3  # RESILIENT_HTTP_RETRY_MAX_ATTEMPTS' default: connect errors retried
