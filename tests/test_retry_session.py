"""Retries through ResilientSession against the fault-injecting upstream on 127.0.0.1.

Testing mode turns waits off and the public recorder (``rh.testing.record()``) shows every
decision: tests assert which waits were scheduled, never how long anything took.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import aiohttp
import aiohttp_retry
import pytest

import resilient_http as rh
from resilient_http.upstream import (
    FaultPlan,
    FaultyUpstream,
    Latency,
    RetryAfter,
    Script,
    Throttle,
    UpstreamProcess,
    down_url,
)
from tests.servers import RecordingServer


@pytest.fixture
def recorder() -> Iterator[rh.testing.Recorder]:
    """Testing mode (waits of 0, decisions unchanged) and a recorder of the calls' events."""
    with rh.testing.set_testing(True), rh.testing.record() as recorded:
        yield recorded


def delays(recorder: rh.testing.Recorder) -> list[float]:
    """The waits the retries scheduled (testing mode sleeps 0 instead)."""
    return [r.delay for r in recorder.retries]


@pytest.fixture
async def upstream(request: pytest.FixtureRequest) -> AsyncIterator[FaultyUpstream]:
    plan = getattr(request, "param", FaultPlan())
    async with FaultyUpstream(plan) as server:
        yield server


def plan(**kwargs: object) -> FaultPlan:
    return FaultPlan(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("upstream", [plan(stale_after=(1, 3), seed=42)], indirect=True)
async def test_stale_keepalive_acceptance(
    upstream: FaultyUpstream, recorder: rh.testing.Recorder
) -> None:
    """1,000 GETs, keep-alive closed after 1-3 requests: all succeed, retries == stale closes."""
    async with rh.ResilientSession(config=rh.ClientConfig(limit_per_host=10)) as client:
        semaphore = asyncio.Semaphore(10)

        async def one(i: int) -> int:
            async with semaphore, client.get(f"{upstream.url}/item/{i}") as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(one(i) for i in range(1000)))
        stats = client.pool_stats()
    seen = upstream.stats()
    assert statuses == [200] * 1000
    assert seen.stale_closes > 100  # the fault really happened, many times
    assert len(recorder.retries) == seen.stale_closes
    assert all(
        r.free and r.reason == "connection_closed" and r.delay == 0 for r in recorder.retries
    )
    assert delays(recorder) == [0.0] * seen.stale_closes
    assert (stats.active, stats.waiting) == (0, 0)
    assert seen.requests == 1000 + seen.stale_closes


@pytest.mark.parametrize(
    "upstream", [plan(scripts=(Script(("close",), path="/pay"),))], indirect=True
)
async def test_post_that_may_have_reached_the_server_is_not_resent(
    upstream: FaultyUpstream, recorder: rh.testing.Recorder
) -> None:
    async with rh.ResilientSession() as client:
        with pytest.raises(aiohttp.ServerDisconnectedError) as caught:
            await client.post(f"{upstream.url}/pay", data=b"amount=5")
    assert upstream.stats().requests_by_route == {"POST /pay": 1}
    assert [s.reason for s in recorder.suppressions] == ["not_idempotent"]
    notes = caught.value.__notes__
    assert len(notes) == 1
    assert notes[0].startswith(f"attempt 1: POST {upstream.url}/pay -> ServerDisconnectedError")
    assert notes[0].endswith("no retry: not idempotent")


@pytest.mark.parametrize(
    "upstream", [plan(scripts=(Script(("close",), path="/pay"),))], indirect=True
)
@pytest.mark.parametrize(
    "kwargs", [{"idempotent": True}, {"headers": {"Idempotency-Key": "k-1"}}], ids=["flag", "key"]
)
async def test_post_marked_idempotent_is_resent(
    upstream: FaultyUpstream, kwargs: dict[str, object], recorder: rh.testing.Recorder
) -> None:
    async with (
        rh.ResilientSession() as client,
        client.post(f"{upstream.url}/pay", data=b"amount=5", **kwargs) as resp,
    ):
        assert resp.status == 200
    assert upstream.stats().requests_by_route == {"POST /pay": 2}
    assert [r.reason for r in recorder.retries] == ["connection_closed"]
    assert not recorder.retries[0].free  # a new connection: an ordinary, charged retry


