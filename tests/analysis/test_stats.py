"""Percentiles: DDSketch for spans, bucket interpolation for metric histograms."""

from __future__ import annotations

import math
import pickle
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_http.analysis import stats
from resilient_http.analysis.stats import (
    SKETCH_RELATIVE_ACCURACY,
    BucketHistogram,
    LatencySketch,
    nearest_rank,
)


def test_sketch_percentiles_are_within_the_relative_accuracy() -> None:
    rng = random.Random(7)
    values = sorted(rng.lognormvariate(-3, 1) for _ in range(20_000))
    sketch = LatencySketch()
    for value in values:
        sketch.add(value, 1.0)
    for q in (0.5, 0.95, 0.99):
        exact = values[math.ceil(q * len(values)) - 1] * 1000  # the nearest rank
        assert sketch.quantile_ms(q) == pytest.approx(exact, rel=SKETCH_RELATIVE_ACCURACY)


def test_a_small_samples_tail_is_its_p95_and_p99() -> None:
    """Nearest rank: of 10 calls, one slow one is the p95 and the p99 (DDSketch's own rank,
    q * (n - 1) rounded down, made both the 9th value); the p90 is the 9th."""
    sketch = LatencySketch()
    for value in [0.020] * 9 + [1.0]:
        sketch.add(value)
    assert sketch.quantile_ms(0.9) == pytest.approx(20.0, rel=SKETCH_RELATIVE_ACCURACY)
    assert sketch.quantile_ms(0.95) == pytest.approx(1000.0, rel=SKETCH_RELATIVE_ACCURACY)
    assert sketch.quantile_ms(0.99) == pytest.approx(1000.0, rel=SKETCH_RELATIVE_ACCURACY)
    assert nearest_rank(0.95, 100) == 94 / 99  # 0.95 * 100 is 95.00000000000001 in floats


def test_sketch_weights_and_merge() -> None:
    a, b = LatencySketch(), LatencySketch()
    a.add(0.010, 3.0)  # one sampled span standing for three calls
    b.add(0.100, 1.0)
    a.merge(b)
    assert a.count == 4.0
    assert a.quantile_ms(0.5) == pytest.approx(10.0, rel=0.01)
    assert a.quantile_ms(1.0) == pytest.approx(100.0, rel=0.01)
    assert LatencySketch().quantile_ms(0.5) is None


def test_sketch_survives_pickling() -> None:
    # Partial results travel between processes.
    sketch = LatencySketch()
    sketch.add(0.25, 1.0)
    copy = pickle.loads(pickle.dumps(sketch))
    copy.add(0.25, 1.0)
    assert copy.count == 2.0
    assert sketch.count == 1.0


def _explicit(
    bounds: list[float], counts: list[int], minimum: float | None, maximum: float | None
) -> BucketHistogram:
    return BucketHistogram.from_explicit(
        bounds, counts, total=sum(counts), total_sum=0.0, minimum=minimum, maximum=maximum
    )


def test_histogram_interpolates_inside_buckets_clamped_by_min_and_max() -> None:
    # 50 values in (0.01, 0.02], 50 in (0.05, 0.1]; min 0.015, max 0.07.
    hist = _explicit([0.01, 0.02, 0.05, 0.1], [0, 50, 0, 50, 0], 0.015, 0.07)
    assert hist.quantile_ms(0.0) == pytest.approx(15.0)
    assert hist.quantile_ms(0.25) == pytest.approx(17.5)  # half-way through (0.015, 0.02]
    assert hist.quantile_ms(0.5) == pytest.approx(20.0)
    assert hist.quantile_ms(0.95) == pytest.approx(68.0)  # 0.05 + 0.02 * 45/50
    assert hist.quantile_ms(1.0) == pytest.approx(70.0)


def test_histogram_open_ends_use_min_max_or_the_nearest_bound() -> None:
    overflow = _explicit([1.0, 2.0], [0, 0, 4], 3.0, 7.0)
    assert overflow.quantile(0.5) == pytest.approx(5.0)
    no_summary = _explicit([1.0, 2.0], [0, 0, 4], None, None)
    assert no_summary.quantile(0.5) == pytest.approx(2.0)  # nothing is known above 2
    first = _explicit([1.0], [4, 0], None, None)
    assert first.quantile(0.5) == pytest.approx(0.5)  # durations start at 0


def test_zero_waits_are_a_point_mass() -> None:
    # Pool waits: 90 immediate acquisitions (bucket (-inf, 0]) and 10 waits in (0.1, 0.25].
    hist = _explicit([0.0, 0.1, 0.25], [90, 0, 10, 0], 0.0, 0.2)
    assert hist.quantile_ms(0.5) == 0.0
    assert hist.quantile_ms(0.95) == pytest.approx(150.0)  # 0.1 + 0.1 * 5/10


