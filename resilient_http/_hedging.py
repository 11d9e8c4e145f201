"""Hedging: an attempt strategy that sends another copy of a slow attempt and keeps the first
answer (``RESILIENT_HTTP_HEDGE_AFTER``; shared/SPEC.md, "Resilience strategies beyond retries").

For an idempotent call whose body can be sent again (and whose retries are not off), when the
attempt has no answer after the delay (fixed, or ``auto``: the upstream's running p95 of
answered attempts, once ``AUTO_MIN_SAMPLES`` are known), one more attempt goes out on another
connection, up to ``HEDGE_MAX`` of them, one delay apart. Each hedge is charged to the retry
budget; with the budget spent, no hedge is sent. The first attempt to bring a response wins; the
others are cancelled, and aiohttp closes the connection of a cancelled request, so a connection
is never returned to the pool mid-response. A loser that had its headers already is closed too.

The retry stage sees one outcome per attempt, the winner's, so a hedged attempt is retried like
any other.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Final, Literal

from ._attempt import UpstreamLabels
from ._budget import RetryBudget
from ._events import HedgeEvent
from ._pipeline import AttemptHandler, AttemptOutcome, AttemptSpec, Call
from .retry import body_is_replayable, is_idempotent

__all__ = ["AUTO_MIN_SAMPLES", "Hedging", "LatencySketch"]

#: Answered attempts an upstream needs before ``auto`` hedges its calls.
AUTO_MIN_SAMPLES: Final = 20
_GAMMA: Final = 1.02  # bucket width: 2 % relative accuracy
_GENERATION: Final = 512  # samples per generation: the p95 follows the last 512-1024


class LatencySketch:
    """A running quantile of latencies: log-spaced buckets (mergeable by adding counts, as
    DDSketch's), over the current and the previous generation of samples."""

    __slots__ = ("_current", "_current_count", "_previous", "_previous_count")

    def __init__(self) -> None:
        self._current: dict[int, int] = {}
        self._previous: dict[int, int] = {}
        self._current_count = 0
        self._previous_count = 0

    @property
    def count(self) -> int:
        """Samples the quantile is read from."""
        return self._current_count + self._previous_count

    def add(self, seconds: float) -> None:
        """Add one latency."""
        key = math.ceil(math.log(max(seconds, 1e-6), _GAMMA))
        self._current[key] = self._current.get(key, 0) + 1
        self._current_count += 1
        if self._current_count >= _GENERATION:
            self._previous, self._previous_count = self._current, self._current_count
            self._current, self._current_count = {}, 0

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0-1) of the samples; 0 when there are none."""
        merged = dict(self._previous)
        for key, count in self._current.items():
            merged[key] = merged.get(key, 0) + count
        rank = q * (self.count - 1)
        seen = 0
        for key in sorted(merged):
            seen += merged[key]
            if seen > rank:
                return float(_GAMMA**key)
        return 0.0


class Hedging:
    """The hedging of one session: a fixed delay or ``auto``, up to ``most`` hedges per attempt."""

    def __init__(
        self,
        after: float | Literal["auto"],
        most: int,
        budget: RetryBudget,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.after = after
        self.most = most
        self._budget = budget
        self._clock = clock
        self._labels = UpstreamLabels()
        self._sketches: dict[str, LatencySketch] = {}
        self._send: AttemptHandler | None = None

    def bind(self, send: AttemptHandler) -> AttemptHandler:
        """The attempt handler that hedges slow attempts sent through ``send``."""
        self._send = send
        return self.send

    def delay(self, upstream: str) -> float | None:
        """Seconds without an answer before a hedge goes to ``upstream``; None: no hedging."""
        if self.after != "auto":
            return self.after
        sketch = self._sketches.get(upstream)
        if sketch is None or sketch.count < AUTO_MIN_SAMPLES:
            return None
        return sketch.quantile(0.95)

    async def send(self, call: Call, attempt: AttemptSpec) -> AttemptOutcome:
        """Make the attempt, hedged when it may be."""
        send = self._send
        assert send is not None, "bind() first"
        if not _may_hedge(call):
            return await send(call, attempt)
        upstream = self._labels.of(call.target)
        delay = self.delay(upstream)
        if delay is None:
            started = self._clock()
            outcome = await send(call, attempt)
            self._learn(upstream, outcome, self._clock() - started)
            return outcome
        return await self._race(send, call, attempt, upstream, delay)

    async def _race(
        self,
        send: AttemptHandler,
        call: Call,
        attempt: AttemptSpec,
        upstream: str,
        delay: float,
    ) -> AttemptOutcome:
        started = self._clock()
        tasks: list[asyncio.Future[AttemptOutcome]] = [asyncio.ensure_future(send(call, attempt))]
        pending = set(tasks)
        winner: asyncio.Future[AttemptOutcome] | None = None
        may_hedge = True
        try:
            while pending:
                done, pending = await asyncio.wait(
                    pending,
                    timeout=delay if may_hedge else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not done:  # no answer within the delay: hedge, if the budget allows
                    if self._budget.allows_retry(upstream):
                        self._budget.charge_retry(upstream)
                        hedge = attempt._replace(hedge=len(tasks))
                        task = asyncio.ensure_future(send(call, hedge))
                        tasks.append(task)
                        pending.add(task)
                    may_hedge = self._budget.allows_retry(upstream) and len(tasks) <= self.most
                    continue
                answered = [t for t in tasks if t in done and t.result().response is not None]
                if answered:
                    winner = answered[0]
                    break
        finally:
            await _cancel(pending)
            _close_losers(tasks, winner)
        self._report(call, attempt, upstream, tasks, winner)
        if winner is None:  # every attempt failed: the first one's failure stands for them
            return tasks[0].result()
        outcome = winner.result()
        if winner is tasks[0]:
            self._learn(upstream, outcome, self._clock() - started)
        return outcome

    def _learn(self, upstream: str, outcome: AttemptOutcome, seconds: float) -> None:
        if self.after != "auto" or outcome.response is None:
            return
        sketch = self._sketches.get(upstream)
        if sketch is None:
            sketch = self._sketches[upstream] = LatencySketch()
        sketch.add(seconds)

    def _report(
        self,
        call: Call,
        attempt: AttemptSpec,
        upstream: str,
        tasks: list[asyncio.Future[AttemptOutcome]],
        winner: asyncio.Future[AttemptOutcome] | None,
    ) -> None:
        observer = call.observer
        if observer is None:
            return
        for index, task in enumerate(tasks[1:], start=1):
            won = task is winner
            observer.hedged(HedgeEvent(call.method, upstream, attempt.number, index, won))


def _may_hedge(call: Call) -> bool:
    """Idempotent, with a body that can be sent twice, and retries not switched off."""
    if call.plan is None:
        return False
    kwargs = call.kwargs
    if not is_idempotent(call.method, kwargs.get("headers"), call.idempotent):
        return False
    return body_is_replayable(kwargs)


def _close_losers(
    tasks: list[asyncio.Future[AttemptOutcome]], winner: asyncio.Future[AttemptOutcome] | None
) -> None:
    """Close the answers that lost the race (or all, when the call itself was cancelled):
    their connections are not returned to the pool."""
    for task in tasks:
        if task is winner or not task.done() or task.cancelled():
            continue
        response = task.result().response
        if response is not None:
            response.close()


async def _cancel(pending: set[asyncio.Future[AttemptOutcome]]) -> None:
    """Cancel the attempts still running and wait until they have let go of their
    connections (aiohttp closes a cancelled request's connection)."""
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
