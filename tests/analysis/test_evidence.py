"""Connection evidence tables: bounded, mergeable, and the three questions the rules ask."""

from __future__ import annotations

from resilient_http.analysis.evidence import (
    MAX_SLOTS,
    SLOT_NS,
    BindingRate,
    ConnectionEvidence,
    RateTimeline,
)
from tests.analysis.otlp_lines import SECOND, T0


def test_a_load_that_never_varied_tells_nothing() -> None:
    evidence = ConnectionEvidence()
    for index in range(200):
        evidence.add_attempt(10, index % 10 == 0, 1.0)
    assert evidence.load_split() is None
    assert evidence.calm_level(0.05) is None


def test_even_503s_do_not_grow_with_load() -> None:
    evidence = ConnectionEvidence()
    for index in range(400):
        evidence.add_attempt(2 if index % 2 else 8, index // 2 % 10 == 0, 1.0)
    split = evidence.load_split()
    assert split is not None
    assert split.in_use == 2
    assert not split.grows


def test_idle_timeout_needs_fine_reuses_below_the_boundary() -> None:
    evidence = ConnectionEvidence()
    for index in range(10):  # stale closes, but only 10 reuses idle less: too few to bound it
        evidence.add_reuse(0.1, 3, False, 1.0)
        evidence.add_reuse(5.0, index % 5, True, 1.0)
    assert evidence.idle_timeout() is None
    more = ConnectionEvidence()
    for _ in range(10):
        more.add_reuse(0.2, 4, False, 1.0)
    evidence.merge(more)
    found = evidence.idle_timeout()
    assert found is not None
    assert (found.boundary_s, found.stale, found.reuses_below) == (5.0, 10.0, 20.0)
    assert found.longest_fine_below_s == 0.2
    assert evidence.request_cap() is None  # the closes came at 0 to 4 requests


def test_tables_stay_bounded() -> None:
    evidence = ConnectionEvidence()
    for seconds in (7200.0, 86400.0, -1.0):
        evidence.add_reuse(seconds, 10**9, False, 1.0)
    assert sorted(evidence.idle) == [0, 360_000]
    assert sorted(evidence.served) == [100_000]


def test_binding_rate_counts_between_429s_and_stays_bounded() -> None:
    timeline = RateTimeline()
    # Each second: 429s from 0.00 to 0.05 s with 2 answers per 10 ms among them, then 100
    # answers/s (the bucket refills) for the rest of the second.
    for second in range(3):
        base = T0 + second * SECOND
        for slot in range(6):
            timeline.add(base + slot * SECOND // 100, True, 1.0)
            for _ in range(2):
                timeline.add(base + slot * SECOND // 100 + 1, False, 1.0)
        for index in range(94):
            timeline.add(base + SECOND * (6 + index) // 100, False, 1.0)
    binding = timeline.binding_rate()
    assert binding == BindingRate(200.0, 24.0, 0.12, 3)  # 4 slots strictly inside, 3 bursts
    # Too few answers between 429s: no evidence.
    sparse = RateTimeline()
    sparse.add(T0, True, 1.0)
    sparse.add(T0 + SECOND // 50, True, 1.0)
    sparse.add(T0 + SECOND // 100, False, 1.0)
    assert sparse.binding_rate() is None
    # Merged pairwise past MAX_SLOTS; a merge with a coarser timeline keeps every count.
    long = RateTimeline()
    for index in range(MAX_SLOTS + 1):
        long.add(T0 + index * SLOT_NS, False, 1.0)
    assert len(long.slots) <= MAX_SLOTS
    assert long.slot_ns == 2 * SLOT_NS
    timeline.merge(long)
    assert timeline.slot_ns == 2 * SLOT_NS
    assert sum(row[0] for row in timeline.slots.values()) == 318 + MAX_SLOTS + 1
