"""The ddsketch internals of LatencySketch's batch path: each shape pinned, its degrade shown.

The shape tests run against the installed ddsketch and state what ``_BatchDDSketch.add_all``
relies on (see ``resilient_http/analysis/stats.py``'s docstring) independently of the module's
own check. A degrade test changes one internal the way a future ddsketch release might (another
mapping or store, a renamed or redefined multiplier, another empty store, more state), then shows
exactly one ``RuntimeWarning`` naming it and the same sketch as ddsketch's own ``add`` builds.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ddsketch import DDSketch
from ddsketch import ddsketch as ddsketch_module
from ddsketch.mapping import CubicallyInterpolatedMapping, KeyMapping, LogarithmicMapping
from ddsketch.store import DenseStore

from resilient_http import _dependency_internals
from resilient_http.analysis import stats
from resilient_http.analysis.stats import SKETCH_RELATIVE_ACCURACY, LatencySketch
from tests.helpers import one_runtime_warning


@pytest.fixture(autouse=True)
def _fresh_check(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test sees its own warnings and re-checks the shapes (cached per process)."""
    monkeypatch.setattr(_dependency_internals, "_warned", set())
    stats.batch_path_fits.cache_clear()
    yield
    stats.batch_path_fits.cache_clear()


def durations(seed: int, n: int = 2_000) -> list[float]:
    """Span durations in seconds over six decades, with the odd zero."""
    rng = random.Random(seed)
    return [0.0 if rng.random() < 0.01 else rng.lognormvariate(-4, 2.5) for _ in range(n)]


# --- shapes ------------------------------------------------------------------------------------


def test_a_new_sketch_has_the_pinned_state() -> None:
    sketch = DDSketch(SKETCH_RELATIVE_ACCURACY)
    assert sorted(vars(sketch)) == [
        "_count",
        "_mapping",
        "_max",
        "_min",
        "_negative_store",
        "_relative_accuracy",
        "_store",
        "_sum",
        "_zero_count",
    ]
    assert type(sketch._mapping) is LogarithmicMapping
    assert type(sketch._store) is DenseStore
    assert (sketch._count, sketch._sum, sketch._min, sketch._max) == (0, 0.0, math.inf, -math.inf)
    assert all(isinstance(v, float) for v in (sketch._sum, sketch._min, sketch._max))
    assert isinstance(sketch._count, (int, float))


def test_add_updates_the_pinned_totals_and_nothing_else() -> None:
    sketch = DDSketch(SKETCH_RELATIVE_ACCURACY)
    names = set(vars(sketch))
    for value, weight in ((0.25, 2.0), (0.5, 1.0), (0.125, 0.5)):
        sketch.add(value, weight)
    assert set(vars(sketch)) == names
    assert (sketch._count, sketch._sum, sketch._min, sketch._max) == (3.5, 1.0625, 0.125, 0.5)
    assert (sketch.count, sketch.sum) == (sketch._count, sketch._sum)  # the public views
    assert sketch._store.count == 3.5


def test_the_mapping_key_is_the_inlined_formula() -> None:
    mapping = DDSketch(SKETCH_RELATIVE_ACCURACY)._mapping
    assert isinstance(mapping, LogarithmicMapping)
    multiplier = mapping._multiplier
    assert isinstance(multiplier, float)
    assert multiplier == pytest.approx(1 / math.log2(mapping.gamma))
    assert mapping._offset == 0.0
    assert isinstance(mapping.min_possible, float)
    for value in durations(seed=1):
        if value > mapping.min_possible:
            assert mapping._log_gamma(value) == math.log(value, 2) * multiplier
            assert mapping.key(value) == math.ceil(math.log(value, 2) * multiplier)


def test_a_dense_store_counts_a_key_in_its_range_in_place() -> None:
    store = DenseStore()
    assert sorted(vars(store)) == ["bins", "chunk_size", "count", "max_key", "min_key", "offset"]
    assert (store.bins, store.offset, store.count) == ([], 0, 0)
    # An empty store's bounds are int sentinels that no key lies between.
    assert isinstance(store.min_key, int)
    assert isinstance(store.max_key, int)
    assert not any(store.min_key <= key <= store.max_key for key in range(-3000, 3000, 7))
    store.add(-40, 1.0)
    store.add(60, 1.0)
    assert (type(store.min_key), type(store.max_key)) == (int, int)
    assert isinstance(store.bins, list)
    assert isinstance(store.offset, int)
    for key in range(store.min_key, store.max_key + 1):
        expected = store.bins.copy()
        expected[key - store.offset] += 0.5
        bounds = (store.min_key, store.max_key, store.offset)
        count = store.count
        store.add(key, 0.5)
        assert store.bins == expected
        assert (store.min_key, store.max_key, store.offset) == bounds
        assert store.count == count + 0.5


