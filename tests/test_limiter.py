"""Adaptive concurrency: the AIMD rule on its own (against real upstreams, with telemetry:
``tests/telemetry/test_adaptive_concurrency.py``)."""

from __future__ import annotations

import pytest

from resilient_http._limiter import (
    DECREASE,
    FIRST_DECREASE,
    LATENCY_TOLERANCE,
    PLATEAU_STEP,
    UpstreamLimit,
)


def test_a_throttled_answer_lowers_the_limit_once_per_round_trip() -> None:
    limit = UpstreamLimit(10, "h", 80)
    limit.in_flight = 9  # this attempt has left: 10 were in flight
    limit.adjust(throttled=True, succeeded=False, started=1.0, now=2.0)
    assert limit.limit == pytest.approx(10 * FIRST_DECREASE)  # the first time: halved
    # sent before that decrease: the same burst of congestion, not counted again
    limit.adjust(throttled=True, succeeded=False, started=1.5, now=2.1)
    assert limit.limit == pytest.approx(10 * FIRST_DECREASE)
    limit.in_flight = 4
    limit.adjust(throttled=True, succeeded=False, started=2.0, now=3.0)
    assert limit.limit == pytest.approx(10 * FIRST_DECREASE * DECREASE)  # then gently
    assert limit.places == int(10 * FIRST_DECREASE * DECREASE)


def test_a_decrease_starts_from_what_was_in_flight() -> None:
    limit = UpstreamLimit(50, "h", 80)
    limit.in_flight = 11  # 12 in flight, far below the ceiling of 50
    limit.adjust(throttled=True, succeeded=False, started=1.0, now=2.0)
    assert limit.limit == pytest.approx(12 * FIRST_DECREASE)
    assert limit.plateau == 12


def test_growth_slows_down_near_the_plateau() -> None:
    limit = UpstreamLimit(50, "h", 80)
    limit.in_flight = 9
    limit.adjust(throttled=True, succeeded=False, started=1.0, now=2.0)  # plateau 10, limit 5
    limit.in_flight = 5
    while limit.limit < 10:  # below the plateau: about +1 per window
        limit.adjust(throttled=False, succeeded=True, started=3.0, now=3.01)
    below = limit.limit
    for _ in range(10):  # one window's worth past it
        limit.adjust(throttled=False, succeeded=True, started=3.0, now=3.01)
    assert limit.limit - below == pytest.approx(10 * PLATEAU_STEP / 10, rel=0.1)


def test_the_limit_never_falls_below_one_or_rises_above_the_ceiling() -> None:
    limit = UpstreamLimit(4, "h", 80)
    for second in range(20):
        limit.adjust(throttled=True, succeeded=False, started=second, now=second + 0.5)
    assert limit.limit == 1.0
    assert limit.places == 1
    limit.in_flight = 1  # in use
    for _ in range(100):
        limit.adjust(throttled=False, succeeded=True, started=100.0, now=100.01)
    assert limit.limit == 4.0


def test_successes_raise_it_by_about_one_per_window_only_while_in_use() -> None:
    limit = UpstreamLimit(20, "h", 80)
    limit.limit = 8.0
    limit.in_flight = 0  # idle: an attempt alone uses 1 of 8 places
    for _ in range(16):
        limit.adjust(throttled=False, succeeded=True, started=0.0, now=0.01)
    assert limit.limit == 8.0
    limit.in_flight = 4  # half the limit in flight: earning
    for _ in range(8):
        limit.adjust(throttled=False, succeeded=True, started=0.0, now=0.01)
    assert 8.9 < limit.limit < 9.1


def test_rising_latency_lowers_it() -> None:
    limit = UpstreamLimit(10, "h", 80)
    limit.in_flight = 9
    for n in range(200):  # a steady 10 ms
        limit.adjust(throttled=False, succeeded=True, started=float(n), now=n + 0.01)
    assert limit.limit == 10.0
    for n in range(200, 202):  # a hiccup of two attempts: no change
        limit.adjust(throttled=False, succeeded=True, started=float(n), now=n + 0.1)
    assert limit.limit == 10.0
    for n in range(202, 260):  # sustained, far above the tolerance
        limit.adjust(throttled=False, succeeded=True, started=float(n), now=n + 0.1)
        if limit.limit < 10:
            break
    assert limit.limit == pytest.approx(10 * FIRST_DECREASE)
    assert LATENCY_TOLERANCE * 0.01 < 0.1
