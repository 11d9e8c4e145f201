"""LatencySketch's batched adds end in exactly the state DDSketch's own add leaves."""

from __future__ import annotations

import pickle
import random
from typing import Any

import pytest
from ddsketch import DDSketch

from resilient_http.analysis.stats import SKETCH_RELATIVE_ACCURACY, LatencySketch, nearest_rank


def _state(sketch: Any) -> str:
    # repr: nan != nan, and the bins list shows the store's layout as well as its counts.
    store, negative = sketch._store, sketch._negative_store
    return repr(
        (
            sketch._count,
            sketch._sum,
            sketch._min,
            sketch._max,
            sketch._zero_count,
            store.bins,
            store.count,
            store.offset,
            store.min_key,
            store.max_key,
            negative.bins,
            negative.count,
        )
    )


@pytest.mark.parametrize("seed", range(8))
def test_batched_adds_match_the_library_exactly(seed: int) -> None:
    rng = random.Random(seed)
    odd_values = [0.0, -0.002, 1e-320, float("nan")]
    weights = [1.0, 1.0, 1.0, 2.0, 4.0, 1 / 3, 1.0000001]
    reference, sketch = DDSketch(SKETCH_RELATIVE_ACCURACY), LatencySketch()
    for index in range(5_000):
        # Spread widening over time, so that keys keep growing the store mid-batch.
        value = rng.lognormvariate(-4, 0.1 + index / 1_000)
        if seed % 2 and rng.random() < 0.01:
            value = rng.choice(odd_values)
        weight = rng.choice(weights)
        reference.add(value, weight)
        sketch.add(value, weight)
        if rng.random() < 0.002:  # reads take the buffer in first
            assert sketch.count == reference.count
    assert sketch.count == reference.count
    assert _state(sketch._sketch) == _state(reference)
    for q in (0.0, 0.5, 0.99, 1.0):
        expected = reference.get_quantile_value(nearest_rank(q, reference.count))
        assert expected is not None
        assert sketch.quantile_ms(q) == float(expected) * 1000.0


def test_merge_and_pickle_take_the_buffer_in() -> None:
    a, b = LatencySketch(), LatencySketch()
    for value in (0.01, 0.02, 0.03):
        a.add(value, 1.0)
        b.add(value * 10, 1.0)
    copy = pickle.loads(pickle.dumps(b))
    a.merge(copy)
    assert a.count == 6.0
    assert a.quantile_ms(1.0) == pytest.approx(300.0, rel=SKETCH_RELATIVE_ACCURACY)


def test_what_ddsketch_refuses_is_refused_at_once() -> None:
    sketch = LatencySketch()
    sketch.add(0.1, 1.0)
    with pytest.raises(ValueError, match="positive"):
        sketch.add(0.1, 0.0)
    with pytest.raises(OverflowError):
        sketch.add(float("inf"), 1.0)
    assert sketch.count == 1.0