@pytest.mark.parametrize(
    "upstream",
    [plan(throttle=Throttle(status=429, first=1, retry_after=RetryAfter("seconds", 3600)))],
    indirect=True,
)
async def test_retry_after_beyond_the_cap_returns_at_once(
    upstream: FaultyUpstream, recorder: rh.testing.Recorder
) -> None:
    async with rh.ResilientSession() as client:
        async with asyncio.timeout(5):  # a safety net; the assertion is on scheduled sleeps
            async with client.get(f"{upstream.url}/x") as resp:
                assert resp.status == 429
                assert resp.headers["Retry-After"] == "3600"
    assert recorder.retries == []
    assert [s.reason for s in recorder.suppressions] == ["retry_after_too_long"]
    assert upstream.stats().requests == 1


@pytest.mark.parametrize(
    ("upstream", "low", "high"),
    [
        (plan(throttle=Throttle(503, first=2, retry_after=RetryAfter("seconds", 2))), 2.0, 2.0),
        (plan(throttle=Throttle(503, first=2, retry_after=RetryAfter("http-date", 4))), 3.0, 5.0),
    ],
    indirect=["upstream"],
    ids=["delta-seconds", "http-date"],
)
async def test_retry_after_is_honoured(
    upstream: FaultyUpstream, low: float, high: float, recorder: rh.testing.Recorder
) -> None:
    async with rh.ResilientSession() as client, client.get(f"{upstream.url}/x") as resp:
        assert resp.status == 200
    assert len(recorder.retries) == 2
    assert all(low <= s <= high for s in delays(recorder))
    assert [r.reason for r in recorder.retries] == ["throttled", "throttled"]
    assert upstream.stats().responses_by_status == {503: 2, 200: 1}


@pytest.mark.parametrize(
    "upstream",
    [plan(throttle=Throttle(502, first=2, retry_after=RetryAfter("none")))],
    indirect=True,
)
async def test_backoff_uses_full_jitter(
    upstream: FaultyUpstream, recorder: rh.testing.Recorder
) -> None:
    async with rh.ResilientSession() as client, client.get(f"{upstream.url}/x") as resp:
        assert resp.status == 200
    # full jitter: retry n waits in [0, 0.1 * 2 ** (n - 1)] (the draws: tests/test_strategies.py)
    first, second = delays(recorder)
    assert 0 <= first <= 0.1
    assert 0 <= second <= 0.2
    assert [r.reason for r in recorder.retries] == ["server_error", "server_error"]


@pytest.mark.parametrize(
    "upstream",
    [plan(throttle=Throttle(503, probability=1.0, retry_after=RetryAfter("none")))],
    indirect=True,
)
async def test_still_failing_status_is_returned_and_nothing_leaks(
    upstream: FaultyUpstream, recorder: rh.testing.Recorder
) -> None:
    async with rh.ResilientSession() as client:
        async with client.get(f"{upstream.url}/x") as resp:
            assert resp.status == 503
        stats = client.pool_stats()
    assert upstream.stats().requests == 3
    assert len(recorder.retries) == 2
    assert (stats.active, stats.idle, stats.open) == (0, 1, 1)


async def test_connect_refused_raises_last_error_with_one_note_per_attempt(
    recorder: rh.testing.Recorder,
) -> None:
    url = down_url() + "/x?token=s3cret"
    async with rh.ResilientSession() as client:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await client.get(url)
    notes = caught.value.__notes__
    assert [n.split(":")[0] for n in notes] == ["attempt 1", "attempt 2", "attempt 3"]
    assert "retrying in" in notes[0]
    assert "(connect_error, backoff)" in notes[0]
    assert notes[2].endswith("no retry: attempts exhausted (3 of 3)")
    assert not any("s3cret" in n for n in notes)
    assert all("token=REDACTED" in n for n in notes)
    assert len(recorder.retries) == 2


