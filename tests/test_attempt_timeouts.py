"""Each attempt's total timeout, on the SDK's slot timers instead of aiohttp's timer per request.

End to end against real aiohttp servers: an attempt past its total raises
``asyncio.TimeoutError`` as aiohttp's own would, the deadline then bounds the body until the
connection is released, and no deadline outlives its response. The cancellation bookkeeping
(a deadline against a cancellation from elsewhere) is driven directly on a real event loop.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

import resilient_http as rh
from resilient_http._attempt_timeouts import AttemptTimeouts, Expiry, total_seconds, untimed
from tests.helpers import until
from tests.servers import RecordingServer

_NO_RETRY = rh.RetryPolicy(max_attempts=1)


def _filed(client: rh.ResilientSession) -> int:
    """How many attempt deadlines the session still has filed."""
    slots = client._runner._timeouts._deadlines._slots
    return sum(len(members) for members in slots.values())


@pytest.mark.parametrize(
    ("total", "left", "expected"),
    [
        (None, 30.0, 30.0),
        (10.0, 30.0, 10.0),
        (50.0, 30.0, 30.0),
        (0, 30.0, 30.0),
        (5.0, -1.0, 0.001),
    ],
)
def test_an_attempts_total_is_the_template_cut_to_the_time_left(
    total: float | None, left: float, expected: float
) -> None:
    # total=0 means "no total" to aiohttp: it must not become an instant timeout here
    assert total_seconds(aiohttp.ClientTimeout(total=total), left) == expected


def test_aiohttp_is_given_the_attempts_timeout_without_its_total() -> None:
    given = untimed(aiohttp.ClientTimeout(total=5, connect=1, sock_read=2, sock_connect=3))
    assert (given.total, given.connect, given.sock_read, given.sock_connect) == (None, 1, 2, 3)
    assert given.ceil_threshold == float("inf")  # exact connect timeouts, as before


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
        assert isinstance(caught.value.__cause__, asyncio.CancelledError)
        assert any(note.startswith("attempt 1: GET") for note in caught.value.__notes__)
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0  # the cancellation was taken back
        await until(lambda: client.pool_stats().active == 0)
        assert _filed(client) == 0


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
        assert _filed(client) == 0


async def test_the_deadline_fails_a_body_nobody_is_reading(
    recording_server: RecordingServer,
) -> None:
    async with rh.ResilientSession() as client:
        async with client.get(recording_server.url("/held-body"), deadline=0.1) as resp:
            assert resp.status == 200
            await until(lambda: resp.content.exception() is not None)
            with pytest.raises(asyncio.TimeoutError):
                await resp.read()
        await until(lambda: client.pool_stats().open == 0)  # closed, not put back half-read
        assert _filed(client) == 0


async def test_no_deadline_outlives_its_response(recording_server: RecordingServer) -> None:
    async with rh.ResilientSession() as client:
        for _ in range(20):
            async with client.get(recording_server.url("/items")) as resp:
                await resp.read()
        assert _filed(client) == 0
        # released before its body arrived: the connection is closed and its deadline dropped
        async with client.get(recording_server.url("/held-body")) as resp:
            assert _filed(client) == 1
        assert _filed(client) == 0
        # an attempt that failed before any response
        with pytest.raises(aiohttp.ClientConnectionError):
            await client.get("http://127.0.0.1:1/", retry=False)
        assert _filed(client) == 0


async def test_a_body_read_to_its_end_within_the_deadline_is_not_failed_later(
    recording_server: RecordingServer,
) -> None:
    async with (
        rh.ResilientSession() as client,
        client.get(recording_server.url("/held-body"), deadline=5.0) as resp,
    ):
        recording_server.release()
        assert await resp.read() == b"1234567890"
        assert _filed(client) == 0


async def test_concurrent_tasks_time_out_alone(recording_server: RecordingServer) -> None:
    async with rh.ResilientSession(config=rh.ClientConfig(retry=_NO_RETRY)) as client:
        held = asyncio.create_task(client.get(recording_server.url("/held"), deadline=0.05))
        quick = [asyncio.create_task(client.get(recording_server.url("/q"))) for _ in range(5)]
        for response in await asyncio.gather(*quick):
            assert response.status == 200
            response.release()
        with pytest.raises(asyncio.TimeoutError):
            await held


async def _held_attempt(timeouts: AttemptTimeouts, expiries: asyncio.Future[Expiry]) -> None:
    expiry = timeouts.start(30.0)
    expiries.set_result(expiry)
    try:
        await asyncio.Event().wait()  # an attempt that never answers
    except BaseException as raised:
        raise timeouts.failed(expiry, raised) from raised


async def test_the_deadline_cancels_the_attempt_into_a_timeout_error() -> None:
    timeouts = AttemptTimeouts(asyncio.get_running_loop())
    expiries: asyncio.Future[Expiry] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(_held_attempt(timeouts, expiries))
    (await expiries).rh_timed_out()  # what the slot timer does when the deadline passes
    with pytest.raises(asyncio.TimeoutError):
        await task
    assert task.cancelling() == 0


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    timeouts = AttemptTimeouts(asyncio.get_running_loop())
    expiries: asyncio.Future[Expiry] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(_held_attempt(timeouts, expiries))
    (await expiries).rh_timed_out()
    task.cancel()  # the application cancels too, in the same loop iteration
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelling() == 1  # the application's own, left for it


async def test_a_cancellation_before_the_deadline_is_not_turned_into_a_timeout() -> None:
    timeouts = AttemptTimeouts(asyncio.get_running_loop())
    expiries: asyncio.Future[Expiry] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(_held_attempt(timeouts, expiries))
    expiry = await expiries
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert expiry.rh_slot is None  # unfiled: it will not fire on a finished task


async def test_a_deadline_that_came_too_late_to_cancel_fails_the_body(
    recording_server: RecordingServer,
) -> None:
    async with aiohttp.ClientSession() as session:
        resp = await session.get(recording_server.url("/held-body"))
        timeouts = AttemptTimeouts(asyncio.get_running_loop())
        expiry = timeouts.start(30.0)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # the deadline's cancellation, swallowed by the request
        with pytest.raises(asyncio.CancelledError):
            await asyncio.sleep(0)
        expiry.fired = True
        timeouts.returned(expiry, resp)
        assert task.cancelling() == 0
        with pytest.raises(asyncio.TimeoutError):
            await resp.read()
        resp.release()


async def test_outside_a_task_is_an_error() -> None:
    loop = asyncio.get_running_loop()
    timeouts = AttemptTimeouts(loop)
    outcome: asyncio.Future[BaseException] = loop.create_future()

    def from_a_callback() -> None:
        try:
            timeouts.start(1.0)
        except RuntimeError as exc:
            outcome.set_result(exc)

    loop.call_soon(from_a_callback)
    assert "inside an asyncio task" in str(await outcome)
