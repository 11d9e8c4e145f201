"""Connection evidence: what tells the causes of stale closes and of throttling apart.

The SDK puts on each CLIENT attempt span how the pool handed its connection out
(``docs/telemetry.md#connections``): the idle time before a reuse, the requests the connection
had served before, and the connections to the upstream in use. ``ConnectionEvidence`` keeps
them per upstream in bounded tables (counts per 10 ms of idle time, per request count, per
connections in use), and answers the three questions the rules ask:

- ``idle_timeout()``: do stale closes start above an idle time, with reuses below it all fine?
  Then the upstream closes idle connections, and a shorter keep-alive avoids them.
- ``request_cap()``: do stale closes come at one request count, whatever the idle time? Then
  the upstream caps requests per connection (nginx ``keepalive_requests``): no keep-alive helps.
- ``load_split()``: are 429/503 answers more frequent with more connections in use? Then the
  throttling grows with load and fewer concurrent calls help; at the same rate whatever the load,
  they are server errors, and fewer calls would only queue.

``RateTimeline`` keeps, per upstream, the attempts' answers per 10 ms of their end time (429s
and un-throttled answers) and answers a fourth: ``binding_rate()``, the rate a rate limit let
calls through while it was binding (between its 429s).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "STALE_ERROR_TYPES",
    "BindingRate",
    "CalmLevel",
    "ConnectionEvidence",
    "IdleTimeout",
    "LoadSplit",
    "RateTimeline",
    "RequestCap",
]

#: ``error.type`` of an attempt whose pooled connection turned out closed (retry.py's
#: connection_closed failures).
STALE_ERROR_TYPES = frozenset(
    {"ServerDisconnectedError", "ClientConnectionResetError", "ClientOSError"}
)
# Idle times are counted per 10 ms (enough to place a boundary of a few hundred ms or more),
# request counts and connections in use one by one; values above the caps share the last row,
# so the tables stay bounded whatever the input.
IDLE_RESOLUTION_S = 0.01
IDLE_CAP_S = 3600.0
COUNT_CAP = 100_000
# An idle timeout: at least 3 stale closes, at least 20 reuses idle below the shortest idle time
# a stale close followed (none of which failed, by construction), and at least half the reuses
# above that boundary failed.
MIN_STALE = 3
MIN_REUSES_BELOW = 20
MIN_FAILED_SHARE_ABOVE = 0.5
# A request cap: at least 80 % of the stale closes came at one request count, and at least half
# the reuses at that count failed.
CAP_SHARE_OF_STALE = 0.8
# Throttling grows with load: the share of throttled attempts with more connections in use is
# at least twice the share with fewer, by a two-proportion z-test of at least 3 (so noise in a
# few hundred attempts does not pass), with each side at least 10 % of the attempts.
LOAD_SPLIT_MIN_SHARE = 0.1
LOAD_RATE_FACTOR = 2.0
LOAD_MIN_Z = 3.0
# A calm level: at most the given share throttled among the attempts with that many connections
# in use or fewer, and at most twice that share at the level itself, which holds at least 5 % of
# the attempts (a few attempts at a level say nothing about it).
LEVEL_SHARE_FACTOR = 2.0
LEVEL_MIN_SHARE = 0.05
# The rate a rate limit lets through, from the answers per slot of end time. While it binds, each
# 429 says its allowance is used up (a token bucket empty, a window's count reached): between two
# 429s it let through what its rate refilled, whatever its burst. So the rate is the un-throttled
# answers let through in the slots strictly between the first and the last 429 slot of a burst of
# 429s, over those slots' time. A 429 is answered at once, an answer let through ends the time an
# attempt holds a connection later (``answer_lag_s``): its slots are read that much later, else
# the burst's answers let through just before the first 429 would count (at 10 connections in
# the demo, 230-300/s measured against the 200/s limit). A burst: 429 slots at most BURST_GAP_S
# apart (a longer gap without a 429 may be a client that sent less, e.g. while it waited out a
# Retry-After, and would count its idle time). The whole run, or whole seconds that saw 429s,
# count such waits: in the demo's `throttled` scenario 94 attempts/s against a 200/s limit. At
# least RATE_MIN_ANSWERS answers between 429s, else there is no such evidence. Slots are SLOT_NS
# wide; past MAX_SLOTS (about 11 min of answers at 10 ms) they are merged pairwise, so memory
# stays bounded.
SLOT_NS = 10_000_000
MAX_SLOTS = 1 << 16
BURST_GAP_S = 0.1
RATE_MIN_ANSWERS = 10.0


@dataclass(frozen=True)
class IdleTimeout:
    """Stale closes only on connections idle at least ``boundary_s`` seconds."""

    boundary_s: float
    stale: float
    reuses_above: float
    reuses_below: float
    longest_fine_below_s: float


@dataclass(frozen=True)
class RequestCap:
    """Stale closes when a connection had served ``requests`` requests."""

    requests: int
    stale: float
    stale_total: float
    reuses_at_cap: float


@dataclass(frozen=True)
class LoadSplit:
    """Throttled shares of the attempts with at most / more than ``in_use`` connections in use."""

    in_use: int
    low_share: float
    high_share: float
    grows: bool


@dataclass(frozen=True)
class CalmLevel:
    """With at most ``in_use`` connections in use, ``share`` of ``attempts`` were throttled."""

    in_use: int
    share: float
    attempts: float
    highest_seen: int


@dataclass(frozen=True)
class BindingRate:
    """``answers`` un-throttled answers in ``seconds`` between the 429s of ``bursts`` bursts."""

    rate: float
    answers: float
    seconds: float
    bursts: int


@dataclass(slots=True)
class RateTimeline:
    """Attempts' answers per slot of their end time (``slot_ns`` wide): ``[un-throttled,
    429]`` weighted counts. Other throttling answers (503) are in neither."""

    slots: dict[int, list[float]] = field(default_factory=dict)
    slot_ns: int = SLOT_NS

    def add(self, end_ns: int, rate_limited: bool, weight: float) -> None:
        """One answer: a 429 (``rate_limited``), or un-throttled."""
        key = end_ns // self.slot_ns
        row = self.slots.get(key)
        if row is None:
            if len(self.slots) >= MAX_SLOTS:
                self._coarsen(self.slot_ns * 2)
                key = end_ns // self.slot_ns
                row = self.slots.get(key)
            if row is None:
                row = self.slots[key] = [0.0, 0.0]
        row[1 if rate_limited else 0] += weight

    def merge(self, other: RateTimeline) -> None:
        """Add ``other`` into this (at the coarser slot width of the two)."""
        theirs = other
        if other.slot_ns < self.slot_ns:
            theirs = RateTimeline({k: list(v) for k, v in other.slots.items()}, other.slot_ns)
            theirs._coarsen(self.slot_ns)
        elif other.slot_ns > self.slot_ns:
            self._coarsen(other.slot_ns)
        _sum_rows(self.slots, theirs.slots.items(), 1)
        while len(self.slots) > MAX_SLOTS:
            self._coarsen(self.slot_ns * 2)

    def binding_rate(self, answer_lag_s: float = 0.0) -> BindingRate | None:
        """Un-throttled answers per second between the 429s of each burst, read
        ``answer_lag_s`` later (see ``SLOT_NS``); None without enough of them."""
        limited = sorted(key for key, row in self.slots.items() if row[1] > 0)
        gap = max(1, int(BURST_GAP_S * 1e9 // self.slot_ns))
        lag = round(answer_lag_s * 1e9 / self.slot_ns)
        answers = 0.0
        inner = bursts = 0
        first = last = None
        for key in [*limited, None]:
            if key is not None and last is not None and key - last <= gap:
                last = key
                continue
            if first is not None and last is not None and last - first > 1:
                inside = range(first + 1 + lag, last + lag)
                answers += sum(self.slots.get(k, (0.0, 0.0))[0] for k in inside)
                inner += last - first - 1
                bursts += 1
            first = last = key
        seconds = inner * self.slot_ns / 1e9
        if answers < RATE_MIN_ANSWERS or seconds <= 0:
            return None
        return BindingRate(answers / seconds, answers, seconds, bursts)

    def _coarsen(self, slot_ns: int) -> None:
        merged: dict[int, list[float]] = {}
        _sum_rows(merged, self.slots.items(), slot_ns // self.slot_ns)
        self.slots, self.slot_ns = merged, slot_ns


def _sum_rows(
    into: dict[int, list[float]], rows: Iterable[tuple[int, list[float]]], factor: int
) -> None:
    """Add ``rows`` (slot -> [un-throttled, 429]) into ``into``, their slots ``factor`` times
    narrower than its own."""
    for key, (answered, limited) in rows:
        row = into.setdefault(key // factor, [0.0, 0.0])
        row[0] += answered
        row[1] += limited


@dataclass(slots=True)
class ConnectionEvidence:
    """Per-upstream tables of reuses (by idle time, by requests served) and of attempts (by
    connections in use); rows are ``[count, failed]`` (stale closes, or throttled answers)."""

    idle: dict[int, list[float]] = field(default_factory=dict)
    served: dict[int, list[float]] = field(default_factory=dict)
    in_use: dict[int, list[float]] = field(default_factory=dict)

    def add_reuse(self, idle_s: float, served: int, stale: bool, weight: float) -> None:
        """One reuse of a pooled connection, and whether it met a closed connection."""
        bucket = int(min(max(idle_s, 0.0), IDLE_CAP_S) / IDLE_RESOLUTION_S)
        _bump(self.idle, bucket, stale, weight)
        _bump(self.served, min(max(served, 0), COUNT_CAP), stale, weight)

    def add_attempt(self, in_use: int, throttled: bool, weight: float) -> None:
        """One attempt with ``in_use`` connections to its upstream in use."""
        _bump(self.in_use, min(max(in_use, 0), COUNT_CAP), throttled, weight)

    def merge(self, other: ConnectionEvidence) -> None:
        """Add ``other`` into this."""
        for mine, theirs in (
            (self.idle, other.idle),
            (self.served, other.served),
            (self.in_use, other.in_use),
        ):
            for key, (count, failed) in theirs.items():
                row = mine.setdefault(key, [0.0, 0.0])
                row[0] += count
                row[1] += failed

    @property
    def reuses(self) -> float:
        """Reuses with evidence."""
        return sum(row[0] for row in self.idle.values())

    @property
    def stale(self) -> float:
        """Reuses that met a closed connection."""
        return sum(row[1] for row in self.idle.values())

    def idle_timeout(self) -> IdleTimeout | None:
        """The idle time above which reuses fail, when the stale closes have one."""
        stale = self.stale
        failed_buckets = [b for b, row in self.idle.items() if row[1] > 0]
        if stale < MIN_STALE or not failed_buckets:
            return None
        boundary = min(failed_buckets)
        below = [(b, row) for b, row in self.idle.items() if b < boundary]
        above = sum(row[0] for b, row in self.idle.items() if b >= boundary)
        reuses_below = sum(row[0] for _, row in below)
        if reuses_below < MIN_REUSES_BELOW or stale < MIN_FAILED_SHARE_ABOVE * above:
            return None
        return IdleTimeout(
            boundary * IDLE_RESOLUTION_S,
            stale,
            above,
            reuses_below,
            max(b for b, _ in below) * IDLE_RESOLUTION_S,
        )

    def request_cap(self) -> RequestCap | None:
        """The request count at which connections are closed, when the stale closes have one."""
        stale = self.stale
        if stale < MIN_STALE:
            return None
        count, (reuses, failed) = max(self.served.items(), key=lambda item: item[1][1])
        if failed < CAP_SHARE_OF_STALE * stale or failed < MIN_FAILED_SHARE_ABOVE * reuses:
            return None
        return RequestCap(count, failed, stale, reuses)

    def calm_level(self, max_share: float) -> CalmLevel | None:
        """The most connections in use with at most ``max_share`` of the attempts throttled."""
        return _calm_level(self.in_use, max_share)

    def load_split(self) -> LoadSplit | None:
        """Throttled shares below and above the median connections in use (None: the load
        never varied enough to tell)."""
        total = sum(row[0] for row in self.in_use.values())
        split = _median_split(self.in_use, total)
        if split is None:
            return None
        low_count = sum(row[0] for level, row in self.in_use.items() if level <= split)
        low_failed = sum(row[1] for level, row in self.in_use.items() if level <= split)
        high_count = total - low_count
        high_failed = sum(row[1] for row in self.in_use.values()) - low_failed
        low, high = low_failed / low_count, high_failed / high_count
        pooled = (low_failed + high_failed) / total
        spread = math.sqrt(pooled * (1 - pooled) * (1 / low_count + 1 / high_count))
        z = (high - low) / spread if spread > 0 else 0.0
        grows = high >= LOAD_RATE_FACTOR * low and z >= LOAD_MIN_Z
        return LoadSplit(split, low, high, grows)


def _calm_level(table: dict[int, list[float]], max_share: float) -> CalmLevel | None:
    """The most connections in use at which the upstream still throttled at most ``max_share``
    of the attempts (those with that many or fewer in use, at least ``LOAD_SPLIT_MIN_SHARE`` of
    all), below the most seen; None when no such level exists."""
    total = sum(row[0] for row in table.values())
    levels = sorted(table)
    if total <= 0 or len(levels) < 2:
        return None
    found = None
    count = failed = 0.0
    for level in levels[:-1]:
        here, throttled_here = table[level]
        count += here
        failed += throttled_here
        # The level itself must be calm too, not only diluted by the calm levels below it, and
        # common enough to speak for itself.
        calm_here = throttled_here <= LEVEL_SHARE_FACTOR * max_share * here
        common = here >= LEVEL_MIN_SHARE * total
        if (
            count >= LOAD_SPLIT_MIN_SHARE * total
            and failed <= max_share * count
            and calm_here
            and common
        ):
            found = CalmLevel(level, failed / count, count, levels[-1])
    return found


def _median_split(table: dict[int, list[float]], total: float) -> int | None:
    """The level splitting the attempts nearest to halves, each side at least
    ``LOAD_SPLIT_MIN_SHARE`` of them (None: one level holds nearly all)."""
    if total <= 0:
        return None
    levels = sorted(table)
    cumulative = 0.0
    for index, level in enumerate(levels):
        before = cumulative
        cumulative += table[level][0]
        if cumulative >= total / 2:
            if cumulative <= total * (1 - LOAD_SPLIT_MIN_SHARE):
                return level
            if before >= total * LOAD_SPLIT_MIN_SHARE:
                return levels[index - 1]
            return None
    return None


def _bump(table: dict[int, list[float]], key: int, failed: bool, weight: float) -> None:
    row = table.get(key)
    if row is None:
        row = table[key] = [0.0, 0.0]
    row[0] += weight
    if failed:
        row[1] += weight