async def test_post_is_retried_when_the_request_was_never_sent(
    recorder: rh.testing.Recorder,
) -> None:
    async with rh.ResilientSession() as client:
        with pytest.raises(aiohttp.ClientConnectorError):
            await client.post(down_url(), data=b"x")
    assert [r.reason for r in recorder.retries] == ["connect_error", "connect_error"]


@pytest.mark.parametrize("upstream", [plan(stale_after=1)], indirect=True)
async def test_stale_retry_is_free_and_only_retry_false_turns_it_off(
    upstream: FaultyUpstream, recorder: rh.testing.Recorder
) -> None:
    policy = rh.RetryPolicy(max_attempts=1, budget_ratio=0, budget_min_per_second=0)
    async with rh.ResilientSession(retry=policy) as client:
        for _ in range(3):
            async with client.get(f"{upstream.url}/x") as resp:
                assert resp.status == 200
        assert [r.free for r in recorder.retries] == [True, True]
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await client.get(f"{upstream.url}/x", retry=False)
    assert upstream.stats().stale_closes == 3


@pytest.mark.parametrize(
    "upstream", [plan(scripts=(Script(("close",), path="/up"),))], indirect=True
)
async def test_consumed_stream_body_is_never_resent(
    upstream: FaultyUpstream, recorder: rh.testing.Recorder
) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"chunk"

    async with rh.ResilientSession() as client:
        with pytest.raises(aiohttp.ServerDisconnectedError) as caught:
            await client.post(f"{upstream.url}/up", data=body(), idempotent=True)
    assert upstream.stats().requests_by_route == {"POST /up": 1}
    assert [s.reason for s in recorder.suppressions] == ["body_not_replayable"]
    assert caught.value.__notes__[-1].endswith("no retry: body not replayable")


async def test_deadline_stops_retries_and_raises_a_timeout(recorder: rh.testing.Recorder) -> None:
    async with FaultyUpstream(FaultPlan(hang_probability=1.0)) as upstream:
        config = rh.ClientConfig(timeout=rh.TimeoutConfig(total=30, read=0.05))
        async with rh.ResilientSession(config=config) as client:
            async with asyncio.timeout(10):  # a safety net only
                with pytest.raises(asyncio.TimeoutError) as caught:
                    await client.get(f"{upstream.url}/x", deadline=0.3)
            assert client.pool_stats().active == 0
    assert any("timeout" in n for n in caught.value.__notes__)
    assert recorder.retries  # read timeouts were retried while time was left


@pytest.mark.parametrize(
    "upstream",
    [plan(throttle=Throttle(503, first=2, retry_after=RetryAfter("none")))],
    indirect=True,
)
async def test_aiohttp_retry_options_keep_their_meaning(
    upstream: FaultyUpstream, recorder: rh.testing.Recorder
) -> None:
    options = aiohttp_retry.ExponentialRetry(attempts=3, start_timeout=0.1, statuses={503})
    async with (
        rh.ResilientSession(retry=options) as client,
        client.get(f"{upstream.url}/x") as resp,
    ):
        assert resp.status == 200
    assert delays(recorder) == [pytest.approx(0.2), pytest.approx(0.4)]


async def test_aiohttp_retry_option_without_equivalent_is_a_config_error() -> None:
    async def evaluate(response: aiohttp.ClientResponse) -> bool:
        return True

    options = aiohttp_retry.ExponentialRetry(evaluate_response_callback=evaluate)
    with pytest.raises(rh.ConfigError, match="evaluate_response_callback"):
        rh.ResilientSession(retry=options)


async def test_bad_retry_and_idempotent_arguments() -> None:
    async with rh.ResilientSession() as client:
        with pytest.raises(rh.ConfigError, match="retry=3: expected a RetryPolicy"):
            await client.get("http://127.0.0.1:1/", retry=3)
        with pytest.raises(rh.ConfigError, match="idempotent='yes'"):
            await client.get("http://127.0.0.1:1/", idempotent="yes")


