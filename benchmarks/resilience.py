"""The resilience scenarios: an outage, an overloaded upstream and a long tail, each with its goal.

Each scenario runs its clients one after another against the bundled upstream in its own process
(``benchmarks.server.UpstreamServer``), and compares them within the run:

- **outage**: a healthy upstream hangs (accepts, never answers) for ``outage_s`` seconds, then is
  healthy again at the same address. Calls arrive at a steady rate (open loop, as a service's
  traffic does). The SDK (circuit breaker on, its defaults but ``BREAKER_OPEN_FOR``) against
  ``aiohttp_retry`` (3 attempts, retrying connection errors and timeouts), both with the same
  per-attempt timeouts. Measured: how fast failed calls return while the SDK's breaker is open
  (p99), connection attempts to the upstream during the outage, and how long after the upstream
  is back the first call succeeds.
- **overloaded**: an upstream that answers at most ``capacity`` requests at once (503 with
  ``Retry-After: 0`` beyond that, each answer taking 20 ms), offered three times that many calls
  at once (closed loop). The SDK with ``LIMIT_PER_HOST`` = capacity (the ideal static setting),
  = 5 x capacity, adaptive (with 5 x capacity as its ceiling), and ``aiohttp_retry``. Measured:
  goodput (successful calls per second) and the share of attempts throttled.
- **long-tail**: the demo's long tail (``LONG_TAIL``: 1.5 % of answers take 1 s, the rest 20 ms;
  a little over 1 %, so that the unhedged p99 lands in the tail rather than on its edge). The
  SDK without hedging and with ``HEDGE_AFTER=auto``. Measured: p99 latency and the extra
  requests hedging sent.

The goals (issue "Adaptive resilience") are evaluated from these figures; wall-clock figures on
the shared 2-core machine are noisy, so each goal compares clients of the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

import resilient_http as rh
from resilient_http.demo.load import ConnectAttempts, aiohttp_retry_client
from resilient_http.demo.scenarios import LONG_TAIL
from resilient_http.upstream import unused_port

from .report import Goal
from .server import UpstreamServer
from .variants import RETRY_STATUSES, ClientSettings, Fetch, session_fetch

__all__ = [
    "RESILIENCE_SCENARIOS",
    "ResilienceResult",
    "ResilienceSettings",
    "render",
    "run_resilience",
    "scaled_settings",
]

RESILIENCE_SCENARIOS = ("outage", "overloaded", "long-tail")
_ATTEMPT_TIMEOUT = aiohttp.ClientTimeout(total=5, connect=0.5, sock_read=0.5)
_MakeClient = Callable[[ConnectAttempts], contextlib.AbstractAsyncContextManager[Fetch]]
#: bodies read whole, as the other benchmark runs read them
_WHOLE_BODIES = ClientSettings()


@dataclass(frozen=True, slots=True)
class ResilienceSettings:
    """How long and how hard each scenario runs (the defaults: ``make bench``)."""

    rate_per_s: float = 100.0
    """Outage: calls started per second."""
    before_s: float = 1.0
    outage_s: float = 6.0
    after_s: float = 6.0
    open_for_s: float = 5.0
    """Outage: the SDK's ``BREAKER_OPEN_FOR`` (SPEC's default)."""
    capacity: int = 10
    overloaded_s: float = 4.0
    tail_calls: int = 3000
    tail_concurrency: int = 16


def scaled_settings(scale: float) -> ResilienceSettings:
    """The default settings with every duration and call count times ``scale`` (the rate and
    the capacity stay)."""
    base = ResilienceSettings()
    return ResilienceSettings(
        rate_per_s=base.rate_per_s,
        before_s=base.before_s * scale,
        outage_s=base.outage_s * scale,
        after_s=base.after_s * scale,
        open_for_s=base.open_for_s * scale,
        capacity=base.capacity,
        overloaded_s=base.overloaded_s * scale,
        tail_calls=max(100, round(base.tail_calls * scale)),
        tail_concurrency=base.tail_concurrency,
    )


@dataclass
class ResilienceResult:
    """One scenario: a row of figures per client, and its goals."""

    scenario: str
    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    goals: list[Goal] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"scenario": self.scenario, "rows": self.rows}


@contextlib.asynccontextmanager
async def _sdk(config: rh.ClientConfig, connects: ConnectAttempts) -> AsyncIterator[Fetch]:
    async with rh.ResilientSession(
        config=config, trace_configs=[connects.trace_config()]
    ) as client:
        yield session_fetch(client, _WHOLE_BODIES)


@contextlib.asynccontextmanager
async def _aiohttp_retry(limit_per_host: int, connects: ConnectAttempts) -> AsyncIterator[Fetch]:
    """``aiohttp_retry`` as services use it: aiohttp's connector (``limit_per_host`` 0 is
    aiohttp's default, unlimited), 3 attempts, retrying connection errors and timeouts too."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit_per_host=limit_per_host),
        timeout=_ATTEMPT_TIMEOUT,
        trace_configs=[connects.trace_config()],
    )
    client = aiohttp_retry_client(session, 3, RETRY_STATUSES)
    try:
        yield session_fetch(client, _WHOLE_BODIES)
    finally:
        await client.close()


