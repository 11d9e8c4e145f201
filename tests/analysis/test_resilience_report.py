"""What the circuit breaker, adaptive concurrency and hedging did, as the analysis reports it.

Real ``ResilientSession`` calls against real upstreams on 127.0.0.1, with the OpenTelemetry SDK
writing the OTLP JSON file through the public file exporters; then ``analyze`` reads the file.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from aiohttp import web
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from rich.console import Console

import resilient_http as rh
from resilient_http.analysis.analyze import analyze_paths
from resilient_http.analysis.report import render_text, upstream_json
from resilient_http.telemetry import OTLPJsonFileMetricExporter, OTLPJsonFileSpanExporter
from tests.servers import serving


class Upstream:
    """502 while ``failing``; the first request held at ``gate`` when one is set (a slow
    answer for hedging); 429 with Retry-After once when ``throttle_once``."""

    def __init__(self) -> None:
        self.failing = False
        self.throttle_once = False
        self.gate: asyncio.Event | None = None
        self.app = web.Application()
        self.app.router.add_get("/", self._answer)

    async def _answer(self, request: web.Request) -> web.Response:
        if self.failing:
            return web.Response(status=502)
        if self.throttle_once:
            self.throttle_once = False
            return web.Response(status=429, headers={"Retry-After": "0"})
        gate, self.gate = self.gate, None
        if gate is not None:
            await gate.wait()
        return web.Response(text="ok")


async def test_breaker_rejections_adaptive_limit_and_hedges_are_reported(tmp_path: Path) -> None:
    file = tmp_path / "telemetry.jsonl"
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPJsonFileSpanExporter(file)))
    reader = PeriodicExportingMetricReader(
        OTLPJsonFileMetricExporter(file), export_interval_millis=3_600_000
    )
    meter_provider = MeterProvider(metric_readers=[reader])
    config = rh.ClientConfig(
        breaker=rh.BreakerPolicy(min_calls=2, open_for=60),
        concurrency="adaptive",
        hedge_after=0.02,
    )
    upstream = Upstream()
    async with (
        serving(upstream.app) as url,
        rh.ResilientSession(
            config, tracer_provider=tracer_provider, meter_provider=meter_provider
        ) as client,
    ):
        gate = upstream.gate = asyncio.Event()  # the first answer waits: a hedge wins
        async with client.get(url) as resp:
            assert resp.status == 200
        gate.set()
        upstream.throttle_once = True  # the adaptive limit goes down
        async with client.get(url, retry=False) as resp:
            assert resp.status == 429
        upstream.failing = True
        for _ in range(2):
            async with client.get(url, retry=False) as resp:
                assert resp.status == 502
        for _ in range(3):
            with pytest.raises(rh.CircuitOpenError):
                await client.get(url)
        reader.collect()  # while the session is open: its breaker and limiter are reported
    meter_provider.shutdown()
    tracer_provider.shutdown()

    analysis = analyze_paths([file])
    (host,) = analysis.hosts
    assert host.breaker_rejected == 3
    assert host.breaker_opened is True
    assert host.hedges == {"won": 1.0}
    assert host.concurrency_limit_last == 1  # one call was in flight when it was throttled
    document = upstream_json(host)
    assert document["breaker"] == {"rejected": 3, "opened": True}
    assert document["hedges"] == {"won": 1}
    buffer = io.StringIO()
    render_text(analysis, Console(file=buffer, width=120))
    text = buffer.getvalue()
    assert "Resilience:" in text
    assert "circuit breaker opened; 3 calls rejected" in text
    assert "1 hedges (1 won)" in text


async def test_the_adaptive_limit_is_reported_over_time(tmp_path: Path) -> None:
    file = tmp_path / "telemetry.jsonl"
    reader = PeriodicExportingMetricReader(
        OTLPJsonFileMetricExporter(file), export_interval_millis=3_600_000
    )
    meter_provider = MeterProvider(metric_readers=[reader])
    config = rh.ClientConfig(concurrency="adaptive")
    upstream = Upstream()
    async with (
        serving(upstream.app) as url,
        rh.ResilientSession(config, meter_provider=meter_provider) as client,
    ):
        # Three exports: the limit at its ceiling, cut by a 429, then raised by successes.
        async with client.get(url) as resp:
            assert resp.status == 200
        reader.collect()
        upstream.throttle_once = True
        async with client.get(url, retry=False) as resp:
            assert resp.status == 429
        reader.collect()
        for _ in range(20):
            async with client.get(url) as resp:
                assert resp.status == 200
        reader.collect()
    meter_provider.shutdown()

    (host,) = analyze_paths([file]).hosts
    over_time = host.concurrency_limit_over_time
    limits = [limit for _, limit in over_time]
    assert limits[:2] == [10, 1]
    assert len(limits) == 3
    assert 1 < limits[2] <= 10
    times = [t for t, _ in over_time]
    assert times[0] == 0.0
    assert times == sorted(times)
    assert upstream_json(host)["concurrency_limit_over_time"] == [
        {"t_s": round(t, 3), "limit": limit} for t, limit in over_time
    ]
    buffer = io.StringIO()
    render_text(analyze_paths([file]), Console(file=buffer, width=120))
    steps = " -> ".join(str(round(limit)) for limit in limits)
    assert f"limit over {times[-1]:.1f} s: {steps}" in buffer.getvalue()
