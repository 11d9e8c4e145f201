"""Driving the demo's load: one upstream process, one client, N calls at concurrency C.

The upstream runs in its own process (``UpstreamProcess``), not on the demo's event loop: in
process, every answer the upstream writes (and every latency timer it runs) would take turns
with the client on one loop and one core, and the client's latency, pool waits and throughput
would include the server's work. In a child process it gets its own core (and its own GIL),
so the numbers describe the client, as they would against a real service. Each run gets a
fresh upstream, so every client setup in ``--compare`` meets the same seeded faults.

Calls are made by C workers taking the next call number until N are done, so exactly C calls
are in flight (not N tasks created at once). A paced scenario instead starts its calls at a fixed
rate whatever the answers (an open loop, up to C in flight): every client then makes the same
calls at the same times, so one that fails slowly cannot make fewer calls during an outage.
Latency is measured per logical call, body read included: what the caller waited. A ``stop``
event (the demo's Ctrl-C) cancels the calls in flight: they are counted as interrupted, as the
SDK's telemetry records them, not as failures.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from collections.abc import Set as AbstractSet
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from aiohttp_retry import ExponentialRetry, RetryClient
from opentelemetry import metrics, trace

import resilient_http as rh
from resilient_http.analysis.stats import LatencySketch
from resilient_http.config import THROTTLING_STATUSES
from resilient_http.demo.scenarios import IdleGaps
from resilient_http.retry import RetryReason, classify_failure
from resilient_http.upstream import FaultPlan, UpstreamProcess, UpstreamStats

__all__ = [
    "ClientSetup",
    "ConnectAttempts",
    "LoadResult",
    "RunResult",
    "aiohttp_retry_client",
    "drive_load",
    "run_once",
]

# The path every call asks for; the upstream answers any path.
CALL_PATH = "/items"

Get = Callable[[str], AbstractAsyncContextManager[aiohttp.ClientResponse]]
CallDone = Callable[[bool], None]


@dataclass(frozen=True)
class ClientSetup:
    """One way of calling the upstream: plain aiohttp, aiohttp-retry (with the timeouts and
    attempts of ``config``), or ResilientSession with ``config``."""

    label: str
    kind: Literal["aiohttp", "aiohttp-retry", "sdk"]
    config: rh.ClientConfig | None = None
    telemetry: bool = False
    """Report through the global providers (else a ResilientSession reports nothing)."""

    def describe(self) -> str:
        """Limits, retries and strategies in a few words."""
        c = self.config
        if self.kind == "aiohttp" or c is None:
            return "aiohttp.ClientSession(TCPConnector()): limit 100, no per-host limit, no retries"
        if self.kind == "aiohttp-retry":
            return (
                f"aiohttp_retry.RetryClient: aiohttp's pool (limit 100, no per-host limit), "
                f"{c.retry.max_attempts} attempts with exponential backoff on connection errors, "
                f"timeouts and {_statuses(c)}, the SDK's timeouts; no breaker, no budget"
            )
        hedging = c.hedge_after if c.hedge_after in ("off", "auto") else f"after {c.hedge_after} s"
        breaker = "on" if c.breaker.enabled else "off"
        return (
            f"ResilientSession: limit {c.limit}, limit_per_host {c.limit_per_host}, keep-alive "
            f"{c.keepalive_timeout:g} s, {c.retry.max_attempts} attempts, concurrency "
            f"{c.concurrency}, hedging {hedging}, breaker {breaker}"
        )


@dataclass
class ConnectAttempts:
    """Connection attempts a client made, with their times (an aiohttp trace signal): refused
    ones too, which no upstream can count."""

    times: list[float] = field(default_factory=list)

    def trace_config(self) -> aiohttp.TraceConfig:
        """The trace config that records them, for the client's session."""
        config = aiohttp.TraceConfig()

        async def started(*_: Any) -> None:
            self.times.append(time.monotonic())

        config.on_connection_create_start.append(started)
        return config

    def between(self, start: float, end: float) -> int:
        """Attempts started in [start, end) (``time.monotonic`` seconds)."""
        return sum(start <= t < end for t in self.times)