@pytest.mark.parametrize(
    "upstream",
    [plan(throttle=Throttle(503, first=2, retry_after=RetryAfter("seconds", 7)))],
    indirect=True,
)
async def test_testing_mode_keeps_retries_and_zeroes_waits(upstream: FaultyUpstream) -> None:
    with rh.testing.set_testing(True), rh.testing.record() as recorder:
        # 2 x 7 s of Retry-After, scheduled but not slept: the bound is only a safety net
        async with (
            rh.ResilientSession() as client,
            asyncio.timeout(5),
            client.get(f"{upstream.url}/x") as resp,
        ):
            assert resp.status == 200
    assert delays(recorder) == [7.0, 7.0]
    assert [r.reason for r in recorder.retries] == ["throttled", "throttled"]
    assert not rh.testing.is_testing()


async def test_cancellation_during_backoff_is_not_swallowed() -> None:
    retried = asyncio.Event()
    waits = aiohttp_retry.ListRetry(timeouts=[60.0, 60.0])  # a real, long sleep (no jitter)

    async with rh.ResilientSession(retry=waits) as client:
        with rh.testing.record(on_event=lambda e: retried.set()) as recorder:
            task = asyncio.create_task(client.get(down_url(), deadline=600))
        await retried.wait()  # the first attempt failed; the task now sleeps before the retry
        while not recorder.retries:  # (attempt events come first)
            retried.clear()
            await retried.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.pool_stats().active == 0
    assert [r.delay for r in recorder.retries] == [60.0]


@pytest.mark.parametrize(
    "upstream", [plan(scripts=(Script(("reset-mid-body",), path="/big"),))], indirect=True
)
async def test_failure_while_the_caller_reads_the_body_is_raised_not_retried(
    upstream: FaultyUpstream, recorder: rh.testing.Recorder
) -> None:
    async with rh.ResilientSession() as client:
        async with client.get(f"{upstream.url}/big") as resp:
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
        assert client.pool_stats().active == 0
    assert upstream.stats().requests_by_route == {"GET /big": 1}
    assert recorder.retries == []


@pytest.mark.parametrize("upstream", [plan(stale_after=1, stale_mode="reset")], indirect=True)
async def test_stale_connection_reset_is_also_a_free_retry(
    upstream: FaultyUpstream, recorder: rh.testing.Recorder
) -> None:
    async with rh.ResilientSession() as client:
        for _ in range(2):
            async with client.get(f"{upstream.url}/x") as resp:
                assert resp.status == 200
    assert [(r.free, r.reason) for r in recorder.retries] == [(True, "connection_closed")]
    assert upstream.stats().stale_closes == 1


@pytest.mark.parametrize(
    "upstream",
    [plan(throttle=Throttle(503, probability=1.0, retry_after=RetryAfter("none")))],
    indirect=True,
)
async def test_aiohttp_retry_list_waits_as_given(
    upstream: FaultyUpstream, recorder: rh.testing.Recorder
) -> None:
    options = aiohttp_retry.ListRetry(timeouts=[0.0, 0.5, 1.5], statuses={503})
    async with (
        rh.ResilientSession(retry=options) as client,
        client.get(f"{upstream.url}/x") as resp,
    ):
        assert resp.status == 503
    # aiohttp_retry asks for the wait after attempt N with get_timeout(N)
    assert delays(recorder) == [0.5, 1.5]
    assert upstream.stats().requests == 3


@pytest.mark.parametrize(
    "upstream",
    [plan(throttle=Throttle(503, first=1, retry_after=RetryAfter("seconds", 5)))],
    indirect=True,
)
async def test_retry_after_past_the_deadline_returns_at_once(
    upstream: FaultyUpstream, recorder: rh.testing.Recorder
) -> None:
    async with (
        rh.ResilientSession() as client,
        client.get(f"{upstream.url}/x", deadline=1.0) as resp,
    ):
        assert resp.status == 503
    assert recorder.retries == []
    assert [str(s.reason) for s in recorder.suppressions] == ["deadline"]


