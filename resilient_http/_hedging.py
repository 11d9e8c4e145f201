"""Hedging: an attempt strategy that sends another copy of a slow attempt and keeps the first
answer (``RESILIENT_HTTP_HEDGE_AFTER``; shared/SPEC.md, "Resilience strategies beyond retries").

For an idempotent call whose body can be sent again (and whose retries are not off), when the
attempt has no answer after the delay (fixed, or ``auto``: the upstream's running p95 of
answered attempts, once ``AUTO_MIN_SAMPLES`` are known, and at least ``MEDIAN_FACTOR`` times its
median, so that a tight distribution's ordinary jitter is not hedged), one more attempt goes out
on another connection, up to ``HEDGE_MAX`` of them, one delay apart. Each hedge is charged to
the retry budget; with the budget spent, no hedge is sent. The first attempt to bring a response
wins; the others are cancelled, and aiohttp closes the connection of a cancelled request, so a
connection is never returned to the pool mid-response. A loser that had its headers already is
closed too.

The retry stage sees one outcome per attempt, the winner's, so a hedged attempt is retried like
any other.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import math
import time
from collections.abc import Callable
from typing import Any, Final, Generic, Literal, Protocol, TypeVar

from ._budget import RetryBudget
from ._events import HedgeEvent
from ._per_upstream import PerUpstream
from ._pipeline import AttemptHandler, AttemptOutcome, AttemptSpec, Call
from .retry import IDEMPOTENT_METHODS, body_is_replayable, is_idempotent

__all__ = ["AUTO_MIN_SAMPLES", "MEDIAN_FACTOR", "Hedging", "LatencySketch"]

#: Answered attempts an upstream needs before ``auto`` hedges its calls.
AUTO_MIN_SAMPLES: Final = 20
#: ``auto`` waits at least this many times the upstream's median before hedging.
MEDIAN_FACTOR: Final = 2.0
_GAMMA: Final = 1.02  # bucket width: 2 % relative accuracy
_GENERATION: Final = 512  # samples per generation: the p95 follows the last 512-1024
_REFRESH: Final = 16  # samples between two readings of the quantiles (a read sorts buckets)
#: An upstream's latencies are let go once it has not been called for this long (and its session
#: keeps many upstreams): hedging it again starts from AUTO_MIN_SAMPLES answers.
FORGET_AFTER_S: Final = 600.0


class LatencySketch:
    """A running quantile of latencies: log-spaced buckets (mergeable by adding counts, as
    DDSketch's), over the current and the previous generation of samples."""

    __slots__ = (
        "_current",
        "_current_count",
        "_previous",
        "_previous_count",
        "hedge_after",
        "label",
        "used_at",
    )

    def __init__(self, label: str = "") -> None:
        #: ``host:port`` of the upstream whose latencies these are
        self.label = label
        self._current: dict[int, int] = {}
        self._previous: dict[int, int] = {}
        self._current_count = 0
        self._previous_count = 0
        #: the delay ``auto`` hedges after, refreshed every ``_REFRESH`` samples (None: too few)
        self.hedge_after: float | None = None
        #: when a call to the upstream last started (the hedging's clock)
        self.used_at = 0.0

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
        count = self._current_count + self._previous_count
        if count >= AUTO_MIN_SAMPLES and (count % _REFRESH == 0 or self.hedge_after is None):
            # the p95, and never under twice the median: ordinary jitter is no tail to hedge
            self.hedge_after = max(self.quantile(0.95), MEDIAN_FACTOR * self.quantile(0.5))

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
        self._sketches = PerUpstream(
            lambda label, host, port: LatencySketch(label),
            lambda sketch: self._clock() - sketch.used_at > FORGET_AFTER_S,
        )
        self._send: AttemptHandler | None = None
        self._deadlines: _Deadlines[_Race] = _Deadlines(self._launch)

    def bind(self, send: AttemptHandler) -> AttemptHandler:
        """The attempt handler that hedges slow attempts sent through ``send``."""
        self._send = send
        return self.send

    def delay(self, target: Any) -> float | None:
        """Seconds without an answer before a hedge goes to ``target``'s upstream (None: no
        hedging yet)."""
        return self.after if self.after != "auto" else self._sketches.of(target).hedge_after

    async def send(self, call: Call, attempt: AttemptSpec) -> AttemptOutcome:
        """Make the attempt, hedged when it may be."""
        send = self._send
        assert send is not None, "bind() first"
        if not _may_hedge(call):
            return await send(call, attempt)
        sketches = self._sketches
        sketch = sketches.by_target.get(call.target) or sketches.add(call.target)
        delay = self.after if self.after != "auto" else sketch.hedge_after
        started = sketch.used_at = self._clock()
        if delay is None:
            unhedged = await send(call, attempt)
            if unhedged.response is not None:
                sketch.add(self._clock() - started)
            return unhedged
        # The first attempt runs in the caller's task, as an unhedged one does; once its delay
        # has passed, hedges start as tasks of their own, and a hedge that answers first
        # interrupts it by cancelling the caller's task (as asyncio.timeout() does). Most calls
        # never hedge: they pay for a place in the deadline queue, not for a task per call.
        task = asyncio.current_task()
        assert task is not None
        race = _Race(task, send, call, attempt, sketch.label, delay)
        loop = asyncio.get_running_loop()
        self._deadlines.add(loop, loop.time() + delay, race)
        outcome: AttemptOutcome | None = None
        try:
            try:
                outcome = await send(call, attempt)
            except asyncio.CancelledError:
                # A winning hedge's own cancellation is taken back, as asyncio.timeout() takes
                # its own back: counted against the cancellations pending before the race.
                if race.winner is None or task.uncancel() > race.cancelling:
                    raise  # cancelled from outside (too): the call itself ends
                outcome = race.winner.result()
            else:
                race.settle()
                if outcome.response is None and race.hedges:  # failed: a hedge may answer
                    outcome = await race.first_answer(outcome)
            if race.hedges:  # the losers let go of their connections before the call goes on
                await _cancel({hedge for hedge in race.hedges if not hedge.done()})
        except BaseException:
            if outcome is not None and outcome.response is not None:
                outcome.response.close()  # an answer the call ends without: never pooled
            outcome = None
            raise
        finally:
            if race.call is not None:  # not settled yet (cancelled, or a hedge won)
                race.settle()
            if race.hedges:
                _let_go(race.hedges, outcome)
        if race.hedges:
            self._report(call, attempt, race)
        if self.after == "auto":
            # the first attempt's time to an answer, or (lost or failed) at least its time so
            # far: a sketch that forgot the slow ones would hedge ever sooner
            sketch.add(self._clock() - started)
        return outcome

    def _launch(self, race: _Race) -> None:
        """``race``'s delay has passed without an answer: send one more copy, when the budget
        allows, and queue the next one's deadline while ``most`` allows."""
        send, call, attempt = race.send, race.call, race.attempt
        if race.settled or send is None or call is None or attempt is None:
            return
        if not self._budget.allows_retry(race.upstream):
            return
        self._budget.charge_retry(race.upstream)
        # In (a copy of) the call's context, not in that of the call whose hedge set the timer
        hedge = race.context.run(
            asyncio.ensure_future, send(call, attempt._replace(hedge=len(race.hedges) + 1))
        )
        race.hedges.append(hedge)
        hedge.add_done_callback(race.hedge_ended)
        if len(race.hedges) < self.most:
            loop = asyncio.get_running_loop()
            self._deadlines.add(loop, loop.time() + race.delay, race)

    def _report(self, call: Call, attempt: AttemptSpec, race: _Race) -> None:
        observer = call.observer
        if observer is None:
            return
        for index, hedge in enumerate(race.hedges, start=1):
            won = hedge is race.winner
            observer.hedged(HedgeEvent(call.method, race.upstream, attempt.number, index, won))


class _Settles(Protocol):
    settled: bool


_R = TypeVar("_R", bound=_Settles)


class _Deadlines(Generic[_R]):
    """When hedged attempts outlive their delay: one asyncio timer, set for the earliest
    deadline of the attempts in flight, instead of a timer per attempt.

    Most attempts answer before their delay. Scheduling and cancelling a timer for each one was
    most of what hedging cost a healthy upstream (asyncio keeps cancelled timers in its heap
    until they come due; docs/performance.md). Here an attempt takes a place in a heap of
    deadlines, and the one timer stays set for the earliest deadline still pending, so a hedge
    starts at its deadline exactly as it would with its own timer; an answered attempt's place
    is dropped when it comes to the top. The heap holds each attempt at most until its deadline.
    """

    __slots__ = ("_at", "_heap", "_launch", "_order", "_timer")

    def __init__(self, launch: Callable[[_R], None]) -> None:
        self._launch = launch
        self._heap: list[tuple[float, int, _R]] = []
        self._order = itertools.count()  # ties: first come, first hedged (races do not compare)
        self._timer: asyncio.TimerHandle | None = None
        self._at = math.inf

    def add(self, loop: asyncio.AbstractEventLoop, deadline: float, race: _R) -> None:
        """Launch a hedge for ``race`` at ``deadline`` (loop time) unless it settles first."""
        heap = self._heap
        while heap and heap[0][2].settled:
            heapq.heappop(heap)
        heapq.heappush(heap, (deadline, next(self._order), race))
        if deadline < self._at:
            self._set(loop, deadline)

    def _set(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(at, self._due, loop, at)
        self._at = at

    def _due(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        self._timer, self._at = None, math.inf
        # asyncio runs a timer up to its clock resolution early: what it was set for is due
        now = max(loop.time(), at)
        heap = self._heap
        while heap:
            deadline, _, race = heap[0]
            if not race.settled and deadline > now:
                break
            heapq.heappop(heap)
            if not race.settled:
                self._launch(race)  # may add the race's next deadline (and set the timer)
        if heap and heap[0][0] < self._at:
            self._set(loop, heap[0][0])


def _may_hedge(call: Call) -> bool:
    """Idempotent, with a body that can be sent twice, and retries not switched off."""
    if call.plan is None:
        return False
    kwargs = call.kwargs
    if not kwargs and call.idempotent is None and call.method in IDEMPOTENT_METHODS:
        return True  # a plain GET and the like: every attempt passes here
    if not is_idempotent(call.method, kwargs.get("headers"), call.idempotent):
        return False
    return body_is_replayable(kwargs)


class _Race:
    """One hedged attempt: what a hedge of it sends, its hedges, the one that answered first,
    and the caller's task."""

    __slots__ = (
        "_task",
        "attempt",
        "call",
        "cancelling",
        "context",
        "delay",
        "hedges",
        "send",
        "settled",
        "upstream",
        "winner",
    )

    def __init__(
        self,
        task: asyncio.Task[Any],
        send: AttemptHandler,
        call: Call,
        attempt: AttemptSpec,
        upstream: str,
        delay: float,
    ) -> None:
        self._task = task
        #: cancellations of the caller's task pending before the race (see Hedging.send)
        self.cancelling = task.cancelling()
        #: the call's context variables, which its hedges run with
        self.context = contextvars.copy_context()
        self.send: AttemptHandler | None = send
        self.call: Call | None = call
        self.attempt: AttemptSpec | None = attempt
        self.upstream = upstream
        self.delay = delay
        self.hedges: list[asyncio.Future[AttemptOutcome]] = []
        self.winner: asyncio.Future[AttemptOutcome] | None = None
        self.settled = False
        """The race has its outcome (or is over): no more hedges, no interruption."""

    def settle(self) -> None:
        """No more hedges. Its place in the deadline queue may outlive it until its deadline:
        what a hedge would have sent (the call's body among it) is let go now."""
        self.settled = True
        self.call = self.attempt = self.send = None

    def hedge_ended(self, hedge: asyncio.Future[AttemptOutcome]) -> None:
        """A hedge's done callback: the first one with a response wins while the first
        attempt is still out, and interrupts it."""
        if self.settled or not _answered(hedge):
            return
        self.settled = True
        self.winner = hedge
        self._task.cancel()

    async def first_answer(self, failed: AttemptOutcome) -> AttemptOutcome:
        """After the first attempt failed: the first hedge to answer, else that failure."""
        pending = {hedge for hedge in self.hedges if not hedge.done()}
        while True:
            self.winner = next((hedge for hedge in self.hedges if _answered(hedge)), None)
            if self.winner is not None:
                return self.winner.result()
            if not pending:
                return failed
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)


def _answered(task: asyncio.Future[AttemptOutcome]) -> bool:
    return task.done() and not task.cancelled() and task.result().response is not None


def _let_go(hedges: list[asyncio.Future[AttemptOutcome]], kept: AttemptOutcome | None) -> None:
    """Close every hedge's answer but the one the call returns (``kept``; None when the call
    ends without one): their connections are not returned to the pool. A hedge still running
    (the call was cancelled while it waited for them) is cancelled, and its answer closed
    whenever it comes."""
    for hedge in hedges:
        if not hedge.done():
            hedge.cancel()
            hedge.add_done_callback(_close_answer)
        elif kept is None or hedge.cancelled() or hedge.result() is not kept:
            _close_answer(hedge)


def _close_answer(hedge: asyncio.Future[AttemptOutcome]) -> None:
    if hedge.cancelled() or hedge.exception() is not None:
        return
    response = hedge.result().response
    if response is not None:
        response.close()


async def _cancel(pending: set[asyncio.Future[AttemptOutcome]]) -> None:
    """Cancel the attempts still running and wait until they have let go of their
    connections (aiohttp closes a cancelled request's connection)."""
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
