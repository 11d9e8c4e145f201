"""Bounded-memory statistics: latency sketches for spans, bucket histograms for metrics.

``LatencySketch`` wraps ``ddsketch.DDSketch`` (1 % relative accuracy; its memory grows with the
log of the value range, not with the number of values, and sketches from many files or hosts
merge exactly). ``BucketHistogram`` holds OTLP histogram buckets (explicit or exponential) and
answers percentiles by linear interpolation inside buckets, the way Prometheus'
``histogram_quantile`` does, tightened by the recorded min and max where the data has them.

ddsketch's ``add`` costs more per value than all of a span's other statistics, so
``_BatchDDSketch.add_all`` (the analysis' throughput) does its work on ddsketch's own state.
These are the names it uses beyond the public ``DDSketch.add``, ``KeyMapping.key`` and
``KeyMapping.min_possible``. Their shape is checked once per process on a new ``DDSketch``
(``batch_path_fits``) and pinned against the installed ddsketch by
``tests/analysis/test_sketch_internals.py``; where one is missing or changed, one
``RuntimeWarning`` names it and every value goes through ``DDSketch.add`` (the same results, a
few times slower):

=========================================  ====================================================
internal (shape checked)                   why the batch path needs it
=========================================  ====================================================
``DDSketch._mapping``                      the key of a value, computed inline: exactly a
(``LogarithmicMapping``)                   ``LogarithmicMapping``, whose formula is known
``LogarithmicMapping._multiplier``         ``key(value) == ceil(log(value, 2) * _multiplier)``
(positive float) and ``_log_gamma``        (checked on sample values), so no calls per value
``LogarithmicMapping._offset`` (0.0)       keys need no offset added
``DDSketch._store`` (``DenseStore``)       the positive values' bins, written in place
``DenseStore.bins`` (list), ``offset``     a key ``min_key <= key <= max_key`` is counted in
(int), ``min_key`` / ``max_key`` (int;     ``bins[key - offset]`` (an empty store's bounds are
none between on an empty store),           sentinels no key lies between); ``count`` adds the
``count`` (number)                         weight, as ``DenseStore.add`` does
``DDSketch._count``, ``_sum``, ``_min``,   the totals ``add`` keeps, kept in local variables for
``_max`` (numbers)                         a batch and written back once
the attribute names of ``DDSketch`` and    no state beyond the above that ``add`` would update
``DenseStore`` (exactly these)             and ``add_all`` would miss
=========================================  ====================================================
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from ddsketch import DDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.store import DenseStore

from .._dependency_internals import warn_changed_internal

__all__ = ["SKETCH_RELATIVE_ACCURACY", "BucketHistogram", "LatencySketch", "nearest_rank"]

# Relative accuracy of span latency percentiles: p99 = 200 ms is reported within 198..202 ms.
SKETCH_RELATIVE_ACCURACY = 0.01

_INF = math.inf
_log = math.log
_ceil = math.ceil
# Values a LatencySketch buffers: enough to make the per-batch setup negligible, few enough
# that thousands of upstreams' buffers stay smaller than their sketches.
_BATCH = 64

# The attributes of a new DDSketch and of its DenseStore: the state add() changes lives there.
_SKETCH_ATTRIBUTES: Final = frozenset(
    {
        "_mapping",
        "_store",
        "_negative_store",
        "_zero_count",
        "_relative_accuracy",
        "_count",
        "_sum",
        "_min",
        "_max",
    }
)
_STORE_ATTRIBUTES: Final = frozenset(
    {"bins", "chunk_size", "count", "max_key", "min_key", "offset"}
)
# Durations (seconds) on which the mapping's key must equal the inlined formula.
_KEY_SAMPLES: Final = (1e-9, 0.000123, 0.0157, 1.0, 2.5, 987.6, 1e9)
# Keys no empty store's bounds may hold between them.
_KEY_PROBES: Final = (-(10**6), -1, 0, 1, 10**6)


def changed_sketch_internal(sketch: DDSketch) -> str | None:
    """The first ddsketch internal ``add_all`` uses that a new, empty ``sketch`` does not have
    in the expected shape (see the module docstring), None when all of them fit."""
    if vars(sketch).keys() != _SKETCH_ATTRIBUTES:
        return "DDSketch's attributes"
    mapping, store = sketch._mapping, sketch._store
    if type(mapping) is not LogarithmicMapping:
        return "DDSketch._mapping"
    for name in ("_count", "_sum", "_min", "_max"):
        if not isinstance(getattr(sketch, name), (int, float)):
            return f"DDSketch.{name}"
    multiplier = getattr(mapping, "_multiplier", None)
    if not (isinstance(multiplier, float) and 0.0 < multiplier < _INF):
        return "LogarithmicMapping._multiplier"
    if getattr(mapping, "_offset", None) != 0.0:
        return "LogarithmicMapping._offset"
    if any(mapping.key(value) != _ceil(_log(value, 2) * multiplier) for value in _KEY_SAMPLES):
        return "LogarithmicMapping._log_gamma"
    if type(store) is not DenseStore:
        return "DDSketch._store"
    if vars(store).keys() != _STORE_ATTRIBUTES:
        return "DenseStore's attributes"
    if not isinstance(store.bins, list):
        return "DenseStore.bins"
    if not isinstance(store.offset, int):
        return "DenseStore.offset"
    if not isinstance(store.count, (int, float)):
        return "DenseStore.count"
    low, high = store.min_key, store.max_key
    if not (isinstance(low, int) and isinstance(high, int)) or any(
        low <= key <= high for key in _KEY_PROBES
    ):
        return "DenseStore.min_key/max_key"
    return None


@functools.cache
def batch_path_fits(relative_accuracy: float) -> bool:
    """Whether ``_BatchDDSketch.add_all`` may use ddsketch's internals (checked on a new
    ``DDSketch`` once per accuracy); warns once when it may not."""
    changed = changed_sketch_internal(DDSketch(relative_accuracy))
    if changed is None:
        return True
    warn_changed_internal(
        "ddsketch",
        changed,
        "the batch path of LatencySketch is off: each value goes through DDSketch.add "
        "(the same results, slower)",
    )
    return False


class _BatchDDSketch(DDSketch):
    """``DDSketch`` with ``add_all``: many values at once, the state held in local variables.

    The library's ``add`` makes five Python calls and a dozen attribute updates per value,
    which cost more than all of a span's other statistics. ``add_all`` ends in exactly the
    state that ``add`` called on each pair in turn would leave (same keys, bins, and counts and
    sums accumulated in the same order), using the internals listed in the module docstring.
    Anything else (zero, negative or tiny values, a key outside the store's current range, or
    internals that do not fit: ``batch_path_fits``) goes through the library's ``add``.
    """

    def __init__(self, relative_accuracy: float) -> None:
        super().__init__(relative_accuracy)
        self._batched = batch_path_fits(relative_accuracy)
        if self._batched:
            # Values above this take the inlined path: positive values the mapping tells from 0.
            self._inline_above: float = self._mapping.min_possible
            # 1/log2(gamma): log(value, 2) * multiplier is the mapping's _log_gamma.
            self._multiplier: float = self._mapping._multiplier

    def add_all(self, pairs: Iterable[tuple[float, float]]) -> None:
        """``add(value, weight)`` for each pair, in order."""
        if not self._batched:
            for value, weight in pairs:
                self.add(value, weight)
            return
        rest = iter(pairs)
        while (odd := self._add_inlined(rest)) is not None:
            self.add(*odd)  # may grow the store, or raise

    def _add_inlined(self, pairs: Iterator[tuple[float, float]]) -> tuple[float, float] | None:
        """Add pairs until one needs the library's ``add``: that one is returned, not added."""
        above, multiplier, store = self._inline_above, self._multiplier, self._store
        bins, offset, low_key, high_key = store.bins, store.offset, store.min_key, store.max_key
        stored, count, total, low, high = store.count, self._count, self._sum, self._min, self._max
        try:
            for value, weight in pairs:
                if value > above and weight > 0.0:
                    key = _ceil(_log(value, 2) * multiplier)
                    # Empty, the store's bounds are sentinels that no key is between.
                    if low_key <= key <= high_key:
                        bins[key - offset] += weight
                        stored += weight
                        count += weight
                        total += value * weight
                        if value < low:
                            low = value
                        if value > high:
                            high = value
                        continue
                return value, weight
            return None
        finally:
            store.count, self._count, self._sum = stored, count, total
            self._min, self._max = low, high