async def test_stale_retries_never_grow_the_pool_past_its_limit() -> None:
    """A fresh-connection retry replaces an idle connection instead of adding one.

    aiohttp counts only connections in use against its limits and hands idle ones out unchecked,
    so a pool that grew past LIMIT_PER_HOST would later run more requests at once than allowed.
    The upstream runs in its own process, as in production (in-process, its timing hides this).
    """
    plan = FaultPlan(
        seed=7,
        latency=Latency.lognormal(0.02, 0.5),
        stale_after=(3, 12),
        reset_probability=0.005,
        # repeat=False: a throttled call's retry goes through, so no call can fail 3 times
        throttle=Throttle(503, probability=0.03, retry_after=RetryAfter("none"), repeat=False),
    )
    upstream = UpstreamProcess(plan)
    await upstream.start()
    try:
        # Waits of 0 that still yield to the loop, as real backoff sleeps do.
        with rh.testing.set_testing(True), rh.testing.record() as recorder:
            client = rh.ResilientSession(config=rh.ClientConfig(limit_per_host=10))
            semaphore = asyncio.Semaphore(30)  # more calls in flight than connections allowed

            async def one(i: int) -> int:
                async with semaphore, client.get(upstream.make_url(f"/i/{i}")) as resp:
                    await resp.read()
                    return resp.status

            async with client:
                statuses = await asyncio.gather(*(one(i) for i in range(600)))
                stats = client.pool_stats()
                seen = await upstream.stats()
    finally:
        await upstream.close()
    assert statuses == [200] * 600
    assert recorder.retries  # the faults really happened
    assert stats.open <= 10  # without the fix: 19-23 open at limit 10
    # (the server's own count lags: it learns of each close a little later, in its process)
    assert seen.connections_opened > 10  # connections really were replaced
    assert (stats.active, stats.waiting) == (0, 0)


async def test_a_call_with_an_upload_tracker_is_sent_once() -> None:
    """aiohttp binds an UploadTracker to one request, so such a call is never resent (a resend
    would fail with aiohttp's "already bound" error instead of the real failure)."""
    upload_tracker = getattr(aiohttp, "UploadTracker", None)
    if upload_tracker is None:
        pytest.skip(f"aiohttp {aiohttp.__version__} has no UploadTracker")
    with rh.testing.record() as recorder:
        async with rh.ResilientSession() as client:
            with pytest.raises(aiohttp.ClientConnectorError):
                await client.post(down_url(), data=b"x", upload_tracker=upload_tracker())
    assert [a.number for a in recorder.attempts] == [1]
    assert recorder.retries == []


async def test_closing_the_session_ends_a_call_waiting_to_retry() -> None:
    """A call in its wait before a retry ends at once when the session closes, with an
    aiohttp error (not the RuntimeError of an attempt on a closed session) and its notes."""
    throttled = plan(throttle=Throttle(503, first=100, retry_after=RetryAfter("seconds", 20)))
    waiting = asyncio.Event()

    def on_event(event: rh.testing.Event) -> None:
        if isinstance(event, rh.testing.RetryEvent):
            waiting.set()

    async with FaultyUpstream(throttled) as upstream:
        client = rh.ResilientSession()
        with rh.testing.record(on_event) as recorder:
            call = asyncio.ensure_future(client.get(f"{upstream.url}/x"))
            await waiting.wait()
            await client.close()
            async with asyncio.timeout(5):  # a safety net only: the wait was 20 s
                with pytest.raises(aiohttp.ClientConnectionError) as raised:
                    await call
        assert upstream.stats().requests == 1
    assert delays(recorder) == [20.0]
    notes = raised.value.__notes__
    assert notes[-1].endswith("no retry: the session was closed")
    assert len(notes) == 1
    assert notes[0].startswith("attempt 1: GET")


async def test_closing_the_session_during_an_attempt_raises_aiohttps_error(
    recording_server: RecordingServer,
) -> None:
    """aiohttp fails the attempt in flight; the SDK does not try again on the closed session."""
    client = rh.ResilientSession()
    call = asyncio.ensure_future(client.get(recording_server.url("/held")))
    await recording_server.wait_for(lambda s: s.in_flight == 1)
    await client.close()
    async with asyncio.timeout(5):  # a safety net only
        with pytest.raises(aiohttp.ClientError) as raised:
            await call
    assert raised.value.__notes__[-1].endswith("no retry: the session was closed")
    recording_server.release()
