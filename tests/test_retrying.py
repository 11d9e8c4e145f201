"""The retry loop with its clock, sleep, random source and budget injected.

A pipeline is built as ``ResilientSession`` builds it, over a real ``aiohttp.ClientSession``
and real (refused or faulty) upstreams on 127.0.0.1; only time and randomness are fake. The
calls' events come through the public recorder.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

import resilient_http as rh
from resilient_http._attempt import AttemptStage
from resilient_http._budget import RetryBudget
from resilient_http._listeners import SessionListeners
from resilient_http._pipeline import Pipeline, build_pipeline
from resilient_http._retrying import RetryLoop
from resilient_http.retry import RetryPlan, full_jitter_backoff
from resilient_http.upstream import FaultPlan, FaultyUpstream, RetryAfter, Throttle, down_url
from tests.helpers import FakeClock


class Sleeps:
    """An injected sleep: records what was asked, returns at once."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


@asynccontextmanager
async def pipeline(
    budget: RetryBudget, sleep: Sleeps, rng: random.Random
) -> AsyncIterator[Callable[..., Any]]:
    """A call function over a pipeline built as the session builds it."""
    async with aiohttp.ClientSession() as session:
        retries = RetryLoop(budget, sleep=sleep, rng=rng)
        stage = AttemptStage(session)
        entry = Pipeline(
            build_pipeline(
                call_strategies=(),
                retries=retries,
                attempt_strategies=(),
                send_attempt=stage.send,
            ),
            SessionListeners(None),
        )

        async def call(url: str, **kwargs: Any) -> aiohttp.ClientResponse:
            plan = RetryPlan(rh.RetryPolicy())
            template = aiohttp.ClientTimeout(total=30, connect=5, sock_read=10)
            return await entry.send("GET", url, url, kwargs, plan, None, 30.0, template)

        yield call


async def test_budget_bounds_retries_under_an_outage_and_recovers() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.0, min_per_second=0.2, clock=clock)  # 2 retries per window
    url = down_url()  # one upstream for the whole outage
    with rh.testing.record() as recorder:
        async with pipeline(budget, Sleeps(), random.Random(1)) as call:
            for _ in range(10):
                with pytest.raises(aiohttp.ClientConnectorError):
                    await call(url)
            assert len(recorder.retries) == 2  # 0.2 per second x 10 s
            assert [s.reason for s in recorder.suppressions].count("budget") == 9
            clock.now += 11  # the window slid past the outage's retries
            with pytest.raises(aiohttp.ClientConnectorError) as caught:
                await call(url)
    assert len(recorder.retries) == 4
    assert "no retry: budget" not in caught.value.__notes__[-1]
    assert caught.value.__notes__[-1].endswith("no retry: attempts exhausted (3 of 3)")


async def test_the_waits_slept_are_the_backoff_drawn_from_the_injected_source() -> None:
    sleeps = Sleeps()
    budget = RetryBudget(0.2, 10.0)
    with rh.testing.record() as recorder:
        async with pipeline(budget, sleeps, random.Random(9)) as call:
            with pytest.raises(aiohttp.ClientConnectorError):
                await call(down_url())
    rng = random.Random(9)
    assert sleeps.asked == [full_jitter_backoff(n, 0.1, 5.0, rng) for n in (1, 2)]
    assert [r.delay for r in recorder.retries] == sleeps.asked
    assert [a.number for a in recorder.attempts] == [1, 2, 3]


async def test_retry_after_is_slept_as_given() -> None:
    sleeps = Sleeps()
    plan = FaultPlan(throttle=Throttle(503, first=2, retry_after=RetryAfter("seconds", 2)))
    async with (
        FaultyUpstream(plan) as upstream,
        pipeline(RetryBudget(0.2, 10.0), sleeps, random.Random(1)) as call,
    ):
        response = await call(f"{upstream.url}/x")
        assert response.status == 200
        response.release()
    assert sleeps.asked == [2.0, 2.0]


async def test_testing_mode_sleeps_zero_but_keeps_the_scheduled_wait() -> None:
    sleeps = Sleeps()
    with rh.testing.set_testing(True), rh.testing.record() as recorder:
        async with pipeline(RetryBudget(0.2, 10.0), sleeps, random.Random(1)) as call:
            with pytest.raises(aiohttp.ClientConnectorError):
                await call(down_url())
    assert sleeps.asked == [0.0, 0.0]
    assert all(r.delay > 0 for r in recorder.retries)