def _sdk_config(**changes: Any) -> rh.ClientConfig:
    timeout = rh.TimeoutConfig(total=5, connect=0.5, read=0.5)
    return rh.ClientConfig(timeout=timeout).replace(**changes)


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


# -- outage ---------------------------------------------------------------------------------


@dataclass
class _Call:
    started: float
    seconds: float
    outcome: str  # "ok", "rejected" (CircuitOpenError) or the error / status


async def _outage_run(
    make: _MakeClient,
    settings: ResilienceSettings,
) -> dict[str, float]:
    port = unused_port()
    connects = ConnectAttempts()
    calls: list[_Call] = []
    healthy = UpstreamServer(port=port).__enter__()
    hang: UpstreamServer | None = None
    url = healthy.url("/")
    try:
        async with make(connects) as fetch:

            async def one() -> None:
                started = time.monotonic()
                try:
                    status = await fetch(url)
                    outcome = "ok" if status == 200 else str(status)
                except rh.CircuitOpenError:
                    outcome = "rejected"
                except Exception as error:  # every failure is a data point
                    outcome = type(error).__name__
                calls.append(_Call(started, time.monotonic() - started, outcome))

            tasks: list[asyncio.Task[None]] = []
            interval = 1 / settings.rate_per_s

            async def drive(seconds: float) -> None:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    tasks.append(asyncio.create_task(one()))
                    await asyncio.sleep(interval)  # pacing an open-loop load, not a wait

            await drive(settings.before_s)
            healthy.close()
            outage_start = time.monotonic()
            hang = UpstreamServer(["--hang-probability", "1"], port=port).__enter__()
            await drive(settings.outage_s)
            hang.close()
            healthy = UpstreamServer(port=port).__enter__()
            back_at = time.monotonic()
            await drive(settings.after_s)
            await asyncio.gather(*tasks)
    finally:
        healthy.close()
        if hang is not None:
            hang.close()
    during = [c for c in calls if outage_start <= c.started < back_at]
    failed = [c.seconds for c in during if c.outcome != "ok"]
    rejected = [c.seconds for c in during if c.outcome == "rejected"]
    recovered = [c.started + c.seconds for c in calls if c.started >= back_at and c.outcome == "ok"]
    return {
        "calls": len(calls),
        "failed_during_outage": len(failed),
        "failed_p99_ms": _quantile(failed, 0.99) * 1000,
        "rejected_during_outage": len(rejected),
        "rejected_p99_ms": _quantile(rejected, 0.99) * 1000,
        "connects_during_outage": connects.between(outage_start, back_at),
        "recovery_s": (min(recovered) - back_at) if recovered else float("nan"),
    }


