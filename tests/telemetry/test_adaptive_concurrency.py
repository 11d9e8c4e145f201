"""Adaptive concurrency against a real upstream on 127.0.0.1 that throttles and holds answers:
what the server had in flight, what the caller got, and the gauge and pool wait reported."""

from __future__ import annotations

import asyncio

from aiohttp import web

import resilient_http as rh
from tests.helpers import until
from tests.servers import serving
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