def test_the_batch_path_is_on_with_the_installed_ddsketch() -> None:
    assert stats.changed_sketch_internal(DDSketch(SKETCH_RELATIVE_ACCURACY)) is None
    assert stats.batch_path_fits(SKETCH_RELATIVE_ACCURACY)
    assert LatencySketch()._sketch._batched


# --- degrade paths -----------------------------------------------------------------------------


class OtherStore(DenseStore):
    """A store class another ddsketch release might build."""


def another_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ddsketch_module, "LogarithmicMapping", CubicallyInterpolatedMapping)


def another_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ddsketch_module, "DenseStore", OtherStore)


def renamed_multiplier(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mapping keeps its multiplier under another name."""
    original = LogarithmicMapping.__init__

    def init(self: Any, relative_accuracy: float, offset: float = 0.0) -> None:
        original(self, relative_accuracy, offset)
        self.per_log2 = self.__dict__.pop("_multiplier")

    monkeypatch.setattr(LogarithmicMapping, "__init__", init)
    monkeypatch.setattr(LogarithmicMapping, "_log_gamma", lambda s, v: math.log(v, 2) * s.per_log2)
    monkeypatch.setattr(LogarithmicMapping, "_pow_gamma", lambda s, v: 2.0 ** (v / s.per_log2))


def natural_log_multiplier(monkeypatch: pytest.MonkeyPatch) -> None:
    """The multiplier keeps its name but multiplies the natural log: other keys."""

    def init(self: Any, relative_accuracy: float, offset: float = 0.0) -> None:
        KeyMapping.__init__(self, relative_accuracy, offset)

    monkeypatch.setattr(LogarithmicMapping, "__init__", init)
    monkeypatch.setattr(LogarithmicMapping, "_log_gamma", lambda s, v: math.log(v) * s._multiplier)
    monkeypatch.setattr(LogarithmicMapping, "_pow_gamma", lambda s, v: math.exp(v / s._multiplier))


def bounded_empty_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty store is told by its empty bins, its bounds are 0 (the key of 1 s): the batch
    path would index the empty list."""
    original = DenseStore.__init__

    def init(self: Any, chunk_size: int = 128) -> None:
        original(self, chunk_size)
        self.min_key = self.max_key = 0

    def get_index(self: Any, key: int) -> int:
        if not self.bins or not self.min_key <= key <= self.max_key:
            self._extend_range(key)
        return key - int(self.offset)

    monkeypatch.setattr(DenseStore, "__init__", init)
    monkeypatch.setattr(DenseStore, "_get_index", get_index)


def more_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """``add`` keeps one more total, which the batch path would not."""
    original_init, original_add = DDSketch.__init__, DDSketch.add

    def init(self: Any, relative_accuracy: float | None = None) -> None:
        original_init(self, relative_accuracy)
        self._sum_of_squares = 0.0

    def add(self: Any, val: float, weight: float = 1.0) -> None:
        original_add(self, val, weight)
        self._sum_of_squares += val * val * weight

    monkeypatch.setattr(DDSketch, "__init__", init)
    monkeypatch.setattr(DDSketch, "add", add)


@pytest.mark.parametrize(
    ("change", "internal"),
    [
        (another_mapping, "DDSketch._mapping"),
        (another_store, "DDSketch._store"),
        (renamed_multiplier, "LogarithmicMapping._multiplier"),
        (natural_log_multiplier, "LogarithmicMapping._log_gamma"),
        (bounded_empty_store, "DenseStore.min_key/max_key"),
        (more_state, "DDSketch's attributes"),
    ],
)
def test_a_changed_internal_turns_the_batch_path_off_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, change: Callable[[pytest.MonkeyPatch], None], internal: str
) -> None:
    change(monkeypatch)
    values = [1.0, *durations(seed=2)]  # 1 s first: key 0
    reference = DDSketch(SKETCH_RELATIVE_ACCURACY)
    with one_runtime_warning(internal, "the batch path of LatencySketch is off"):
        sketches = [LatencySketch(), LatencySketch()]
    for value in values:
        reference.add(value, 1.5)
        for sketch in sketches:
            sketch.add(value, 1.5)
    for sketch in sketches:
        assert sketch.count == reference.count
        for q in (0.0, 0.25, 0.5, 0.9, 0.99, 1.0):
            expected = reference.get_quantile_value(q)
            assert expected is not None
            assert sketch.quantile_ms(q) == float(expected) * 1000.0
        state = vars(sketch._sketch)
        assert {name: repr(state[name]) for name in vars(reference) if name != "_mapping"} == {
            name: repr(value) for name, value in vars(reference).items() if name != "_mapping"
        }