@dataclass
class LoadResult:
    """What the client saw."""

    calls: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    """Calls that raised, by exception class name."""
    connection_errors: int = 0
    """Calls that failed on a dropped connection (``aiohttp.ClientConnectionError``)."""
    interrupted: int = 0
    """Calls cut short by ``stop`` before their answer arrived (not failures)."""
    latency: LatencySketch = field(default_factory=LatencySketch)
    """Seconds per call, in the analysis's own quantile sketch: bounded memory for any N."""
    seconds: float = 0.0

    @property
    def succeeded(self) -> int:
        """Calls answered 2xx."""
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def failed(self) -> int:
        """Calls that raised or were answered 4xx/5xx (interrupted ones are neither)."""
        answered = sum(n for status, n in self.statuses.items() if status < 400)
        return self.calls - self.interrupted - answered

    @property
    def success_rate(self) -> float:
        """Share of calls answered 2xx."""
        return self.succeeded / self.calls if self.calls else 0.0

    @property
    def throughput(self) -> float:
        """Calls per second."""
        return self.calls / self.seconds if self.seconds > 0 else 0.0

    @property
    def goodput(self) -> float:
        """Calls answered 2xx per second."""
        return self.succeeded / self.seconds if self.seconds > 0 else 0.0

    def latency_ms(self) -> dict[str, float | None]:
        """p50/p95/p99 of the calls' latency in milliseconds."""
        return {
            label: self.latency.quantile_ms(q)
            for label, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
        }


@dataclass
class RunResult:
    """One client setup against one fresh upstream."""

    setup: ClientSetup
    load: LoadResult
    upstream: UpstreamStats
    upstream_address: str
    connects: int = 0
    """Connection attempts the client made (refused ones included)."""

    @property
    def extra_requests(self) -> int:
        """Requests the upstream received beyond the calls made: every resend, hidden or not."""
        return self.upstream.requests - self.load.calls

    @property
    def throttled(self) -> int:
        """Requests the upstream answered 429 or 503."""
        statuses = self.upstream.responses_by_status
        return sum(statuses.get(status, 0) for status in THROTTLING_STATUSES)

    @property
    def throttled_share(self) -> float:
        """Share of the requests the upstream received that it answered 429 or 503."""
        return self.throttled / self.upstream.requests if self.upstream.requests else 0.0


async def drive_load(
    get: Get,
    url: str,
    requests: int,
    concurrency: int,
    on_call_done: CallDone,
    stop: asyncio.Event | None = None,
    gaps: IdleGaps | None = None,
    pace: float | None = None,
) -> LoadResult:
    """Make ``requests`` GET calls to ``url``, ``concurrency`` at a time, or fewer, each worker
    pausing as ``gaps`` says, or (``pace``) started at that many per second with up to
    ``concurrency`` in flight: once ``stop`` is set no call starts, and those in flight are
    cancelled."""
    result = LoadResult()
    stopped = stop if stop is not None else asyncio.Event()
    started_calls = 0

    async def call() -> None:
        on_call_done(await _one_call(get, url, result))

    async def pacer(per_second: float) -> None:
        in_flight: set[asyncio.Task[None]] = set()
        room = asyncio.Semaphore(concurrency)
        try:
            for number in range(requests):
                # Calls start on the schedule; late only while ``concurrency`` are out.
                await asyncio.sleep(max(0.0, started + number / per_second - time.perf_counter()))
                await room.acquire()
                task = asyncio.create_task(call())
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                task.add_done_callback(lambda _: room.release())
            while in_flight:
                await asyncio.wait(in_flight)
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)

    async def worker() -> None:
        nonlocal started_calls
        done = 0
        while started_calls < requests and not stopped.is_set():
            started_calls += 1
            # One turn of the loop first: calls queued for a connection take the one this
            # worker's last call released, as they would if each call came from its own task.
            # Without it the worker barges ahead of them (aiohttp hands a released connection to
            # whoever asks first), and a few queued calls wait for the whole run.
            await asyncio.sleep(0)
            await call()
            done += 1
            pause = gaps.pause_after(done) if gaps is not None else 0.0
            if pause and started_calls < requests:
                # The idle gap itself is the scenario (an upstream's idle timeout meets it).
                await asyncio.sleep(pause)

    started = time.perf_counter()
    if pace is not None:
        workers = [asyncio.create_task(pacer(pace))]
    else:
        workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, requests))]
    canceller = asyncio.create_task(_cancel_when_set(stopped, workers))
    try:
        outcomes = await asyncio.gather(*workers, return_exceptions=True)
    finally:
        canceller.cancel()
    for outcome in outcomes:
        # A cancelled worker is the stop at work; anything else is a bug to surface.
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            raise outcome
    result.seconds = time.perf_counter() - started
    return result


