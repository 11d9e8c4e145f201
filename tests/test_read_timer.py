"""The pool's lazy ``sock_read`` timer: same timeout as aiohttp's, one timer handle per response.

Real aiohttp servers send the body in timed chunks; the protocol's own timer logic is also
driven directly, with the event loop's handles inspected, so the "no new timer per chunk"
claim is checked without timing.
"""

from __future__ import annotations

import asyncio
import time
import warnings

import aiohttp
import pytest
from aiohttp.client_proto import ResponseHandler

import resilient_http as rh
from resilient_http import pool
from tests.servers import RecordingServer


def _config(read: float) -> rh.ClientConfig:
    no_retry = rh.RetryPolicy(max_attempts=1)
    return rh.ClientConfig(retry=no_retry, timeout=rh.TimeoutConfig(read=read))


async def test_a_body_slower_than_sock_read_in_total_but_not_per_gap_is_read(
    recording_server: RecordingServer,
) -> None:
    # 8 gaps of 0.05 s = 0.4 s in total, longer than the 0.25 s read timeout: a timer that
    # was not moved by each chunk would fire mid-body.
    async with (
        rh.ResilientSession(config=_config(read=0.25)) as client,
        client.get(recording_server.url("/trickle?chunks=8&gap=0.05")) as resp,
    ):
        assert await resp.read() == b"x" * 8


async def test_a_stall_times_out_no_earlier_than_sock_read_after_the_last_chunk(
    recording_server: RecordingServer,
) -> None:
    read = 0.2
    async with (
        rh.ResilientSession(config=_config(read=read)) as client,
        client.get(recording_server.url("/trickle?chunks=3&gap=0.05&stall=1")) as resp,
    ):
        with pytest.raises(aiohttp.SocketTimeoutError):
            await resp.read()
        timed_out_at = time.monotonic()
    assert timed_out_at - recording_server.last_chunk_at >= read
    assert timed_out_at - recording_server.last_chunk_at < read + 5.0  # generous safety net only


async def _protocol() -> tuple[pool._LazyReadTimerProtocol, aiohttp.TCPConnector]:
    connector = pool.create_connector(rh.ClientConfig())
    proto = connector._factory()
    assert isinstance(proto, pool._LazyReadTimerProtocol)
    return proto, connector


def _arm(proto: pool._LazyReadTimerProtocol, timeout: float = 10.0) -> asyncio.TimerHandle:
    """Start the read timer as aiohttp does once a request is sent; the handle it armed."""
    proto._read_timeout = timeout
    proto.start_timeout()
    armed = proto._read_timeout_handle
    assert armed is not None
    return armed


async def test_a_chunk_moves_the_deadline_without_a_new_timer_handle() -> None:
    proto, connector = await _protocol()
    try:
        armed = _arm(proto)
        proto.data_received(b"")  # no data: nothing moves
        proto._reschedule_timeout()  # what data_received does for each chunk
        assert proto._read_timeout_handle is armed
        assert proto.rh_read_deadline >= armed.when()  # moved (the clock never goes back)
        assert not armed.cancelled()

        # Coming due after data arrived: re-armed for the moved deadline, no timeout.
        proto._rh_read_timer_due()
        rearmed = proto._read_timeout_handle
        assert rearmed is not None
        assert rearmed is not armed
        assert rearmed.when() == proto.rh_read_deadline
        assert proto.exception() is None

        # A shorter timeout cannot wait for the longer timer: it replaces it.
        proto._read_timeout = 1.0
        proto._reschedule_timeout()
        shorter = proto._read_timeout_handle
        assert shorter is not None
        assert shorter is not rearmed
        assert rearmed.cancelled()
        assert shorter.when() == proto.rh_read_deadline

        # Coming due with no data since: the read times out as aiohttp's would.
        proto._rh_read_timer_due()
        assert proto._read_timeout_handle is None
        assert isinstance(proto.exception(), aiohttp.SocketTimeoutError)
    finally:
        proto._drop_timeout()
        await connector.close()


async def test_dropping_or_zeroing_the_timeout_cancels_the_timer() -> None:
    proto, connector = await _protocol()
    try:
        armed = _arm(proto)
        proto._read_timeout = None
        proto._reschedule_timeout()
        assert proto._read_timeout_handle is None
        assert armed.cancelled()
        again = _arm(proto)
        proto._drop_timeout()
        assert proto._read_timeout_handle is None
        assert again.cancelled()
    finally:
        await connector.close()


def test_missing_timer_internals_fall_back_to_aiohttps_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pool, "_warned", set())
    monkeypatch.delattr(ResponseHandler, "_reschedule_timeout")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert pool._protocol_class() is pool._TrackedProtocol
        assert pool._protocol_class() is pool._TrackedProtocol
    assert [str(w.message) for w in caught] == [
        f"aiohttp {aiohttp.__version__} has no ResponseHandler._reschedule_timeout: "
        "sock_read timers cost aiohttp's price"
    ]


def test_the_installed_aiohttp_has_the_timer_state_the_lazy_timer_uses() -> None:
    loop = asyncio.new_event_loop()
    try:
        proto = ResponseHandler(loop)
        assert proto._read_timeout is None
        assert proto._read_timeout_handle is None
    finally:
        loop.close()