class LatencySketch:
    """Quantile sketch of durations in seconds, weighted (a sampled span stands for 1/p calls).

    ``add`` is called for every span: values are buffered and go into the sketch a batch at a
    time (``_BatchDDSketch.add_all``), which is several times faster per value than DDSketch's
    own ``add``; every read takes the buffer in first, so the result is the same. Callers clamp
    negative durations (clock steps) to 0.
    """

    __slots__ = ("_pending", "_sketch")

    def __init__(self) -> None:
        self._sketch = _BatchDDSketch(SKETCH_RELATIVE_ACCURACY)
        self._pending: list[tuple[float, float]] = []

    def add(self, seconds: float, weight: float = 1.0) -> None:
        """Add one duration standing for ``weight`` calls."""
        if not weight > 0.0 or seconds - seconds:  # a weight DDSketch refuses, inf or nan:
            self._flush()  # DDSketch's own add, now, so that it raises (or counts) in turn
            self._sketch.add(seconds, weight)
            return
        pending = self._pending
        pending.append((seconds, weight))
        if len(pending) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._sketch.add_all(self._pending)
            self._pending.clear()

    @property
    def count(self) -> float:
        """Total weight added."""
        self._flush()
        return float(self._sketch.count)

    def merge(self, other: LatencySketch) -> None:
        """Add all of ``other`` into this sketch (exact: same mapping)."""
        self._flush()
        other._flush()
        self._sketch.merge(other._sketch)

    def quantile_ms(self, quantile: float) -> float | None:
        """The ``quantile`` (0..1) in milliseconds, None when empty: the nearest-rank value, the
        smallest that at least ``quantile`` of the weight is at or below.

        DDSketch's own rank, ``quantile * (count - 1)`` rounded down, hides a small sample's
        tail: of 10 calls, one taking a second, its p95 and p99 were the 9th value, as if no
        call had been slow."""
        self._flush()
        value = self._sketch.get_quantile_value(nearest_rank(quantile, self._sketch.count))
        return None if value is None else float(value) * 1000.0