async def _cancel_when_set(stop: asyncio.Event, workers: list[asyncio.Task[None]]) -> None:
    await stop.wait()
    for worker in workers:
        worker.cancel()


async def _one_call(get: Get, url: str, result: LoadResult) -> bool:
    started = time.perf_counter()
    status = 0
    try:
        async with get(url) as resp:
            status = resp.status
            await resp.read()
    except asyncio.CancelledError:
        # Still what the caller waited, as the SDK's call duration records it.
        result.latency.add(time.perf_counter() - started, 1.0)
        result.calls += 1
        if status:  # answered, its body cut short: an answered call, as the SDK counts it
            result.statuses[status] += 1
        else:  # the SDK records the call as cancelled (error.type CancelledError) too
            result.interrupted += 1
        raise
    except aiohttp.ClientError as exc:
        # A failed call is part of what the demo shows (the SDK raises aiohttp's errors).
        result.errors[type(exc).__name__] += 1
        # Only calls that ended on a closed or reset connection consumed a dropped one;
        # timeouts are ClientConnectionErrors too, but the upstream did not drop anything,
        # and an open circuit breaker failed its calls with no connection at all.
        failure = None if isinstance(exc, rh.CircuitOpenError) else classify_failure(exc)
        if failure is not None and failure.reason is RetryReason.CONNECTION_CLOSED:
            result.connection_errors += 1
        status = 0
    except TimeoutError:
        result.errors["TimeoutError"] += 1
        status = 0
    result.latency.add(time.perf_counter() - started, 1.0)
    result.calls += 1
    if status:
        result.statuses[status] += 1
    return 200 <= status < 300


async def run_once(
    plan: FaultPlan,
    setup: ClientSetup,
    requests: int,
    concurrency: int,
    on_call_done: CallDone,
    stop: asyncio.Event | None = None,
    gaps: IdleGaps | None = None,
    pace: float | None = None,
) -> RunResult:
    """Start a fresh upstream with ``plan``, drive the load through ``setup`` (until ``stop``,
    pausing as ``gaps`` says, or paced), collect both sides' counts."""
    connects = ConnectAttempts()
    async with UpstreamProcess(plan) as upstream:
        async with _client(setup, connects.trace_config()) as get:
            url = upstream.make_url(CALL_PATH)
            load = await drive_load(get, url, requests, concurrency, on_call_done, stop, gaps, pace)
        # After the client closed: its connections are counted as closed too.
        stats = await upstream.stats()
        address = f"{upstream.host}:{upstream.port}"
        return RunResult(setup, load, stats, address, len(connects.times))


def aiohttp_retry_client(
    session: aiohttp.ClientSession, attempts: int, statuses: AbstractSet[int]
) -> RetryClient:
    """``aiohttp_retry`` as services use it: ``attempts`` in all with exponential backoff,
    retrying ``statuses``, connection errors and timeouts (the peer of the demo's comparison
    and of the resilience benchmarks)."""
    options = ExponentialRetry(
        attempts=attempts,
        statuses=set(statuses),
        exceptions={aiohttp.ClientError, asyncio.TimeoutError},
    )
    return RetryClient(client_session=session, retry_options=options)


@asynccontextmanager
async def _client(setup: ClientSetup, tracing: aiohttp.TraceConfig) -> AsyncIterator[Get]:
    if setup.kind == "aiohttp":
        # aiohttp's defaults, as a service that never tuned its session gets them.
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(), trace_configs=[tracing])
        async with session:
            yield session.get
        return
    if setup.kind == "aiohttp-retry":
        config = setup.config or rh.ClientConfig()
        timeout = config.timeout
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(),
            timeout=aiohttp.ClientTimeout(
                total=timeout.total, connect=timeout.connect, sock_read=timeout.read
            ),
            trace_configs=[tracing],
        )
        retrying = aiohttp_retry_client(session, config.retry.max_attempts, config.retry.statuses)
        try:
            yield retrying.get
        finally:
            await retrying.close()
        return
    # Explicit no-op providers unless this run is the one reported: a session of the comparison
    # must not write into the demo's telemetry (None means "the global providers").
    tracer_provider = None if setup.telemetry else trace.NoOpTracerProvider()
    meter_provider = None if setup.telemetry else metrics.NoOpMeterProvider()
    async with rh.ResilientSession(
        config=setup.config,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        trace_configs=[tracing],
    ) as client:
        yield client.get


def _statuses(config: rh.ClientConfig) -> str:
    return "/".join(str(status) for status in sorted(config.retry.statuses)) or "no status"
