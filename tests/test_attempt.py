"""Each attempt's timeouts are aiohttp's own ``ClientTimeout``: they fire when they say.

The attempt's ``total`` is the template's cut to the time left before the call's deadline (so
the deadline also bounds the final response's body); ``connect`` and ``sock_read`` are the
template's. End to end against real aiohttp servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

import resilient_http as rh
from resilient_http._attempt import attempt_timeout
from tests.helpers import until
from tests.servers import RecordingServer

_NO_RETRY = rh.RetryPolicy(max_attempts=1)


def _config(read: float) -> rh.ClientConfig:
    return rh.ClientConfig(retry=_NO_RETRY, timeout=rh.TimeoutConfig(read=read))


@pytest.mark.parametrize(
    ("total", "left", "expected"),
    [
        (None, 30.0, 30.0),
        (10.0, 30.0, 10.0),
        (50.0, 30.0, 30.0),
        (0, 30.0, 30.0),  # total=0 means "no total" to aiohttp: not an instant timeout
        (5.0, -1.0, 0.001),  # past the deadline: the shortest attempt, which times out
    ],
)
def test_an_attempts_total_is_the_template_cut_to_the_time_left(
    total: float | None, left: float, expected: float
) -> None:
    template = aiohttp.ClientTimeout(total=total, connect=1, sock_read=2, sock_connect=3)
    given = attempt_timeout(template, left)
    assert given.total == expected
    assert (given.connect, given.sock_read, given.sock_connect) == (1, 2, 3)
    assert given.ceil_threshold == template.ceil_threshold


def test_a_template_within_the_deadline_is_used_as_it_is() -> None:
    template = aiohttp.ClientTimeout(total=10, sock_read=2)
    assert attempt_timeout(template, 30.0) is template


async def test_a_read_timeout_fires_when_it_says(recording_server: RecordingServer) -> None:
    """A 0.5 s sock_read fires 0.5 to 0.6 s after the last byte arrived."""
    read = 0.5
    async with (
        rh.ResilientSession(config=_config(read=read)) as client,
        client.get(recording_server.url("/trickle?chunks=1&gap=0&stall=1")) as resp,
    ):
        with pytest.raises(aiohttp.SocketTimeoutError):
            await resp.read()
        timed_out_at = time.monotonic()
    waited = timed_out_at - recording_server.last_chunk_at
    assert read <= waited < read + 0.1


async def test_a_body_slower_than_sock_read_in_total_but_not_per_gap_is_read(
    recording_server: RecordingServer,
) -> None:
    # 8 gaps of 0.05 s = 0.4 s in total, longer than the 0.25 s read timeout: each chunk
    # restarts the read timer.
    async with (
        rh.ResilientSession(config=_config(read=0.25)) as client,
        client.get(recording_server.url("/trickle?chunks=8&gap=0.05")) as resp,
    ):
        assert await resp.read() == b"x" * 8


async def test_an_attempt_past_its_total_raises_timeout_error_no_earlier(
    recording_server: RecordingServer,
) -> None:
    total = 0.1
    async with rh.ResilientSession(config=rh.ClientConfig(retry=_NO_RETRY)) as client:
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError) as caught:
            await client.get(
                recording_server.url("/held"), timeout=aiohttp.ClientTimeout(total=total)
            )
        assert time.monotonic() - started >= total
        assert any(note.startswith("attempt 1: GET") for note in caught.value.__notes__)
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0  # aiohttp took its cancellation back
        recording_server.release()
        await recording_server.wait_for(lambda s: s.in_flight == 0)
        assert client.pool_stats().active == 0


async def test_a_number_as_timeout_is_the_total(recording_server: RecordingServer) -> None:
    async with rh.ResilientSession(config=rh.ClientConfig(retry=_NO_RETRY)) as client:
        with pytest.raises(asyncio.TimeoutError):
            await client.get(recording_server.url("/held"), timeout=0.05)
        # 0 or less is no total, as aiohttp reads it: the call's deadline still bounds it
        for no_total in (0, -1):
            async with client.get(recording_server.url("/"), timeout=no_total) as resp:
                assert resp.status == 200
        with pytest.raises(asyncio.TimeoutError):
            await client.get(recording_server.url("/held"), timeout=0, deadline=0.05)
        with pytest.raises(rh.ConfigError, match=r"timeout=nan: expected an aiohttp"):
            await client.get(recording_server.url("/"), timeout=float("nan"))
        recording_server.release()


async def test_a_timed_out_attempt_is_retried_within_the_deadline(
    recording_server: RecordingServer,
) -> None:
    policy = rh.RetryPolicy(max_attempts=2, backoff_initial=0.001, backoff_max=0.001)
    async with rh.ResilientSession(config=rh.ClientConfig(retry=policy)) as client:
        with pytest.raises(asyncio.TimeoutError) as caught:
            await client.get(
                recording_server.url("/held"), timeout=aiohttp.ClientTimeout(total=0.05)
            )
        notes = [note for note in caught.value.__notes__ if note.startswith("attempt")]
        assert len(notes) == 2
        assert len(recording_server.peers) == 2
        recording_server.release()


async def test_the_deadline_bounds_the_final_responses_body(
    recording_server: RecordingServer,
) -> None:
    async with rh.ResilientSession() as client:
        started = time.monotonic()
        async with client.get(recording_server.url("/held-body"), deadline=0.2) as resp:
            assert resp.status == 200
            with pytest.raises(asyncio.TimeoutError):
                await resp.read()  # half the body came; the rest waits past the deadline
        assert time.monotonic() - started >= 0.2
        await until(lambda: client.pool_stats().open == 0)  # closed, not put back half-read
        recording_server.release()


async def test_a_body_read_to_its_end_within_the_deadline_is_not_failed_later(
    recording_server: RecordingServer,
) -> None:
    async with (
        rh.ResilientSession() as client,
        client.get(recording_server.url("/held-body"), deadline=5.0) as resp,
    ):
        recording_server.release()
        assert await resp.read() == b"1234567890"


async def test_concurrent_tasks_time_out_alone(recording_server: RecordingServer) -> None:
    async with rh.ResilientSession(config=rh.ClientConfig(retry=_NO_RETRY)) as client:
        held = asyncio.create_task(client.get(recording_server.url("/held"), deadline=0.05))
        quick = [asyncio.create_task(client.get(recording_server.url("/q"))) for _ in range(5)]
        for response in await asyncio.gather(*quick):
            assert response.status == 200
            response.release()
        with pytest.raises(asyncio.TimeoutError):
            await held
        recording_server.release()


async def test_a_cancellation_from_elsewhere_stays_a_cancellation(
    recording_server: RecordingServer,
) -> None:
    async with rh.ResilientSession() as client:
        task = asyncio.create_task(client.get(recording_server.url("/held"), deadline=30))
        await recording_server.wait_for(lambda s: s.in_flight == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.pool_stats().active == 0
        recording_server.release()