def test_unrecorded_zeros_are_the_same_point_mass() -> None:
    # The SDK records a pool wait only when a request queued: 10 waits in (0.1, 0.25] and 90
    # acquisitions that did not wait give the percentiles the 90 zeros would, had they been
    # recorded.
    waits = _explicit([0.1, 0.25], [0, 10, 0], None, 0.2)
    recorded = _explicit([0.0, 0.1, 0.25], [90, 0, 10, 0], None, 0.2)
    for step in range(101):
        q = step / 100
        assert waits.quantile(q, zeros=90) == pytest.approx(recorded.quantile(q)), q
    assert waits.quantile_ms(0.95, zeros=90) == pytest.approx(150.0)
    assert waits.quantile_ms(0.95) == pytest.approx(0.1e3 + 0.1e3 * 9.5 / 10)  # waits only
    # The recorded min still clamps the waits: all ten took 200 ms.
    exact = _explicit([0.1, 0.25], [0, 10, 0], 0.2, 0.2)
    assert exact.quantile_ms(0.95, zeros=90) == pytest.approx(200.0)
    assert exact.quantile_ms(0.9, zeros=90) == 0.0
    # Zeros alone: 0; nothing at all: unknown.
    assert BucketHistogram().quantile_ms(0.99, zeros=5) == 0.0
    assert BucketHistogram().quantile_ms(0.99, zeros=0) is None


def test_histograms_with_different_bounds_combine() -> None:
    a = _explicit([0.1], [10, 0], 0.0, 0.1)  # 10 values uniform in [0, 0.1]
    b = _explicit([0.05, 0.2], [0, 10, 0], 0.05, 0.2)  # 10 values uniform in [0.05, 0.2]
    merged = BucketHistogram.merged([a, b])
    assert merged.count == 20
    # CDF at 0.1: all of a (10) + a third of b (10 * 0.05/0.15): the median lies just below.
    assert merged.quantile(0.5) == pytest.approx(0.08)


def test_exponential_histogram_buckets() -> None:
    # scale 0: base 2; offset 0 -> buckets (1, 2], (2, 4]; plus 2 zeros.
    hist = BucketHistogram.from_exponential(
        0, 0, [1, 1], 2, total=4, total_sum=3.5, minimum=0.0, maximum=4.0
    )
    assert hist.quantile(0.25) == 0.0
    assert hist.quantile(0.75) == pytest.approx(2.0)
    assert hist.quantile(1.0) == pytest.approx(4.0)


def test_empty_histogram_has_no_percentiles() -> None:
    assert BucketHistogram().quantile_ms(0.95) is None
    assert _explicit([1.0], [0, 0], None, None).quantile(0.5) is None


@settings(derandomize=True)  # the same examples on every run
@given(
    counts=st.lists(st.integers(min_value=0, max_value=50), min_size=4, max_size=4),
    q=st.floats(min_value=0.0, max_value=1.0),
)
def test_histogram_quantiles_are_monotonic_and_within_range(counts: list[int], q: float) -> None:
    hist = _explicit([0.01, 0.1, 1.0], counts, None, None)
    value = hist.quantile(q)
    if sum(counts) == 0:
        assert value is None
        return
    assert value is not None
    assert 0.0 <= value <= 1.0
    higher = hist.quantile(min(1.0, q + 0.05))
    assert higher is not None
    assert higher >= value - 1e-12


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 50), min_size=15, max_size=15),
    st.floats(0, 1),
    st.integers(0, 30),
    st.one_of(st.none(), st.floats(0, 12)),
    st.one_of(st.none(), st.floats(0, 12)),
)
def test_the_disjoint_bucket_sweep_equals_the_general_one(
    counts: list[int], q: float, zeros: int, low: float | None, high: float | None
) -> None:
    if low is not None and high is not None and low > high:
        low, high = high, low
    bounds = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
    hist = BucketHistogram.from_explicit(
        bounds, [float(c) for c in counts], total=sum(counts), total_sum=0.0,
        minimum=low, maximum=high,
    )  # fmt: skip
    fast = hist.quantile(q, zeros)
    with pytest.MonkeyPatch.context() as patch:  # every bucket set then looks overlapping
        patch.setattr(stats, "all", lambda _: False, raising=False)
        general = hist.quantile(q, zeros)
    if general is None:
        assert fast is None
    else:
        assert fast == pytest.approx(general, rel=1e-9, abs=1e-12)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.lists(st.integers(0, 50), min_size=5, max_size=5),
    st.lists(st.integers(0, 50), min_size=3, max_size=3),
    st.lists(st.floats(0, 1), min_size=1, max_size=4),
    st.integers(0, 30),
)
def test_quantiles_at_once_equal_one_at_a_time(
    counts: list[int], overlapping: list[int], levels: list[float], zeros: int
) -> None:
    hist = _explicit([0.01, 0.02, 0.05, 0.1], counts, None, None)
    hist.merge(_explicit([0.015, 0.03], overlapping, None, None))  # overlapping bounds too
    at_once = hist.quantiles(levels, zeros)
    one_at_a_time = [hist.quantile(level, zeros) for level in levels]  # a fresh preparation each
    assert at_once == one_at_a_time
    assert hist.quantiles_ms(levels, zeros) == [
        None if v is None else v * 1000.0 for v in one_at_a_time
    ]