async def _outage(settings: ResilienceSettings) -> ResilienceResult:
    result = ResilienceResult("outage")
    breaker = rh.BreakerPolicy(open_for=settings.open_for_s)

    def sdk(connects: ConnectAttempts) -> contextlib.AbstractAsyncContextManager[Fetch]:
        return _sdk(_sdk_config(breaker=breaker), connects)

    def peer(connects: ConnectAttempts) -> contextlib.AbstractAsyncContextManager[Fetch]:
        return _aiohttp_retry(0, connects)

    result.rows["sdk_breaker"] = await _outage_run(sdk, settings)
    result.rows["aiohttp_retry"] = await _outage_run(peer, settings)
    ours, theirs = result.rows["sdk_breaker"], result.rows["aiohttp_retry"]
    p99 = ours["rejected_p99_ms"]
    result.goals.append(
        _goal(
            "outage: calls rejected by the open breaker return in < 1 ms (p99)",
            p99 < 1.0,
            f"{p99:.3f} ms over {ours['rejected_during_outage']:.0f} rejected calls; "
            f"aiohttp_retry's failed calls {theirs['failed_p99_ms']:.0f} ms (p99)",
        )
    )
    ratio = theirs["connects_during_outage"] / max(ours["connects_during_outage"], 1)
    result.goals.append(
        _goal(
            "outage: connection attempts during the outage >= 10x below aiohttp_retry's",
            ratio >= 10,
            f"{ratio:.1f}x ({ours['connects_during_outage']:.0f} vs "
            f"{theirs['connects_during_outage']:.0f})",
        )
    )
    bound = settings.open_for_s + 0.5
    recovery = ours["recovery_s"]
    result.goals.append(
        _goal(
            f"outage: first success within BREAKER_OPEN_FOR + one probe ({bound:g} s) of recovery",
            recovery <= bound,
            f"{recovery:.2f} s",
        )
    )
    return result


# -- overloaded -----------------------------------------------------------------------------


async def _closed_loop(fetch: Fetch, url: str, concurrency: int, seconds: float) -> int:
    """Calls from ``concurrency`` workers for ``seconds``; the number that succeeded."""
    succeeded = 0
    end = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal succeeded
        while time.monotonic() < end:
            with contextlib.suppress(Exception):
                if await fetch(url) == 200:
                    succeeded += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return succeeded


async def _overloaded(settings: ResilienceSettings) -> ResilienceResult:
    result = ResilienceResult("overloaded")
    capacity = settings.capacity
    flags = ["--capacity", str(capacity), "--latency", "fixed:0.02"]
    clients: dict[str, _MakeClient] = {
        f"sdk_static_{capacity}": lambda c: _sdk(_sdk_config(limit_per_host=capacity), c),
        f"sdk_static_{5 * capacity}": lambda c: _sdk(_sdk_config(limit_per_host=5 * capacity), c),
        "sdk_adaptive": lambda c: _sdk(
            _sdk_config(limit_per_host=5 * capacity, concurrency="adaptive"), c
        ),
        "aiohttp_retry": lambda c: _aiohttp_retry(5 * capacity, c),
    }
    with UpstreamServer(flags) as server:
        for name, make in clients.items():
            server.reset()
            async with make(ConnectAttempts()) as fetch:
                succeeded = await _closed_loop(
                    fetch, server.url("/"), 3 * capacity, settings.overloaded_s
                )
            counters = server.counters()
            throttled = counters.responses_by_status.get("503", 0)
            result.rows[name] = {
                "goodput_per_s": succeeded / settings.overloaded_s,
                "attempts": counters.requests,
                "throttled_share": throttled / counters.requests if counters.requests else 0.0,
            }
    ideal = result.rows[f"sdk_static_{capacity}"]["goodput_per_s"]
    adaptive = result.rows["sdk_adaptive"]
    share = adaptive["goodput_per_s"] / ideal if ideal else 0.0
    result.goals.append(
        _goal(
            "overloaded: adaptive reaches >= 90 % of the goodput at LIMIT_PER_HOST = capacity, "
            "with <= 5 % of attempts throttled",
            share >= 0.9 and adaptive["throttled_share"] <= 0.05,
            f"{share:.0%} of {ideal:.0f}/s, {adaptive['throttled_share']:.1%} throttled",
        )
    )
    return result


