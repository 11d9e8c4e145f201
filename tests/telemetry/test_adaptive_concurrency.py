"""Adaptive concurrency against a real upstream on 127.0.0.1 that throttles and holds answers:
what the server had in flight, what the caller got, and the gauge and pool wait reported."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

import resilient_http as rh
from tests.helpers import until
from tests.servers import RecordingServer, serving
from tests.telemetry.conftest import Providers


class Upstream:
    """Throttles (429 with Retry-After) while ``throttling``; otherwise holds every answer at a
    gate and records the most requests it had in flight."""

    def __init__(self) -> None:
        self.throttling = True
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_get("/", self._answer)

    async def _answer(self, request: web.Request) -> web.Response:
        if self.throttling:
            return web.Response(status=429, headers={"Retry-After": "0"})
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        return web.Response(text="ok")


async def test_after_throttling_fewer_attempts_are_in_flight_and_the_rest_queue(
    providers: Providers,
) -> None:
    upstream = Upstream()
    config = rh.ClientConfig(limit_per_host=4, concurrency="adaptive")
    with rh.testing.record() as recorder:
        async with (
            serving(upstream.app) as url,
            rh.ResilientSession(
                config,
                retry=False,
                tracer_provider=providers.tracer_provider,
                meter_provider=providers.meter_provider,
            ) as client,
        ):
            async with client.get(url) as resp:
                assert resp.status == 429  # with 1 in flight: 1 place left
            upstream.throttling = False

            async def call() -> int:
                async with client.get(url) as resp:
                    await resp.read()
                    return resp.status

            calls = [asyncio.create_task(call()) for _ in range(4)]
            await until(lambda: upstream.in_flight == 1 and len(recorder.attempts) == 1)
            metrics = providers.metrics()
            for _ in range(3):  # a few loop turns: no second request may arrive
                await asyncio.sleep(0)
            assert upstream.in_flight == 1  # the pool would allow 4
            upstream.gate.set()
            assert await asyncio.gather(*calls) == [200] * 4
            after = providers.metrics()
    assert upstream.most_in_flight == 1
    assert len(recorder.queue_waits) == 3
    limits = [point.value for _, point in metrics["resilient_http.concurrency.limit"]]
    assert limits == [1]
    assert "resilient_http.pool.wait.duration" not in metrics  # the three were still queued
    waits = after["resilient_http.pool.wait.duration"]
    assert sum(point.count for _, point in waits) == 3  # their waits are pool wait


async def test_static_sessions_report_the_per_host_limit(providers: Providers) -> None:
    upstream = Upstream()
    upstream.throttling = False
    upstream.gate.set()
    async with (
        serving(upstream.app) as url,
        rh.ResilientSession(
            rh.ClientConfig(limit_per_host=7),
            tracer_provider=providers.tracer_provider,
            meter_provider=providers.meter_provider,
        ) as client,
        client.get(url) as resp,
    ):
        assert resp.status == 200
        metrics = providers.metrics()
    assert [point.value for _, point in metrics["resilient_http.concurrency.limit"]] == [7]


async def test_a_call_queued_under_the_limit_keeps_its_deadline_and_connect_timeout(
    recording_server: RecordingServer,
) -> None:
    """The limiter's queue is a wait for a pooled connection: the call's deadline and the
    attempt's connect timeout bound it, with aiohttp's error for such a wait, and the request
    is never sent."""
    config = rh.ClientConfig(limit_per_host=1, concurrency="adaptive")
    async with rh.ResilientSession(config=config) as client:
        holder = asyncio.ensure_future(client.get(recording_server.url("/held")))
        await recording_server.wait_for(lambda s: s.in_flight == 1)
        async with asyncio.timeout(5):  # a safety net only: the holder waits for release()
            with pytest.raises(aiohttp.ConnectionTimeoutError) as by_deadline:
                await client.get(recording_server.url("/a"), deadline=0.1)
            with pytest.raises(aiohttp.ConnectionTimeoutError):
                await client.get(
                    recording_server.url("/b"),
                    timeout=aiohttp.ClientTimeout(connect=0.1),
                    retry=False,
                )
        assert by_deadline.value.__notes__[-1].endswith("no retry: deadline")
        assert recording_server.in_flight == 1  # neither queued call reached the server
        recording_server.release()
        async with await holder as held:
            assert held.status == 200
        async with client.get(recording_server.url("/c")) as resp:  # the place was given back
            assert resp.status == 200