def nearest_rank(quantile: float, count: float) -> float:
    """The quantile to ask DDSketch (whose rank is ``quantile * (count - 1)``, rounded down) for
    the nearest-rank value of ``count`` values: the one at rank ``ceil(quantile * count)``."""
    if count <= 1.0:
        return quantile
    # The epsilon keeps a product such as 0.95 * 100 = 95.00000000000001 from costing a rank.
    rank = max(math.ceil(quantile * count - 1e-9) - 1, 0)
    return min(rank / (count - 1.0), 1.0)


class BucketHistogram:
    """Histogram buckets as ``(lower, upper) -> count`` plus count, sum, min and max.

    Buckets of differently configured streams (other boundaries, exponential scales) coexist:
    percentiles treat each bucket as a uniform spread of its count and interpolate the combined
    distribution, which reduces to the usual per-bucket interpolation when boundaries agree.
    """

    __slots__ = ("buckets", "count", "max", "min", "sum")

    def __init__(self) -> None:
        self.buckets: dict[tuple[float, float], float] = {}
        self.count = 0.0
        self.sum = 0.0
        self.min = _INF
        self.max = -_INF

    @classmethod
    def from_explicit(
        cls,
        bounds: Sequence[float],
        counts: Sequence[float],
        *,
        total: float,
        total_sum: float,
        minimum: float | None,
        maximum: float | None,
    ) -> BucketHistogram:
        """One OTLP explicit-bucket point: ``counts`` has ``len(bounds) + 1`` entries."""
        hist = cls._with_summary(total, total_sum, minimum, maximum)
        lower = -_INF
        for index, bucket_count in enumerate(counts):
            upper = bounds[index] if index < len(bounds) else _INF
            if bucket_count:
                hist.buckets[(lower, upper)] = float(bucket_count)
            lower = upper
        return hist

    @classmethod
    def from_exponential(
        cls,
        scale: int,
        offset: int,
        counts: Sequence[float],
        zero_count: float,
        *,
        total: float,
        total_sum: float,
        minimum: float | None,
        maximum: float | None,
    ) -> BucketHistogram:
        """One OTLP exponential point (positive buckets; durations are never negative)."""
        hist = cls._with_summary(total, total_sum, minimum, maximum)
        base = 2.0 ** (2.0**-scale)
        for index, bucket_count in enumerate(counts):
            if bucket_count:
                # Bucket i covers (base**i, base**(i+1)].
                lower = base ** (offset + index)
                hist.buckets[(lower, lower * base)] = float(bucket_count)
        if zero_count:
            hist.buckets[(0.0, 0.0)] = float(zero_count)
        return hist

    @classmethod
    def _with_summary(
        cls, total: float, total_sum: float, minimum: float | None, maximum: float | None
    ) -> BucketHistogram:
        hist = cls()
        hist.count = float(total)
        hist.sum = float(total_sum)
        hist.min = _INF if minimum is None else float(minimum)
        hist.max = -_INF if maximum is None else float(maximum)
        return hist

    def merge(self, other: BucketHistogram) -> None:
        """Add ``other``'s buckets and totals into this histogram."""
        buckets = self.buckets
        for key, bucket_count in other.buckets.items():
            buckets[key] = buckets.get(key, 0.0) + bucket_count
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    @classmethod
    def merged(cls, histograms: Iterable[BucketHistogram]) -> BucketHistogram:
        """A new histogram holding the sum of ``histograms``."""
        total = cls()
        for hist in histograms:
            total.merge(hist)
        return total

    def quantile_ms(self, quantile: float, zeros: float = 0.0) -> float | None:
        """The ``quantile`` (0..1) in milliseconds (values are seconds), None when empty.

        ``zeros`` counts values of exactly 0 that were never recorded (see ``quantile``).
        """
        return self.quantiles_ms((quantile,), zeros)[0]

    def quantiles_ms(self, quantiles: Sequence[float], zeros: float = 0.0) -> list[float | None]:
        """``quantile_ms`` of each of ``quantiles``, the buckets prepared once for all."""
        return [
            None if value is None else value * 1000.0 for value in self.quantiles(quantiles, zeros)
        ]

    def quantile(self, quantile: float, zeros: float = 0.0) -> float | None:
        """The ``quantile`` (0..1) in the histogram's unit, None when it holds no values.

        ``zeros`` adds that many values of exactly 0 that were not recorded (a pool wait is
        recorded only when a request queued): the quantile of the whole population is 0 while
        its rank falls among them, else the matching quantile of the recorded values, so the
        recorded min and max still clamp the buckets.
        """
        return self.quantiles((quantile,), zeros)[0]

    def quantiles(self, quantiles: Sequence[float], zeros: float = 0.0) -> list[float | None]:
        """``quantile`` of each of ``quantiles``: the buckets are closed, sorted and checked for
        overlaps once (a report asks for p50, p95 and p99 of every histogram)."""
        spans = self._finite_buckets()
        total = sum(weight for _, _, weight in spans)
        zeros = max(zeros, 0.0)
        spans.sort()
        disjoint = all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))
        found: list[float | None] = []
        for quantile in quantiles:
            target = min(max(quantile, 0.0), 1.0) * (total + zeros)
            if zeros > 0:
                if target <= zeros or total <= 0:
                    found.append(0.0)
                    continue
                target -= zeros
            if total <= 0:
                found.append(None)
            elif disjoint:
                found.append(_disjoint_quantile(spans, target))
            else:
                found.append(_overlapping_quantile(spans, target))
        return found

    def _finite_buckets(self) -> list[tuple[float, float, float]]:
        """Buckets with open ends closed by min/max (else by the nearest bound), clamped to them."""
        low = self.min if math.isfinite(self.min) else None
        high = self.max if math.isfinite(self.max) else None
        spans = []
        for (lower, upper), weight in self.buckets.items():
            if weight <= 0:
                continue
            if lower == -_INF:
                # Durations are never negative: the first bucket starts at 0 unless min says more.
                lower = low if low is not None else min(0.0, upper)
            if upper == _INF:
                upper = high if high is not None else lower
            if low is not None:
                lower, upper = max(lower, low), max(upper, low)
            if high is not None:
                lower, upper = min(lower, high), min(upper, high)
            spans.append((lower, max(lower, upper), weight))
        return spans