# -- long tail ------------------------------------------------------------------------------


async def _long_tail(settings: ResilienceSettings) -> ResilienceResult:
    result = ResilienceResult("long-tail")
    flags = ["--latency", str(LONG_TAIL)]
    # the SDK's default timeouts: a 1 s answer is slow, not timed out (and retried)
    limit = 2 * settings.tail_concurrency
    configs = {
        "sdk_no_hedging": rh.ClientConfig(limit_per_host=limit),
        "sdk_hedge_auto": rh.ClientConfig(limit_per_host=limit, hedge_after="auto"),
    }
    with UpstreamServer(flags) as server:
        url = server.url("/")
        for name, config in configs.items():
            server.reset()
            latencies = await _timed_calls(config, url, settings)
            requests = server.counters().requests
            result.rows[name] = {
                "p50_ms": _quantile(latencies, 0.5) * 1000,
                "p99_ms": _quantile(latencies, 0.99) * 1000,
                "extra_requests_share": requests / len(latencies) - 1,
            }
    plain, hedged = result.rows["sdk_no_hedging"], result.rows["sdk_hedge_auto"]
    cut = plain["p99_ms"] / hedged["p99_ms"] if hedged["p99_ms"] else 0.0
    result.goals.append(
        _goal(
            "long-tail: hedging (auto) cuts p99 by >= 5x with <= 5 % extra upstream requests",
            cut >= 5 and hedged["extra_requests_share"] <= 0.05,
            f"{cut:.1f}x ({plain['p99_ms']:.0f} -> {hedged['p99_ms']:.0f} ms), "
            f"{hedged['extra_requests_share']:.1%} extra requests",
        )
    )
    return result


async def _timed_calls(
    config: rh.ClientConfig, url: str, settings: ResilienceSettings
) -> list[float]:
    """``tail_calls`` GETs from ``tail_concurrency`` workers: each call's seconds."""
    latencies: list[float] = []
    sent = 0
    async with _sdk(config, ConnectAttempts()) as fetch:

        async def worker() -> None:
            nonlocal sent
            while sent < settings.tail_calls:
                sent += 1
                started = time.monotonic()
                await fetch(url)
                latencies.append(time.monotonic() - started)

        await asyncio.gather(*(worker() for _ in range(settings.tail_concurrency)))
    return latencies


def _goal(text: str, met: bool, value: str) -> Goal:
    return Goal(text, "met" if met else "missed", value)


_RUNNERS: dict[str, Callable[[ResilienceSettings], Awaitable[ResilienceResult]]] = {
    "outage": _outage,
    "overloaded": _overloaded,
    "long-tail": _long_tail,
}


async def run_resilience(
    scenarios: list[str], settings: ResilienceSettings, progress: Callable[[str], None]
) -> list[ResilienceResult]:
    """Run the named resilience scenarios in order."""
    results = []
    for name in scenarios:
        progress(f"resilience scenario {name}")
        results.append(await _RUNNERS[name](settings))
    return results


def render(results: list[ResilienceResult]) -> list[str]:
    """The scenarios' rows as text lines."""
    lines: list[str] = []
    for result in results:
        lines.append(f"Resilience scenario {result.scenario}:")
        for name, row in result.rows.items():
            figures = ", ".join(f"{key} {value:,.3g}" for key, value in row.items())
            lines.append(f"  {name:<18} {figures}")
    return lines
