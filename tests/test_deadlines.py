"""Slot timers (``SlotDeadlines``) and the pool's shared ``sock_read`` timers built on them:
reads time out as aiohttp's would, within a slot.

Real aiohttp servers send a body in timed chunks, end to end. The slot bookkeeping is driven
with an injected clock and timer queue, so which timers exist and when each deadline passes
are checked without timing anything. The attempts' total timeouts, the other user of slots,
are tested in ``test_attempt_timeouts.py``.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.client_proto import ResponseHandler

import resilient_http as rh
from resilient_http import pool
from resilient_http._deadlines import Slot, SlotDeadlines, slot_width
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


class FakeLoop:
    """The two things ``SlotDeadlines`` asks of the event loop, with time moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, Callable[..., object], tuple[Any, ...]]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> None:
        self.timers.append((when, callback, args))

    def run_until(self, now: float) -> None:
        """Move the clock to ``now``, running every timer due by then, in time order."""
        while due := sorted((t for t in self.timers if t[0] <= now), key=lambda t: t[0]):
            when, callback, args = due[0]
            self.timers.remove(due[0])
            self.now = when
            callback(*args)
        self.now = now


class FakeReader:
    def __init__(self, timeout: float | None = 10.0) -> None:
        self.timeout = timeout
        self.rh_deadline = 0.0
        self.rh_slot: Slot | None = None
        self.timed_out_at: list[float] = []
        self.loop: FakeLoop | None = None

    def rh_timeout(self) -> float | None:
        return self.timeout

    def rh_timed_out(self) -> None:
        assert self.loop is not None
        self.timed_out_at.append(self.loop.now)


def _deadlines() -> tuple[FakeLoop, SlotDeadlines]:
    loop = FakeLoop()
    return loop, SlotDeadlines(loop)  # type: ignore[arg-type]


def _reader(loop: FakeLoop, timeout: float | None = 10.0) -> FakeReader:
    reader = FakeReader(timeout)
    reader.loop = loop
    return reader


@pytest.mark.parametrize(
    ("timeout", "width"), [(10.0, 1.0), (30.0, 2.0), (0.25, 0.03125), (0.05, 2.0**-8)]
)
def test_a_slot_is_an_eighth_of_the_timeout_rounded_down_to_a_power_of_two(
    timeout: float, width: float
) -> None:
    assert slot_width(timeout) == width


@pytest.mark.parametrize(
    ("timeout", "width"), [(30.0, 0.25), (1.0, 2.0**-6), (0.05, 2.0**-11), (0.001, 2.0**-16)]
)
def test_finer_slots_when_asked_for(timeout: float, width: float) -> None:
    assert slot_width(timeout, 64) == width


@pytest.mark.parametrize("started", [0.0, 0.1, 7.77])
def test_a_deadline_is_met_within_its_slot_width_at_the_precision_asked_for(
    started: float,
) -> None:
    loop = FakeLoop()
    deadlines = SlotDeadlines(loop, 64)  # type: ignore[arg-type]
    timed = _reader(loop, 30.0)
    loop.now = started
    deadlines.watch(timed, 30.0)
    loop.run_until(started + 60.0)
    (timed_out,) = timed.timed_out_at
    assert started + 30.0 <= timed_out <= started + 30.0 + 0.25


def test_many_distinct_timeouts_do_not_grow_the_width_memo_without_bound() -> None:
    loop, deadlines = _deadlines()
    for step in range(5000):  # retries' totals are cut to the time left: all different
        deadlines.watch(_reader(loop, 10.0), 10.0 - step * 0.001)
    assert len(deadlines._widths) <= 1025


def test_reads_started_within_one_slot_share_one_timer() -> None:
    loop, deadlines = _deadlines()
    readers = [_reader(loop) for _ in range(100)]
    for index, reader in enumerate(readers):
        loop.now = 0.001 + index * 0.009  # 100 responses within 0.9 s: deadlines 10.001..10.9
        deadlines.watch(reader, 10.0)
    assert [when for when, _, _ in loop.timers] == [11.0]  # one timer, at the slot's end


def test_a_chunk_moves_the_deadline_without_timer_work() -> None:
    loop, deadlines = _deadlines()
    reader = _reader(loop)
    deadlines.watch(reader, 10.0)
    for chunk_at in (3.0, 6.0, 9.0):
        loop.run_until(chunk_at)
        deadlines.watch(reader, 10.0)  # what a chunk received does
    assert reader.rh_deadline == 19.0
    assert len(loop.timers) == 1  # still the first slot's timer
    loop.run_until(10.0)  # due: the moved deadline is filed again, not timed out
    assert reader.timed_out_at == []
    assert [when for when, _, _ in loop.timers] == [19.0]


@pytest.mark.parametrize("started", [0.0, 0.3, 0.999, 5.5])
def test_a_stalled_read_times_out_within_one_slot_after_its_deadline(started: float) -> None:
    loop, deadlines = _deadlines()
    reader = _reader(loop)
    loop.now = started
    deadlines.watch(reader, 10.0)
    loop.run_until(started + 30.0)
    (timed_out,) = reader.timed_out_at
    assert started + 10.0 <= timed_out <= started + 10.0 + slot_width(10.0)


def test_a_shorter_timeout_moves_the_read_to_an_earlier_slot() -> None:
    loop, deadlines = _deadlines()
    reader = _reader(loop)
    deadlines.watch(reader, 10.0)
    reader.timeout = 0.25
    deadlines.watch(reader, 0.25)
    loop.run_until(1.0)
    assert reader.timed_out_at == [0.25]  # 0.25 is a slot end (slots of 1/32 s)
    loop.run_until(20.0)
    assert reader.timed_out_at == [0.25]  # the 10 s slot found it gone


def test_an_unwatched_read_never_times_out() -> None:
    loop, deadlines = _deadlines()
    done, reader = _reader(loop), _reader(loop)
    deadlines.watch(done, 10.0)
    deadlines.watch(reader, 10.0)
    deadlines.unwatch(done)
    deadlines.unwatch(done)  # twice is harmless
    assert done.rh_slot is None
    loop.run_until(20.0)
    assert done.timed_out_at == []
    assert reader.timed_out_at == [10.0]


def test_a_read_whose_timeout_was_removed_is_not_filed_again() -> None:
    loop, deadlines = _deadlines()
    reader = _reader(loop)
    deadlines.watch(reader, 10.0)
    loop.run_until(5.0)
    deadlines.watch(reader, 10.0)
    reader.timeout = None
    loop.run_until(30.0)
    assert reader.timed_out_at == []
    assert loop.timers == []


async def _protocol() -> tuple[pool._SharedReadTimerProtocol, aiohttp.TCPConnector]:
    connector = pool.create_connector(rh.ClientConfig())
    proto = connector._factory()
    assert isinstance(proto, pool._SharedReadTimerProtocol)
    return proto, connector


async def test_the_protocol_files_its_reads_in_the_connectors_slots() -> None:
    proto, connector = await _protocol()
    try:
        proto._read_timeout = 10.0
        proto.start_timeout()  # what aiohttp does once the request is sent
        slot = proto.rh_slot
        assert slot is not None
        assert slot[0] == 1.0
        assert proto._read_timeout_handle is None  # no timer of its own
        proto._reschedule_timeout()  # what aiohttp does for each chunk received
        assert proto.rh_slot == slot
        proto._drop_timeout()  # response complete
        assert proto.rh_slot is None
        proto._read_timeout = None
        proto.start_timeout()
        assert proto.rh_slot is None
        proto.rh_timed_out()
        assert isinstance(proto.exception(), aiohttp.SocketTimeoutError)
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
