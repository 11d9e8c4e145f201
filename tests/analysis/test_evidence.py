"""Connection evidence tables: bounded, mergeable, and the three questions the rules ask."""

from __future__ import annotations

from resilient_http.analysis.evidence import ConnectionEvidence


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