def _overlapping_quantile(spans: list[tuple[float, float, float]], target: float) -> float:
    """The general sweep of ``BucketHistogram.quantile`` (buckets sorted, some overlapping)."""
    # The combined CDF is piecewise linear between bucket edges, with steps at zero-width
    # buckets (point masses). Sweep the edges in order until it reaches the target.
    edges = sorted({edge for lower, upper, _ in spans for edge in (lower, upper)})
    cumulative = 0.0
    previous = edges[0]
    for edge in edges:
        if edge > previous:
            # Mass of the buckets that cover (previous, edge], spread uniformly.
            mass = sum(
                weight * (edge - previous) / (upper - lower)
                for lower, upper, weight in spans
                if lower < upper and lower <= previous and upper >= edge
            )
            if cumulative + mass >= target and mass > 0:
                return previous + (edge - previous) * (target - cumulative) / mass
            cumulative += mass
        point = sum(w for lower, upper, w in spans if lower == upper == edge)
        if cumulative + point >= target and (point > 0 or target <= cumulative):
            return edge
        cumulative += point
        previous = edge
    return edges[-1]


def _disjoint_quantile(spans: list[tuple[float, float, float]], target: float) -> float:
    """The sweep of ``BucketHistogram.quantile`` for buckets that do not overlap (sorted): the
    usual case, one set of boundaries, in one pass instead of one per edge. The report of a
    fleet computes hundreds of thousands of these."""
    cumulative = 0.0
    for lower, upper, weight in spans:
        if cumulative + weight >= target:
            if upper == lower:
                return lower
            return lower + (upper - lower) * (target - cumulative) / weight
        cumulative += weight
    return spans[-1][1]
